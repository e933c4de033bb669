//! The worker: the one thread that writes to the database.
//!
//! It owns the write connection. Requests that change anything (queue files, delete a source,
//! cancel a job, change a setting) arrive over a channel with a reply channel; between requests
//! it claims due jobs from the durable queue, one at a time, with a single atomic statement.
//! Each job's result is written in one transaction that commits last, so a crash at any moment
//! leaves either the old state or the new, never half a source. Cancellation and shutdown are
//! noticed at chunk boundaries.

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tracing::{error, info, info_span, warn};

use crate::embed::{
    Embedder, EmbedderChoice, LocalEmbedder, ModelFiles, ModelInfo, RemoteEmbedder, RemotePolicy,
    to_blob,
};
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::fetch;
use crate::index::VectorIndex;
use crate::ingest::chunk::{ChunkConfig, chunk};
use crate::ingest::{
    Document, FileStat, Format, parse, parse_text, parse_web_page, read_file, sha256_hex,
};
use crate::model::*;
use crate::sandbox::{self, ParserCommand};
use crate::settings::Settings;
use crate::store::{self, SourceFacts};
use crate::store::{NewChunk, NewVectors};

/// A request to the worker. Each carries the channel its answer goes back on.
pub(crate) enum Command {
    Ingest {
        twin: TwinId,
        files: Vec<PathBuf>,
        urls: Vec<String>,
        reply: Sender<Result<Vec<Enqueued>>>,
    },
    AddText {
        twin: TwinId,
        title: String,
        text: String,
        reply: Sender<Result<Enqueued>>,
    },
    Delete {
        source: SourceId,
        reply: Sender<Result<()>>,
    },
    Cancel {
        job: JobId,
        reply: Sender<Result<Job>>,
    },
    SetSetting {
        key: String,
        value: String,
        reply: Sender<Result<Settings>>,
    },
    CheckIndex {
        reply: Sender<Result<()>>,
    },
    /// Switches the embedder (saved first); passages are re-embedded in the background.
    SetEmbedder {
        choice: EmbedderChoice,
        reply: Sender<Result<()>>,
    },
    /// Loads the embedder again (after its API key changed).
    ReloadEmbedder {
        reply: Sender<Result<()>>,
    },
    CreateTwin {
        name: String,
        reply: Sender<Result<Twin>>,
    },
    RenameTwin {
        twin: TwinId,
        name: String,
        reply: Sender<Result<Twin>>,
    },
    /// Records a watched folder (its path already canonical); watching itself is `watch.rs`'s.
    WatchFolder {
        twin: TwinId,
        path: String,
        reply: Sender<Result<WatchedFolder>>,
    },
    UnwatchFolder {
        folder: FolderId,
        reply: Sender<Result<WatchedFolder>>,
    },
    /// A write to conversations, verified answers or personas: small, and handled even between
    /// the embedding batches of a running job, so that chat never waits for ingestion.
    Chat(ChatWrite),
    /// A small write of a concern outside the worker's own (the local API's tokens and their
    /// use, `access.rs`): the closure runs on the write connection, makes its own transaction
    /// and sends its own reply. Handled like chat writes, even between embedding batches.
    Apply(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// The writes of chat, each with its reply channel.
pub(crate) enum ChatWrite {
    BeginAnswer {
        conversation: String,
        twin: TwinId,
        question: String,
        reply: Sender<Result<store::chat::AnswerRows>>,
    },
    /// What an answer is given (passages' sources, verified answers), before it says anything.
    RecordContext {
        message: i64,
        sources: Vec<SourceId>,
        verified: Vec<i64>,
        reply: Sender<Result<()>>,
    },
    /// What a streaming answer has said so far; nobody waits for it.
    SaveProgress {
        message: i64,
        content: String,
    },
    FinishAnswer {
        answer: Box<store::chat::FinishedAnswer>,
        reply: Sender<Result<()>>,
    },
    Verify {
        twin: TwinId,
        question: String,
        answer: String,
        message: Option<i64>,
        reply: Sender<Result<i64>>,
    },
    Unverify {
        id: i64,
        reply: Sender<Result<()>>,
    },
    SetPersona {
        twin: TwinId,
        persona: crate::chat::prompt::Persona,
        reply: Sender<Result<()>>,
    },
    /// Stored settings outside the validated ones (the chat model choice).
    SetSettings {
        values: Vec<(String, String)>,
        reply: Sender<Result<()>>,
    },
}

/// One item of an ingest request, as queued.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The path, or the title of pasted text.
    pub origin: String,
    /// The source that will hold it.
    pub source_id: SourceId,
    /// The job that will (or already was going to) process it.
    pub job_id: JobId,
    /// Whether a new job was queued.
    pub status: EnqueueStatus,
}

/// What vector search can use right now.
#[derive(Debug, Clone, Default)]
pub(crate) struct VectorState {
    /// The loaded model's row id and description.
    pub model: Option<(i64, ModelInfo)>,
    /// Why vectors are unavailable, when they are.
    pub unavailable: Option<String>,
    /// Passages that have no vector from the loaded model yet (after a change of model, until
    /// the re-embedding is done).
    pub pending: u64,
    /// Why the last background embedding failed, until one succeeds.
    pub stalled: Option<String>,
}

/// State shared between the worker and the handle.
#[derive(Default)]
pub(crate) struct Shared {
    pub events: EventBus,
    /// The embedding model, shared by the worker (batches) and searches (one query).
    pub embedder: Mutex<Option<Embedder>>,
    /// The HNSW index of the loaded model; searches read it, the worker changes it.
    pub index: RwLock<Option<VectorIndex>>,
    pub vectors: Mutex<VectorState>,
    /// Jobs the owner asked to cancel, noticed at the next chunk boundary.
    pub cancel: Mutex<HashSet<JobId>>,
    /// Set when the handle is dropped: the running job is put back in the queue.
    pub stopping: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn cancel_requested(&self, job: JobId) -> bool {
        self.cancel.lock().unwrap_or_else(|p| p.into_inner()).contains(&job)
    }

    fn forget_cancel(&self, job: JobId) {
        self.cancel.lock().unwrap_or_else(|p| p.into_inner()).remove(&job);
    }

    /// Called at every chunk boundary of a running job.
    fn checkpoint(&self, job: JobId) -> Result<()> {
        if self.stopping.load(Ordering::Relaxed) || self.cancel_requested(job) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// How a job's run ended, when it did not fail.
struct Finished {
    outcome: JobOutcome,
    source: Option<SourceId>,
    chunks: u64,
}

pub(crate) struct Worker {
    conn: Connection,
    shared: Arc<Shared>,
    settings: Settings,
    process_queue: bool,
    parser: ParserCommand,
    /// The index changed since it was last saved.
    index_dirty: bool,
    /// The pool of readers, held back while the write-ahead log is checkpointed.
    readers: Arc<store::ReadPool>,
    /// A delete's checkpoint found the log busy: it is tried again until it succeeds.
    wal_pending: bool,
    /// Where index files live.
    index_dir: PathBuf,
    /// The local model's files.
    models: ModelFiles,
    /// Commands, once the thread runs.
    inbox: Option<Receiver<Command>>,
    /// Commands taken from the inbox during a job, to be handled after it.
    deferred: std::collections::VecDeque<Command>,
}

/// How many chunk texts are embedded in one batch.
const EMBED_BATCH: usize = 16;
/// Further tries at recording a job's end, and the delay before the first (doubled each time).
const RECORD_RETRIES: u32 = 4;
const RECORD_BACKOFF: Duration = Duration::from_millis(100);

/// Longest idle wait before the worker looks at the queue again on its own.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// How soon a checkpoint that found the write-ahead log busy is tried again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// What the worker is started with, besides its connection and channels.
pub(crate) struct WorkerConfig {
    /// Whether queued jobs run (tests turn this off to look at the queue).
    pub process_queue: bool,
    /// How the parse sandbox is started.
    pub parser: ParserCommand,
    /// The local embedding model's files.
    pub models: ModelFiles,
    /// Where the vector index is saved.
    pub index_dir: PathBuf,
}

impl Worker {
    /// Recovers the queue from any crash and starts the worker thread.
    pub(crate) fn start(
        mut conn: Connection,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        readers: Arc<store::ReadPool>,
        config: WorkerConfig,
    ) -> Result<JoinHandle<()>> {
        let WorkerConfig { process_queue, parser, models, index_dir } = config;
        let settings = Settings::from_stored(&store::stored_settings(&conn)?);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let requeued = store::recover(&tx, settings.max_attempts)?;
        tx.commit()?;
        if requeued > 0 {
            info!(requeued, "jobs interrupted by a previous run were queued again");
        }
        let mut worker = Worker {
            conn,
            shared,
            settings,
            process_queue,
            parser,
            index_dirty: false,
            readers,
            wal_pending: false,
            index_dir,
            models,
            inbox: None,
            deferred: Default::default(),
        };
        worker.start_vectors();
        std::thread::Builder::new()
            .name("doppel-worker".into())
            .spawn(move || worker.run(commands))
            .map_err(|e| Error::WorkerGone(format!("could not start: {e}")))
    }

    fn run(mut self, commands: Receiver<Command>) {
        self.inbox = Some(commands);
        self.serve();
        self.save_index();
    }

    /// Handles chat writes that arrived during a job; other commands wait for its end.
    fn serve_chat_writes(&mut self) {
        let Some(inbox) = &self.inbox else { return };
        let arrived: Vec<Command> = inbox.try_iter().collect();
        for command in arrived {
            match command {
                Command::Chat(write) => self.chat_write(write),
                Command::Apply(write) => write(&mut self.conn),
                other => self.deferred.push_back(other),
            }
        }
    }

    fn serve(&mut self) {
        loop {
            while let Some(command) = self.deferred.pop_front() {
                self.handle(command);
            }
            loop {
                let Some(inbox) = &self.inbox else { return };
                match inbox.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if self.shared.stopping.load(Ordering::Relaxed) {
                return;
            }
            if self.process_queue {
                match store::claim_job(&self.conn) {
                    Ok(Some(claimed)) => {
                        self.run_job(claimed);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => error!(error = %e, "could not claim a job"),
                }
                // Idle: give chunks that have no vector yet (a new or changed model) theirs.
                match self.backfill() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        let reason = redact_urls(&e.to_string());
                        warn!(error = %redact_urls(&e.for_log()), "embedding of older passages postponed");
                        lock(&self.shared.vectors).stalled = Some(reason.clone());
                        self.shared.events.publish(Event::BackfillStalled { reason });
                    }
                }
            }
            if self.index_dirty {
                self.save_index();
            }
            if self.wal_pending {
                self.checkpoint();
            }
            let wait = self.idle_wait();
            let Some(inbox) = &self.inbox else { return };
            match inbox.recv_timeout(wait) {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// How long to wait for a request before the next queued job becomes due.
    fn idle_wait(&self) -> Duration {
        if self.wal_pending {
            return CHECKPOINT_RETRY;
        }
        if !self.process_queue {
            return IDLE_WAIT;
        }
        match store::next_due(&self.conn) {
            Ok(Some(due)) => Duration::from_millis(
                (due - store::now_ms()).clamp(0, IDLE_WAIT.as_millis() as i64) as u64,
            ),
            _ => IDLE_WAIT,
        }
    }

    fn handle(&mut self, command: Command) {
        // A caller that stopped waiting for its answer is not an error.
        match command {
            Command::Ingest { twin, files, urls, reply } => {
                drop(reply.send(self.enqueue(twin, &files, &urls)))
            }
            Command::AddText { twin, title, text, reply } => {
                drop(reply.send(self.enqueue_text(twin, &title, &text)))
            }
            Command::Delete { source, reply } => drop(reply.send(self.delete(source))),
            Command::Cancel { job, reply } => drop(reply.send(self.cancel(job))),
            Command::SetSetting { key, value, reply } => {
                drop(reply.send(self.set_setting(&key, &value)))
            }
            Command::CheckIndex { reply } => {
                drop(reply.send(
                    store::check_keyword_index(&self.conn).and_then(|()| self.check_vectors()),
                ))
            }
            Command::SetEmbedder { choice, reply } => drop(reply.send(self.set_embedder(&choice))),
            Command::ReloadEmbedder { reply } => {
                self.reload_vectors();
                drop(reply.send(Ok(())))
            }
            Command::CreateTwin { name, reply } => {
                drop(reply.send(in_tx(&mut self.conn, |tx| store::create_twin(tx, &name))))
            }
            Command::RenameTwin { twin, name, reply } => {
                drop(reply.send(in_tx(&mut self.conn, |tx| store::rename_twin(tx, twin, &name))))
            }
            Command::WatchFolder { twin, path, reply } => {
                drop(reply.send(in_tx(&mut self.conn, |tx| store::watch_folder(tx, twin, &path))))
            }
            Command::UnwatchFolder { folder, reply } => {
                drop(reply.send(store::unwatch_folder(&self.conn, folder)))
            }
            Command::Chat(write) => self.chat_write(write),
            Command::Apply(write) => write(&mut self.conn),
        }
    }

    fn chat_write(&mut self, write: ChatWrite) {
        let conn = &mut self.conn;
        match write {
            ChatWrite::BeginAnswer { conversation, twin, question, reply } => {
                drop(reply.send(in_tx(conn, |tx| {
                    store::chat::begin_answer(tx, &conversation, twin, &question)
                })))
            }
            ChatWrite::RecordContext { message, sources, verified, reply } => {
                drop(reply.send(in_tx(conn, |tx| {
                    store::chat::record_context(tx, message, &sources, &verified)
                })))
            }
            ChatWrite::SaveProgress { message, content } => {
                if let Err(e) = in_tx(conn, |tx| store::chat::save_progress(tx, message, &content))
                {
                    tracing::warn!(message, error = %e, "could not save an answer's progress");
                }
            }
            ChatWrite::FinishAnswer { answer, reply } => {
                drop(reply.send(in_tx(conn, |tx| store::chat::finish_answer(tx, &answer))))
            }
            ChatWrite::Verify { twin, question, answer, message, reply } => {
                drop(reply.send(in_tx(conn, |tx| {
                    store::chat::add_verified(tx, twin, &question, &answer, message)
                })))
            }
            ChatWrite::Unverify { id, reply } => {
                drop(reply.send(in_tx(conn, |tx| store::chat::delete_verified(tx, id))))
            }
            ChatWrite::SetPersona { twin, persona, reply } => {
                drop(reply.send(in_tx(conn, |tx| store::chat::set_persona(tx, twin, &persona))))
            }
            ChatWrite::SetSettings { values, reply } => drop(reply.send(in_tx(conn, |tx| {
                values.iter().try_for_each(|(key, value)| store::set_setting(tx, key, value))
            }))),
        }
    }

    fn enqueue(
        &mut self,
        twin: TwinId,
        files: &[PathBuf],
        urls: &[String],
    ) -> Result<Vec<Enqueued>> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut queued = Vec::with_capacity(files.len() + urls.len());
        for path in files {
            let origin = path.to_string_lossy().into_owned();
            let title = path
                .file_name()
                .map_or_else(|| origin.clone(), |n| n.to_string_lossy().into_owned());
            let (source_id, job_id, status) =
                store::enqueue_origin(&tx, twin, SourceKind::File, &origin, &title)?;
            queued.push(Enqueued { origin, source_id, job_id, status });
        }
        for url in urls {
            let (source_id, job_id, status) =
                store::enqueue_origin(&tx, twin, SourceKind::Url, url, url)?;
            queued.push(Enqueued { origin: url.clone(), source_id, job_id, status });
        }
        tx.commit()?;
        for item in queued.iter().filter(|q| q.status == EnqueueStatus::Queued) {
            self.shared
                .events
                .publish(Event::JobQueued { job: item.job_id, source: item.source_id });
            self.shared.events.publish(Event::SourceChanged {
                source: item.source_id,
                state: SourceState::Queued,
            });
        }
        Ok(queued)
    }

    fn enqueue_text(&mut self, twin: TwinId, title: &str, text: &str) -> Result<Enqueued> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (source_id, job_id) = store::enqueue_text(&tx, twin, title, text)?;
        tx.commit()?;
        self.shared.events.publish(Event::JobQueued { job: job_id, source: source_id });
        Ok(Enqueued { origin: title.to_string(), source_id, job_id, status: EnqueueStatus::Queued })
    }

    fn delete(&mut self, source: SourceId) -> Result<()> {
        let started = std::time::Instant::now();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = store::delete_source(&tx, source)?;
        tx.commit()?;
        let database = started.elapsed();
        self.update_index(&removed, &[]);
        self.remove_other_index_files();
        let index = started.elapsed() - database;
        // A delete can only lower the count of passages waiting for vectors.
        if lock(&self.shared.vectors).pending > 0 {
            self.count_pending();
        }
        self.checkpoint();
        info!(
            source,
            passages = removed.len(),
            database_ms = database.as_millis() as u64,
            index_ms = index.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "source deleted"
        );
        self.shared.events.publish(Event::SourceDeleted { source });
        Ok(())
    }

    /// Folds the write-ahead log into the database file and empties it, so that deleted text
    /// leaves the log; a busy log is tried again after [`CHECKPOINT_RETRY`] until it succeeds.
    fn checkpoint(&mut self) {
        match store::checkpoint(&self.conn, &self.readers) {
            Ok(()) => self.wal_pending = false,
            Err(e) => {
                if !self.wal_pending {
                    warn!(error = %e, "write-ahead log checkpoint postponed");
                }
                self.wal_pending = true;
            }
        }
    }

    fn cancel(&mut self, job: JobId) -> Result<Job> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = store::job(&tx, job)?;
        let after = store::cancel_queued(&tx, job)?;
        tx.commit()?;
        self.shared.forget_cancel(job);
        if before.state == JobState::Queued {
            self.publish_cancelled(&before);
        }
        Ok(after)
    }

    fn publish_cancelled(&self, job: &Job) {
        self.shared.events.publish(Event::JobCancelled { job: job.id });
        if let Some(source) = job.source_id {
            match store::source(&self.conn, source) {
                Ok(s) => {
                    self.shared.events.publish(Event::SourceChanged { source, state: s.state })
                }
                Err(_) => self.shared.events.publish(Event::SourceDeleted { source }),
            }
        }
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<Settings> {
        let next = self.settings.with(key, value)?;
        let stored = next.get(key)?.to_string();
        store::set_setting(&self.conn, key, &stored)?;
        // Each setting applies from the moment it is saved (those of the index's shape say in
        // their help that they wait for its next rebuild).
        match key {
            "hnsw_ef_search" => {
                if let Some(index) = write(&self.shared.index).as_mut() {
                    index.change_ef_search(next.hnsw_ef_search as usize);
                }
            }
            "embed_timeout_s" | "embed_retries" => {
                if let Some(embedder) = lock(&self.shared.embedder).as_mut() {
                    embedder.set_policy(RemotePolicy::of(&next))?;
                }
            }
            _ => {}
        }
        self.settings = next.clone();
        Ok(next)
    }

    fn run_job(&mut self, claimed: store::Claimed) {
        let job = claimed.job;
        let span = info_span!("job", id = job.id, kind = job.kind.as_str(), attempt = job.attempts);
        let _entered = span.enter();
        info!("job started");
        let events = &self.shared.events;
        events.publish(Event::JobStarted {
            job: job.id,
            source: job.source_id,
            attempt: job.attempts,
        });
        if let Some(source) = job.source_id {
            if let Err(e) = store::set_source_state(&self.conn, source, SourceState::Processing) {
                warn!(error = %e, "could not mark the source as processing");
            }
            events.publish(Event::SourceChanged { source, state: SourceState::Processing });
        }
        // A panic (a bug in a parser, the chunker or the index) fails this job alone: its
        // transaction rolls back as it unwinds, and the worker goes on with the next.
        let ingested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.ingest(&job, claimed.payload_text)
        }));
        let result = ingested.unwrap_or_else(|_| {
            error!("a job stopped on an internal error; it failed alone");
            Err(Error::Internal { during: "this job" })
        });
        let stopping = self.shared.stopping.load(Ordering::Relaxed);
        // Recording the end is tried again a few times (a full disk may pass); if it still
        // fails, the job row stays "running" and the next start puts it back in the queue.
        let mut tries = 0;
        loop {
            let recorded = crate::faults::record_fault(&job.origin).and_then(|()| match &result {
                Ok(finished) => self.record_done(&job, finished),
                Err(Error::Cancelled) if stopping => {
                    info!("job interrupted by shutdown; it stays queued");
                    store::requeue_interrupted(&self.conn, &job)
                }
                Err(Error::Cancelled) => self.record_cancelled(&job),
                Err(e) => self.record_failure(&job, e),
            });
            match recorded {
                Ok(()) => break,
                Err(e) if tries < RECORD_RETRIES => {
                    warn!(error = %e, "could not record the end of a job; trying again");
                    std::thread::sleep(RECORD_BACKOFF * (1 << tries));
                    tries += 1;
                }
                Err(e) => {
                    error!(error = %e, "could not record the end of a job; the next start runs it again");
                    break;
                }
            }
        }
        self.shared.forget_cancel(job.id);
    }

    fn record_done(&self, job: &Job, finished: &Finished) -> Result<()> {
        info!(outcome = finished.outcome.as_str(), chunks = finished.chunks, "job done");
        let events = &self.shared.events;
        events.publish(Event::JobDone {
            job: job.id,
            source: finished.source,
            outcome: finished.outcome,
            chunks: finished.chunks,
        });
        match (finished.outcome, job.source_id) {
            (JobOutcome::AlreadyPresent, Some(placeholder)) => {
                events.publish(Event::SourceDeleted { source: placeholder })
            }
            (_, Some(source)) => {
                events.publish(Event::SourceChanged { source, state: SourceState::Ready })
            }
            _ => {}
        }
        Ok(())
    }

    fn record_cancelled(&mut self, job: &Job) -> Result<()> {
        info!("job cancelled");
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store::store_cancelled(&tx, job)?;
        tx.commit()?;
        self.publish_cancelled(job);
        Ok(())
    }

    fn record_failure(&self, job: &Job, e: &Error) -> Result<()> {
        let retry_at = (e.is_transient() && job.attempts < self.settings.max_attempts).then(|| {
            let exponent = job.attempts.saturating_sub(1).min(20);
            store::now_ms() + i64::from(self.settings.retry_backoff_ms) * (1i64 << exponent)
        });
        let message = e.to_string();
        warn!(code = e.code(), error = %redact_urls(&e.for_log()), will_retry = retry_at.is_some(), "job failed");
        store::store_failure(&self.conn, job, e.code(), &message, retry_at)?;
        // A file that failed for good is not tried again by a watched folder's catch-up until
        // it changes.
        if let (None, JobKind::IngestFile, Some(source)) = (retry_at, job.kind, job.source_id)
            && let Some(file) = FileStat::of(std::path::Path::new(&job.origin))
        {
            store::note_file(&self.conn, source, file)?;
        }
        self.shared.events.publish(Event::JobFailed {
            job: job.id,
            source: job.source_id,
            code: e.code().to_string(),
            message,
            retry_at,
        });
        if let Some(source) = job.source_id {
            let state =
                store::source(&self.conn, source).map(|s| s.state).unwrap_or(SourceState::Failed);
            self.shared.events.publish(Event::SourceChanged { source, state });
        }
        Ok(())
    }

    /// Reads, parses, chunks and stores one job's content.
    fn ingest(&mut self, job: &Job, payload: Option<String>) -> Result<Finished> {
        let source_id = job
            .source_id
            .ok_or_else(|| Error::NotFound { what: "source", id: format!("of job {}", job.id) })?;
        let source = store::source(&self.conn, source_id)?;
        let shared = Arc::clone(&self.shared);
        let checkpoint = || shared.checkpoint(job.id);

        let (byte_size, hash, doc, file) = match job.kind {
            JobKind::IngestFile => {
                let path = PathBuf::from(&job.origin);
                // Taken before reading: a write during the read leaves a newer time behind, so
                // a watched folder's catch-up reads the file again.
                let file = FileStat::of(&path);
                let format = Format::from_path(&path)?;
                let bytes = read_file(&path, self.settings.max_file_bytes())?;
                let hash = sha256_hex(&bytes);
                if let Some(finished) = self.settle_known_content(job, &source, &hash, file)? {
                    return Ok(finished);
                }
                checkpoint()?;
                let doc =
                    self.parse_bytes(job, &bytes, format.or_else(|| Format::sniff(&bytes)), None)?;
                (bytes.len() as u64, hash, doc, file)
            }
            JobKind::IngestUrl => {
                let fetched = fetch::fetch(&job.origin, self.settings.fetch_limits())?;
                let hash = sha256_hex(&fetched.bytes);
                if let Some(finished) = self.settle_known_content(job, &source, &hash, None)? {
                    return Ok(finished);
                }
                checkpoint()?;
                let by_name = || {
                    let path = fetched.url.split(['?', '#']).next().unwrap_or("");
                    Format::from_path(std::path::Path::new(path)).ok().flatten()
                };
                let format = fetched
                    .media_type
                    .as_deref()
                    .and_then(Format::from_media_type)
                    .or_else(by_name)
                    .or_else(|| Format::sniff(&fetched.bytes));
                let charset = fetched.charset.as_deref();
                let doc = match format {
                    Some(Format::Html) => parse_web_page(&fetched.bytes, charset)?,
                    other => self.parse_bytes(job, &fetched.bytes, other, charset)?,
                };
                (fetched.bytes.len() as u64, hash, doc, None)
            }
            JobKind::IngestText => {
                let text = payload
                    .ok_or_else(|| Error::InvalidInput("the pasted text is missing".into()))?;
                let hash = sha256_hex(text.as_bytes());
                if let Some(finished) = self.settle_known_content(job, &source, &hash, None)? {
                    return Ok(finished);
                }
                (text.len() as u64, hash, parse_text(&text, Format::Markdown)?, None)
            }
        };
        let config = ChunkConfig {
            target: self.settings.chunk_tokens,
            overlap: self.settings.chunk_overlap,
        };
        let chunks = chunk(&doc, config, checkpoint)?;
        let (new_vectors, all_vectors) = self.embed_chunks(job, &chunks)?;
        // Pasted text keeps the title it was given; files and pages take their document's own.
        let title = match (job.kind, &doc.title) {
            (JobKind::IngestFile | JobKind::IngestUrl, Some(title)) => title.clone(),
            _ => source.title.clone(),
        };
        let note = note_of(&doc.warnings);
        let facts = SourceFacts {
            title: &title,
            file,
            media_type: doc.media_type,
            byte_size,
            content_hash: &hash,
            note: note.as_deref(),
        };
        let total = chunks.len() as u64;
        let every = (total / 100).max(1);
        let events = &self.shared.events;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (removed, inserted) =
            store::store_ingested(&tx, source_id, &facts, &chunks, &new_vectors, |done| {
                let done = done as u64;
                if done.is_multiple_of(every) {
                    events.publish(Event::JobProgress { job: job.id, done, total });
                }
                checkpoint()
            })?;
        // New vectors enter the index before the commit, so that the moment the source is
        // ready it is found by meaning too; until the commit, readers cannot see the chunks
        // they point at, and searches drop them. Removals wait for the commit.
        let added: Vec<(u64, &Vec<f32>)> = inserted
            .iter()
            .zip(&chunks)
            .filter_map(|(id, c)| all_vectors.get(&c.text_hash).map(|v| (*id as u64, v)))
            .collect();
        apply_to_index(&self.shared, &[], &added);
        // Taken back out if the job fails from here on, by an error or a panic.
        let provisional = Provisional {
            shared: &self.shared,
            ids: added.iter().map(|(id, _)| *id as i64).collect(),
        };
        // A test's fault lands here, mid-transaction, with vectors already in the index.
        crate::faults::panic_if_armed(&job.origin);
        let edited = !removed.is_empty();
        let finish = |conn: &Connection| {
            store::finish_job(conn, job.id, JobOutcome::Ingested, Some(source_id), None)
        };
        if !edited {
            finish(&tx)?;
        }
        // The ids may be given to other chunks later: a failed commit takes back what was added.
        tx.commit()?;
        provisional.keep();
        self.shared.events.publish(Event::JobProgress { job: job.id, done: total, total });
        self.update_index(&removed, &[]);
        // An edit forgets what it took out: its pages leave the write-ahead log as a delete's
        // do, before the job is done (a crash in between runs the job again).
        if edited {
            self.checkpoint();
            finish(&self.conn)?;
        }
        Ok(Finished { outcome: JobOutcome::Ingested, source: Some(source_id), chunks: total })
    }

    /// Parses content: text formats here, complex formats in the sandboxed child process.
    fn parse_bytes(
        &self,
        job: &Job,
        bytes: &[u8],
        format: Option<Format>,
        charset: Option<&str>,
    ) -> Result<Document> {
        match format.filter(|f| f.is_complex()) {
            Some(complex) => {
                let shared = &self.shared;
                sandbox::parse(
                    &self.parser,
                    self.settings.child_limits(),
                    &self.settings.limits(),
                    complex,
                    bytes,
                    &|| shared.checkpoint(job.id).is_err(),
                )
            }
            None => parse(bytes, format, charset),
        }
    }

    /// Ends the job early when its content is already indexed: unchanged since the last time,
    /// or held by another source of the twin.
    fn settle_known_content(
        &mut self,
        job: &Job,
        source: &Source,
        hash: &str,
        file: Option<FileStat>,
    ) -> Result<Option<Finished>> {
        let unchanged = source.content_hash.as_deref() == Some(hash) && source.chunk_count > 0;
        let existing = if unchanged {
            None
        } else {
            store::ready_source_with_hash(&self.conn, job.twin_id, hash, source.id)?
        };
        if !unchanged && existing.is_none() {
            return Ok(None);
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let finished = match existing {
            None => {
                store::store_unchanged(&tx, job.id, source.id, file)?;
                Finished {
                    outcome: JobOutcome::Unchanged,
                    source: Some(source.id),
                    chunks: source.chunk_count,
                }
            }
            Some(existing) => {
                store::store_duplicate(&tx, job.id, source.id, existing.id)?;
                Finished {
                    outcome: JobOutcome::AlreadyPresent,
                    source: Some(existing.id),
                    chunks: 0,
                }
            }
        };
        tx.commit()?;
        Ok(Some(finished))
    }
}

/// The warnings of a parse, as one note for the source: the first few, then a count.
fn note_of(warnings: &[String]) -> Option<String> {
    const SHOWN: usize = 5;
    if warnings.is_empty() {
        return None;
    }
    let mut note = warnings.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if warnings.len() > SHOWN {
        note.push_str(&format!("; and {} more", warnings.len() - SHOWN));
    }
    Some(note)
}

impl Worker {
    /// Loads the chosen embedder and its index (rebuilding a stale index from the stored
    /// vectors). Without a model, Doppel works on with keyword search and says why. A model
    /// server is not contacted here: a model it served before is known by its recorded
    /// dimension, and a new one is set up by the first batch that needs it.
    fn start_vectors(&mut self) {
        let embedder = match self.load_embedder() {
            Ok(embedder) => embedder,
            Err(e) => {
                warn!(error = %redact_urls(&e.for_log()), "vector search unavailable");
                lock(&self.shared.vectors).unavailable = Some(unavailable_reason(e));
                return;
            }
        };
        let info = embedder.info().clone();
        *lock(&self.shared.embedder) = Some(embedder);
        if info.dimension == 0 {
            lock(&self.shared.vectors).unavailable =
                Some("the embedding server has not been reached yet".into());
            return;
        }
        if let Err(e) = self.open_model(&info) {
            warn!(error = %e, "vector index unavailable");
            lock(&self.shared.vectors).unavailable = Some(unavailable_reason(e));
        }
    }

    /// The embedder the stored choice names.
    fn load_embedder(&self) -> Result<Embedder> {
        match store::embedder_choice(&self.conn)? {
            EmbedderChoice::Local => {
                Ok(Embedder::Local(Box::new(LocalEmbedder::load(&self.models)?)))
            }
            EmbedderChoice::Remote { kind, url, model } => {
                // A server no key was stored for is asked without one, keychain untouched.
                let key = match store::key_stored(&self.conn, &url)? {
                    false => None,
                    true => crate::secrets::api_key(&url).unwrap_or_else(|e| {
                        warn!(error = %e, "no API key could be read; the server is asked without one");
                        None
                    }),
                };
                let policy = RemotePolicy::of(&self.settings);
                let mut embedder = RemoteEmbedder::new(kind, &url, &model, key, policy, 0)?;
                if let Some((_, dimension)) =
                    store::model_by_fingerprint(&self.conn, &embedder.info.fingerprint)?
                {
                    embedder.info.dimension = dimension;
                }
                Ok(Embedder::Remote(Box::new(embedder)))
            }
        }
    }

    /// Records the model, opens its index and makes it the one searches use.
    fn open_model(&mut self, info: &ModelInfo) -> Result<i64> {
        let model = store::ensure_model(&self.conn, info)?;
        let index = self.open_index(model, info)?;
        *write(&self.shared.index) = Some(index);
        {
            let mut state = lock(&self.shared.vectors);
            state.model = Some((model, info.clone()));
            state.unavailable = None;
        }
        self.count_pending();
        Ok(model)
    }

    /// The loaded model's row id, setting up a model server's model on first use (its first
    /// answer tells the dimension). `None` when there is no embedder at all.
    fn active_model(&mut self) -> Result<Option<i64>> {
        if let Some((model, _)) = lock(&self.shared.vectors).model.clone() {
            return Ok(Some(model));
        }
        let info = {
            let mut embedder = lock(&self.shared.embedder);
            let Some(embedder) = embedder.as_mut() else { return Ok(None) };
            if embedder.info().dimension == 0 {
                embedder.embed(&["dimension probe"])?;
            }
            embedder.info().clone()
        };
        self.open_model(&info).map(Some)
    }

    /// Saves the embedder choice and switches to it.
    fn set_embedder(&mut self, choice: &EmbedderChoice) -> Result<()> {
        store::set_embedder_choice(&self.conn, choice)?;
        info!(embedder = %redact_urls(&format!("{choice:?}")), "embedder changed");
        self.reload_vectors();
        Ok(())
    }

    /// Drops the embedder and its index (saving the index first) and loads the chosen one.
    fn reload_vectors(&mut self) {
        self.save_index();
        *write(&self.shared.index) = None;
        *lock(&self.shared.embedder) = None;
        *lock(&self.shared.vectors) = VectorState::default();
        self.start_vectors();
    }

    /// Counts the passages still waiting for a vector from the loaded model.
    fn count_pending(&mut self) {
        let Some((model, _)) = lock(&self.shared.vectors).model.clone() else { return };
        match store::count_without_vectors(&self.conn, model) {
            Ok(pending) => lock(&self.shared.vectors).pending = pending,
            Err(e) => warn!(error = %e, "could not count passages waiting for vectors"),
        }
    }

    /// Index files of models other than the loaded one may hold vectors of a source just
    /// deleted; they are removed (a model chosen again rebuilds its index from the database).
    fn remove_other_index_files(&self) {
        let current = lock(&self.shared.vectors).model.as_ref().map(|(_, i)| i.fingerprint.clone());
        let Ok(entries) = std::fs::read_dir(&self.index_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            // Files of an older index format (`.usearch`) go too.
            let kept = path.extension().is_some_and(|e| e == "hnsw" || e == "generation");
            if (Some(stem) != current.as_deref() || !kept)
                && let Err(e) = std::fs::remove_file(&path)
            {
                warn!(error = %e, file = %path.display(), "an old index file could not be removed");
            }
        }
    }

    fn index_paths(&self, info: &ModelInfo) -> (PathBuf, PathBuf) {
        let file = self.index_dir.join(format!("{}.hnsw", info.fingerprint));
        (file.clone(), file.with_extension("generation"))
    }

    /// The saved index if it holds the database's current generation, else a rebuilt one.
    fn open_index(&mut self, model: i64, info: &ModelInfo) -> Result<VectorIndex> {
        let generation = store::generation(&self.conn, model)?;
        let (file, marker) = self.index_paths(info);
        let saved: Option<i64> =
            std::fs::read_to_string(&marker).ok().and_then(|t| t.trim().parse().ok());
        let params = self.settings.hnsw();
        if saved == Some(generation)
            && let Some(index) = VectorIndex::load(file.clone(), info.dimension, params)
        {
            return Ok(index);
        }
        info!(
            ?saved,
            generation, "vector index is stale or missing; rebuilding it from the stored vectors"
        );
        let live = store::live_vectors(&self.conn, model)?;
        let events = &self.shared.events;
        let index = VectorIndex::new(file, info.dimension, params)?
            .rebuilt(&live, |done, total| events.publish(Event::IndexRebuild { done, total }))?;
        index.save()?;
        std::fs::write(&marker, generation.to_string()).map_err(|e| Error::io(&marker, e))?;
        Ok(index)
    }

    /// The index and the database agree both ways: every live vector is in the index, and the
    /// index holds nothing else. Only this thread changes either, so no change is half-made.
    fn check_vectors(&self) -> Result<()> {
        let Some((model, _)) = lock(&self.shared.vectors).model.clone() else { return Ok(()) };
        let stored: std::collections::HashSet<u64> =
            store::live_vector_ids(&self.conn, model)?.into_iter().collect();
        let guard = read(&self.shared.index);
        let Some(index) = guard.as_ref() else { return Ok(()) };
        let missing = stored.iter().filter(|&&id| !index.contains(id)).count();
        let extra = index.keys().filter(|id| !stored.contains(id)).count();
        if missing + extra == 0 {
            return Ok(());
        }
        Err(Error::Corrupt(format!(
            "the vector index lacks {missing} of the stored vectors and holds {extra} that are not \
             stored; restart to rebuild it"
        )))
    }

    /// Saves the index with the generation it now holds (removals were made in place, so the
    /// file holds only live vectors).
    fn save_index(&mut self) {
        let Some((model, info)) = lock(&self.shared.vectors).model.clone() else { return };
        let result = store::generation(&self.conn, model).and_then(|generation| {
            match read(&self.shared.index).as_ref() {
                Some(index) => index.save()?,
                None => return Ok(()),
            }
            let (_, marker) = self.index_paths(&info);
            std::fs::write(&marker, generation.to_string()).map_err(|e| Error::io(&marker, e))
        });
        match result {
            Ok(()) => self.index_dirty = false,
            Err(e) => {
                warn!(error = %e, "vector index not saved; it will be rebuilt at the next start")
            }
        }
    }

    /// Brings the index in line after a commit. A failure here only costs a rebuild later:
    /// searches check results against live rows, and the generation marks the file stale.
    fn update_index(&mut self, removed: &[i64], added: &[(u64, &Vec<f32>)]) {
        apply_to_index(&self.shared, removed, added);
        self.index_dirty = true;
        if !removed.is_empty() {
            self.remove_saved_index();
        }
    }

    /// The saved index file holds vectors just removed (a deleted source's, an edit's old
    /// passages): it goes at once, whatever the queue or the index size, and is written again,
    /// without them, when the queue is idle or the worker stops. A kill before then
    /// costs a rebuild from the stored vectors at the next start, as any unsaved change does.
    fn remove_saved_index(&self) {
        let Some((_, info)) = lock(&self.shared.vectors).model.clone() else { return };
        let (file, marker) = self.index_paths(&info);
        // The marker first: an index file without it is rebuilt, never trusted.
        for path in [marker, file] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(error = %e, file = %path.display(), "a saved index file could not be removed");
            }
        }
    }

    /// Vectors for a source's chunks: new ones embedded (in batches, cancellable, with
    /// progress), known ones read back. Returns what to store and every chunk's vector.
    fn embed_chunks(
        &mut self,
        job: &Job,
        chunks: &[NewChunk],
    ) -> Result<(NewVectors, HashMap<String, Vec<f32>>)> {
        let Some(model) = self.active_model()? else {
            return Ok((NewVectors::default(), HashMap::new()));
        };
        let mut hashes: Vec<&str> = chunks.iter().map(|c| c.text_hash.as_str()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let missing = store::missing(&self.conn, model, &hashes)?;
        let mut todo: Vec<&NewChunk> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for chunk in chunks {
            if missing.contains(&chunk.text_hash) && seen.insert(chunk.text_hash.as_str()) {
                todo.push(chunk);
            }
        }
        // Batches of similar length waste less work on padding.
        todo.sort_by_key(|c| c.text.len());
        let known: Vec<&str> = hashes.iter().copied().filter(|h| !missing.contains(*h)).collect();
        let mut all = store::vectors(&self.conn, model, &known)?;
        let mut blobs = Vec::with_capacity(todo.len());
        let total = todo.len() as u64;
        for (batch_number, batch) in todo.chunks(EMBED_BATCH).enumerate() {
            self.shared.checkpoint(job.id)?;
            self.serve_chat_writes();
            let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            let vectors = {
                let mut embedder = lock(&self.shared.embedder);
                let embedder = embedder
                    .as_mut()
                    .ok_or_else(|| Error::ModelUnavailable { reason: "unloaded".into() })?;
                embedder.embed(&texts)?
            };
            for (chunk, vector) in batch.iter().zip(vectors) {
                blobs.push((chunk.text_hash.clone(), to_blob(&vector)));
                all.insert(chunk.text_hash.clone(), vector);
            }
            let done = ((batch_number + 1) * EMBED_BATCH).min(todo.len()) as u64;
            self.shared.events.publish(Event::JobEmbedding { job: job.id, done, total });
        }
        Ok((NewVectors { model: Some(model), blobs }, all))
    }

    /// Embeds one batch of stored chunks that have no vector from the loaded model. Returns
    /// whether there was anything to do.
    fn backfill(&mut self) -> Result<bool> {
        if lock(&self.shared.embedder).is_none() {
            return Ok(false);
        }
        // The running count says whether there is work, so an idle worker does not scan every
        // passage after each job. Jobs store a vector with each passage, so only a change of
        // model makes the count grow, and it is recounted then.
        match &*lock(&self.shared.vectors) {
            VectorState { model: Some(_), pending: 0, .. } => return Ok(false),
            VectorState { model: Some(_), .. } => {}
            // A model server not asked yet: only worth asking when there are passages.
            VectorState { model: None, .. } => {
                if store::count(&self.conn, store::Table::Chunks)? == 0 {
                    return Ok(false);
                }
            }
        }
        let Some(model) = self.active_model()? else { return Ok(false) };
        let rows = store::chunks_without_vectors(&self.conn, model, EMBED_BATCH as u32)?;
        if rows.is_empty() {
            lock(&self.shared.vectors).pending = 0;
            return Ok(false);
        }
        let texts: Vec<&str> = rows.iter().map(|(_, _, text)| text.as_str()).collect();
        let vectors = {
            let mut embedder = lock(&self.shared.embedder);
            let Some(embedder) = embedder.as_mut() else { return Ok(false) };
            embedder.embed(&texts)?
        };
        let blobs: Vec<(String, Vec<u8>)> =
            rows.iter().zip(&vectors).map(|((_, hash, _), v)| (hash.clone(), to_blob(v))).collect();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store::insert_embeddings(&tx, model, &blobs)?;
        store::bump_generations(&tx)?;
        let added: Vec<(u64, &Vec<f32>)> =
            rows.iter().zip(&vectors).map(|((id, _, _), v)| (*id as u64, v)).collect();
        apply_to_index(&self.shared, &[], &added);
        let provisional = Provisional {
            shared: &self.shared,
            ids: added.iter().map(|(id, _)| *id as i64).collect(),
        };
        tx.commit()?;
        provisional.keep();
        self.index_dirty = true;
        let remaining = store::count_without_vectors(&self.conn, model)?;
        {
            let mut state = lock(&self.shared.vectors);
            state.pending = remaining;
            state.stalled = None;
        }
        self.shared.events.publish(Event::Backfill { embedded: rows.len() as u64, remaining });
        Ok(true)
    }
}

/// Runs `f` in one immediate transaction, committed when it succeeds.
fn in_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Sends a command to the worker and waits for its answer. Any thread may call it; the worker
/// answers in the order commands arrive.
pub(crate) fn call<T>(
    commands: &Sender<Command>,
    command: impl FnOnce(Sender<Result<T>>) -> Command,
) -> Result<T> {
    let (reply, answer) = std::sync::mpsc::channel();
    commands.send(command(reply)).map_err(|_| Error::WorkerGone("it is not running".into()))?;
    answer.recv().map_err(|_| Error::WorkerGone("it stopped before answering".into()))?
}

/// Index entries added ahead of their commit, removed again unless the commit succeeded.
struct Provisional<'a> {
    shared: &'a Shared,
    ids: Vec<i64>,
}

impl Provisional<'_> {
    fn keep(mut self) {
        self.ids.clear();
    }
}

impl Drop for Provisional<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            apply_to_index(self.shared, &self.ids, &[]);
        }
    }
}

/// Removes and adds index entries. A failure only costs a rebuild at the next start: results
/// are checked against live rows, and the generation marks the saved file stale.
///
/// Searches wait for neither for long: a removal is worked out behind the read lock (only this
/// thread changes the index, so the plan stays true) and only written behind the write lock,
/// and additions take the write lock a few at a time.
fn apply_to_index(shared: &Shared, removed: &[i64], added: &[(u64, &Vec<f32>)]) {
    const ADDS_PER_LOCK: usize = 16;
    if !removed.is_empty() {
        let removed: Vec<u64> = removed.iter().map(|&id| id as u64).collect();
        let plan = read(&shared.index).as_ref().map(|index| index.plan_removal(&removed));
        if let (Some(plan), Some(index)) = (plan, write(&shared.index).as_mut()) {
            index.apply(plan);
        }
    }
    for batch in added.chunks(ADDS_PER_LOCK) {
        let mut guard = write(&shared.index);
        let Some(index) = guard.as_mut() else { return };
        if let Err(e) = batch.iter().try_for_each(|(id, v)| index.add(*id, v)) {
            warn!(error = %e, "vector index update failed; it will be rebuilt");
            return;
        }
    }
}

/// Locks that a panic elsewhere cannot leave inconsistent are used even when poisoned.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// A message fit for the log: the query strings and fragments of URLs (where tokens hide) and
/// any user name or password in them are cut away.
fn redact_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let Some(start) = word.find("http://").or_else(|| word.find("https://")) else {
                return word.to_string();
            };
            let (before, url) = word.split_at(start);
            let end = url.find(['?', '#']).unwrap_or(url.len());
            let trail = if url[end..].ends_with(':') { ":" } else { "" };
            let mut kept = url[..end].to_string();
            if let Some(at) = kept.find('@') {
                let scheme_end = kept.find("://").map_or(0, |i| i + 3);
                if at > scheme_end {
                    kept.replace_range(scheme_end..=at, "");
                }
            }
            let cut = if end < url.len() { "?…" } else { "" };
            format!("{before}{kept}{cut}{trail}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why vectors are unavailable, without the "embedding model unavailable" prefix that the
/// search error adds back.
fn unavailable_reason(e: Error) -> String {
    match e {
        Error::ModelUnavailable { reason } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_lose_their_secrets() {
        assert_eq!(
            redact_urls("https://user:pw@example.org/doc?token=s3cret: timed out after 1 s"),
            "https://example.org/doc?…: timed out after 1 s"
        );
        assert_eq!(
            redact_urls("/home/a/file.txt: no text found"),
            "/home/a/file.txt: no text found"
        );
    }
}
