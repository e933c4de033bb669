//! One ingestion job, read top to bottom: read the file (or fetch the page, or take the pasted
//! text), settle content that is already known, parse (complex formats in the sandbox), chunk,
//! embed what is new, and store it all in one transaction that commits last; then record how
//! the job ended, on the job and its source.
//!
//! Cancellation and shutdown are noticed at chunk and batch boundaries. A job never leaves half
//! a source behind: a failure or a panic rolls its transaction back and takes back the index
//! entries it added ahead of the commit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, TransactionBehavior};
use tracing::{error, info, info_span, warn};

use super::Worker;
use crate::embed::to_blob;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::fetch;
use crate::ingest::chunk::{ChunkConfig, chunk};
use crate::ingest::{
    Document, FileStat, Format, clipped, parse, parse_text, parse_web_page, read_file, sha256_hex,
};
use crate::logging::redact_urls;
use crate::metrics::{self, Metric};
use crate::model::*;
use crate::sandbox;
use crate::settings::{DEFAULT_OCR_LANGUAGES, OCR_LANGUAGES};
use crate::store::{self, NewChunk, NewVectors, SourceFacts};
use crate::vectors::EMBED_BATCH;

/// Further tries at recording a job's end, and the delay before the first (doubled each time).
const RECORD_RETRIES: u32 = 4;
const RECORD_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The most characters of a document's title that are kept (then "…").
const TITLE_CHARS: usize = 300;

/// How a job's run ended, when it did not fail.
struct Finished {
    outcome: JobOutcome,
    source: Option<SourceId>,
    chunks: u64,
}

impl Worker {
    /// Runs one claimed job and records how it ended.
    pub(super) fn run_job(&mut self, claimed: store::Claimed) {
        let job = claimed.job;
        let span = info_span!("job", id = job.id, kind = job.kind.as_str(), attempt = job.attempts);
        let _entered = span.enter();
        info!("job started");
        let started = std::time::Instant::now();
        let metrics = Arc::clone(&self.shared.metrics);
        metrics::reset_peak_memory();
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
        if !(stopping && matches!(result, Err(Error::Cancelled))) {
            let format = format_label(&job);
            metrics.record_since(Metric::JobTime, format, started);
            if let Ok(finished) = &result {
                metrics.record(Metric::JobPassages, format, finished.chunks as f64);
            }
            if let Some(peak) = metrics::peak_memory_mib() {
                metrics.record(Metric::JobPeakMemory, job.kind.as_str(), peak);
            }
        }
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
                    // Told, so that no one waits for an end that the database does not hold.
                    let unrecorded = Error::not_recorded(job.id, &e.to_string());
                    self.shared.events.publish(Event::JobFailed {
                        job: job.id,
                        source: job.source_id,
                        code: unrecorded.code().to_string(),
                        message: unrecorded.to_string(),
                        retry_at: None,
                    });
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
        self.shared.metrics.record(Metric::JobCancelled, "", 1.0);
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
        self.shared.metrics.record(Metric::JobFailed, e.code(), 1.0);
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
                let size = bytes.len() as u64;
                let doc = match format {
                    Some(Format::Audio(media)) => self.transcribe(job, &path, media, bytes)?,
                    other => self.parse_bytes(
                        job,
                        &bytes,
                        other.or_else(|| Format::sniff(&bytes)),
                        None,
                    )?,
                };
                (size, hash, doc, file)
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
        // Pasted text keeps the title it was given; files and pages take their document's own.
        let title = match (job.kind, &doc.title) {
            (JobKind::IngestFile | JobKind::IngestUrl, Some(title)) => title.clone(),
            _ => source.title.clone(),
        };
        // A document may claim a whole page as its title; the window shows a line of it.
        let title = clipped(&title, TITLE_CHARS);
        let mut chunks = chunk(&doc, config, checkpoint)?;
        // A vector is keyed by what the model reads: the title and the passage's text.
        for chunk in &mut chunks {
            chunk.text_hash = store::embedding_key(&title, &chunk.text);
        }
        let (new_vectors, all_vectors) = self.embed_chunks(job, &chunks, &title)?;
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
        // Taken back out if the job fails from here on, by an error or a panic.
        let provisional = self.vectors.add_ahead(&added);
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
        self.vectors.remove_committed(&removed);
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
                // Read only when text recognition is on: most complex files need no languages.
                let languages = if self.settings.ocr == 1 {
                    store::stored_settings(&self.conn)?.remove(OCR_LANGUAGES)
                } else {
                    None
                }
                .unwrap_or_else(|| DEFAULT_OCR_LANGUAGES.to_string());
                sandbox::parse(
                    &self.parser,
                    self.settings.child_limits(),
                    &self.settings.limits(&languages),
                    complex,
                    bytes,
                    &|| shared.checkpoint(job.id).is_err(),
                    &|done, total| {
                        shared.events.publish(Event::JobPages {
                            job: job.id,
                            done: u64::from(done),
                            total: u64::from(total),
                        })
                    },
                )
            }
            None => parse(bytes, format, charset),
        }
    }

    /// The transcript of a recording, from the speech-to-text server the owner chose; without
    /// one the file waits (`needs_transcriber`) and is read again when one is set.
    fn transcribe(
        &self,
        job: &Job,
        path: &std::path::Path,
        media: &'static str,
        bytes: Vec<u8>,
    ) -> Result<Document> {
        let transcriber = crate::transcribe::configured(&self.conn, &self.settings)?
            .ok_or(Error::NeedsTranscriber)?;
        let shared = &self.shared;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        shared.events.publish(Event::JobPages { job: job.id, done: 0, total: 1 });
        let mut doc =
            transcriber.transcribe(&name, media, bytes, &|| shared.checkpoint(job.id).is_err())?;
        shared.events.publish(Event::JobPages { job: job.id, done: 1, total: 1 });
        doc.media_type = media;
        Ok(doc)
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

    /// Vectors for a source's chunks, each embedded with `title`: new ones embedded (in
    /// batches, cancellable, with progress), known ones read back. Returns what to store and
    /// every chunk's vector.
    fn embed_chunks(
        &mut self,
        job: &Job,
        chunks: &[NewChunk],
        title: &str,
    ) -> Result<(NewVectors, HashMap<String, Vec<f32>>)> {
        let Some(model) = self.vectors.active_model(&self.conn)? else {
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
            let texts: Vec<String> =
                batch.iter().map(|c| store::embedded_text(title, &c.text)).collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = self.vectors.embed(&texts)?;
            for (chunk, vector) in batch.iter().zip(vectors) {
                blobs.push((chunk.text_hash.clone(), to_blob(&vector)));
                all.insert(chunk.text_hash.clone(), vector);
            }
            let done = ((batch_number + 1) * EMBED_BATCH).min(todo.len()) as u64;
            self.shared.events.publish(Event::JobEmbedding { job: job.id, done, total });
        }
        Ok((NewVectors { model: Some(model), blobs }, all))
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

/// A job's format for metrics: what its file name says, `web` for a page, `text` for pasted
/// text; never the name itself.
fn format_label(job: &Job) -> &'static str {
    match job.kind {
        JobKind::IngestFile => match Format::from_path(std::path::Path::new(&job.origin)) {
            Ok(Some(format)) => format.label(),
            Ok(None) => "other",
            Err(_) => "unsupported",
        },
        JobKind::IngestUrl => "web",
        _ => "text",
    }
}
