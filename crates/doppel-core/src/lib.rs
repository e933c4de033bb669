//! Doppel's core: a personal twin's documents, stored, indexed and searched locally.
//!
//! [`Doppel`] is the whole public API, the same for the CLI and the desktop shell. Opening it
//! locks the data directory, opens (and migrates) the database, recovers the queue from any
//! crash and starts the single worker thread that owns all writes. Reads go through a small
//! pool of read-only connections and never wait for the worker. Long work happens in the
//! background; its progress arrives as [`Event`]s from [`Doppel::subscribe`].
//!
//! This crate knows nothing of Tauri, terminals or JSON for IPC.

#![warn(missing_docs)]

pub mod access;
pub mod backup;
pub mod catalogue;
pub mod chat;
pub mod coverage;
mod datadir;
pub mod download;
mod embed;
mod error;
mod events;
mod export;
#[doc(hidden)]
pub mod faults;
mod fetch;
pub mod find;
mod ingest;
mod llm;
mod logging;
pub mod metrics;
mod model;
pub mod models;
pub mod queue;
mod report;
mod rerank;
mod retrieve;
mod sandbox;
mod secrets;
mod settings;
mod store;
mod sync;
mod transcribe;
mod vectors;
mod watch;
mod worker;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

pub use datadir::{DATABASE_FILE, LOG_DIR, default_data_dir};
pub use embed::remote::ServerChoice;
pub use embed::{EmbedderChoice, ModelFiles, ModelInfo, RemoteKind};
pub use error::{Error, Result};
pub use events::Event;
pub use export::{ExportReport, ExportRequest};
pub use ingest::ocr::OcrStatus;
pub use logging::init_logging;
pub use model::*;
pub use models::{ModelProblem, ModelSearch};
pub use queue::QueueProgress;
pub use rerank::RerankerChoice;
pub use retrieve::{SearchRequest, SearchResults};
pub use sandbox::{PARSER_ARG, ParserCommand, run_parser_child};
pub use secrets::{KEYCHAIN_SERVICE, keychain_account, masked};
pub use settings::{SPECS as SETTING_SPECS, SettingSpec, Settings};
pub use store::SCHEMA_VERSION;
pub use transcribe::TranscriberChoice;
pub use vectors::VectorStatus;
pub use worker::Enqueued;

/// Internals for the benchmarks in `benches/`; not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use crate::embed::{LocalEmbedder, ModelFiles};
    pub use crate::llm::{DEFAULT_CHAT_MODEL, GenerationTimes, bench_generation};
    pub use crate::vectors::index::{HnswParams, VectorIndex};
}

use datadir::DataDir;
use store::ReadPool;
use vectors::Vectors;
use worker::{Command, Shared, Worker};

/// The environment variable that names a shared model cache (as `scripts/models` fills it).
pub const MODEL_CACHE_ENV: &str = "DOPPEL_MODEL_CACHE";
/// The folder of the data directory that holds the user's models (downloads and imports).
pub const MODELS_DIR: &str = "models";
/// The folder of the data directory that holds vector index files.
pub const INDEX_DIR: &str = "index";

/// The environment variable that names the data directory when no path is given.
pub const DATA_DIR_ENV: &str = "DOPPEL_DATA_DIR";

/// How a [`Doppel`] is opened.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory; created if missing.
    pub data_dir: PathBuf,
    /// Whether this process works through the ingestion queue. A short-lived command that only
    /// reads or queues can leave the queue to a process that stays open.
    pub process_queue: bool,
    /// How to start the sandboxed parser for complex formats (PDF, DOCX, EPUB, e-mail).
    pub parser: ParserCommand,
    /// A model cache looked in before the user's `models` folder (see [`models`] for the
    /// lookup order). `Config::new` takes `$DOPPEL_MODEL_CACHE` when it is set.
    pub models: Option<PathBuf>,
    /// The models installed with the app, looked in last. `Config::new` finds them beside the
    /// running binary (`<bin>/../lib/Doppel/models`); the desktop shell may name its resource
    /// directory's instead.
    pub bundled_models: Option<PathBuf>,
    /// Whether to keep the watched folders in sync while the handle is open: catch up with
    /// them at once, then follow their changes. Off by default: a short-lived command must not
    /// start watching; the desktop app turns it on.
    pub watch: bool,
    /// A channel that receives every event from the moment of opening, including those sent
    /// while the directory opens (index rebuild) and by the first catch-up of watched folders,
    /// which [`Doppel::subscribe`] may come too late for.
    pub subscriber: Option<Sender<Event>>,
}

impl Config {
    /// A configuration for `data_dir` that processes the queue.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            process_queue: true,
            parser: ParserCommand::current_exe(),
            models: std::env::var_os(MODEL_CACHE_ENV).filter(|p| !p.is_empty()).map(PathBuf::from),
            bundled_models: models::bundled_models_dir(),
            watch: false,
            subscriber: None,
        }
    }

    /// The data directory to use: `explicit` if given, else `$DOPPEL_DATA_DIR`, else the
    /// platform's data directory.
    pub fn resolve_data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(path) = explicit {
            return Ok(path.to_path_buf());
        }
        if let Some(path) = std::env::var_os(DATA_DIR_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        default_data_dir().ok_or_else(|| {
            Error::InvalidInput(format!(
                "no home directory found: set {DATA_DIR_ENV} or pass --data-dir"
            ))
        })
    }
}

/// Files, folders and web pages to ingest.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The twin that learns them.
    pub twin: TwinId,
    /// Files and folders; folders are walked recursively.
    pub paths: Vec<PathBuf>,
    /// `http` and `https` URLs, fetched by the worker.
    pub urls: Vec<String>,
}

impl IngestRequest {
    /// Files and folders for the default twin.
    pub fn paths(paths: Vec<PathBuf>) -> IngestRequest {
        IngestRequest { twin: DEFAULT_TWIN, paths, urls: Vec::new() }
    }
}

/// What an ingest request queued, and what it passed over.
#[derive(Debug)]
pub struct IngestReport {
    /// One entry per file queued (or already waiting in the queue).
    pub queued: Vec<Enqueued>,
    /// Paths not taken, each with its reason (hidden, symlink loop, unreadable, ...).
    pub skipped: Vec<Error>,
}

/// Pasted text to ingest.
#[derive(Debug, Clone)]
pub struct TextRequest {
    /// The twin that learns it.
    pub twin: TwinId,
    /// Its title.
    pub title: String,
    /// The text itself (Markdown headings are recognised).
    pub text: String,
}

/// Which jobs to list.
#[derive(Debug, Clone, Copy)]
pub struct JobFilter {
    /// Only queued and running jobs.
    pub active_only: bool,
    /// At most this many, newest first.
    pub limit: u32,
}

/// The state of a data directory, for `doctor`.
#[derive(Debug, Clone)]
pub struct DoctorReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The database file.
    pub database: PathBuf,
    /// This build's version.
    pub app_version: &'static str,
    /// The database's schema version.
    pub schema_version: i64,
    /// The SQLite library's version.
    pub sqlite_version: &'static str,
    /// The pid holding the data directory's lock (this process).
    pub lock_holder: Option<u32>,
    /// Problems found; empty when all is well.
    pub problems: Vec<String>,
    /// Number of twins.
    pub twins: u64,
    /// Sources per state.
    pub sources: Vec<(String, u64)>,
    /// Number of chunks.
    pub chunks: u64,
    /// Jobs per state.
    pub jobs: Vec<(String, u64)>,
    /// The embedding model in use, or why there is none.
    pub model: std::result::Result<ModelInfo, String>,
    /// Entries in the vector index.
    pub index_entries: u64,
    /// The candidate list searches use (setting `hnsw_ef_search`); 0 without an index.
    pub ef_search: usize,
    /// Passages that have no vector from the model yet (they are embedded in the background).
    pub chunks_without_vectors: u64,
    /// Models used before, with the vectors they still hold (kept so that going back to one
    /// costs nothing; never mixed with the current model's).
    pub other_models: Vec<(ModelInfo, u64)>,
}

/// The sources of a twin that changed since a moment (see [`Doppel::sources_changed_since`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceChanges {
    /// The sources whose row changed at or after the moment asked for, oldest first. Deleted
    /// sources are not among them: [`Event::SourceDeleted`] tells of each.
    pub sources: Vec<Source>,
    /// What to ask from next time: nothing changed later than this is missed.
    pub cursor: Millis,
    /// The twin's sources by state, as they are now.
    pub counts: SourceCounts,
    /// More than [`SourceChanges::LIMIT`] sources changed: none is listed, and whoever shows
    /// them reads what it shows again (cheaper than patching thousands of rows).
    pub more: bool,
}

impl SourceChanges {
    /// The most sources one answer lists.
    pub const LIMIT: usize = 500;
}

/// How many sources of a twin are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Waiting in the queue.
    pub queued: u64,
    /// Being read.
    pub processing: u64,
    /// Learnt.
    pub ready: u64,
    /// Could not be read.
    pub failed: u64,
}

impl SourceCounts {
    fn of([queued, processing, ready, failed]: [u64; 4]) -> SourceCounts {
        SourceCounts { queued, processing, ready, failed }
    }
}

/// Which of a twin's sources a page of the sources list shows (see [`Doppel::source_page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceQuery {
    /// Only sources whose title or path holds this (without regard to the case of ASCII
    /// letters).
    pub text: Option<String>,
    /// Only sources in this state.
    pub state: Option<SourceState>,
    /// How many of them to pass over, newest first.
    pub offset: u32,
    /// How many to return (1 to 1,000).
    pub limit: u32,
}

/// A page of a twin's sources, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePage {
    /// How many sources the query matches in all.
    pub total: u64,
    /// The twin's sources by state (all of them, whatever the query).
    pub counts: SourceCounts,
    /// The page's sources.
    pub sources: Vec<Source>,
    /// Where [`Doppel::sources_changed_since`] starts so as to miss no change after this page
    /// was read (the latest change among the twin's sources, read before the page).
    pub cursor: Millis,
}

/// What the search view asks for: a search, and which sources it looks in.
#[derive(Debug, Clone, PartialEq)]
pub struct FindRequest {
    /// The twin whose sources are searched.
    pub twin: TwinId,
    /// The person's words, as typed.
    pub query: String,
    /// Keyword, meaning (vector) or both.
    pub mode: SearchMode,
    /// How many passages at most; `None` takes `top_k` from the settings.
    pub limit: Option<u32>,
    /// Which sources to look in.
    pub filter: coverage::SourceFilter,
}

/// What a model server would be sent to embed (see [`Doppel::embedding_cost`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddingCost {
    /// Passages (distinct texts) without a vector from its model.
    pub passages: u64,
    /// Their tokens, estimated as chunking counts them (they err high).
    pub tokens: u64,
}

/// An open data directory with its worker. Dropping it stops the worker (a running job goes
/// back to the queue) and releases the lock.
pub struct Doppel {
    dir: DataDir,
    readers: Arc<ReadPool>,
    shared: Arc<Shared>,
    /// What search by meaning uses; the worker keeps it up to date.
    vectors: Arc<Vectors>,
    commands: Option<Sender<Command>>,
    worker: Option<JoinHandle<()>>,
    /// The watch thread, when the opener asked for one (`Config::watch`).
    watcher: Option<watch::Watcher>,
    process_queue: bool,
    /// Where model files are looked for, and where downloads go.
    models: ModelSearch,
    /// The local chat model, loaded at the first question that needs it.
    llm: chat::answer::LlmSlot,
}

/// The handle is shared between threads by the shells.
const _: () = {
    const fn ensure_send_sync<T: Send + Sync>() {}
    ensure_send_sync::<Doppel>();
};

impl std::fmt::Debug for Doppel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doppel").field("data_dir", &self.dir.path()).finish_non_exhaustive()
    }
}

impl Doppel {
    /// Opens a data directory: lock, database, migrations, crash recovery, worker.
    pub fn open(config: Config) -> Result<Doppel> {
        let dir = DataDir::lock(&config.data_dir)?;
        let database = dir.database();
        let conn = store::open_writer(&database)?;
        let shared = Arc::new(Shared::default());
        // Before the worker starts: a queue paused in an earlier run claims nothing.
        shared.queue.set(queue::stored_paused(&store::stored_settings(&conn)?));
        if let Some(subscriber) = config.subscriber {
            shared.events.attach(subscriber);
        }
        let (commands, inbox) = mpsc::channel();
        let models = ModelSearch::new(config.models.clone(), dir.path(), config.bundled_models);
        let readers =
            Arc::new(ReadPool::new(database.clone()).measured(Arc::clone(&shared.metrics)));
        let vectors = Arc::new(Vectors::default());
        let worker = Worker::start(
            conn,
            worker::WorkerConfig {
                shared: Arc::clone(&shared),
                vectors: Arc::clone(&vectors),
                readers: Arc::clone(&readers),
                inbox,
                process_queue: config.process_queue,
                parser: config.parser,
                writer: vectors::WriterConfig {
                    index_dir: dir.path().join(INDEX_DIR),
                    database,
                    models: models.embedder_files(),
                },
            },
        )?;
        tracing::info!(data_dir = %dir.path().display(), "data directory opened");
        let watcher = if config.watch {
            let context = watch::Context {
                commands: commands.clone(),
                readers: Arc::clone(&readers),
                shared: Arc::clone(&shared),
                data_dir: dir.path().canonicalize().unwrap_or_else(|_| dir.path().to_path_buf()),
            };
            Some(watch::Watcher::start(context)?)
        } else {
            None
        };
        Ok(Doppel {
            dir,
            readers,
            shared,
            vectors,
            commands: Some(commands),
            worker: Some(worker),
            watcher,
            process_queue: config.process_queue,
            models,
            llm: Default::default(),
        })
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Queues files and folders. Folders are walked here, in the caller's thread; the queue is
    /// written by the worker in one transaction.
    pub fn ingest(&self, request: IngestRequest) -> Result<IngestReport> {
        let mut walked = ingest::walk::walk(&request.paths, self.settings()?.ocr == 1);
        let mut urls = Vec::with_capacity(request.urls.len());
        for url in &request.urls {
            match fetch::check_url(url) {
                Ok(url) => urls.push(url),
                Err(e) => walked.skipped.push(e),
            }
        }
        let queued = if walked.files.is_empty() && urls.is_empty() {
            Vec::new()
        } else {
            self.call(|reply| Command::Ingest {
                twin: request.twin,
                files: walked.files,
                urls,
                reply,
            })?
        };
        Ok(IngestReport { queued, skipped: walked.skipped })
    }

    /// Queues pasted text as a new source.
    pub fn add_text(&self, request: TextRequest) -> Result<Enqueued> {
        let title = request.title.trim().to_string();
        if title.is_empty() {
            return Err(Error::InvalidInput("a title is needed for pasted text".into()));
        }
        if request.text.trim().is_empty() {
            return Err(Error::InvalidInput("the text is empty".into()));
        }
        let limit = self.settings()?.max_file_bytes();
        if request.text.len() as u64 > limit {
            return Err(Error::FileTooLarge { size: request.text.len() as u64, limit });
        }
        self.call(|reply| Command::AddText { twin: request.twin, title, text: request.text, reply })
    }

    /// Queues a source's file (or web page) to be read again. Only passages whose text changed
    /// are embedded again; the source keeps its id. Pasted text has nothing to read again.
    pub fn reingest(&self, source: SourceId) -> Result<Enqueued> {
        let source = self.source(source)?;
        let (files, urls) = match (source.kind, source.origin) {
            (SourceKind::File, Some(origin)) => {
                std::fs::metadata(&origin).map_err(|e| Error::io(&origin, e))?;
                (vec![PathBuf::from(origin)], Vec::new())
            }
            (SourceKind::Url, Some(origin)) => (Vec::new(), vec![origin]),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "source {} is pasted text: there is nothing to read again (add the text anew)",
                    source.id
                )));
            }
        };
        let twin = source.twin_id;
        let queued = self.call(|reply| Command::Ingest { twin, files, urls, reply })?;
        queued.into_iter().next().ok_or_else(|| Error::WorkerGone("nothing was queued".into()))
    }

    /// The twins.
    pub fn twins(&self) -> Result<Vec<Twin>> {
        self.readers.with(store::twins)
    }

    /// Creates a twin. Its name is trimmed, 1 to 100 characters, and unique (without regard
    /// to case): `InvalidInput` or `AlreadyExists` say otherwise.
    pub fn create_twin(&self, name: &str) -> Result<Twin> {
        let name = name.to_string();
        self.call(|reply| Command::CreateTwin { name, reply })
    }

    /// Renames a twin, with the same rules for the name as [`Doppel::create_twin`].
    pub fn rename_twin(&self, twin: TwinId, name: &str) -> Result<Twin> {
        let name = name.to_string();
        self.call(|reply| Command::RenameTwin { twin, name, reply })
    }

    /// Keeps a folder in sync with a twin: files that appear or change in it are ingested,
    /// files that disappear are forgotten. The path must be an existing folder; it is stored
    /// canonical, and watching it again returns the folder already stored. When this handle
    /// watches (`Config::watch`), the folder is caught up with at once; otherwise it is when a
    /// watching handle next opens.
    pub fn watch_folder(&self, twin: TwinId, path: &Path) -> Result<WatchedFolder> {
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        if !canonical.is_dir() {
            return Err(Error::InvalidInput(format!("{} is not a folder", path.display())));
        }
        let data_dir = self.dir.path().canonicalize().map_err(|e| Error::io(self.dir.path(), e))?;
        if canonical.starts_with(&data_dir) {
            return Err(Error::InvalidInput(format!(
                "{} is inside Doppel's data directory",
                path.display()
            )));
        }
        let path = canonical.to_str().map(str::to_string).ok_or_else(|| {
            Error::InvalidInput(format!("{} is not a UTF-8 path", canonical.display()))
        })?;
        let folder = self.call(|reply| Command::WatchFolder { twin, path, reply })?;
        if let Some(watcher) = &self.watcher {
            watcher.watch(folder.clone());
        }
        Ok(folder)
    }

    /// Stops watching a folder; its sources stay.
    pub fn unwatch_folder(&self, folder: FolderId) -> Result<()> {
        self.call(|reply| Command::UnwatchFolder { folder, reply })?;
        if let Some(watcher) = &self.watcher {
            watcher.unwatch(folder);
        }
        Ok(())
    }

    /// The watched folders of every twin, oldest first.
    pub fn watched_folders(&self) -> Result<Vec<WatchedFolder>> {
        self.readers.with(store::watched_folders)
    }

    /// The sources of a twin, oldest first.
    pub fn sources(&self, twin: TwinId) -> Result<Vec<Source>> {
        self.readers.with(|c| store::sources(c, twin))
    }

    /// The sources of a twin whose row changed at or after `since` (ms since the epoch), with
    /// the cursor to ask from next time. A window reloads only these after events, instead of
    /// every source.
    pub fn sources_changed_since(&self, twin: TwinId, since: Millis) -> Result<SourceChanges> {
        let limit = SourceChanges::LIMIT;
        let (mut sources, counts, latest) = self.readers.with(|c| {
            Ok((
                store::sources_changed_since(c, twin, since, limit + 1)?,
                store::source_counts(c, twin)?,
                store::latest_change(c, twin)?,
            ))
        })?;
        let more = sources.len() > limit;
        let cursor = if more {
            sources.clear();
            latest.max(since)
        } else {
            sources.iter().map(|s| s.updated_at).fold(since, Millis::max)
        };
        Ok(SourceChanges { sources, cursor, counts: SourceCounts::of(counts), more })
    }

    /// A page of a twin's sources, newest first, with how many the query matches and the
    /// twin's counts by state: what a window shows of a list of any length.
    pub fn source_page(&self, twin: TwinId, query: &SourceQuery) -> Result<SourcePage> {
        let text = query.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let limit = query.limit.clamp(1, 1000);
        self.readers.with(|c| {
            let cursor = store::latest_change(c, twin)?;
            let (total, sources) =
                store::source_page(c, twin, text, query.state, query.offset, limit)?;
            let counts = SourceCounts::of(store::source_counts(c, twin)?);
            Ok(SourcePage { total, counts, sources, cursor })
        })
    }

    /// What a twin knows: its sources by state, format and folder, its passages and how many
    /// are embedded, the space taken, and every failure and skip with its reason.
    pub fn coverage(&self, twin: TwinId) -> Result<coverage::Coverage> {
        let model = self
            .vectors
            .model()
            .ok_or_else(|| self.vectors.load_failure().unwrap_or_else(|| "not loaded".into()));
        self.readers.with(|c| {
            store::twin(c, twin)?;
            coverage::coverage(c, twin, model, self.dir.path())
        })
    }

    /// "Why isn't this found?": the sources named like `text`, where the keyword index finds
    /// each of its words, and what search by keywords and by meaning find for it.
    pub fn explain(&self, twin: TwinId, text: &str) -> Result<coverage::Explanation> {
        let search = |mode| SearchRequest {
            twin,
            query: text.to_string(),
            limit: Some(5),
            sources: Vec::new(),
            mode,
        };
        let keyword = self.search(&search(SearchMode::Keyword))?;
        // Without a model, say why in its own words (a search would fall back to keywords).
        let meaning = match self.vector_status().model {
            Err(reason) => Err(reason),
            Ok(_) => Ok(self.search(&search(SearchMode::Vector))?),
        };
        self.readers.with(|c| coverage::explain(c, twin, text, keyword, meaning))
    }

    /// Searches as [`Doppel::search`] does, in the sources the filter allows, and marks the
    /// query's words in each passage found.
    pub fn find(&self, request: &FindRequest) -> Result<find::Found> {
        let mut search = SearchRequest {
            twin: request.twin,
            query: request.query.clone(),
            limit: request.limit,
            sources: Vec::new(),
            mode: request.mode,
        };
        if !request.filter.is_empty() {
            search.sources =
                self.readers.with(|c| coverage::filtered(c, request.twin, &request.filter))?;
            if search.sources.is_empty() {
                return Ok(find::Found { passages: Vec::new(), mode: request.mode, note: None });
            }
        }
        let results = self.search(&search)?;
        self.readers.with(|c| find::mark(c, &request.query, results))
    }

    /// Pauses the whole queue: no further job starts (one running finishes) and nothing is
    /// embedded in the background until [`Doppel::resume_queue`]. Kept across restarts.
    pub fn pause_queue(&self) -> Result<QueueProgress> {
        self.shared.queue.set(true);
        if let Err(e) = self.store_paused(true) {
            self.shared.queue.set(false);
            return Err(e);
        }
        self.queue_progress()
    }

    /// Lets a paused queue go on.
    pub fn resume_queue(&self) -> Result<QueueProgress> {
        // Cleared first: storing it wakes the worker, which must then find the queue open.
        self.shared.queue.set(false);
        if let Err(e) = self.store_paused(false) {
            self.shared.queue.set(true);
            return Err(e);
        }
        self.queue_progress()
    }

    /// Whether the queue is paused.
    pub fn queue_paused(&self) -> bool {
        self.shared.queue.paused()
    }

    /// How far the queue's current run is: files, passages, the time left.
    pub fn queue_progress(&self) -> Result<QueueProgress> {
        let run = self.readers.with(|c| store::current_run(c, queue::RECENT))?;
        Ok(queue::progress(&run, self.shared.queue.paused()))
    }

    fn store_paused(&self, paused: bool) -> Result<()> {
        let values = vec![(queue::PAUSED_KEY.to_string(), if paused { "1" } else { "0" }.into())];
        self.call(|reply| Command::Chat(worker::ChatWrite::SetSettings { values, reply }))
    }

    /// One source.
    pub fn source(&self, id: SourceId) -> Result<Source> {
        self.readers.with(|c| store::source(c, id))
    }

    /// Finds a source of `twin` by id or by path (as given, or made absolute).
    pub fn find_source(&self, twin: TwinId, key: &str) -> Result<Source> {
        if let Ok(id) = key.parse::<SourceId>() {
            return self.source(id);
        }
        let path = Path::new(key);
        let absolute = path
            .canonicalize()
            .unwrap_or_else(|_| std::path::absolute(path).unwrap_or(path.to_path_buf()));
        let candidates = [key.to_string(), absolute.to_string_lossy().into_owned()];
        self.readers.with(|c| {
            for origin in &candidates {
                if let Some(source) = store::source_by_origin(c, twin, origin)? {
                    return Ok(source);
                }
            }
            Err(Error::NotFound { what: "source", id: key.to_string() })
        })
    }

    /// The chunks of a source, in order.
    pub fn chunks(&self, source: SourceId) -> Result<Vec<Chunk>> {
        self.readers.with(|c| {
            store::source(c, source)?;
            store::chunks(c, source)
        })
    }

    /// Deletes a source with its chunks, keyword-index entries and jobs, in one transaction.
    pub fn delete_source(&self, source: SourceId) -> Result<()> {
        self.call(|reply| Command::Delete { source, reply })
    }

    /// Jobs, newest first.
    pub fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        self.readers.with(|c| store::jobs(c, filter.active_only, filter.limit))
    }

    /// One job.
    pub fn job(&self, id: JobId) -> Result<Job> {
        self.readers.with(|c| store::job(c, id))
    }

    /// Cancels a job. A queued job is cancelled at once; a running one stops at its next chunk
    /// boundary and leaves nothing behind. Returns the job as it is afterwards (a job that had
    /// already finished is returned unchanged).
    pub fn cancel_job(&self, id: JobId) -> Result<Job> {
        let job = self.job(id)?;
        if job.state.is_final() {
            return Ok(job);
        }
        self.shared.request_cancel(id);
        self.call(|reply| Command::Cancel { job: id, reply })
    }

    /// Searches the twin's passages: keyword (BM25), vector (HNSW) or both fused (the
    /// default). Without a usable model or index it falls back to keyword search and says so
    /// in [`SearchResults::note`].
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults> {
        let started = std::time::Instant::now();
        let results = retrieve::search(&self.readers, &self.vectors, &self.settings()?, request)?;
        let mode = match results.mode {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Vector => "meaning",
            SearchMode::Keyword => "keyword",
        };
        self.shared.metrics.record_since(metrics::Metric::SearchTime, mode, started);
        Ok(results)
    }

    /// The reranking server that reorders search results, or [`RerankerChoice::Off`].
    pub fn reranker(&self) -> Result<RerankerChoice> {
        self.server_choice(rerank::CHOICE_KEYS)
    }

    /// Chooses the reranking server (or none); searches use it from the next one on.
    pub fn set_reranker(&self, choice: &RerankerChoice) -> Result<()> {
        let values = choice.to_stored(rerank::CHOICE_KEYS);
        self.call(|reply| Command::Chat(worker::ChatWrite::SetSettings { values, reply }))
    }

    /// Stores the reranking server's API key in the OS keychain (never on disk), bound to its
    /// URL.
    pub fn set_reranker_api_key(&self, key: &str) -> Result<()> {
        self.set_server_key(rerank::CHOICE_KEYS, "reranking", key)
    }

    /// The reranking server's API key, masked for display (`None` when none is stored).
    pub fn reranker_api_key_hint(&self) -> Result<Option<String>> {
        self.server_key_hint(rerank::CHOICE_KEYS)
    }

    /// Removes the reranking server's API key; returns whether there was one.
    pub fn delete_reranker_api_key(&self) -> Result<bool> {
        self.delete_server_key(rerank::CHOICE_KEYS)
    }

    /// The speech-to-text server that transcribes recordings, or [`TranscriberChoice::Off`].
    pub fn transcriber(&self) -> Result<TranscriberChoice> {
        self.server_choice(transcribe::CHOICE_KEYS)
    }

    /// Chooses the speech-to-text server (or none). Choosing one queues again the recordings
    /// that waited for it.
    pub fn set_transcriber(&self, choice: &TranscriberChoice) -> Result<()> {
        let values = choice.to_stored(transcribe::CHOICE_KEYS);
        self.call(|reply| Command::Chat(worker::ChatWrite::SetSettings { values, reply }))
    }

    /// Stores the speech-to-text server's API key in the OS keychain, bound to its URL.
    pub fn set_transcriber_api_key(&self, key: &str) -> Result<()> {
        self.set_server_key(transcribe::CHOICE_KEYS, "speech-to-text", key)
    }

    /// The speech-to-text server's API key, masked for display (`None` when none is stored).
    pub fn transcriber_api_key_hint(&self) -> Result<Option<String>> {
        self.server_key_hint(transcribe::CHOICE_KEYS)
    }

    /// Removes the speech-to-text server's API key; returns whether there was one.
    pub fn delete_transcriber_api_key(&self) -> Result<bool> {
        self.delete_server_key(transcribe::CHOICE_KEYS)
    }

    fn server_choice(&self, keys: [&str; 3]) -> Result<ServerChoice> {
        self.readers.with(|c| Ok(ServerChoice::from_stored(&store::stored_settings(c)?, keys)))
    }

    fn set_server_key(&self, keys: [&str; 3], role: &str, key: &str) -> Result<()> {
        let url = self.server_choice(keys)?.url().map(str::to_string).ok_or_else(|| {
            Error::InvalidInput(format!("no {role} server is chosen; choose one first"))
        })?;
        secrets::set_api_key(&url, key)?;
        self.mark_key(&url, true)
    }

    fn server_key_hint(&self, keys: [&str; 3]) -> Result<Option<String>> {
        match self.server_choice(keys)?.url() {
            Some(url) if self.key_stored(url)? => {
                Ok(secrets::api_key(url)?.as_deref().map(secrets::masked))
            }
            _ => Ok(None),
        }
    }

    fn delete_server_key(&self, keys: [&str; 3]) -> Result<bool> {
        let Some(url) = self.server_choice(keys)?.url().map(str::to_string) else {
            return Ok(false);
        };
        let removed = secrets::delete_api_key(&url)?;
        self.mark_key(&url, false)?;
        Ok(removed)
    }

    /// The current settings.
    pub fn settings(&self) -> Result<Settings> {
        self.readers.with(|c| Ok(Settings::from_stored(&store::stored_settings(c)?)))
    }

    /// Changes one setting after validating it; returns all settings as they are now.
    /// `ocr_languages` takes Tesseract's language codes joined by `+` (`eng+fra`), each of
    /// which must be installed when Tesseract is.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<Settings> {
        if key == settings::OCR_LANGUAGES {
            let languages = value.trim().to_string();
            let invalid = |reason: String| Error::InvalidSetting { key: key.to_string(), reason };
            if !ingest::ocr::OcrOptions::valid_languages(&languages) {
                return Err(invalid(
                    "expected Tesseract language codes joined by + (eng, eng+fra)".into(),
                ));
            }
            let status = ingest::ocr::status(true, &languages);
            if status.tesseract.is_some()
                && let Some(missing) =
                    languages.split('+').find(|c| !status.installed.iter().any(|i| i == c))
            {
                return Err(invalid(format!(
                    "Tesseract has no data for {missing}: install it with `sudo apt install {}`",
                    ingest::ocr::tesseract_packages(missing)
                )));
            }
            let values = vec![(key.to_string(), languages)];
            self.call(|reply| Command::Chat(worker::ChatWrite::SetSettings { values, reply }))?;
            return self.settings();
        }
        let was_on = key == "ocr" && self.settings()?.ocr == 1;
        let (key, value) = (key.to_string(), value.to_string());
        let settings = self.call(|reply| Command::SetSetting { key: key.clone(), value, reply })?;
        // Watched folders now take their images: they are looked at again.
        if key == "ocr"
            && settings.ocr == 1
            && !was_on
            && let Some(watcher) = &self.watcher
        {
            watcher.catch_up();
        }
        Ok(settings)
    }

    /// Tesseract's languages for text recognition (`eng` unless the owner chose others).
    pub fn ocr_languages(&self) -> Result<String> {
        self.readers.with(|c| {
            Ok(store::stored_settings(c)?
                .remove(settings::OCR_LANGUAGES)
                .unwrap_or_else(|| settings::DEFAULT_OCR_LANGUAGES.to_string()))
        })
    }

    /// Whether text recognition is on and can run here: Tesseract, its languages, pdftoppm.
    pub fn ocr_status(&self) -> Result<OcrStatus> {
        Ok(ingest::ocr::status(self.settings()?.ocr == 1, &self.ocr_languages()?))
    }

    /// The embedder in use: the local model unless a model server was chosen.
    pub fn embedder(&self) -> Result<EmbedderChoice> {
        self.readers.with(store::embedder_choice)
    }

    /// What choosing `choice` would send to a model server to be embedded: the passages that
    /// have no vector from its model yet, and an estimate of their tokens (what a paid API
    /// charges for). Nothing for the local model, which never sends anything. Shells show it
    /// and ask before they choose a server (the window's confirmation, the CLI's `--yes`).
    pub fn embedding_cost(&self, choice: &EmbedderChoice) -> Result<EmbeddingCost> {
        let EmbedderChoice::Remote { kind, url, model } = choice else {
            return Ok(EmbeddingCost::default());
        };
        let fingerprint = embed::remote::info(*kind, url, model, 0).fingerprint;
        let (passages, tokens) = self.readers.with(|c| {
            let known = store::model_by_fingerprint(c, &fingerprint)?.map(|(id, _)| id);
            store::texts_without_vectors(c, known)
        })?;
        Ok(EmbeddingCost { passages, tokens })
    }

    /// Chooses the embedder. Vectors of different models never mix: after a change, every
    /// passage is embedded again in the background (with [`Event::Backfill`] progress), and
    /// searches use keywords until that is done. Vectors of the previous model are kept, so
    /// going back costs nothing.
    pub fn set_embedder(&self, choice: EmbedderChoice) -> Result<()> {
        self.call(|reply| Command::SetEmbedder { choice, reply })
    }

    /// Stores the API key of the chosen model server in the OS keychain (never on disk) and
    /// starts using it.
    pub fn set_api_key(&self, key: &str) -> Result<()> {
        let choice = self.embedder()?;
        let url = choice.url().ok_or_else(|| {
            Error::InvalidInput(
                "the local model needs no API key; choose a model server first".into(),
            )
        })?;
        secrets::set_api_key(url, key)?;
        self.mark_key(url, true)?;
        self.call(|reply| Command::ReloadEmbedder { reply })
    }

    /// Records whether a key is stored for a server, so that one without never touches the
    /// keychain.
    pub(crate) fn mark_key(&self, url: &str, stored: bool) -> Result<()> {
        let values = vec![(secrets::stored_marker(url), if stored { "1" } else { "0" }.into())];
        self.call(|reply| Command::Chat(worker::ChatWrite::SetSettings { values, reply }))
    }

    /// Whether a key was stored for a server.
    pub(crate) fn key_stored(&self, url: &str) -> Result<bool> {
        self.readers.with(|c| store::key_stored(c, url))
    }

    /// Removes the chosen model server's API key from the keychain; returns whether there was
    /// one.
    pub fn delete_api_key(&self) -> Result<bool> {
        let choice = self.embedder()?;
        let Some(url) = choice.url() else { return Ok(false) };
        let removed = secrets::delete_api_key(url)?;
        self.mark_key(url, false)?;
        self.call(|reply| Command::ReloadEmbedder { reply })?;
        Ok(removed)
    }

    /// The chosen model server's API key, masked for display (`None` when none is stored).
    pub fn api_key_hint(&self) -> Result<Option<String>> {
        let choice = self.embedder()?;
        let Some(url) = choice.url() else { return Ok(None) };
        if !self.key_stored(url)? {
            return Ok(None);
        }
        Ok(secrets::api_key(url)?.as_deref().map(secrets::masked))
    }

    /// Where model files are looked for, in order, and where downloads go.
    pub fn model_search(&self) -> &ModelSearch {
        &self.models
    }

    /// Every chosen model that cannot run, each with the fix in one line; empty when all is
    /// well. A model server is not contacted: only local files are checked.
    pub fn model_problems(&self) -> Result<Vec<ModelProblem>> {
        let mut problems = Vec::new();
        if self.embedder()? == EmbedderChoice::Local {
            let found = models::embedder_problems(&self.models.embedder_files());
            if found.is_empty()
                && self.vectors.model().is_none()
                && let Some(reason) = self.vectors.load_failure()
            {
                problems.push(ModelProblem {
                    part: models::ModelPart::Embedder,
                    problem: format!("The embedding model could not be loaded: {reason}."),
                    fix: "run `doppel models install-defaults` to replace damaged files".into(),
                });
            }
            problems.extend(found);
        }
        match self.chat_model()? {
            chat::ChatModel::Local(None) => {
                problems.extend(models::chat_problem(&self.default_chat_model_path(), true));
            }
            chat::ChatModel::Local(Some(path)) => {
                problems.extend(models::chat_problem(&path, false));
            }
            chat::ChatModel::Remote(_) | chat::ChatModel::Off => {}
        }
        Ok(problems)
    }

    /// Installs the default models' files into the user's model folder from `source`, each
    /// checked by SHA-256, then loads the embedding model if it was missing. Files already
    /// present and whole are left alone.
    pub fn install_default_models(
        &self,
        source: &catalogue::DefaultsSource,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&catalogue::InstallProgress),
    ) -> Result<Vec<catalogue::InstalledFile>> {
        let catalogue = catalogue::Catalogue::built_in();
        let installed =
            catalogue::install_defaults(&catalogue, &self.models, source, cancel, progress)?;
        if self.embedder()? == EmbedderChoice::Local && self.vector_status().model.is_err() {
            self.call(|reply| Command::ReloadEmbedder { reply })?;
        }
        Ok(installed)
    }

    /// Downloads a chat model of the catalogue into the user's model folder (resumed if
    /// interrupted, checked by SHA-256 when the catalogue has one, free space checked first)
    /// and chooses it. Returns its path.
    pub fn get_catalogue_model(
        &self,
        model: &catalogue::CatalogueModel,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&download::DownloadProgress),
    ) -> Result<PathBuf> {
        let request = download::DownloadRequest {
            url: model.url.clone(),
            sha256: model.sha256.clone(),
            dest: self.chat_models_dir().join(catalogue::file_name_of(model)?),
        };
        let path = download::download(&request, Default::default(), cancel, progress)?;
        self.set_chat_model(&chat::ChatModel::Local(Some(path.clone())))?;
        Ok(path)
    }

    /// What search by meaning can use right now. Unlike [`Doppel::doctor`] it never waits for
    /// the worker, so a shell can poll it while the worker embeds.
    pub fn vector_status(&self) -> VectorStatus {
        self.vectors.status()
    }

    /// Waits until the vector index is no longer being rebuilt in the background (after a
    /// crash, a damaged file or a change of its shape), passing [`Event::IndexRebuild`]
    /// progress to `on_event`. Searches do not wait for a rebuild: they use keywords meanwhile
    /// and say so; a short-lived command that wants vectors waits here first.
    pub fn wait_for_index(&self, mut on_event: impl FnMut(&Event)) -> Result<VectorStatus> {
        let events = self.subscribe();
        loop {
            let status = self.vector_status();
            if status.rebuilding.is_none() {
                return Ok(status);
            }
            match events.recv_timeout(Duration::from_secs(1)) {
                Ok(event @ Event::IndexRebuild { .. }) => on_event(&event),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::WorkerGone("events stopped".into()));
                }
            }
            if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
                return Err(Error::WorkerGone("it stopped while the index was rebuilt".into()));
            }
        }
    }

    /// Waits until every passage has a vector from the current model (after a change of model,
    /// or passages stored while there was none), passing [`Event::Backfill`] progress to
    /// `on_event`. Returns at once when there is nothing to embed; fails when there is no usable
    /// model, or when embedding stalls (a model server that is down), with the reason.
    pub fn wait_for_vectors(&self, mut on_event: impl FnMut(&Event)) -> Result<VectorStatus> {
        if !self.process_queue {
            return Err(Error::InvalidInput("this handle does not process the queue".into()));
        }
        let events = self.subscribe();
        loop {
            let status = self.vector_status();
            if let Some(reason) = status.stalled.clone() {
                return Err(Error::ModelUnavailable { reason });
            }
            match &status.model {
                Ok(_) if status.waiting == 0 => return Ok(status),
                Ok(_) => {}
                Err(reason) => {
                    if self.readers.with(|c| store::count(c, store::Table::Chunks))? == 0 {
                        return Ok(status);
                    }
                    // A model server not asked yet is set up by the first batch; anything else
                    // without a model cannot embed.
                    if !self.vectors.has_embedder() {
                        return Err(Error::ModelUnavailable { reason: reason.clone() });
                    }
                }
            }
            // A paused queue embeds nothing: waiting would never end.
            if self.shared.queue.paused() {
                return Err(Error::QueuePaused);
            }
            match events.recv_timeout(Duration::from_secs(5)) {
                Ok(Event::BackfillStalled { reason }) => {
                    return Err(Error::ModelUnavailable { reason });
                }
                Ok(event @ Event::Backfill { .. }) => on_event(&event),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
                        return Err(Error::WorkerGone("it stopped while embedding".into()));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::WorkerGone("events stopped".into()));
                }
            }
        }
    }

    /// Rebuilds what can be rebuilt of a damaged database (its keyword index and indexes) and
    /// checks it again; writing resumes when it is whole. Fails with
    /// [`Error::Damaged`] when the damage is in the data itself: restore a backup then.
    pub fn repair(&self) -> Result<()> {
        self.call(|reply| Command::Repair { reply })
    }

    /// Checks the database and reports versions and counts.
    pub fn doctor(&self) -> Result<DoctorReport> {
        let mut problems = Vec::new();
        // On a connection of its own: SQLite's check of the keyword index reports a pooled
        // reader's stale view of it (one read before a delete) as damage.
        let checked =
            store::open_reader(&self.dir.database()).and_then(|c| store::integrity_check(&c));
        if let Err(e) = checked {
            problems.push(e.to_string());
        }
        if let Err(e) = self.call(|reply| Command::CheckIndex { reply }) {
            problems.push(e.to_string());
        }
        let (schema_version, twins, sources, chunks, jobs) = self.readers.with(|c| {
            Ok((
                store::stored_version(c)?,
                store::twins(c)?.len() as u64,
                store::state_counts(c, store::Table::Sources)?,
                store::count(c, store::Table::Chunks)?,
                store::state_counts(c, store::Table::Jobs)?,
            ))
        })?;
        let loaded = self.vectors.model();
        let VectorStatus { model, index_entries, ef_search, .. } = self.vector_status();
        // Counted in the database, not taken from the worker's running count: this is a check.
        let chunks_without_vectors = match &loaded {
            Some((id, _)) => self.readers.with(|c| store::count_without_vectors(c, *id))?,
            None => chunks,
        };
        let current = loaded.as_ref().map(|(_, info)| info.fingerprint.clone());
        let other_models = self
            .readers
            .with(store::models)?
            .into_iter()
            .filter(|(info, _)| Some(&info.fingerprint) != current.as_ref())
            .collect();
        problems.extend(self.model_problems()?.iter().map(ToString::to_string));
        problems.extend(self.ocr_status()?.problems);
        if let (Some(_), Ok(_)) = (&loaded, &model)
            && index_entries + chunks_without_vectors < chunks
        {
            problems.push(format!(
                "the vector index holds {index_entries} entries for {chunks} passages; restart to rebuild it"
            ));
        }
        Ok(DoctorReport {
            model,
            index_entries,
            ef_search,
            chunks_without_vectors,
            other_models,
            data_dir: self.dir.path().to_path_buf(),
            database: self.dir.database(),
            app_version: env!("CARGO_PKG_VERSION"),
            schema_version,
            sqlite_version: rusqlite::version(),
            lock_holder: datadir::lock_holder(self.dir.path()),
            problems,
            twins,
            sources,
            chunks,
            jobs,
        })
    }

    /// Waits until every job in `jobs` has finished (done, failed or cancelled), passing each
    /// event about them to `on_event`, and exactly one final event per job (made from the
    /// database for a job that ended before the wait began). Returns the jobs as they ended;
    /// a job deleted meanwhile (with its source) is left out.
    pub fn wait_for(&self, jobs: &[JobId], mut on_event: impl FnMut(&Event)) -> Result<Vec<Job>> {
        if !self.process_queue {
            return Err(Error::InvalidInput("this handle does not process the queue".into()));
        }
        let events = self.subscribe();
        let wanted: HashSet<JobId> = jobs.iter().copied().collect();
        let mut ended: HashSet<JobId> = HashSet::new();
        // A job whose end the worker could not record stays unfinished in the database: the
        // wait ends with that error instead of lasting until the next start.
        let mut unrecorded: Option<Error> = None;
        let mut pass_on =
            |event: &Event, ended: &mut HashSet<JobId>, unrecorded: &mut Option<Error>| {
                let Some(id) = event_job(event).filter(|id| wanted.contains(id)) else { return };
                if let Event::JobFailed { code, message, .. } = event
                    && code == "not_recorded"
                {
                    *unrecorded = Some(Error::NotRecorded { job: id, message: message.clone() });
                }
                if ended.contains(&id) {
                    return;
                }
                if is_final_event(event) {
                    ended.insert(id);
                }
                on_event(event);
            };
        loop {
            while let Ok(event) = events.try_recv() {
                pass_on(&event, &mut ended, &mut unrecorded);
            }
            let mut current = Vec::with_capacity(jobs.len());
            for &id in jobs {
                match self.job(id) {
                    Ok(job) => current.push(job),
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            for job in current.iter().filter(|j| j.state.is_final()) {
                // `pass_on` skips jobs whose final event was already passed on.
                pass_on(&self.final_event(job), &mut ended, &mut unrecorded);
            }
            if current.iter().all(|j| j.state.is_final()) {
                return Ok(current);
            }
            if let Some(e) = unrecorded.take() {
                return Err(e);
            }
            // A paused queue runs nothing: waiting would never end.
            if self.shared.queue.paused() {
                return Err(Error::QueuePaused);
            }
            // Events wake the wait at once; the timeout only guards against a worker that died.
            match events.recv_timeout(Duration::from_secs(5)) {
                Ok(event) => pass_on(&event, &mut ended, &mut unrecorded),
                Err(RecvTimeoutError::Timeout) => {
                    if self.worker.as_ref().is_none_or(|w| w.is_finished()) {
                        return Err(Error::WorkerGone("it stopped while jobs were waiting".into()));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::WorkerGone("events stopped".into()));
                }
            }
        }
    }

    /// The event that announced how a finished job ended, rebuilt from its row.
    fn final_event(&self, job: &Job) -> Event {
        match job.state {
            JobState::Failed => Event::JobFailed {
                job: job.id,
                source: job.source_id,
                code: job.last_error_code.clone().unwrap_or_default(),
                message: job.last_error.clone().unwrap_or_default(),
                retry_at: None,
            },
            JobState::Cancelled => Event::JobCancelled { job: job.id },
            _ => {
                let outcome = job.outcome.unwrap_or(JobOutcome::Ingested);
                let chunks = match (outcome, job.source_id) {
                    (JobOutcome::AlreadyPresent, _) | (_, None) => 0,
                    (_, Some(source)) => self.source(source).map_or(0, |s| s.chunk_count),
                };
                Event::JobDone { job: job.id, source: job.source_id, outcome, chunks }
            }
        }
    }

    // Taking the twin along, and reaching it from elsewhere (issue 17): backups, restores,
    // exports, and the local API's tokens and settings. Each is a thin call into `backup`,
    // `export` or `access`; writes go through the worker as `Command::Apply`.

    /// Backs up this data directory into one file, optionally encrypted, while it stays open
    /// (see [`backup`]). Progress goes to `progress`; `cancel` stops it, leaving no file.
    pub fn backup(
        &self,
        request: &backup::BackupRequest,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(backup::Progress),
    ) -> Result<backup::BackupReport> {
        backup::create(self.dir.path(), request, cancel, progress)
    }

    /// Backs up a data directory that this process has not opened (another may have: the
    /// snapshot is consistent all the same).
    pub fn backup_dir(
        data_dir: &Path,
        request: &backup::BackupRequest,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(backup::Progress),
    ) -> Result<backup::BackupReport> {
        backup::create(data_dir, request, cancel, progress)
    }

    /// Restores a backup into `request.config.data_dir`, which no process may have open: into
    /// an empty or missing folder, or in place of a data directory once the owner confirmed
    /// (`request.replace`). The vector index is rebuilt, with [`backup::Stage::Index`]
    /// progress. A failure or a kill leaves the data directory as it was.
    pub fn restore(
        request: backup::RestoreRequest,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(backup::Progress),
    ) -> Result<backup::RestoreReport> {
        backup::restore(request, cancel, progress)
    }

    /// Writes a twin as plain files (see [`ExportRequest`]).
    pub fn export(&self, request: &ExportRequest) -> Result<ExportReport> {
        export::export(&self.readers, self.dir.path(), request)
    }

    /// Makes a token of the local API; its whole text is in the result, and nowhere else.
    pub fn create_api_token(&self, request: &access::TokenRequest) -> Result<access::NewToken> {
        let minted = access::mint(request)?;
        let twin = request.twin;
        let scope = request.scope;
        let secret = minted.secret.clone();
        let token = self.apply(move |tx| {
            store::api::insert_token(
                tx,
                &store::api::NewTokenRow {
                    twin,
                    name: &minted.name,
                    scope,
                    prefix: &minted.prefix,
                    salt: &minted.salt,
                    hash: &minted.hash,
                    rate_per_minute: minted.rate_per_minute,
                    daily_tokens: minted.daily_tokens,
                },
            )
        })?;
        Ok(access::NewToken { token, secret })
    }

    /// Every token of the local API, revoked ones too, newest first.
    pub fn api_tokens(&self) -> Result<Vec<access::ApiToken>> {
        self.readers.with(store::api::tokens)
    }

    /// Revokes a token: it never authenticates again.
    pub fn revoke_api_token(&self, id: i64) -> Result<access::ApiToken> {
        self.apply(move |tx| store::api::revoke_token(tx, id))
    }

    /// The token a request presented, when it is whole, known and not revoked; otherwise
    /// [`Error::Unauthorized`], the same for every reason.
    pub fn authenticate(&self, presented: &str) -> Result<access::ApiToken> {
        self.readers
            .with(|c| access::verify(presented, |prefix| store::api::token_by_prefix(c, prefix)))
    }

    /// Tokens a token generated on a day (UTC days since the epoch).
    pub fn api_tokens_generated(&self, token: i64, day: i64) -> Result<u64> {
        self.readers.with(|c| store::api::generated_on(c, token, day))
    }

    /// Adds what tokens used (requests, generated tokens, last use) to their records.
    pub fn record_api_use(&self, uses: Vec<access::TokenUse>) -> Result<()> {
        self.apply(move |tx| store::api::record_use(tx, &uses))
    }

    /// Whether and where the local API listens.
    pub fn api_settings(&self) -> Result<access::ApiSettings> {
        let stored = self.readers.with(store::stored_settings)?;
        Ok(access::ApiSettings::from_stored(
            stored.get(access::ENABLED_KEY).map(String::as_str),
            stored.get(access::ADDRESS_KEY).map(String::as_str),
        ))
    }

    /// Saves whether and where the local API listens (the shell starts or stops the server).
    pub fn set_api_settings(&self, settings: &access::ApiSettings) -> Result<()> {
        let values = vec![
            (access::ENABLED_KEY.to_string(), if settings.enabled { "1" } else { "0" }.into()),
            (access::ADDRESS_KEY.to_string(), settings.address.to_string()),
        ];
        self.call(|reply| Command::Chat(worker::ChatWrite::SetSettings { values, reply }))
    }

    /// After a restore: the local API is off until the owner switches it on again here.
    pub(crate) fn reset_after_restore(&self) -> Result<()> {
        let settings = access::ApiSettings { enabled: false, ..self.api_settings()? };
        self.set_api_settings(&settings)
    }

    /// The local metrics of the last `days` days and the twin's health now (`doppel stats`).
    /// Nothing in it comes from a document: labels are formats, kinds and error codes.
    pub fn stats(&self, days: u32) -> Result<metrics::Stats> {
        let metrics = Arc::clone(&self.shared.metrics);
        if metrics.has_pending() {
            // What was measured until now is written first; a database that refuses writes
            // keeps it waiting, and the rest is shown all the same.
            let written = self.apply(move |tx| metrics.flush(tx).map(drop));
            if let Err(e) = written {
                tracing::warn!(code = e.code(), "metrics not written before stats");
            }
        }
        let agreement = self.call(|reply| Command::CheckIndex { reply }).map_err(|e| e.to_string());
        let model = self.vectors.model().map(|(id, _)| id);
        let since = metrics::since(days);
        let (summaries, hours, passages, queued_jobs, duplicate_vectors) =
            self.readers.with(|c| {
                Ok((
                    metrics::summaries(c, since)?,
                    metrics::hours(c, since)?,
                    store::count(c, store::Table::Chunks)?,
                    store::queued_jobs(c)?,
                    model.map(|id| store::duplicate_vectors(c, id)).transpose()?.unwrap_or(0),
                ))
            })?;
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let database = self.dir.database();
        let wal = database.with_extension("sqlite3-wal");
        let index_file_bytes = std::fs::read_dir(self.dir.path().join(INDEX_DIR))
            .map(|entries| entries.flatten().map(|e| size(&e.path())).sum())
            .unwrap_or(0);
        Ok(metrics::Stats {
            days,
            keep_days: self.shared.metrics.kept_days(),
            summaries,
            hours,
            health: metrics::Health {
                passages,
                index_entries: self.vector_status().index_entries,
                index_memory_bytes: self.vectors.memory_bytes(),
                index_file_bytes,
                database_bytes: size(&database) + size(&wal),
                agreement,
                duplicate_vectors,
                queued_jobs,
                memory_mib: metrics::memory_mib(),
            },
        })
    }

    /// A diagnostic report a person can send without sending their documents: versions, the
    /// platform, settings, counts, metrics, `doctor`'s findings and the log's last lines, with
    /// every path and URL reduced to its extension and every error message to its code.
    pub fn report(&self) -> Result<String> {
        use std::fmt::Write as _;
        let doctor = self.doctor()?;
        let stats = self.stats(30)?;
        let mut known = self.readers.with(store::known_paths)?;
        known.push(self.dir.path().display().to_string());
        known.extend(std::env::var("HOME").ok());
        let scrub = report::Scrubber::new(known);
        let mut out = String::new();
        let _ = writeln!(out, "# Doppel diagnostic report\n");
        let _ = writeln!(
            out,
            "Doppel {} · schema {} · SQLite {} · {} {} · {} CPUs",
            doctor.app_version,
            doctor.schema_version,
            doctor.sqlite_version,
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let settings = self.settings()?;
        let values: Vec<String> = SETTING_SPECS
            .iter()
            .filter_map(|spec| Some(format!("{}={}", spec.key, settings.get(spec.key).ok()?)))
            .collect();
        let _ = writeln!(out, "\n## Settings\n{}", values.join(" "));
        let embedder = match self.embedder()? {
            EmbedderChoice::Local => "local".to_string(),
            EmbedderChoice::Remote { kind, .. } => format!("server ({})", kind.as_str()),
        };
        let chat = match self.chat_model()? {
            chat::ChatModel::Local(None) => "local (default)".to_string(),
            chat::ChatModel::Local(Some(_)) => "local (a file)".to_string(),
            chat::ChatModel::Remote(server) => format!("server ({})", server.kind.as_str()),
            chat::ChatModel::Off => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "embedder: {embedder}; chat model: {chat}; answer mode: {:?}",
            self.answer_mode()?
        );
        let _ = writeln!(out, "\n## Counts");
        let pairs = |v: &[(String, u64)]| {
            v.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(out, "twins {}; sources: {}", doctor.twins, pairs(&doctor.sources));
        let _ = writeln!(
            out,
            "passages {}; without vectors {}",
            doctor.chunks, doctor.chunks_without_vectors
        );
        let _ = writeln!(out, "jobs: {}", pairs(&doctor.jobs));
        let _ = writeln!(out, "\n## Doctor");
        if doctor.problems.is_empty() {
            let _ = writeln!(out, "all checks passed");
        }
        for problem in &doctor.problems {
            let _ = writeln!(out, "- {}", scrub.words(problem));
        }
        out.push('\n');
        report::metrics_section(&mut out, &stats);
        let log = std::fs::read_to_string(self.dir.path().join(LOG_DIR).join("doppel.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let last = &lines[lines.len().saturating_sub(report::LOG_LINES)..];
        let _ = writeln!(out, "\n## Log (last {} lines)", last.len());
        for line in last {
            let _ = writeln!(out, "{}", scrub.log_line(line));
        }
        Ok(out)
    }

    /// Every measurement from now on, as it is taken (tests compare them with [`Doppel::stats`]).
    pub fn measurements(&self) -> Receiver<metrics::Measurement> {
        self.shared.metrics.observe()
    }

    /// Runs a write of `access` on the worker's connection, in one transaction.
    fn apply<T: Send + 'static>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.call(|reply| {
            Command::Apply(Box::new(move |conn: Result<&mut rusqlite::Connection>| {
                let result = conn
                    .and_then(|conn| {
                        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                            .map_err(Error::from)
                    })
                    .and_then(|tx| {
                        let value = write(&tx)?;
                        tx.commit()?;
                        Ok(value)
                    });
                // A caller that stopped waiting is not an error.
                drop(reply.send(result));
            }))
        })
    }

    /// Sends a command to the worker and waits for its answer.
    fn call<T>(&self, command: impl FnOnce(Sender<Result<T>>) -> Command) -> Result<T> {
        let commands =
            self.commands.as_ref().ok_or_else(|| Error::WorkerGone("shut down".into()))?;
        let started = std::time::Instant::now();
        let answer = worker::call(commands, command);
        self.shared.metrics.record_since(metrics::Metric::CommandWait, "", started);
        answer
    }
}

fn is_final_event(event: &Event) -> bool {
    matches!(
        event,
        Event::JobDone { .. }
            | Event::JobCancelled { .. }
            | Event::JobFailed { retry_at: None, .. }
    )
}

fn event_job(event: &Event) -> Option<JobId> {
    match event {
        Event::JobQueued { job, .. }
        | Event::JobStarted { job, .. }
        | Event::JobProgress { job, .. }
        | Event::JobEmbedding { job, .. }
        | Event::JobPages { job, .. }
        | Event::JobDone { job, .. }
        | Event::JobFailed { job, .. }
        | Event::JobCancelled { job } => Some(*job),
        _ => None,
    }
}

impl Drop for Doppel {
    fn drop(&mut self) {
        self.shared.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        // The watch thread ends first: it holds a sender of the worker's inbox, and may be
        // waiting for the worker's answer (which, stopping, it gives at once).
        if let Some(mut watcher) = self.watcher.take() {
            watcher.stop();
        }
        self.readers.close_idle();
        drop(self.commands.take());
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("the worker thread panicked");
        }
    }
}
