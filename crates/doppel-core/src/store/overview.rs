//! Read-only queries about a twin as a whole: the sources changed since a moment, the facts
//! its coverage and the search view's filters are made from, the problems of its sources, how
//! far the queue's current run is, and where a word is found.

use rusqlite::{Connection, params};

use super::*;

/// The sources of `twin` whose row changed at or after `since`, oldest first.
///
/// `updated_at` is written inside the worker's transactions, and the worker commits them one
/// after another, so every row committed later than what a reader saw carries a time at least
/// as late as the latest time that reader saw: asking again from that time (inclusive) misses
/// nothing. Rows seen twice are simply the same rows again.
pub(crate) fn sources_changed_since(
    conn: &Connection,
    twin: TwinId,
    since: Millis,
    limit: usize,
) -> Result<Vec<Source>> {
    let sql = format!(
        "SELECT {SOURCE_COLUMNS} FROM sources WHERE twin_id = ?1 AND updated_at >= ?2
         ORDER BY updated_at, id LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![twin, since, limit as i64], source_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// When a source of `twin` last changed (0 without sources).
pub(crate) fn latest_change(conn: &Connection, twin: TwinId) -> Result<Millis> {
    Ok(conn.query_row(
        "SELECT coalesce(max(updated_at), 0) FROM sources WHERE twin_id = ?1",
        [twin],
        |r| r.get(0),
    )?)
}

/// How many sources of `twin` are in each state: `[queued, processing, ready, failed]`.
pub(crate) fn source_counts(conn: &Connection, twin: TwinId) -> Result<[u64; 4]> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'processing'), 0),
                coalesce(sum(state = 'ready'), 0), coalesce(sum(state = 'failed'), 0)
         FROM sources WHERE twin_id = ?1",
        [twin],
        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
    )?)
}

/// The sources of `twin` whose title or path holds `text` (without regard to the case of
/// ASCII letters) and that are in `state`, each condition only when given: how many there are,
/// and `limit` of them from `offset`, newest first.
pub(crate) fn source_page(
    conn: &Connection,
    twin: TwinId,
    text: Option<&str>,
    state: Option<SourceState>,
    offset: u32,
    limit: u32,
) -> Result<(u64, Vec<Source>)> {
    const WHERE: &str = "twin_id = ?1
        AND (?2 IS NULL OR instr(lower(title), lower(?2)) > 0
             OR instr(lower(coalesce(origin, '')), lower(?2)) > 0)
        AND (?3 IS NULL OR state = ?3)";
    let state = state.map(SourceState::as_str);
    let total: u64 = conn.query_row(
        &format!("SELECT count(*) FROM sources WHERE {WHERE}"),
        params![twin, text, state],
        |r| r.get(0),
    )?;
    let sql = format!(
        "SELECT {SOURCE_COLUMNS} FROM sources WHERE {WHERE} ORDER BY id DESC LIMIT ?4 OFFSET ?5"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![twin, text, state, limit, offset], source_from_row)?;
    Ok((total, rows.collect::<rusqlite::Result<_>>()?))
}

/// What coverage counts and filters look at for one source (no text).
#[derive(Debug, Clone)]
pub(crate) struct SourceFact {
    pub id: SourceId,
    pub kind: SourceKind,
    pub title: String,
    pub origin: Option<String>,
    pub state: SourceState,
    pub media_type: Option<String>,
    pub byte_size: Option<u64>,
    pub chunk_count: u64,
    /// The document's own date: its file's modification time when known, else when it was added.
    pub dated: Millis,
}

/// The facts of every source of `twin`, by id.
pub(crate) fn source_facts(conn: &Connection, twin: TwinId) -> Result<Vec<SourceFact>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, origin, state, media_type, byte_size, chunk_count,
                coalesce(file_mtime_ns / 1000000, created_at), title
         FROM sources WHERE twin_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([twin], |r| {
        Ok(SourceFact {
            id: r.get(0)?,
            kind: parse_col(r, 1, "source kind", SourceKind::parse)?,
            origin: r.get(2)?,
            state: parse_col(r, 3, "source state", SourceState::parse)?,
            media_type: r.get(4)?,
            byte_size: r.get(5)?,
            chunk_count: r.get(6)?,
            dated: r.get(7)?,
            title: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A source that failed, or that holds an error beside its content, with the code of its
/// latest job's failure.
#[derive(Debug, Clone)]
pub(crate) struct FailedSource {
    pub source: Source,
    pub code: Option<String>,
}

/// The sources of `twin` that failed or whose last update failed, newest change first.
pub(crate) fn failed_sources(conn: &Connection, twin: TwinId) -> Result<Vec<FailedSource>> {
    let columns = SOURCE_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>();
    let sql = format!(
        "SELECT {}, (SELECT j.last_error_code FROM jobs j WHERE j.source_id = s.id
                     AND j.last_error_code IS NOT NULL ORDER BY j.id DESC LIMIT 1)
         FROM sources s
         WHERE s.twin_id = ?1 AND (s.state = 'failed' OR (s.state = 'ready' AND s.error IS NOT NULL))
         ORDER BY s.updated_at DESC, s.id DESC",
        columns.join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([twin], |r| {
        Ok(FailedSource { source: source_from_row(r)?, code: r.get(13)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A file passed over because another source of the twin already holds its content.
#[derive(Debug, Clone)]
pub(crate) struct Duplicate {
    pub origin: String,
    pub holder: SourceId,
    pub holder_title: String,
    pub at: Millis,
}

/// Files of `twin` last told to be duplicates that are still no source of their own, newest
/// first, each once.
pub(crate) fn duplicates(conn: &Connection, twin: TwinId) -> Result<Vec<Duplicate>> {
    let mut stmt = conn.prepare(
        "SELECT j.origin, j.duplicate_of, s.title, max(j.updated_at) AS at
         FROM jobs j JOIN sources s ON s.id = j.duplicate_of
         WHERE j.twin_id = ?1 AND j.outcome = 'already_present'
           AND NOT EXISTS (SELECT 1 FROM sources o WHERE o.twin_id = j.twin_id AND o.origin = j.origin)
         GROUP BY j.origin ORDER BY at DESC",
    )?;
    let rows = stmt.query_map([twin], |r| {
        Ok(Duplicate {
            origin: r.get(0)?,
            holder: r.get(1)?,
            holder_title: r.get(2)?,
            at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Passages of `twin`, and how many of them have a vector from the model `model`.
pub(crate) fn passages_embedded(
    conn: &Connection,
    twin: TwinId,
    model: Option<i64>,
) -> Result<(u64, u64)> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(EXISTS (SELECT 1 FROM embeddings e
                                              WHERE e.model_id = ?2 AND e.text_hash = c.text_hash)), 0)
         FROM chunks c JOIN sources s ON s.id = c.source_id WHERE s.twin_id = ?1",
        params![twin, model],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Up to `limit` sources of `twin` whose title or path holds `text` (without regard to the
/// case of ASCII letters), most recently changed first.
pub(crate) fn sources_named(
    conn: &Connection,
    twin: TwinId,
    text: &str,
    limit: u32,
) -> Result<Vec<Source>> {
    let sql = format!(
        "SELECT {SOURCE_COLUMNS} FROM sources
         WHERE twin_id = ?1 AND (instr(lower(title), lower(?2)) > 0
                                 OR instr(lower(coalesce(origin, '')), lower(?2)) > 0)
         ORDER BY updated_at DESC, id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![twin, text, limit], source_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many passages of `twin`, and of how many sources, the keyword index finds for one FTS5
/// expression (a quoted word, as `retrieve::fts_query` makes them).
pub(crate) fn keyword_presence(
    conn: &Connection,
    twin: TwinId,
    expression: &str,
) -> Result<(u64, u64)> {
    Ok(conn.query_row(
        "SELECT count(*), count(DISTINCT c.source_id)
         FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN sources s ON s.id = c.source_id
         WHERE chunks_fts MATCH ?1 AND s.twin_id = ?2",
        params![expression, twin],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// A passage's text with the words an FTS5 expression matches between `open` and `close`, or
/// `None` when the expression matches nothing in it.
pub(crate) fn highlighted(
    conn: &Connection,
    chunk: ChunkId,
    expression: &str,
    open: char,
    close: char,
) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT highlight(chunks_fts, 0, ?3, ?4) FROM chunks_fts
         WHERE chunks_fts MATCH ?1 AND rowid = ?2",
    )?;
    let mut rows = stmt.query(params![expression, chunk, open.to_string(), close.to_string()])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

/// The jobs of the queue's current run: those waiting or running, and those that ended since
/// the oldest of them was queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Run {
    /// When the oldest waiting or running job was queued; `None` when the queue is empty.
    pub started: Option<Millis>,
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Passages stored by the jobs of the run that are done.
    pub passages: u64,
    /// When the latest jobs of the run ended, newest first (at most `recent`).
    pub ended: Vec<Millis>,
}

/// The queue's current run, with the end times of its `recent` latest jobs.
pub(crate) fn current_run(conn: &Connection, recent: u32) -> Result<Run> {
    let (queued, running, started): (u64, u64, Option<Millis>) = conn.query_row(
        "SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'running'), 0), min(created_at)
         FROM jobs WHERE state IN ('queued', 'running')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some(started) = started else { return Ok(Run::default()) };
    let (done, failed, cancelled, passages): (u64, u64, u64, u64) = conn.query_row(
        "SELECT coalesce(sum(j.state = 'done'), 0), coalesce(sum(j.state = 'failed'), 0),
                coalesce(sum(j.state = 'cancelled'), 0),
                coalesce(sum(CASE WHEN j.state = 'done' AND j.outcome = 'ingested'
                                  THEN (SELECT s.chunk_count FROM sources s WHERE s.id = j.source_id) END), 0)
         FROM jobs j WHERE j.state IN ('done', 'failed', 'cancelled') AND j.updated_at >= ?1",
        [started],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut stmt = conn.prepare(
        "SELECT updated_at FROM jobs WHERE state IN ('done', 'failed', 'cancelled')
         AND updated_at >= ?1 ORDER BY updated_at DESC LIMIT ?2",
    )?;
    let ended = stmt.query_map(params![started, recent], |r| r.get(0))?;
    Ok(Run {
        started: Some(started),
        queued,
        running,
        done,
        failed,
        cancelled,
        passages,
        ended: ended.collect::<rusqlite::Result<_>>()?,
    })
}
