//! The worker: the one thread that writes to the database.
//!
//! It owns the write connection. Requests that change anything (queue files, delete a source,
//! cancel a job, change a setting) arrive over a channel with a reply channel; between requests
//! it claims due jobs from the durable queue, one at a time, with a single atomic statement.
//! Each job's result is written in one transaction that commits last, so a crash at any moment
//! leaves either the old state or the new, never half a source. Cancellation and shutdown are
//! noticed at chunk boundaries.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use tracing::{error, info, info_span, warn};

use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::fetch;
use crate::ingest::chunk::{ChunkConfig, chunk};
use crate::ingest::{Document, Format, parse, parse_text, parse_web_page, read_file, sha256_hex};
use crate::model::*;
use crate::sandbox::{self, ParserCommand};
use crate::settings::Settings;
use crate::store::{self, SourceFacts};

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

/// State shared between the worker and the handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub events: EventBus,
    /// Jobs the owner asked to cancel, noticed at the next chunk boundary.
    pub cancel: Mutex<HashSet<JobId>>,
    /// Set when the handle is dropped: the running job is put back in the queue.
    pub stopping: AtomicBool,
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
}

/// Longest idle wait before the worker looks at the queue again on its own.
const IDLE_WAIT: Duration = Duration::from_secs(60);

impl Worker {
    /// Recovers the queue from any crash and starts the worker thread.
    pub(crate) fn start(
        mut conn: Connection,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        process_queue: bool,
        parser: ParserCommand,
    ) -> Result<JoinHandle<()>> {
        let settings = Settings::from_stored(&store::stored_settings(&conn)?);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let requeued = store::recover(&tx, settings.max_attempts)?;
        tx.commit()?;
        if requeued > 0 {
            info!(requeued, "jobs interrupted by a previous run were queued again");
        }
        let worker = Worker { conn, shared, settings, process_queue, parser };
        std::thread::Builder::new()
            .name("doppel-worker".into())
            .spawn(move || worker.run(commands))
            .map_err(|e| Error::WorkerGone(format!("could not start: {e}")))
    }

    fn run(mut self, commands: Receiver<Command>) {
        loop {
            loop {
                match commands.try_recv() {
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
            }
            match commands.recv_timeout(self.idle_wait()) {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// How long to wait for a request before the next queued job becomes due.
    fn idle_wait(&self) -> Duration {
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
                drop(reply.send(store::check_keyword_index(&self.conn)))
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
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store::delete_source(&tx, source)?;
        tx.commit()?;
        if let Err(e) = store::checkpoint(&self.conn) {
            warn!(error = %e, "write-ahead log checkpoint after delete postponed");
        }
        info!(source, "source deleted");
        self.shared.events.publish(Event::SourceDeleted { source });
        Ok(())
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
        let result = self.ingest(&job, claimed.payload_text);
        let stopping = self.shared.stopping.load(Ordering::Relaxed);
        let recorded = match result {
            Ok(finished) => self.record_done(&job, finished),
            Err(Error::Cancelled) if stopping => {
                info!("job interrupted by shutdown; it stays queued");
                store::requeue_interrupted(&self.conn, &job)
            }
            Err(Error::Cancelled) => self.record_cancelled(&job),
            Err(e) => self.record_failure(&job, &e),
        };
        if let Err(e) = recorded {
            // The job row stays "running"; the next start puts it back in the queue.
            error!(error = %e, "could not record the end of a job");
        }
        self.shared.forget_cancel(job.id);
    }

    fn record_done(&self, job: &Job, finished: Finished) -> Result<()> {
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
        warn!(code = e.code(), error = %e, will_retry = retry_at.is_some(), "job failed");
        let message = e.to_string();
        store::store_failure(&self.conn, job, e.code(), &message, retry_at)?;
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

        let (byte_size, hash, doc) = match job.kind {
            JobKind::IngestFile => {
                let path = PathBuf::from(&job.origin);
                let format = Format::from_path(&path)?;
                let bytes = read_file(&path, self.settings.max_file_bytes())?;
                let hash = sha256_hex(&bytes);
                if let Some(finished) = self.settle_known_content(job, &source, &hash)? {
                    return Ok(finished);
                }
                checkpoint()?;
                let doc =
                    self.parse_bytes(job, &bytes, format.or_else(|| Format::sniff(&bytes)), None)?;
                (bytes.len() as u64, hash, doc)
            }
            JobKind::IngestUrl => {
                let fetched = fetch::fetch(&job.origin, self.settings.fetch_limits())?;
                let hash = sha256_hex(&fetched.bytes);
                if let Some(finished) = self.settle_known_content(job, &source, &hash)? {
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
                (fetched.bytes.len() as u64, hash, doc)
            }
            JobKind::IngestText => {
                let text = payload
                    .ok_or_else(|| Error::InvalidInput("the pasted text is missing".into()))?;
                let hash = sha256_hex(text.as_bytes());
                if let Some(finished) = self.settle_known_content(job, &source, &hash)? {
                    return Ok(finished);
                }
                (text.len() as u64, hash, parse_text(&text, Format::Markdown)?)
            }
        };
        let config = ChunkConfig {
            target: self.settings.chunk_tokens,
            overlap: self.settings.chunk_overlap,
        };
        let chunks = chunk(&doc, config, checkpoint)?;
        // Pasted text keeps the title it was given; files and pages take their document's own.
        let title = match (job.kind, &doc.title) {
            (JobKind::IngestFile | JobKind::IngestUrl, Some(title)) => title.clone(),
            _ => source.title.clone(),
        };
        let note = note_of(&doc.warnings);
        let facts = SourceFacts {
            title: &title,
            media_type: doc.media_type,
            byte_size,
            content_hash: &hash,
            note: note.as_deref(),
        };
        let total = chunks.len() as u64;
        let every = (total / 100).max(1);
        let events = &self.shared.events;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store::store_ingested(&tx, job.id, source_id, &facts, &chunks, |done| {
            let done = done as u64;
            if done.is_multiple_of(every) {
                events.publish(Event::JobProgress { job: job.id, done, total });
            }
            checkpoint()
        })?;
        tx.commit()?;
        events.publish(Event::JobProgress { job: job.id, done: total, total });
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
                store::store_unchanged(&tx, job.id, source.id)?;
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
