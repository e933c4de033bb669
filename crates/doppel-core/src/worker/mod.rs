//! The worker: the one thread that writes to the database.
//!
//! It owns the write connection. Requests that change anything (queue files, delete a source,
//! cancel a job, change a setting) arrive over a channel with a reply channel; between requests
//! it claims due jobs from the durable queue, one at a time, with a single atomic statement, and
//! runs each ([`job`]). Each job's result is written in one transaction that commits last, so a
//! crash at any moment leaves either the old state or the new, never half a source. It is also
//! the only writer of vectors, through its [`VectorWriter`]; readers use [`crate::vectors`]'s
//! read side and the store's pool of read-only connections, never this thread.

mod job;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tracing::{error, info, warn};

use crate::embed::EmbedderChoice;
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::logging::redact_urls;
use crate::metrics::{Metric, Metrics};
use crate::model::*;
use crate::sandbox::ParserCommand;
use crate::settings::Settings;
use crate::store;
use crate::sync::lock;
use crate::vectors::{VectorWriter, Vectors, WriterConfig};

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
    /// Rebuilds what can be rebuilt of a damaged database (the keyword index, the indexes) and
    /// checks it again.
    Repair {
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
    /// and sends its own reply. Handled like chat writes, even between embedding batches. It
    /// is given the error instead when the write is refused.
    Apply(ApplyWrite),
}

/// The closure of a [`Command::Apply`]: given the write connection, or why it is refused.
pub(crate) type ApplyWrite = Box<dyn FnOnce(Result<&mut Connection>) + Send>;

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

/// Job control shared between the worker and the handles: events, cancel requests, shutdown.
#[derive(Default)]
pub(crate) struct Shared {
    pub events: Arc<EventBus>,
    /// Measurements waiting to be written (`metrics.rs`).
    pub metrics: Arc<Metrics>,
    /// Jobs the owner asked to cancel, noticed at the next chunk boundary.
    cancel: Mutex<HashSet<JobId>>,
    /// Set when the handle is dropped: the running job is put back in the queue.
    pub stopping: AtomicBool,
    /// Whether the queue is paused: no job is claimed and nothing embedded in the background.
    pub queue: crate::queue::QueueGate,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn cancel_requested(&self, job: JobId) -> bool {
        lock(&self.cancel).contains(&job)
    }

    /// Asks the running job `job` to stop at its next chunk boundary.
    pub(crate) fn request_cancel(&self, job: JobId) {
        lock(&self.cancel).insert(job);
    }

    fn forget_cancel(&self, job: JobId) {
        lock(&self.cancel).remove(&job);
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

pub(crate) struct Worker {
    conn: Connection,
    shared: Arc<Shared>,
    /// The write side of vectors: the embedder, the index, their upkeep.
    vectors: VectorWriter,
    settings: Settings,
    process_queue: bool,
    parser: ParserCommand,
    /// The pool of readers, held back while the write-ahead log is checkpointed.
    readers: Arc<store::ReadPool>,
    /// A delete's checkpoint found the log busy: it is tried again until it succeeds.
    wal_pending: bool,
    /// Commands, once the thread runs.
    inbox: Option<Receiver<Command>>,
    /// Commands taken from the inbox during a job, to be handled after it.
    deferred: std::collections::VecDeque<Command>,
    /// The database file, checked again after a repair.
    database: PathBuf,
    /// The check of the database started at open, until its answer is taken.
    check: Option<OpenCheck>,
    /// Why the database is damaged, when it is: nothing is written to it until it is repaired.
    damage: Option<String>,
    /// When measurements were last written.
    flushed: Instant,
}

/// Longest idle wait before the worker looks at the queue again on its own.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// How soon a checkpoint that found the write-ahead log busy is tried again, and how often
/// background work on the index is looked at (to save a rebuilt index soon after it is done).
const RETRY: Duration = Duration::from_secs(1);

/// How often a working worker writes the measurements it took.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// What the worker is started with besides its connection.
pub(crate) struct WorkerConfig {
    /// Job control shared with the handles.
    pub shared: Arc<Shared>,
    /// Vectors, shared with the handles' searches.
    pub vectors: Arc<Vectors>,
    /// The pool of read-only connections (held back during checkpoints).
    pub readers: Arc<store::ReadPool>,
    /// Where commands arrive.
    pub inbox: Receiver<Command>,
    /// Whether queued jobs run (short-lived commands and some tests leave the queue alone).
    pub process_queue: bool,
    /// How the parse sandbox is started.
    pub parser: ParserCommand,
    /// Where vectors come from and go.
    pub writer: WriterConfig,
}

impl Worker {
    /// Recovers the queue from any crash and starts the worker thread, which first loads the
    /// embedder (its index follows in the background). Until it has, readers that need vectors
    /// wait for it, and the rest of the data directory is open.
    pub(crate) fn start(mut conn: Connection, config: WorkerConfig) -> Result<JoinHandle<()>> {
        let WorkerConfig { shared, vectors, readers, inbox, process_queue, parser, writer } =
            config;
        let settings = Settings::from_stored(&store::stored_settings(&conn)?);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let requeued = store::recover(&tx, settings.max_attempts)?;
        tx.commit()?;
        if requeued > 0 {
            info!(requeued, "jobs interrupted by a previous run were queued again");
        }
        let database = writer.database.clone();
        let check = spawn_check(&database);
        shared.metrics.keep_days(settings.metrics_days);
        let vectors = VectorWriter::new(
            vectors,
            Arc::clone(&shared.events),
            Arc::clone(&shared.metrics),
            writer,
            &settings,
        );
        vectors.starting();
        let worker = Worker {
            conn,
            shared,
            vectors,
            settings,
            process_queue,
            parser,
            readers,
            wal_pending: false,
            inbox: None,
            deferred: Default::default(),
            database,
            check,
            damage: None,
            flushed: Instant::now(),
        };
        std::thread::Builder::new()
            .name("doppel-worker".into())
            .spawn(move || worker.run(inbox))
            .map_err(|e| Error::WorkerGone(format!("could not start: {e}")))
    }

    fn run(mut self, commands: Receiver<Command>) {
        self.vectors.start(&self.conn);
        self.inbox = Some(commands);
        self.serve();
        self.flush_metrics(true);
        self.vectors.stop(&self.conn);
        // The check started at open holds a connection: it stops where it is, so that nothing
        // of this Doppel still uses the database once it is closed (an unfinished check says
        // nothing).
        if let Some(check) = self.check.take() {
            if let Some(interrupt) = &check.interrupt {
                interrupt.interrupt();
            }
            drop(check.thread.join());
        }
    }

    /// Handles chat writes that arrived during a job; other commands wait for its end.
    fn serve_chat_writes(&mut self) {
        let Some(inbox) = &self.inbox else { return };
        let arrived: Vec<Command> = inbox.try_iter().collect();
        for command in arrived {
            match command {
                small @ (Command::Chat(_) | Command::Apply(_)) => self.dispatch(small),
                other => self.deferred.push_back(other),
            }
        }
    }

    fn serve(&mut self) {
        loop {
            while let Some(command) = self.deferred.pop_front() {
                self.dispatch(command);
            }
            loop {
                let Some(inbox) = &self.inbox else { return };
                match inbox.try_recv() {
                    Ok(command) => self.dispatch(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if self.shared.stopping.load(Ordering::Relaxed) {
                return;
            }
            self.vectors.poll(&self.conn);
            if self.process_queue && !self.shared.queue.paused() && self.damage().is_none() {
                match store::claim_job(&self.conn) {
                    Ok(Some(claimed)) => {
                        self.run_job(claimed);
                        self.flush_metrics(false);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => error!(error = %e, "could not claim a job"),
                }
                // Idle: give chunks that have no vector yet (a new or changed model) theirs.
                if self.vectors.backfill(&mut self.conn) {
                    continue;
                }
            }
            if self.vectors.unsaved() {
                self.vectors.save(&self.conn);
            }
            if self.wal_pending {
                self.checkpoint();
            }
            self.flush_metrics(true);
            let wait = self.idle_wait();
            let Some(inbox) = &self.inbox else { return };
            match inbox.recv_timeout(wait) {
                Ok(command) => self.dispatch(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// How long to wait for a request before the next queued job becomes due.
    fn idle_wait(&self) -> Duration {
        if self.wal_pending || self.vectors.busy() {
            return RETRY;
        }
        if !self.process_queue || self.shared.queue.paused() {
            return IDLE_WAIT;
        }
        match store::next_due(&self.conn) {
            Ok(Some(due)) => Duration::from_millis(
                (due - store::now_ms()).clamp(0, IDLE_WAIT.as_millis() as i64) as u64,
            ),
            _ => IDLE_WAIT,
        }
    }

    /// Handles one command. A panic (a bug) fails that command alone: its transaction rolls
    /// back as it unwinds, its caller is told, and the worker goes on.
    fn dispatch(&mut self, command: Command) {
        let handled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(command)));
        if handled.is_err() {
            error!("a request stopped on an internal error; it failed alone");
        }
    }

    fn handle(&mut self, command: Command) {
        let checks = matches!(command, Command::CheckIndex { .. } | Command::Repair { .. });
        if !checks && let Some(reason) = self.damage() {
            command.refuse(Error::Damaged { reason });
            return;
        }
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
            Command::CheckIndex { reply } => drop(
                reply.send(
                    store::check_keyword_index(&self.conn)
                        .and_then(|()| self.vectors.check(&self.conn)),
                ),
            ),
            Command::Repair { reply } => drop(reply.send(self.repair())),
            Command::SetEmbedder { choice, reply } => drop(reply.send(self.set_embedder(&choice))),
            Command::ReloadEmbedder { reply } => {
                self.vectors.reload(&self.conn);
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
            Command::Apply(write) => write(Ok(&mut self.conn)),
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
            ChatWrite::SetSettings { values, reply } => {
                let saved = in_tx(conn, |tx| {
                    values.iter().try_for_each(|(key, value)| store::set_setting(tx, key, value))
                });
                let transcriber_set = saved.is_ok()
                    && values
                        .iter()
                        .any(|(k, v)| k == crate::transcribe::KIND_KEY && v == "server");
                // Queued before the reply, so that the caller sees the files waiting again.
                if transcriber_set {
                    self.requeue_waiting("needs_transcriber", false);
                }
                drop(reply.send(saved));
            }
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
        let origin = store::source(&tx, source)?.origin.unwrap_or_default();
        let removed = store::delete_source(&tx, source)?;
        // A test's fault lands here, mid-transaction.
        crate::faults::panic_if_delete_armed(&origin);
        tx.commit()?;
        let database = started.elapsed();
        self.vectors.remove_committed(&removed);
        let index = started.elapsed() - database;
        self.vectors.recount_after_delete(&self.conn);
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
    /// leaves the log; a busy log is tried again after [`RETRY`] until it succeeds.
    fn checkpoint(&mut self) {
        match store::checkpoint(&self.conn, &self.readers) {
            Ok(()) => {
                self.wal_pending = false;
                self.shared.events.publish(Event::LogCheckpointed);
            }
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
        let ocr_turned_on = key == "ocr" && next.ocr == 1 && self.settings.ocr == 0;
        // Each setting applies from the moment it is saved; the graph's shape by a rebuild in
        // the background, while the index in use goes on serving.
        self.vectors.apply_setting(&self.conn, key, &next);
        self.shared.metrics.keep_days(next.metrics_days);
        self.settings = next.clone();
        if ocr_turned_on {
            self.requeue_waiting("needs_ocr", true);
        }
        Ok(next)
    }

    /// Queues again the files that waited for a setting now given: those that failed with
    /// `code`, and with `scans`, those read with scanned pages left out. A failure here is
    /// logged; the files stay as they were, and can be read again by hand.
    fn requeue_waiting(&mut self, code: &str, scans: bool) {
        let waiting = match store::waiting_for(&self.conn, code, scans) {
            Ok(waiting) => waiting,
            Err(e) => {
                warn!(error = %e, "could not find the files that waited for a setting");
                return;
            }
        };
        let mut by_twin: std::collections::BTreeMap<TwinId, Vec<PathBuf>> = Default::default();
        for (twin, path) in waiting {
            by_twin.entry(twin).or_default().push(PathBuf::from(path));
        }
        for (twin, files) in by_twin {
            match self.enqueue(twin, &files, &[]) {
                Ok(queued) => {
                    info!(files = queued.len(), code, "files queued again after a setting")
                }
                Err(e) => {
                    warn!(error = %e, "could not queue again the files that waited for a setting")
                }
            }
        }
    }

    /// Writes the measurements taken since the last time: at once when `now`, else at most
    /// once a second, so that a run of small jobs pays one transaction a second for them.
    /// The queue's depth is sampled at the same pace.
    fn flush_metrics(&mut self, now: bool) {
        let metrics = Arc::clone(&self.shared.metrics);
        if !metrics.has_pending()
            || (!now && self.flushed.elapsed() < METRICS_EVERY)
            || self.damage.is_some()
        {
            return;
        }
        self.flushed = Instant::now();
        match store::queued_jobs(&self.conn) {
            Ok(queued) => metrics.record(Metric::QueueDepth, "", queued as f64),
            Err(e) => warn!(error = %e, "could not count the queue"),
        }
        if let Err(e) = in_tx(&mut self.conn, |tx| metrics.flush(tx)) {
            warn!(error = %e, "metrics not written");
        }
    }

    /// Why the database is damaged, if it is; waits for the check started at open.
    fn damage(&mut self) -> Option<String> {
        if let Some(check) = self.check.take() {
            match check.thread.join() {
                Ok(Err(reason)) => {
                    error!(reason = %reason, "the database is damaged; nothing is written to it");
                    self.damage = Some(reason);
                }
                Ok(Ok(())) => {}
                Err(_) => warn!("the database check stopped on an internal error"),
            }
        }
        self.damage.clone()
    }

    /// Rebuilds the keyword index and every index from their tables, then checks the database
    /// again: writing resumes only if it is whole.
    fn repair(&mut self) -> Result<()> {
        self.damage();
        let rebuilt = self
            .conn
            .execute_batch("INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild'); REINDEX;");
        if let Err(e) = &rebuilt {
            warn!(error = %e, "the database's indexes could not be rebuilt");
        }
        let verdict = store::open_reader(&self.database)
            .map_err(|e| e.to_string())
            .and_then(|conn| store::quick_check(&conn));
        match verdict {
            Ok(()) => {
                if self.damage.take().is_some() {
                    info!("the database was repaired");
                }
                Ok(())
            }
            Err(reason) => {
                self.damage = Some(reason.clone());
                Err(Error::Damaged {
                    reason: format!("{reason}; rebuilding its indexes did not help"),
                })
            }
        }
    }

    /// Saves the embedder choice and switches to it.
    fn set_embedder(&mut self, choice: &EmbedderChoice) -> Result<()> {
        store::set_embedder_choice(&self.conn, choice)?;
        info!(embedder = %redact_urls(&format!("{choice:?}")), "embedder changed");
        self.vectors.reload(&self.conn);
        Ok(())
    }
}

/// The database's check at open, running on a thread of its own.
struct OpenCheck {
    thread: JoinHandle<std::result::Result<(), String>>,
    /// Stops the check's query (`None` when its connection could not be opened).
    interrupt: Option<rusqlite::InterruptHandle>,
}

/// Checks the database at open on a thread of its own, so that opening never waits for it: it
/// reads every page of a large file. The worker takes its answer before its first write.
fn spawn_check(database: &std::path::Path) -> Option<OpenCheck> {
    let conn = store::open_reader(database);
    let interrupt = conn.as_ref().ok().map(Connection::get_interrupt_handle);
    let check = move || store::quick_check(&conn.map_err(|e| e.to_string())?);
    match std::thread::Builder::new().name("doppel-check".into()).spawn(check) {
        Ok(thread) => Some(OpenCheck { thread, interrupt }),
        Err(e) => {
            warn!(error = %e, "the database could not be checked at open");
            None
        }
    }
}

impl Command {
    /// Answers the command with `error` instead of doing it.
    fn refuse(self, error: Error) {
        match self {
            Command::Ingest { reply, .. } => drop(reply.send(Err(error))),
            Command::AddText { reply, .. } => drop(reply.send(Err(error))),
            Command::Delete { reply, .. }
            | Command::CheckIndex { reply }
            | Command::Repair { reply }
            | Command::SetEmbedder { reply, .. }
            | Command::ReloadEmbedder { reply } => drop(reply.send(Err(error))),
            Command::Cancel { reply, .. } => drop(reply.send(Err(error))),
            Command::SetSetting { reply, .. } => drop(reply.send(Err(error))),
            Command::CreateTwin { reply, .. } | Command::RenameTwin { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            Command::WatchFolder { reply, .. } | Command::UnwatchFolder { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            Command::Chat(write) => match write {
                ChatWrite::BeginAnswer { reply, .. } => drop(reply.send(Err(error))),
                ChatWrite::RecordContext { reply, .. }
                | ChatWrite::FinishAnswer { reply, .. }
                | ChatWrite::Unverify { reply, .. }
                | ChatWrite::SetPersona { reply, .. }
                | ChatWrite::SetSettings { reply, .. } => drop(reply.send(Err(error))),
                ChatWrite::Verify { reply, .. } => drop(reply.send(Err(error))),
                ChatWrite::SaveProgress { .. } => {}
            },
            Command::Apply(write) => write(Err(error)),
        }
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
    // A reply dropped unanswered: the command panicked (the worker goes on) or the worker
    // stopped; a next command tells which.
    answer.recv().map_err(|_| Error::Internal { during: "this request" })?
}
