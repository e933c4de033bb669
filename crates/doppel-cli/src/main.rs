//! `doppel`: the command-line shell over doppel-core.
//!
//! Thin by design: it parses arguments, calls the core's public API, and prints the result as
//! text or, with `--json`, as JSON. Every error leaves as `{"error":{"code","message"}}` (with
//! `--json`) or `error: message` on stderr, with exit status 1. A command whose items partly
//! failed (some files of an ingest) prints its report and exits with status 2.

mod api;
mod backup;
mod chat;
mod input;
mod json;
mod models;
mod servers;
mod stats;
mod status;
mod wait;
mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use doppel_core::{
    Config, DEFAULT_TWIN, Doppel, EmbedderChoice, Error, IngestRequest, JobFilter, JobState,
    RemoteKind, SETTING_SPECS, SearchMode, SearchRequest, TextRequest,
};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "doppel",
    version,
    about = "Train a personal twin on your own documents, locally."
)]
struct Cli {
    /// The data directory (default: $DOPPEL_DATA_DIR, else ~/.local/share/doppel).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add files, folders (recursively) and web pages, and wait until they are indexed.
    Ingest {
        /// Files, folders, or http(s) URLs.
        #[arg(required = true)]
        items: Vec<String>,
        /// Queue them and return at once; a later `doppel wait` (or the app) processes them.
        #[arg(long)]
        no_wait: bool,
    },
    /// Add text read from standard input.
    AddText {
        /// The title of the text.
        #[arg(long)]
        title: String,
        /// Queue it and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Process queued jobs until none is left.
    Wait,
    /// What the twin knows: sources by state, format and folder, passages, what is embedded,
    /// the space taken, the queue, and every failure and skip with its reason.
    Status {
        /// Also say why this word or file name is found or not: sources named like it, the
        /// passages that hold its words, and what search by meaning finds.
        #[arg(long, value_name = "TEXT")]
        why: Option<String>,
    },
    /// Pause the whole queue: no further file is read until `doppel resume` (kept across
    /// restarts, in the app too).
    Pause,
    /// Let a paused queue go on.
    Resume,
    /// List the sources.
    Sources,
    /// Show a source (by id or path) and its passages.
    Show {
        /// Source id or path.
        source: String,
    },
    /// Read a source's file (or web page) again; only passages whose text changed are embedded
    /// again.
    Reingest {
        /// Source id or path.
        source: String,
        /// Queue it and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// List, create or rename twins.
    Twins {
        #[command(subcommand)]
        action: Option<TwinsAction>,
    },
    /// Keep folders in sync: what appears or changes is ingested, what disappears is forgotten.
    Watch {
        #[command(subcommand)]
        action: watch::WatchAction,
    },
    /// Forget a source: its passages, index entries and jobs.
    Delete {
        /// Source id or path.
        source: String,
    },
    /// List jobs, newest first.
    Jobs {
        /// Include finished jobs.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// Job id.
        job: i64,
    },
    /// Search the sources by keywords and by meaning.
    Search {
        /// What to look for.
        query: String,
        /// Number of results (default: the top_k setting).
        #[arg(short, long)]
        k: Option<u32>,
        /// Only in these sources (id or path); may be repeated.
        #[arg(long = "source", value_name = "SOURCE")]
        sources: Vec<String>,
        /// hybrid (keywords and meaning, the default), vector (meaning) or keyword.
        #[arg(long, default_value = "hybrid", value_parser = ["hybrid", "vector", "keyword"])]
        mode: String,
    },
    /// Show or change settings.
    Settings {
        #[command(subcommand)]
        action: Option<SettingsAction>,
    },
    /// Show or choose the embedding model: the local one, or a model server.
    Embedder {
        #[command(subcommand)]
        action: Option<EmbedderAction>,
        /// After a change, return at once instead of re-embedding every passage now (a later
        /// `doppel wait`, or the app, does it).
        #[arg(long, global = true)]
        no_wait: bool,
        /// Go ahead when choosing a model server sends passages to it to be embedded (without
        /// it, the command says how many and stops).
        #[arg(long, global = true)]
        yes: bool,
    },
    /// Check the data directory: integrity, versions, counts.
    Doctor {
        /// Rebuild the keyword index and the database's indexes first, which repairs damage
        /// found in them (writing resumes once the database is whole).
        #[arg(long)]
        repair: bool,
    },
    /// Local metrics: job times by format, failures by code, embedding, search and answer
    /// latencies, the queue and the index's health (never a word of a document).
    Stats {
        /// The period, in days back from now.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// A diagnostic report to attach to a bug report: versions, settings, counts, metrics,
    /// doctor's findings and the log's last lines, with no document text, title, path or URL.
    Report,
    /// Ask the twin a question; the answer streams, with its citations. Ctrl-C stops it.
    Ask {
        /// The question.
        question: String,
        /// Continue this conversation (or start one with this id).
        #[arg(long)]
        conversation: Option<String>,
        /// How to answer: auto, grounded (the passages' own sentences) or model (see
        /// `doppel models mode`).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Talk with the twin: one question per line.
    Chat {
        /// Continue this conversation.
        #[arg(long)]
        conversation: Option<String>,
    },
    /// List the conversations.
    Conversations,
    /// Print a conversation as Markdown with its citations (`--json`: its messages).
    ExportConversation {
        /// The conversation id.
        id: String,
    },
    /// Approve answers (verified answers are retrieved first for later questions).
    Verify {
        #[command(subcommand)]
        action: chat::VerifyAction,
    },
    /// Show or change who the twin is: name, description, voice, "not covered" message.
    Persona(chat::PersonaArgs),
    /// Show or choose the language model that answers (also `doppel models`).
    #[command(alias = "models")]
    ChatModel {
        #[command(subcommand)]
        action: Option<chat::ChatModelAction>,
    },
    /// Show or choose the reranking server that reorders search results (off by default).
    Reranker {
        #[command(subcommand)]
        action: Option<servers::ServerAction>,
    },
    /// Show or choose the speech-to-text server that transcribes audio and video files (off by
    /// default; recordings wait until one is set).
    Transcriber {
        #[command(subcommand)]
        action: Option<servers::ServerAction>,
    },
    /// Back up the data directory into one file (the app may be running).
    Backup {
        /// The file to write (replaced whole if it exists).
        file: PathBuf,
        /// Encrypt it with a passphrase, read from standard input.
        #[arg(long)]
        encrypt: bool,
    },
    /// Restore a backup into the data directory (`--data-dir`): an empty one, or one holding a
    /// twin when `--yes` confirms replacing it. An encrypted backup's passphrase is read from
    /// standard input.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Replace a data directory that holds a twin.
        #[arg(long)]
        yes: bool,
    },
    /// The local API: serve it, switch it on or off for the desktop app, make and revoke
    /// tokens.
    Api {
        #[command(subcommand)]
        action: api::ApiAction,
    },
    /// Write the twin as plain files into a new folder: conversations (Markdown), verified
    /// answers, persona, sources (CSV).
    Export {
        /// The folder to create (or an empty one).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum EmbedderAction {
    /// Use the local model (the default; nothing leaves the machine).
    Local,
    /// Use an Ollama server (`/api/embed`).
    Ollama {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:11434")]
        url: String,
        /// The model name, such as nomic-embed-text.
        #[arg(long)]
        model: String,
    },
    /// Use an OpenAI-compatible server (`/v1/embeddings`).
    Openai {
        /// The server's base URL, such as https://api.openai.com/v1.
        #[arg(long)]
        url: String,
        /// The model name, such as text-embedding-3-small.
        #[arg(long)]
        model: String,
    },
    /// Store the chosen server's API key in the OS keychain, read from standard input (never
    /// from the command line, where it would stay in the shell history).
    Key {
        /// Remove the stored key instead.
        #[arg(long)]
        delete: bool,
    },
}

#[derive(Subcommand)]
enum TwinsAction {
    /// List the twins (the default).
    List,
    /// Create a twin.
    Create {
        /// Its name (1 to 100 characters, unique).
        name: String,
    },
    /// Rename a twin.
    Rename {
        /// The twin's id.
        id: i64,
        /// Its new name.
        name: String,
    },
}

#[derive(Subcommand)]
enum SettingsAction {
    /// Print one setting.
    Get {
        /// The setting's key.
        key: String,
    },
    /// Change one setting.
    Set {
        /// The setting's key.
        key: String,
        /// The new value.
        value: String,
    },
}

/// How a command ended when it did not fail outright.
enum Outcome {
    Ok,
    /// Some items failed; the report was printed.
    Partial,
}

fn main() -> ExitCode {
    // The sandboxed parser for complex formats is this same binary in a hidden mode.
    if std::env::args_os().nth(1).is_some_and(|a| a == doppel_core::PARSER_ARG) {
        return doppel_core::run_parser_child();
    }
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Partial) => ExitCode::from(2),
        Err(e) => {
            if json {
                println!("{}", json::error(&e));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<Outcome, Error> {
    let data_dir = Config::resolve_data_dir(cli.data_dir.as_deref())?;
    doppel_core::init_logging(&data_dir);
    let out = Printer { json: cli.json };
    // These two never open the data directory: a backup reads it while the app may hold it,
    // and a restore takes its lock itself.
    match &cli.command {
        Command::Backup { file, encrypt } => {
            return backup::backup(data_dir, &out, file.clone(), *encrypt).map(|()| Outcome::Ok);
        }
        Command::Restore { file, yes } => {
            return backup::restore(data_dir, &out, file.clone(), *yes).map(|()| Outcome::Ok);
        }
        _ => {}
    }
    let process_queue = match &cli.command {
        Command::Ingest { no_wait, .. }
        | Command::AddText { no_wait, .. }
        | Command::Reingest { no_wait, .. } => !no_wait,
        Command::Wait => true,
        Command::Watch { action } => action.runs(),
        Command::Api { action: api::ApiAction::Serve { .. } } => true,
        Command::Embedder { action: Some(action), no_wait, .. } => {
            !no_wait && !matches!(action, EmbedderAction::Key { .. })
        }
        _ => false,
    };
    // Only `watch run` follows the watched folders; its events are taken from the start, so
    // that the catch-up at open is shown too.
    let watching = matches!(&cli.command, Command::Watch { action } if action.runs());
    let (subscriber, events) = std::sync::mpsc::channel();
    let doppel = Doppel::open(Config {
        process_queue,
        watch: watching,
        subscriber: watching.then_some(subscriber),
        ..Config::new(data_dir)
    })?;
    // Commands that read vectors, or check them, wait for a rebuild of the index that opening
    // the directory started (after a crash, say), rather than answer by keywords alone.
    let reads_vectors = match &cli.command {
        Command::Ask { .. }
        | Command::Chat { .. }
        | Command::Doctor { .. }
        | Command::Stats { .. }
        | Command::Report => true,
        Command::Search { mode, .. } => SearchMode::parse(mode) != Some(SearchMode::Keyword),
        _ => false,
    };
    if reads_vectors {
        wait::index(&doppel, &out)?;
    }
    match cli.command {
        Command::Backup { .. } | Command::Restore { .. } => Ok(Outcome::Ok),
        Command::Export { dir } => backup::export(&doppel, &out, dir).map(|()| Outcome::Ok),
        Command::Api { action } => api::api(doppel, &out, action).map(|()| Outcome::Ok),
        Command::Ask { question, conversation, mode } => {
            let mode = mode.as_deref().map(chat::parse_mode).transpose()?;
            let answer = chat::ask(&doppel, &out, question, conversation, mode)?;
            Ok(match answer.message.state {
                doppel_core::chat::MessageState::Complete => Outcome::Ok,
                _ => Outcome::Partial,
            })
        }
        Command::Chat { conversation } => {
            chat::chat(&doppel, &out, conversation).map(|()| Outcome::Ok)
        }
        Command::Conversations => chat::conversations(&doppel, &out).map(|()| Outcome::Ok),
        Command::ExportConversation { id } => {
            chat::show_conversation(&doppel, &out, &id).map(|()| Outcome::Ok)
        }
        Command::Verify { action } => chat::verify(&doppel, &out, action).map(|()| Outcome::Ok),
        Command::Persona(args) => chat::persona(&doppel, &out, args).map(|()| Outcome::Ok),
        Command::ChatModel { action } => {
            chat::chat_model(&doppel, &out, action).map(|()| Outcome::Ok)
        }
        Command::Reranker { action } => {
            servers::server(&doppel, &out, servers::Role::Reranker, action).map(|()| Outcome::Ok)
        }
        Command::Transcriber { action } => {
            servers::server(&doppel, &out, servers::Role::Transcriber, action).map(|()| Outcome::Ok)
        }
        Command::Ingest { items, no_wait } => {
            let (urls, paths): (Vec<String>, Vec<String>) = items
                .into_iter()
                .partition(|i| i.starts_with("http://") || i.starts_with("https://"));
            let paths = paths.into_iter().map(PathBuf::from).collect();
            let report = doppel.ingest(IngestRequest { urls, ..IngestRequest::paths(paths) })?;
            for skipped in &report.skipped {
                out.note(&format!("skipped {skipped}"));
            }
            let ids: Vec<i64> = report.queued.iter().map(|q| q.job_id).collect();
            let skipped: Vec<Value> = report.skipped.iter().map(json::error_value).collect();
            // A paused queue would never process them: they wait for `doppel resume`.
            let paused = doppel.queue_paused();
            if no_wait || paused {
                let queued: Vec<Value> = report.queued.iter().map(json::enqueued).collect();
                out.value(json!({ "queued": queued, "skipped": skipped, "paused": paused }), || {
                    if paused {
                        format!(
                            "{} file(s) queued; the queue is paused: `doppel resume` lets it go on",
                            ids.len()
                        )
                    } else {
                        format!("{} file(s) queued; run `doppel wait` to process them", ids.len())
                    }
                });
                return Ok(Outcome::Ok);
            }
            // Hidden files, loops and binary files are skipped by design; a path that cannot be
            // read at all is a failure of the request.
            let unreadable = report.skipped.iter().any(|e| e.code() == "io");
            let jobs = wait::jobs(&doppel, &ids, &out)?;
            let outcome = out.finish_jobs(&doppel, &jobs, skipped)?;
            Ok(if unreadable { Outcome::Partial } else { outcome })
        }
        Command::AddText { title, no_wait } => {
            let limit = doppel.settings()?.max_file_bytes();
            let text = input::all(std::io::stdin().lock(), limit)?;
            let queued = doppel.add_text(TextRequest { twin: DEFAULT_TWIN, title, text })?;
            one_job(&doppel, &out, &queued, no_wait)
        }
        Command::Wait => {
            let active = doppel.jobs(JobFilter { active_only: true, limit: u32::MAX })?;
            let ids: Vec<i64> = active.iter().rev().map(|j| j.id).collect();
            let jobs = wait::jobs(&doppel, &ids, &out)?;
            // Passages waiting for vectors (after a change of model) are embedded too.
            if doppel.vector_status().model.is_ok()
                && let Err(e) = wait::vectors(&doppel, &out)
            {
                out.note(&format!("passages were not all embedded: {e}"));
            }
            out.finish_jobs(&doppel, &jobs, Vec::new())
        }
        Command::Status { why } => status::status(&doppel, &out, why),
        Command::Pause => status::pause(&doppel, &out, true),
        Command::Resume => status::pause(&doppel, &out, false),
        Command::Reingest { source, no_wait } => {
            let source = doppel.find_source(DEFAULT_TWIN, &source)?;
            let queued = doppel.reingest(source.id)?;
            one_job(&doppel, &out, &queued, no_wait)
        }
        Command::Twins { action } => {
            match action {
                None | Some(TwinsAction::List) => {
                    let twins = doppel.twins()?;
                    out.value(Value::Array(twins.iter().map(json::twin).collect()), || {
                        twins.iter().map(json::twin_line).collect::<Vec<_>>().join("\n")
                    });
                }
                Some(TwinsAction::Create { name }) => {
                    let twin = doppel.create_twin(&name)?;
                    out.value(json::twin(&twin), || {
                        format!("created twin {}: {}", twin.id, twin.name)
                    });
                }
                Some(TwinsAction::Rename { id, name }) => {
                    let twin = doppel.rename_twin(id, &name)?;
                    out.value(json::twin(&twin), || {
                        format!("twin {} is now {}", twin.id, twin.name)
                    });
                }
            }
            Ok(Outcome::Ok)
        }
        Command::Watch { action } => {
            watch::watch(&doppel, &out, action, events).map(|()| Outcome::Ok)
        }
        Command::Sources => {
            let sources = doppel.sources(DEFAULT_TWIN)?;
            out.value(Value::Array(sources.iter().map(json::source).collect()), || {
                if sources.is_empty() {
                    return "no sources yet: add some with `doppel ingest PATH`".to_string();
                }
                sources.iter().map(json::source_line).collect::<Vec<_>>().join("\n")
            });
            Ok(Outcome::Ok)
        }
        Command::Show { source } => {
            let source = doppel.find_source(DEFAULT_TWIN, &source)?;
            let chunks = doppel.chunks(source.id)?;
            let mut value = json::source(&source);
            value["chunks"] = Value::Array(chunks.iter().map(json::chunk).collect());
            out.value(value, || json::source_details(&source, &chunks));
            Ok(Outcome::Ok)
        }
        Command::Delete { source } => {
            let source = doppel.find_source(DEFAULT_TWIN, &source)?;
            doppel.delete_source(source.id)?;
            out.value(json!({ "deleted": source.id }), || {
                format!("forgot source {} ({})", source.id, source.title)
            });
            Ok(Outcome::Ok)
        }
        Command::Jobs { all, limit } => {
            let jobs = doppel.jobs(JobFilter { active_only: !all, limit })?;
            out.value(Value::Array(jobs.iter().map(json::job).collect()), || {
                if jobs.is_empty() {
                    return if all { "no jobs".into() } else { "no queued or running jobs".into() };
                }
                jobs.iter().map(json::job_line).collect::<Vec<_>>().join("\n")
            });
            Ok(Outcome::Ok)
        }
        Command::Cancel { job } => {
            let job = doppel.cancel_job(job)?;
            out.value(json::job(&job), || match job.state {
                JobState::Cancelled => format!("job {} cancelled", job.id),
                state => format!("job {} had already ended ({state})", job.id),
            });
            Ok(Outcome::Ok)
        }
        Command::Search { query, k, sources, mode } => {
            let sources = sources
                .iter()
                .map(|s| doppel.find_source(DEFAULT_TWIN, s).map(|s| s.id))
                .collect::<Result<Vec<_>, _>>()?;
            let mode = SearchMode::parse(&mode).unwrap_or_default();
            let request = SearchRequest { twin: DEFAULT_TWIN, query, limit: k, sources, mode };
            let results = doppel.search(&request)?;
            if let Some(note) = &results.note {
                out.note(note);
            }
            let hits = results.hits;
            let value = json!({
                "mode": results.mode.as_str(),
                "note": results.note,
                "hits": hits.iter().map(json::hit).collect::<Vec<_>>(),
            });
            out.value(value, || {
                if hits.is_empty() {
                    return "no passage matches".to_string();
                }
                hits.iter()
                    .enumerate()
                    .map(|(i, h)| json::hit_text(i + 1, h))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            });
            Ok(Outcome::Ok)
        }
        Command::Settings { action } => {
            let settings = match &action {
                Some(SettingsAction::Set { key, value }) => doppel.set_setting(key, value)?,
                _ => doppel.settings()?,
            };
            let languages = doppel.ocr_languages()?;
            if let Some(SettingsAction::Get { key }) = &action
                && key == "ocr_languages"
            {
                out.value(json!({ key.as_str(): languages }), || languages.clone());
                return Ok(Outcome::Ok);
            }
            if let Some(SettingsAction::Get { key }) = &action {
                let value = settings.get(key)?;
                out.value(json!({ key.as_str(): value }), || value.to_string());
                return Ok(Outcome::Ok);
            }
            let entries = settings.entries();
            let mut map: serde_json::Map<String, Value> =
                entries.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            map.insert("ocr_languages".into(), json!(languages));
            out.value(Value::Object(map), || {
                let mut lines: Vec<String> = entries
                    .iter()
                    .zip(SETTING_SPECS)
                    .map(|((key, value), spec)| format!("{key:<20} {value:<8} {}", spec.help))
                    .collect();
                lines.push(format!(
                    "{:<20} {languages:<8} Tesseract's languages for text recognition, joined by + (eng+fra)",
                    "ocr_languages"
                ));
                lines.join("\n")
            });
            Ok(Outcome::Ok)
        }
        Command::Embedder { action, no_wait, yes } => embedder(&doppel, action, no_wait, yes, &out),
        Command::Stats { days } => {
            let stats = doppel.stats(days)?;
            out.value(stats::json(&stats), || stats::text(&stats));
            Ok(Outcome::Ok)
        }
        Command::Report => {
            let report = doppel.report()?;
            out.value(json!({ "report": report }), || report.trim_end().to_string());
            Ok(Outcome::Ok)
        }
        Command::Doctor { repair } => {
            if repair {
                doppel.repair()?;
                out.note("the database's indexes were rebuilt, and it is whole");
            }
            let report = doppel.doctor()?;
            out.value(json::doctor(&report), || json::doctor_text(&report));
            Ok(if report.problems.is_empty() { Outcome::Ok } else { Outcome::Partial })
        }
    }
}

/// Chooses a model server once the owner agreed to what it would be sent (the audit's cost
/// guard): a server that would have to embed passages is chosen only with `--yes`.
fn choose_server(doppel: &Doppel, choice: EmbedderChoice, yes: bool) -> Result<(), Error> {
    let cost = doppel.embedding_cost(&choice)?;
    if cost.passages > 0 && !yes {
        return Err(Error::ConfirmationNeeded(format!(
            "choosing {} sends {} passage{} to it to be embedded (about {} tokens, what a paid API \
             charges for); run the command again with --yes to go ahead",
            choice.url().unwrap_or_default(),
            cost.passages,
            if cost.passages == 1 { "" } else { "s" },
            cost.tokens
        )));
    }
    doppel.set_embedder(choice)
}

fn embedder(
    doppel: &Doppel,
    action: Option<EmbedderAction>,
    no_wait: bool,
    yes: bool,
    out: &Printer,
) -> Result<Outcome, Error> {
    let changed = matches!(
        action,
        Some(EmbedderAction::Local | EmbedderAction::Ollama { .. } | EmbedderAction::Openai { .. })
    );
    match action {
        None => {}
        Some(EmbedderAction::Local) => doppel.set_embedder(EmbedderChoice::Local)?,
        Some(EmbedderAction::Ollama { url, model }) => {
            choose_server(doppel, EmbedderChoice::remote(RemoteKind::Ollama, &url, &model)?, yes)?
        }
        Some(EmbedderAction::Openai { url, model }) => {
            choose_server(doppel, EmbedderChoice::remote(RemoteKind::OpenAi, &url, &model)?, yes)?
        }
        Some(EmbedderAction::Key { delete: true }) => {
            let removed = doppel.delete_api_key()?;
            out.note(if removed {
                "API key removed from the keychain"
            } else {
                "no API key was stored"
            });
        }
        Some(EmbedderAction::Key { delete: false }) => {
            let key = read_secret("API key: ")
                .map_err(|e| Error::InvalidInput(format!("could not read the key: {e}")))?;
            doppel.set_api_key(key.trim())?;
            out.note("API key stored in the OS keychain");
        }
    }
    let mut outcome = Outcome::Ok;
    if changed
        && !no_wait
        && let Err(e) = wait::vectors(doppel, out)
    {
        out.note(&format!("passages were not re-embedded: {e}"));
        outcome = Outcome::Partial;
    }
    let choice = doppel.embedder()?;
    let key = doppel.api_key_hint()?;
    let status = doppel.vector_status();
    let (kind, url, model) = match &choice {
        EmbedderChoice::Local => ("local", None, None),
        EmbedderChoice::Remote { kind, url, model } => {
            (kind.as_str(), Some(url.as_str()), Some(model.as_str()))
        }
    };
    let value = json!({
        "kind": kind,
        "url": url,
        "model": model,
        "api_key": key,
        "status": json::model_status(&status.model),
    });
    out.value(value, || {
        let mut lines = vec![match (url, model) {
            (Some(url), Some(model)) => format!("embedder: {kind} model {model} at {url}"),
            _ => "embedder: local model".to_string(),
        }];
        if url.is_some() {
            lines.push(format!("API key: {}", key.as_deref().unwrap_or("none stored")));
        }
        lines.push(json::model_text(&status));
        lines.join("\n")
    });
    Ok(outcome)
}

/// One line from standard input; on a terminal it is asked for with `prompt` and not echoed.
pub(crate) fn read_secret(prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    // SAFETY: termios is plain data; tcgetattr fills it and tcsetattr only reads it.
    let saved = terminal.then(|| unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(0, &mut t) == 0).then_some(t)
    });
    if let Some(Some(saved)) = saved {
        eprint!("{prompt}");
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let read = input::line(&mut stdin.lock(), input::KEY_BYTES);
    if let Some(Some(saved)) = saved {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
        eprintln!();
    }
    read.map(|line| line.unwrap_or_default().trim().to_string())
}

/// Prints results as JSON or as text.
pub(crate) struct Printer {
    pub(crate) json: bool,
}

impl Printer {
    pub(crate) fn value(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    /// A remark for people (on stderr), never mixed into JSON output.
    pub(crate) fn note(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    pub(crate) fn interactive(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }

    fn finish_jobs(
        &self,
        doppel: &Doppel,
        jobs: &[doppel_core::Job],
        skipped: Vec<Value>,
    ) -> Result<Outcome, Error> {
        let failed = jobs.iter().filter(|j| j.state == JobState::Failed).count();
        let items: Vec<Value> = jobs.iter().map(json::job).collect();
        self.value(json!({ "jobs": items, "skipped": skipped }), || {
            let done = jobs.iter().filter(|j| j.state == JobState::Done).count();
            let cancelled = jobs.iter().filter(|j| j.state == JobState::Cancelled).count();
            let chunks: u64 = jobs
                .iter()
                .filter_map(|j| j.source_id)
                .filter_map(|s| doppel.source(s).ok())
                .map(|s| s.chunk_count)
                .sum();
            let mut line = format!("{done} done, {failed} failed");
            if cancelled > 0 {
                line.push_str(&format!(", {cancelled} cancelled"));
            }
            line.push_str(&format!("; {chunks} passages indexed"));
            line
        });
        Ok(if failed > 0 { Outcome::Partial } else { Outcome::Ok })
    }
}

/// Reports one queued job, and waits for it unless told not to.
fn one_job(
    doppel: &Doppel,
    out: &Printer,
    queued: &doppel_core::Enqueued,
    no_wait: bool,
) -> doppel_core::Result<Outcome> {
    if no_wait {
        out.value(json!({ "queued": [json::enqueued(queued)] }), || {
            format!("queued as job {}", queued.job_id)
        });
        return Ok(Outcome::Ok);
    }
    let jobs = wait::jobs(doppel, &[queued.job_id], out)?;
    out.finish_jobs(doppel, &jobs, Vec::new())
}
