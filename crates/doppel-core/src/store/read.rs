//! Queries that only read. They run on any connection, usually one from the `ReadPool`.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::*;
use crate::ingest::clipped;

pub(crate) fn twins(conn: &Connection) -> Result<Vec<Twin>> {
    let mut stmt = conn.prepare("SELECT id, name, created_at FROM twins ORDER BY id")?;
    let rows =
        stmt.query_map([], |r| Ok(Twin { id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn twin(conn: &Connection, id: TwinId) -> Result<Twin> {
    conn.query_row("SELECT id, name, created_at FROM twins WHERE id = ?1", [id], |r| {
        Ok(Twin { id: r.get(0)?, name: r.get(1)?, created_at: r.get(2)? })
    })
    .optional()?
    .ok_or_else(|| Error::NotFound { what: "twin", id: id.to_string() })
}

pub(crate) fn watched_folders(conn: &Connection) -> Result<Vec<WatchedFolder>> {
    let mut stmt =
        conn.prepare("SELECT id, twin_id, path, created_at FROM watched_folders ORDER BY id")?;
    let rows = stmt.query_map([], watched_folder_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn watched_folder_from_row(r: &rusqlite::Row) -> rusqlite::Result<WatchedFolder> {
    Ok(WatchedFolder { id: r.get(0)?, twin_id: r.get(1)?, path: r.get(2)?, created_at: r.get(3)? })
}

/// A file source as a watched folder sees it: where it is and what it looked like when it was
/// last read.
#[derive(Debug, Clone)]
pub(crate) struct KnownFile {
    pub source: SourceId,
    pub origin: String,
    pub stat: Option<crate::ingest::FileStat>,
}

/// The file sources of `twin` whose path is `path` or lies below it.
pub(crate) fn files_under(conn: &Connection, twin: TwinId, path: &str) -> Result<Vec<KnownFile>> {
    // A prefix compared with `substr`, not `LIKE`: paths may hold `%` and `_`.
    let below = format!("{}/", path.trim_end_matches('/'));
    let mut stmt = conn.prepare(
        "SELECT id, origin, file_size, file_mtime_ns FROM sources
         WHERE twin_id = ?1 AND kind = 'file'
           AND (origin = ?2 OR substr(origin, 1, length(?3)) = ?3)
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![twin, path, below], |r| {
        let size: Option<u64> = r.get(2)?;
        let mtime_ns: Option<i64> = r.get(3)?;
        Ok(KnownFile {
            source: r.get(0)?,
            origin: r.get(1)?,
            stat: size
                .zip(mtime_ns)
                .map(|(size, mtime_ns)| crate::ingest::FileStat { size, mtime_ns }),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn sources(conn: &Connection, twin: TwinId) -> Result<Vec<Source>> {
    let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE twin_id = ?1 ORDER BY id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([twin], source_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn source(conn: &Connection, id: SourceId) -> Result<Source> {
    let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE id = ?1");
    conn.query_row(&sql, [id], source_from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound { what: "source", id: id.to_string() })
}

pub(crate) fn source_by_origin(
    conn: &Connection,
    twin: TwinId,
    origin: &str,
) -> Result<Option<Source>> {
    let sql = format!("SELECT {SOURCE_COLUMNS} FROM sources WHERE twin_id = ?1 AND origin = ?2");
    Ok(conn.query_row(&sql, params![twin, origin], source_from_row).optional()?)
}

/// A ready source of `twin` other than `except` whose content has this hash.
pub(crate) fn ready_source_with_hash(
    conn: &Connection,
    twin: TwinId,
    hash: &str,
    except: SourceId,
) -> Result<Option<Source>> {
    let sql = format!(
        "SELECT {SOURCE_COLUMNS} FROM sources
         WHERE twin_id = ?1 AND content_hash = ?2 AND id != ?3 AND state = 'ready'
         ORDER BY id LIMIT 1"
    );
    Ok(conn.query_row(&sql, params![twin, hash, except], source_from_row).optional()?)
}

pub(crate) fn chunks(conn: &Connection, source: SourceId) -> Result<Vec<Chunk>> {
    let sql = format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE source_id = ?1 ORDER BY ordinal");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([source], chunk_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Jobs, newest first; `active_only` keeps those queued or running.
pub(crate) fn jobs(conn: &Connection, active_only: bool, limit: u32) -> Result<Vec<Job>> {
    // The newest ids are chosen from the index alone, and only their rows read: sorting whole
    // rows cost milliseconds per call with thousands of files queued.
    let filter = if active_only { "WHERE state IN ('queued', 'running')" } else { "" };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN \
         (SELECT id FROM jobs {filter} ORDER BY id DESC LIMIT ?1) ORDER BY id DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([limit], job_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn job(conn: &Connection, id: JobId) -> Result<Job> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    conn.query_row(&sql, [id], job_from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound { what: "job", id: id.to_string() })
}

pub(crate) fn stored_settings(conn: &Connection) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare("SELECT key, value FROM settings")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether a key was stored in the keychain for a server (see `secrets::stored_marker`).
pub(crate) fn key_stored(conn: &Connection, url: &str) -> Result<bool> {
    let marker = crate::secrets::stored_marker(url);
    let value: Option<String> = conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [marker], |r| r.get(0))
        .optional()?;
    Ok(value.as_deref() == Some("1"))
}

/// `(state, count)` pairs of a table with a `state` column.
pub(crate) fn state_counts(conn: &Connection, table: Table) -> Result<Vec<(String, u64)>> {
    let sql = format!("SELECT state, count(*) FROM {} GROUP BY state ORDER BY state", table.name());
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every source's origin and every watched folder: the paths and URLs the report recognises
/// whole.
pub(crate) fn known_paths(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT origin FROM sources UNION SELECT path FROM watched_folders")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Jobs waiting in the queue (due or not).
pub(crate) fn queued_jobs(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT count(*) FROM jobs WHERE state = 'queued'", [], |r| r.get(0))?)
}

/// Stored vectors of `model` that another text's vector repeats byte for byte: two different
/// passages that the model cannot tell apart.
pub(crate) fn duplicate_vectors(conn: &Connection, model: i64) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(n - 1), 0) FROM
             (SELECT count(*) AS n FROM embeddings WHERE model_id = ?1 GROUP BY vector HAVING n > 1)",
        [model],
        |r| r.get(0),
    )?)
}

pub(crate) fn count(conn: &Connection, table: Table) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM {}", table.name());
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// The tables whose rows `doctor` counts. Table names are never taken from user input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Table {
    Sources,
    Chunks,
    Jobs,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Sources => "sources",
            Table::Chunks => "chunks",
            Table::Jobs => "jobs",
        }
    }
}

/// Runs SQLite's quick check (the b-trees' structure and the keyword index, not every index
/// against its table); `Err` with what it found, shortened, when it is not "ok".
pub(crate) fn quick_check(conn: &Connection) -> std::result::Result<(), String> {
    let found: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check(20)")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect());
    match found {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(()),
        Ok(lines) => Err(clipped(&lines.join("; "), 300)),
        Err(e) => Err(clipped(&e.to_string(), 300)),
    }
}

/// Runs SQLite's own integrity check; `Ok(())` when it says "ok".
pub(crate) fn integrity_check(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> =
        stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(())
    } else {
        Err(Error::Corrupt(problems.join("; ")))
    }
}
