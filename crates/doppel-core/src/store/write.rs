//! Queries that write. Only the worker thread calls these, on the one write connection.
//!
//! Each function that changes more than one row takes a `Transaction`, so the caller decides
//! where the unit of work ends; the transaction commits last and rolls back when dropped.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::*;
use crate::ingest::FileStat;

/// Queues a file or a URL, creating its source row unless the origin already is a source of
/// the twin.
pub(crate) fn enqueue_origin(
    tx: &Transaction,
    twin: TwinId,
    kind: SourceKind,
    origin: &str,
    title: &str,
) -> Result<(SourceId, JobId, EnqueueStatus)> {
    let now = now_ms();
    let source_id = match source_by_origin(tx, twin, origin)? {
        Some(source) => source.id,
        None => tx.query_row(
            "INSERT INTO sources (twin_id, kind, origin, title, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5) RETURNING id",
            params![twin, kind.as_str(), origin, title, now],
            |r| r.get(0),
        )?,
    };
    let job_kind = if kind == SourceKind::Url { JobKind::IngestUrl } else { JobKind::IngestFile };
    insert_job(tx, twin, job_kind, source_id, origin, None, now)
        .map(|(job, status)| (source_id, job, status))
}

/// Queues pasted text as a new source; its text waits in the job row until the job runs.
pub(crate) fn enqueue_text(
    tx: &Transaction,
    twin: TwinId,
    title: &str,
    text: &str,
) -> Result<(SourceId, JobId)> {
    let now = now_ms();
    let source_id: SourceId = tx.query_row(
        "INSERT INTO sources (twin_id, kind, title, state, created_at, updated_at)
         VALUES (?1, 'text', ?2, 'queued', ?3, ?3) RETURNING id",
        params![twin, title, now],
        |r| r.get(0),
    )?;
    let (job, _) = insert_job(tx, twin, JobKind::IngestText, source_id, title, Some(text), now)?;
    Ok((source_id, job))
}

fn insert_job(
    tx: &Transaction,
    twin: TwinId,
    kind: JobKind,
    source: SourceId,
    origin: &str,
    payload: Option<&str>,
    now: Millis,
) -> Result<(JobId, EnqueueStatus)> {
    // The partial unique index allows one queued job per source: a second request while one
    // waits changes nothing, in one statement, with no check-then-act.
    let inserted: Option<JobId> = tx
        .query_row(
            "INSERT INTO jobs (twin_id, kind, source_id, origin, payload_text, state,
                               next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?6)
             ON CONFLICT (source_id) WHERE state = 'queued' DO NOTHING
             RETURNING id",
            params![twin, kind.as_str(), source, origin, payload, now],
            |r| r.get(0),
        )
        .optional()?;
    match inserted {
        Some(job) => {
            tx.execute(
                "UPDATE sources SET state = 'queued', updated_at = ?2
                 WHERE id = ?1 AND state IN ('failed', 'ready')",
                params![source, now],
            )?;
            Ok((job, EnqueueStatus::Queued))
        }
        None => {
            let job = tx.query_row(
                "SELECT id FROM jobs WHERE source_id = ?1 AND state = 'queued'",
                [source],
                |r| r.get(0),
            )?;
            Ok((job, EnqueueStatus::AlreadyQueued))
        }
    }
}

/// A claimed job with what it needs to run.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub job: Job,
    pub payload_text: Option<String>,
}

/// Claims the next due job in one atomic statement, counting the attempt.
pub(crate) fn claim_job(conn: &Connection) -> Result<Option<Claimed>> {
    let now = now_ms();
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?1
         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT 1)
         RETURNING {JOB_COLUMNS}, payload_text"
    );
    let claimed = conn
        .query_row(&sql, [now], |row| {
            Ok(Claimed { job: job_from_row(row)?, payload_text: row.get(14)? })
        })
        .optional()?;
    Ok(claimed)
}

/// When the earliest queued job becomes due, if any is queued.
pub(crate) fn next_due(conn: &Connection) -> Result<Option<Millis>> {
    Ok(conn.query_row("SELECT min(next_attempt_at) FROM jobs WHERE state = 'queued'", [], |r| {
        r.get(0)
    })?)
}

pub(crate) fn set_source_state(
    conn: &Connection,
    source: SourceId,
    state: SourceState,
) -> Result<()> {
    conn.execute(
        "UPDATE sources SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![source, state.as_str(), now_ms()],
    )?;
    Ok(())
}

/// What a finished parse tells the store about its source.
#[derive(Debug)]
pub(crate) struct SourceFacts<'a> {
    pub title: &'a str,
    /// A file's size and modification time just before it was read.
    pub file: Option<FileStat>,
    pub media_type: &'a str,
    pub byte_size: u64,
    pub content_hash: &'a str,
    /// What was left out, shown with the ready source (or `None`).
    pub note: Option<&'a str>,
}

/// A chunk about to be stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewChunk {
    pub text: String,
    pub location: Location,
    pub token_count: u32,
    /// The key of its vector: the hash of its text as embedded (`embedding_key`), set by the
    /// job once the title is known.
    pub text_hash: String,
}

/// New vectors to store with a source's chunks.
#[derive(Debug, Default)]
pub(crate) struct NewVectors {
    pub model: Option<i64>,
    /// `(text hash, little-endian f32 blob)` pairs not stored yet.
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// Replaces a source's chunks (with their new vectors) and makes it ready, inside `tx`. Returns
/// the ids of the chunks removed and of those inserted, in order. The caller finishes the job
/// ([`finish_job`]): in `tx` for a new source, after the write-ahead log has lost the removed
/// passages for an edit.
///
/// `step` runs before each chunk is written; it reports progress and may stop the work by
/// returning an error (cancellation), in which case the caller drops `tx` and nothing is kept.
pub(crate) fn store_ingested(
    tx: &Transaction,
    source: SourceId,
    facts: &SourceFacts,
    chunks: &[NewChunk],
    vectors: &NewVectors,
    mut step: impl FnMut(usize) -> Result<()>,
) -> Result<(Vec<ChunkId>, Vec<ChunkId>)> {
    let removed = chunk_ids(tx, source)?;
    // The new passages take ids above every id in use, the old passages' included. SQLite
    // would give a deleted top id to the next row, and the worker adds the new vectors to the
    // index before it removes the old ids: a reused id would lose its new vector.
    let first: ChunkId =
        tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM chunks", [], |r| r.get(0))?;
    // What the edit took out is forgotten: answers and citations lose its words. Citations of
    // passages that are still there keep their quote; the old rows are gone.
    let new_texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    super::chat::forget_edited(tx, source, &new_texts)?;
    tx.execute("UPDATE citations SET chunk_id = NULL WHERE source_id = ?1", [source])?;
    let old_hashes = text_hashes(tx, source)?;
    delete_passages(tx, source, removed.len())?;
    let mut inserted = Vec::with_capacity(chunks.len());
    let mut insert = tx.prepare_cached(
        "INSERT INTO chunks (id, source_id, ordinal, text, location, line_start, line_end,
                             token_count, text_hash, page)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (ordinal, chunk) in chunks.iter().enumerate() {
        step(ordinal)?;
        let id = first + ordinal as ChunkId;
        insert.execute(params![
            id,
            source,
            ordinal as i64,
            chunk.text,
            chunk.location.label,
            chunk.location.line_start,
            chunk.location.line_end,
            chunk.token_count,
            chunk.text_hash,
            chunk.location.page,
        ])?;
        inserted.push(id);
    }
    if let Some(model) = vectors.model {
        insert_embeddings(tx, model, &vectors.blobs)?;
    }
    delete_orphan_embeddings(tx, &old_hashes)?;
    bump_generations(tx)?;
    let now = now_ms();
    tx.execute(
        "UPDATE sources SET title = ?2, media_type = ?3, byte_size = ?4, content_hash = ?5,
                state = 'ready', error = ?8, chunk_count = ?6, updated_at = ?7,
                file_size = ?9, file_mtime_ns = ?10
         WHERE id = ?1",
        params![
            source,
            facts.title,
            facts.media_type,
            facts.byte_size,
            facts.content_hash,
            chunks.len() as i64,
            now,
            facts.note,
            facts.file.map(|f| f.size),
            facts.file.map(|f| f.mtime_ns),
        ],
    )?;
    Ok((removed, inserted))
}

/// Marks a job done with `outcome`, clearing any payload it carried.
pub(crate) fn finish_job(
    conn: &Connection,
    job: JobId,
    outcome: JobOutcome,
    source: Option<SourceId>,
    duplicate_of: Option<SourceId>,
) -> Result<()> {
    conn.execute(
        "UPDATE jobs SET state = 'done', outcome = ?2, source_id = ?3, duplicate_of = ?4,
                payload_text = NULL, last_error = NULL, last_error_code = NULL, updated_at = ?5
         WHERE id = ?1",
        params![job, outcome.as_str(), source, duplicate_of, now_ms()],
    )?;
    Ok(())
}

/// Records that a source's content is unchanged: it goes back to ready as it was, remembering
/// the file's size and time as they are now (a file touched but not changed).
pub(crate) fn store_unchanged(
    tx: &Transaction,
    job: JobId,
    source: SourceId,
    file: Option<FileStat>,
) -> Result<()> {
    tx.execute(
        "UPDATE sources SET state = 'ready', error = NULL, updated_at = ?2 WHERE id = ?1",
        params![source, now_ms()],
    )?;
    if let Some(file) = file {
        note_file(tx, source, file)?;
    }
    finish_job(tx, job, JobOutcome::Unchanged, Some(source), None)
}

/// Remembers the size and modification time a source's file had when it was read.
pub(crate) fn note_file(conn: &Connection, source: SourceId, file: FileStat) -> Result<()> {
    conn.execute(
        "UPDATE sources SET file_size = ?2, file_mtime_ns = ?3 WHERE id = ?1",
        params![source, file.size, file.mtime_ns],
    )?;
    Ok(())
}

/// The longest name of a twin, in characters.
pub(crate) const TWIN_NAME_MAX: usize = 100;

/// A twin's name as it will be stored: trimmed, 1 to [`TWIN_NAME_MAX`] characters, no control
/// characters, and no other twin's name (compared without case) but `except`'s own.
fn twin_name(conn: &Connection, name: &str, except: Option<TwinId>) -> Result<String> {
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 {
        return Err(Error::InvalidInput("a twin needs a name".into()));
    }
    if length > TWIN_NAME_MAX {
        return Err(Error::InvalidInput(format!(
            "a twin's name is at most {TWIN_NAME_MAX} characters (this one has {length})"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidInput("a twin's name cannot hold control characters".into()));
    }
    let taken = twins(conn)?
        .into_iter()
        .any(|t| Some(t.id) != except && t.name.to_lowercase() == name.to_lowercase());
    if taken {
        return Err(Error::AlreadyExists { what: "twin", name: name.to_string() });
    }
    Ok(name.to_string())
}

/// Creates a twin with a validated, unique name.
pub(crate) fn create_twin(tx: &Transaction, name: &str) -> Result<Twin> {
    let name = twin_name(tx, name, None)?;
    let id = tx.query_row(
        "INSERT INTO twins (name, created_at) VALUES (?1, ?2) RETURNING id",
        params![name, now_ms()],
        |r| r.get(0),
    )?;
    twin(tx, id)
}

/// Renames a twin; the new name is validated and unique.
pub(crate) fn rename_twin(tx: &Transaction, id: TwinId, name: &str) -> Result<Twin> {
    twin(tx, id)?;
    let name = twin_name(tx, name, Some(id))?;
    tx.execute("UPDATE twins SET name = ?2 WHERE id = ?1", params![id, name])?;
    twin(tx, id)
}

/// Watches a folder for a twin; a folder it already watches is returned as it is.
pub(crate) fn watch_folder(tx: &Transaction, twin_id: TwinId, path: &str) -> Result<WatchedFolder> {
    twin(tx, twin_id)?;
    tx.execute(
        "INSERT INTO watched_folders (twin_id, path, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (twin_id, path) DO NOTHING",
        params![twin_id, path, now_ms()],
    )?;
    Ok(tx.query_row(
        "SELECT id, twin_id, path, created_at FROM watched_folders WHERE twin_id = ?1 AND path = ?2",
        params![twin_id, path],
        watched_folder_from_row,
    )?)
}

/// Stops watching a folder; returns it as it was.
pub(crate) fn unwatch_folder(conn: &Connection, id: FolderId) -> Result<WatchedFolder> {
    conn.query_row(
        "DELETE FROM watched_folders WHERE id = ?1 RETURNING id, twin_id, path, created_at",
        [id],
        watched_folder_from_row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound { what: "watched folder", id: id.to_string() })
}

/// Records that a source's content is already held by `existing`: the job points there and the
/// source that would have duplicated it is forgotten.
pub(crate) fn store_duplicate(
    tx: &Transaction,
    job: JobId,
    source: SourceId,
    existing: SourceId,
) -> Result<()> {
    finish_job(tx, job, JobOutcome::AlreadyPresent, Some(existing), Some(existing))?;
    delete_source(tx, source).map(drop)
}

/// Records a failed attempt. With `retry_at` the job waits to be tried again; without, it has
/// failed for good. A source that was ready before keeps its last good content and says why the
/// update failed; a new source shows the failure.
pub(crate) fn store_failure(
    conn: &Connection,
    job: &Job,
    code: &str,
    message: &str,
    retry_at: Option<Millis>,
) -> Result<()> {
    let now = now_ms();
    let retry = match retry_at {
        // Another request for the same source may have queued a job meanwhile; that one wins.
        Some(at) => conn.execute(
            "UPDATE jobs SET state = 'queued', next_attempt_at = ?2, last_error = ?3,
                    last_error_code = ?4, updated_at = ?5
             WHERE id = ?1 AND NOT EXISTS
                 (SELECT 1 FROM jobs other WHERE other.source_id = jobs.source_id AND other.state = 'queued')",
            params![job.id, at, message, code, now],
        )? == 1,
        None => false,
    };
    if !retry {
        conn.execute(
            "UPDATE jobs SET state = 'failed', last_error = ?2, last_error_code = ?3,
                    payload_text = NULL, updated_at = ?4
             WHERE id = ?1",
            params![job.id, message, code, now],
        )?;
    }
    let Some(source) = job.source_id else {
        return Ok(());
    };
    let (fresh, ready) = if retry {
        (format!("retrying after: {message}"), format!("update retrying after: {message}"))
    } else {
        (message.to_string(), format!("update failed: {message}"))
    };
    let state = if retry { "queued" } else { "failed" };
    conn.execute(
        "UPDATE sources SET
             state = CASE WHEN content_hash IS NULL THEN ?2 ELSE 'ready' END,
             error = CASE WHEN content_hash IS NULL THEN ?3 ELSE ?4 END,
             updated_at = ?5
         WHERE id = ?1",
        params![source, state, fresh, ready, now],
    )?;
    Ok(())
}

/// Ends a job the owner cancelled. A source that never became ready is forgotten; one that was
/// ready before goes back to ready as it was.
pub(crate) fn store_cancelled(tx: &Transaction, job: &Job) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET state = 'cancelled', payload_text = NULL, updated_at = ?2 WHERE id = ?1",
        params![job.id, now_ms()],
    )?;
    let Some(source) = job.source_id else {
        return Ok(());
    };
    let fresh: Option<bool> = tx
        .query_row("SELECT content_hash IS NULL FROM sources WHERE id = ?1", [source], |r| r.get(0))
        .optional()?;
    match fresh {
        Some(true) => {
            tx.execute("UPDATE jobs SET source_id = NULL WHERE id = ?1", [job.id])?;
            delete_source(tx, source).map(drop)
        }
        Some(false) => set_source_state(tx, source, SourceState::Ready),
        None => Ok(()),
    }
}

/// Puts a job interrupted by shutdown back in the queue; the interrupted attempt does not count.
pub(crate) fn requeue_interrupted(conn: &Connection, job: &Job) -> Result<()> {
    let now = now_ms();
    let requeued = conn.execute(
        "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0), next_attempt_at = ?2, updated_at = ?2
         WHERE id = ?1 AND NOT EXISTS
             (SELECT 1 FROM jobs other WHERE other.source_id = jobs.source_id AND other.state = 'queued')",
        params![job.id, now],
    )?;
    if requeued == 0 {
        conn.execute(
            "UPDATE jobs SET state = 'cancelled', last_error = 'superseded by a newer request',
                    payload_text = NULL, updated_at = ?2 WHERE id = ?1",
            params![job.id, now],
        )?;
    }
    if let Some(source) = job.source_id {
        conn.execute(
            "UPDATE sources SET state = CASE WHEN content_hash IS NULL THEN 'queued' ELSE 'ready' END,
                    updated_at = ?2
             WHERE id = ?1 AND state = 'processing'",
            params![source, now],
        )?;
    }
    Ok(())
}

/// Deletes a source with its chunks (and so its keyword-index entries), the vectors no other
/// chunk shares, and its jobs. Returns the ids of the chunks removed.
pub(crate) fn delete_source(tx: &Transaction, source: SourceId) -> Result<Vec<ChunkId>> {
    let removed = chunk_ids(tx, source)?;
    // Answers that used it keep their citations' numbers, but none of its words.
    super::chat::forget_source(tx, source)?;
    // A citation then says "source deleted", and keeps nothing the document said: its title
    // may be a heading or an e-mail's subject, its location a heading path.
    tx.execute(
        "UPDATE citations SET quote = NULL, chunk_id = NULL, source_title = '', location = ''
         WHERE source_id = ?1",
        [source],
    )?;
    let hashes = text_hashes(tx, source)?;
    delete_passages(tx, source, removed.len())?;
    delete_orphan_embeddings(tx, &hashes)?;
    bump_generations(tx)?;
    tx.execute("DELETE FROM jobs WHERE source_id = ?1 OR duplicate_of = ?1", [source])?;
    let deleted = tx.execute("DELETE FROM sources WHERE id = ?1", [source])?;
    if deleted == 0 {
        return Err(Error::NotFound { what: "source", id: source.to_string() });
    }
    Ok(removed)
}

/// A delete of at least one passage in this many rewrites the keyword index whole instead of
/// taking each word out where it lies. Measured at 100k passages (BENCHMARKS.md): FTS5's
/// secure delete costs about 1 ms per passage (more when the index has many segments), a whole
/// rewrite ("optimize") about 4 µs per passage held.
const REWRITE_SHARE: i64 = 200;

/// Deletes a source's `count` passages so that no word of theirs stays in the keyword index,
/// whichever way costs less: FTS5's secure delete (each word's entry taken out of its page,
/// the index's standing setting), or, for a large share of the store, plain deletes followed by
/// a rewrite of the index into one segment, which leaves the deleted entries behind (its old
/// pages are freed, and `secure_delete` zeroes them). Both within the caller's transaction:
/// a rollback restores the index and its secure-delete setting.
fn delete_passages(tx: &Transaction, source: SourceId, count: usize) -> Result<()> {
    // Whether the store holds more than `REWRITE_SHARE` times `count` passages, counted no
    // further than that: the choice costs in proportion to the delete, not to the store.
    let enough = (count as i64).saturating_mul(REWRITE_SHARE).saturating_add(1);
    let held: i64 =
        tx.query_row("SELECT count(*) FROM (SELECT 1 FROM chunks LIMIT ?1)", [enough], |r| {
            r.get(0)
        })?;
    if held >= enough {
        tx.execute("DELETE FROM chunks WHERE source_id = ?1", [source])?;
        return Ok(());
    }
    tx.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('secure-delete', 0)", [])?;
    tx.execute("DELETE FROM chunks WHERE source_id = ?1", [source])?;
    tx.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('optimize')", [])?;
    tx.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('secure-delete', 1)", [])?;
    Ok(())
}

/// Cancels a job that is still queued. Returns the job as it is afterwards.
pub(crate) fn cancel_queued(tx: &Transaction, id: JobId) -> Result<Job> {
    let job = super::job(tx, id)?;
    if job.state == JobState::Queued {
        store_cancelled(tx, &job)?;
    }
    super::job(tx, id)
}

/// Makes the queue consistent after a process died: jobs it left running are queued again (the
/// attempt was counted when they were claimed) or, out of attempts, failed; no source stays
/// "processing".
pub(crate) fn recover(tx: &Transaction, max_attempts: u32) -> Result<usize> {
    let now = now_ms();
    tx.execute(
        "UPDATE jobs SET state = 'cancelled', last_error = 'superseded by a newer request',
                payload_text = NULL, updated_at = ?1
         WHERE state = 'running' AND source_id IN
             (SELECT source_id FROM jobs WHERE state = 'queued' AND source_id IS NOT NULL)",
        [now],
    )?;
    // An answer that was streaming when the process died was abandoned: a cancel.
    tx.execute("UPDATE messages SET state = 'cancelled' WHERE state = 'streaming'", [])?;
    tx.execute(
        "UPDATE jobs SET state = 'failed', last_error_code = 'interrupted',
                last_error = 'interrupted ' || attempts || ' times (the app stopped while it ran)',
                payload_text = NULL, updated_at = ?1
         WHERE state = 'running' AND attempts >= ?2",
        params![now, max_attempts],
    )?;
    let requeued = tx.execute(
        "UPDATE jobs SET state = 'queued', next_attempt_at = ?1, updated_at = ?1 WHERE state = 'running'",
        [now],
    )?;
    tx.execute(
        "UPDATE sources SET state = 'queued', updated_at = ?1
         WHERE state = 'processing'
           AND EXISTS (SELECT 1 FROM jobs WHERE jobs.source_id = sources.id AND jobs.state = 'queued')",
        [now],
    )?;
    tx.execute(
        "UPDATE sources SET
             state = CASE WHEN content_hash IS NULL THEN 'failed' ELSE 'ready' END,
             error = (SELECT last_error FROM jobs WHERE jobs.source_id = sources.id ORDER BY id DESC LIMIT 1),
             updated_at = ?1
         WHERE state = 'processing'",
        [now],
    )?;
    Ok(requeued)
}

pub(crate) fn set_setting(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Asks FTS5 to compare the keyword index with the chunks table.
pub(crate) fn check_keyword_index(conn: &Connection) -> Result<()> {
    conn.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)", [])
        .map(drop)
        .map_err(|e| Error::Corrupt(format!("keyword index does not match the chunks: {e}")))
}

/// Moves everything in the write-ahead log into the database file and empties the log, so that
/// deleted text does not linger in old page images. Reads through the pool are held back while
/// it runs, so that they cannot keep the log busy for ever; a reader outside the pool can, for
/// as long as the busy timeout, and then this fails: the caller tries again later.
pub(crate) fn checkpoint(conn: &Connection, readers: &ReadPool) -> Result<()> {
    let _paused = readers.pause(CHECKPOINT_WAIT);
    // TRUNCATE waits (in the busy handler) for every reader to leave the log, then empties it.
    // The wait is short: the pool's reads are held back meanwhile.
    conn.busy_timeout(CHECKPOINT_WAIT)?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if busy? != 0 {
        return Err(Error::Database(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some(
                "a reader kept the write-ahead log busy; the checkpoint will be tried again".into(),
            ),
        )));
    }
    Ok(())
}

/// How long a checkpoint waits for the pool's reads in flight to end, and then for readers
/// outside the pool to leave the log.
const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The files and pages that waited for a setting: the sources whose latest failure has `code`
/// (`needs_ocr`, `needs_transcriber`), and with `scans`, the ready ones whose note says pages
/// were left out as scans (their content is forgotten as known, so that it is read again).
/// Files only, as `(twin, path)`.
pub(crate) fn waiting_for(
    conn: &Connection,
    code: &str,
    scans: bool,
) -> Result<Vec<(TwinId, String)>> {
    const SCANNED: &str = "%without a text layer%";
    if scans {
        conn.execute(
            "UPDATE sources SET content_hash = NULL
             WHERE state = 'ready' AND kind = 'file' AND error LIKE ?1",
            [SCANNED],
        )?;
    }
    let mut stmt = conn.prepare(
        "SELECT s.twin_id, s.origin FROM sources s
         WHERE s.origin IS NOT NULL AND s.kind = 'file'
           AND ((s.state = 'failed'
                 AND (SELECT j.last_error_code FROM jobs j WHERE j.source_id = s.id
                      AND j.last_error_code IS NOT NULL ORDER BY j.id DESC LIMIT 1) = ?1)
                OR (?2 AND s.state = 'ready' AND s.error LIKE ?3))
         ORDER BY s.id",
    )?;
    let rows = stmt.query_map(params![code, scans, SCANNED], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
