//! `doppel ask`, `chat`, `conversations`, `export-conversation`, `verify`, `persona` and
//! `chat-model`: argument and output mapping over the core's chat API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Subcommand;
use doppel_core::chat::prompt::Persona;
use doppel_core::chat::remote::ChatServer;
use doppel_core::chat::{Answer, AnswerMode, AskRequest, ChatModel, Citation, Message};
use doppel_core::{DEFAULT_TWIN, Doppel, Error, RemoteKind};
use serde_json::{Value, json};

use crate::Printer;

/// Set by SIGINT while an answer streams (Ctrl-C stops the answer, not the program) or while
/// `doppel watch run` follows folders (Ctrl-C ends it cleanly).
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Routes Ctrl-C to [`INTERRUPTED`] for the rest of the process.
pub(crate) fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// An answer mode by name.
pub(crate) fn parse_mode(name: &str) -> Result<AnswerMode, Error> {
    AnswerMode::parse(name).ok_or_else(|| {
        Error::InvalidInput(format!("no answer mode {name:?}: auto, grounded or model"))
    })
}

/// Asks one question and prints the answer as it streams (text) or once done (`--json`).
pub(crate) fn ask(
    doppel: &Doppel,
    out: &Printer,
    question: String,
    conversation: Option<String>,
    mode: Option<AnswerMode>,
) -> Result<Answer, Error> {
    catch_interrupts();
    INTERRUPTED.store(false, Ordering::Relaxed);
    let request = AskRequest { conversation, mode, ..AskRequest::new(question) };
    let mut stdout = std::io::stdout();
    let json = out.json;
    let mut streamed = String::new();
    let started = std::time::Instant::now();
    let mut first_piece = None;
    let answer = doppel.ask(&request, &INTERRUPTED, &mut |piece| {
        first_piece.get_or_insert_with(|| started.elapsed());
        streamed.push_str(piece);
        if !json {
            // A closed pipe is a reader that went away: stop generating.
            if stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                INTERRUPTED.store(true, Ordering::Relaxed);
            }
        }
    })?;
    if json {
        let mut value = answer_json(&answer);
        // How long the asker waited: for the first words, and for the whole answer.
        value["first_token_ms"] = json!(first_piece.map(|d| d.as_millis() as u64));
        value["total_ms"] = json!(started.elapsed().as_millis() as u64);
        println!("{value}");
    } else {
        println!();
        for note in &answer.notes {
            out.note(&format!("note: {note}"));
        }
        // The model's words were streamed, and then replaced: show what is stored.
        if answer.message.draft.is_some() && streamed.trim() != answer.message.content.trim() {
            println!("{}", answer.message.content);
        }
        for u in &answer.message.unsupported {
            out.note(&format!(
                "unsupported: \"{}\" states {} that no cited passage holds",
                u.sentence,
                u.facts.join(", ")
            ));
        }
        print_citations(&answer.message.citations);
        let state = answer.message.state.as_str();
        if state != "complete" {
            out.note(&format!("(answer {state}{})", error_suffix(&answer.message)));
        }
        out.note(&format!("conversation {}", answer.conversation));
    }
    Ok(answer)
}

fn error_suffix(message: &Message) -> String {
    message.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
}

fn print_citations(citations: &[Citation]) {
    for c in citations {
        if c.quote.is_none() {
            // A forgotten source leaves nothing of itself, not even its title.
            println!("[{}] source deleted", c.number);
            continue;
        }
        let place =
            if c.location.is_empty() { String::new() } else { format!(" — {}", c.location) };
        let origin = c.origin.as_deref().unwrap_or("pasted text");
        println!("[{}] {}{place}\n    {origin}", c.number, c.source_title);
    }
}

/// An interactive conversation: one question per line, until end of input.
pub(crate) fn chat(
    doppel: &Doppel,
    out: &Printer,
    conversation: Option<String>,
) -> Result<(), Error> {
    let mut conversation = conversation;
    let stdin = std::io::stdin();
    out.note("Ask a question (Ctrl-C stops an answer, Ctrl-D ends the chat).");
    loop {
        eprint!("> ");
        let line = match crate::input::line(&mut stdin.lock(), crate::input::QUESTION_BYTES) {
            Ok(None) => return Ok(()),
            Ok(Some(line)) => line,
            // Ctrl-C at the prompt interrupts the read: go on with a fresh prompt.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::InvalidInput(format!("could not read a question: {e}"))),
        };
        if line.trim().is_empty() {
            continue;
        }
        match ask(doppel, out, line.trim().to_string(), conversation.clone(), None) {
            Ok(answer) => conversation = Some(answer.conversation),
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

pub(crate) fn answer_json(answer: &Answer) -> Value {
    json!({
        "conversation": answer.conversation,
        "message": message_json(&answer.message),
        "notes": answer.notes,
    })
}

pub(crate) fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "role": if m.role == doppel_core::chat::Role::User { "user" } else { "assistant" },
        "content": m.content,
        "state": m.state.as_str(),
        "error": m.error,
        "model": m.model,
        "grounding": m.grounding.map(|g| g.as_str()),
        "verified": m.verified,
        "citations": m.citations.iter().map(|c| json!({
            "number": c.number,
            "chunk_id": c.chunk_id,
            "source_id": c.source_id,
            "source_title": c.source_title,
            "location": c.location,
            "origin": c.origin,
            "quote": c.quote,
            "source_deleted": c.quote.is_none(),
        })).collect::<Vec<_>>(),
        "unsupported": m.unsupported.iter().map(|u| json!({
            "sentence": u.sentence,
            "facts": u.facts,
        })).collect::<Vec<_>>(),
        "draft": m.draft,
        "draft_note": m.draft_note,
    })
}

pub(crate) fn conversations(doppel: &Doppel, out: &Printer) -> Result<(), Error> {
    let list = doppel.conversations(DEFAULT_TWIN)?;
    let values: Vec<Value> = list
        .iter()
        .map(|c| json!({ "id": c.id, "title": c.title, "created_at": c.created_at, "updated_at": c.updated_at }))
        .collect();
    out.value(Value::Array(values), || {
        if list.is_empty() {
            return "no conversations yet: ask something with `doppel ask \"…\"`".into();
        }
        list.iter().map(|c| format!("{}  {}", c.id, c.title)).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

pub(crate) fn show_conversation(doppel: &Doppel, out: &Printer, id: &str) -> Result<(), Error> {
    if out.json {
        let messages = doppel.messages(id)?;
        println!("{}", Value::Array(messages.iter().map(message_json).collect()));
    } else {
        print!("{}", doppel.export_conversation(id)?);
    }
    Ok(())
}

/// What `doppel verify` does.
#[derive(Subcommand)]
pub(crate) enum VerifyAction {
    /// Approve an answer of a conversation, as it is or revised (`--answer`).
    Answer {
        /// The conversation.
        conversation: String,
        /// The answer's message id (see `doppel export-conversation --json`).
        message: i64,
        /// A revised answer to save instead.
        #[arg(long)]
        answer: Option<String>,
    },
    /// Save a question with the answer the twin should give.
    Add {
        /// The question.
        question: String,
        /// The answer.
        answer: String,
    },
    /// List the verified answers.
    List,
    /// Remove a verified answer.
    Remove {
        /// Its id.
        id: i64,
    },
}

pub(crate) fn verify(doppel: &Doppel, out: &Printer, action: VerifyAction) -> Result<(), Error> {
    match action {
        VerifyAction::Answer { conversation, message, answer } => {
            let id = doppel.verify_message(&conversation, message, answer.as_deref())?;
            out.value(json!({ "verified": id }), || format!("saved as verified answer {id}"));
        }
        VerifyAction::Add { question, answer } => {
            let id = doppel.verify(DEFAULT_TWIN, &question, &answer, None)?;
            out.value(json!({ "verified": id }), || format!("saved as verified answer {id}"));
        }
        VerifyAction::List => {
            let list = doppel.verified_answers(DEFAULT_TWIN)?;
            let values: Vec<Value> = list
                .iter()
                .map(|v| json!({ "id": v.id, "question": v.question, "answer": v.answer }))
                .collect();
            out.value(Value::Array(values), || {
                if list.is_empty() {
                    return "no verified answers yet".into();
                }
                list.iter()
                    .map(|v| format!("{}  Q: {}\n    A: {}", v.id, v.question, v.answer))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        VerifyAction::Remove { id } => {
            doppel.delete_verified(id)?;
            out.value(json!({ "removed": id }), || format!("removed verified answer {id}"));
        }
    }
    Ok(())
}

/// Changes to the persona; what is not given stays as it is.
#[derive(clap::Args)]
pub(crate) struct PersonaArgs {
    /// The twin's name.
    #[arg(long)]
    name: Option<String>,
    /// Who the twin is.
    #[arg(long)]
    description: Option<String>,
    /// How the twin speaks.
    #[arg(long)]
    voice: Option<String>,
    /// What the twin says when its documents do not cover a question.
    #[arg(long)]
    not_covered: Option<String>,
}

pub(crate) fn persona(doppel: &Doppel, out: &Printer, args: PersonaArgs) -> Result<(), Error> {
    let mut persona = doppel.persona(DEFAULT_TWIN)?;
    let changed = args.name.is_some()
        || args.description.is_some()
        || args.voice.is_some()
        || args.not_covered.is_some();
    let Persona { name, description, voice, not_covered } = &mut persona;
    for (field, value) in [
        (name, args.name),
        (description, args.description),
        (voice, args.voice),
        (not_covered, args.not_covered),
    ] {
        if let Some(value) = value {
            *field = value;
        }
    }
    if changed {
        doppel.set_persona(DEFAULT_TWIN, &persona)?;
    }
    let p = &persona;
    out.value(
        json!({ "name": p.name, "description": p.description, "voice": p.voice, "not_covered": p.not_covered }),
        || {
            format!(
                "name: {}\ndescription: {}\nvoice: {}\nnot covered: {}",
                p.name, p.description, p.voice, p.not_covered
            )
        },
    );
    Ok(())
}

/// Which language model answers.
#[derive(Subcommand)]
pub(crate) enum ChatModelAction {
    /// A GGUF file run here (default: SmolLM2-135M-Instruct from the model cache).
    Local {
        /// The GGUF file.
        path: Option<PathBuf>,
    },
    /// An Ollama server.
    Ollama {
        /// The model name, such as `llama3.2`.
        #[arg(long)]
        model: String,
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:11434")]
        url: String,
    },
    /// An OpenAI-compatible server (its API key: `doppel embedder key` with the same URL).
    Openai {
        /// The model name.
        #[arg(long)]
        model: String,
        /// The server's base URL, such as `https://api.example.com/v1`.
        #[arg(long)]
        url: String,
    },
    /// No language model: answers are made of the passages' own sentences, each cited.
    Off,
    /// Show or set how answers are made: `auto` (the default: the passages' own sentences when
    /// the model is too small to be trusted, the model otherwise), `grounded` (always the
    /// passages' own sentences) or `model` (always the model, its answer checked).
    Mode {
        /// auto, grounded or model.
        mode: Option<String>,
    },
    /// Download a GGUF model from a URL (resumes if interrupted) and use it.
    Download {
        /// The file's URL, ending in `.gguf`.
        url: String,
        /// Its SHA-256, checked when the download ends.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Copy a GGUF file into the model cache and use it.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// List the chat models at hand.
    List,
    /// The model catalogue: chat models to download, and embedding models for other languages.
    Catalogue {
        /// Read this catalogue file instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        catalogue: Option<PathBuf>,
    },
    /// Download a chat model of the catalogue (resumes if interrupted, checks free space and
    /// the checksum) and use it.
    Get {
        /// Its name in `doppel models catalogue`, such as `qwen2.5-1.5b`.
        name: String,
        /// Read this catalogue file instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        catalogue: Option<PathBuf>,
    },
    /// Install the default models (embedding model, ONNX Runtime, SmolLM2) into the data
    /// directory's `models/`, each checked by SHA-256; for a build from source.
    InstallDefaults {
        /// A folder laid out like a model folder, or a server's base URL, to take them from.
        #[arg(long, value_name = "URL-OR-DIR")]
        from: Option<String>,
    },
    /// Store the model server's API key (read from standard input) in the OS keychain.
    Key {
        /// Remove it instead.
        #[arg(long)]
        delete: bool,
    },
}

/// A progress bar on stderr for a download or a copy.
pub(crate) fn transfer_progress(
    out: &Printer,
) -> impl FnMut(&doppel_core::download::DownloadProgress) {
    let bar = out.interactive().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    move |p| {
        if let Some(bar) = &bar {
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
        }
    }
}

pub(crate) fn chat_model(
    doppel: &Doppel,
    out: &Printer,
    action: Option<ChatModelAction>,
) -> Result<(), Error> {
    let choice = match action {
        None => None,
        Some(ChatModelAction::Local { path }) => Some(ChatModel::Local(path)),
        Some(ChatModelAction::Ollama { model, url }) => {
            Some(ChatModel::Remote(ChatServer::new(RemoteKind::Ollama, &url, &model)?))
        }
        Some(ChatModelAction::Openai { model, url }) => {
            Some(ChatModel::Remote(ChatServer::new(RemoteKind::OpenAi, &url, &model)?))
        }
        Some(ChatModelAction::Off) => Some(ChatModel::Off),
        Some(ChatModelAction::Download { url, sha256 }) => {
            catch_interrupts();
            let path = doppel.download_chat_model(
                &url,
                sha256.as_deref(),
                &INTERRUPTED,
                &mut transfer_progress(out),
            )?;
            Some(ChatModel::Local(Some(path)))
        }
        Some(ChatModelAction::Import { file }) => {
            catch_interrupts();
            let path =
                doppel.import_chat_model(&file, &INTERRUPTED, &mut transfer_progress(out))?;
            Some(ChatModel::Local(Some(path)))
        }
        Some(ChatModelAction::Catalogue { catalogue }) => {
            return crate::models::catalogue(out, catalogue.as_deref());
        }
        Some(ChatModelAction::Get { name, catalogue }) => {
            catch_interrupts();
            // The core chooses the model once it is whole; what follows prints the choice.
            crate::models::get(doppel, out, &name, catalogue.as_deref())?;
            None
        }
        Some(ChatModelAction::InstallDefaults { from }) => {
            catch_interrupts();
            return crate::models::install_defaults(doppel, out, from.as_deref());
        }
        Some(ChatModelAction::Mode { mode }) => {
            if let Some(mode) = mode {
                doppel.set_answer_mode(parse_mode(&mode)?)?;
            }
            let mode = doppel.answer_mode()?.as_str();
            out.value(json!({ "mode": mode }), || format!("answer mode: {mode}"));
            return Ok(());
        }
        Some(ChatModelAction::List) => {
            let models = doppel.chat_models()?;
            let names: Vec<String> = models.iter().map(|p| p.display().to_string()).collect();
            out.value(json!(names), || {
                if names.is_empty() {
                    return "no chat model yet: `doppel models catalogue` lists some to download"
                        .into();
                }
                names.join("\n")
            });
            return Ok(());
        }
        Some(ChatModelAction::Key { delete }) => {
            if delete {
                let removed = doppel.delete_chat_api_key()?;
                out.value(json!({ "deleted": removed }), || {
                    if removed { "API key removed".into() } else { "no API key was stored".into() }
                });
            } else {
                let key = crate::input::line(&mut std::io::stdin().lock(), crate::input::KEY_BYTES)
                    .map_err(|e| Error::InvalidInput(format!("could not read the key: {e}")))?;
                doppel.set_chat_api_key(&key.unwrap_or_default())?;
                out.value(json!({ "stored": true }), || "API key stored in the OS keychain".into());
            }
            return Ok(());
        }
    };
    if let Some(choice) = &choice {
        doppel.set_chat_model(choice)?;
    }
    let (kind, detail) = match doppel.chat_model()? {
        ChatModel::Local(path) => (
            "local",
            path.unwrap_or_else(|| doppel.default_chat_model_path()).display().to_string(),
        ),
        ChatModel::Remote(server) => {
            (server.kind.as_str(), format!("{} at {}", server.model, server.url))
        }
        ChatModel::Off => ("off", "answers are made of the passages' own sentences".to_string()),
    };
    out.value(json!({ "kind": kind, "model": detail }), || format!("{kind}: {detail}"));
    Ok(())
}
