//! The SQLite store: schema, migrations, connections and every query.
//!
//! The store owns the shape of the database. It opens exactly one write connection, which it
//! hands to the worker thread, and a small bounded pool of read-only connections for everyone
//! else ([`ReadPool`]). Read-only connections are opened with `SQLITE_OPEN_READ_ONLY`, so a write
//! from anywhere but the worker fails loudly. User text reaches SQL only as bound parameters.

pub(crate) mod api;
pub(crate) mod chat;
mod overview;
mod read;
mod snapshot;
mod vectors;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row};

pub(crate) use overview::*;
pub(crate) use read::*;
pub use snapshot::Counts;
pub(crate) use snapshot::{counts, holds_a_twin, snapshot, stored_key_markers};
pub(crate) use vectors::*;
pub(crate) use write::*;

use crate::error::{Error, Result};
use crate::model::*;

/// Migrations, in order; `PRAGMA user_version` counts how many have been applied.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema-v2.sql"),
    include_str!("schema-v3.sql"),
    include_str!("schema-v4.sql"),
    include_str!("schema-v5.sql"),
    include_str!("schema-v6.sql"),
    include_str!("schema-v7.sql"),
    include_str!("schema-v8.sql"),
    include_str!("schema-v9.sql"),
    include_str!("schema-v10.sql"),
];

/// The newest schema version this build understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for a lock before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many read-only connections may be open at once.
const READERS: usize = 4;

/// Opens the single write connection, creating or migrating the database as needed.
///
/// A database from a newer version is refused before anything is written to it.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Read the version before any pragma that could write to the file.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;",
    )?;
    migrate(&conn, version)?;
    Ok(conn)
}

fn migrate(conn: &Connection, from: i64) -> Result<()> {
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    // Rebuilding a table drops the old one: with foreign keys on, that would cascade into the
    // rows that point at it. They are off while migrations run and checked before they go on.
    conn.pragma_update(None, "foreign_keys", false)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let to = index as i64 + 1;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        if to == 1 {
            tx.execute(
                "INSERT INTO twins (id, name, created_at) VALUES (?1, 'My twin', ?2)",
                (DEFAULT_TWIN, now_ms()),
            )?;
        }
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
        if broken > 0 {
            return Err(Error::Corrupt(format!("{broken} broken references after migration {to}")));
        }
        tx.pragma_update(None, "user_version", to)?;
        tx.commit()?;
        tracing::info!(version = to, "database migrated");
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// A read-only connection outside the pool, for long work on a thread of its own (an index
/// rebuild) that reads in short transactions.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The schema version stored in a database file, without changing it.
pub(crate) fn stored_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// A bounded pool of read-only connections.
///
/// At most [`READERS`] connections exist; a caller that finds them all busy waits for one. WAL
/// lets readers run beside the writer, and the busy timeout covers the brief moments (a
/// checkpoint, recovery) when they cannot.
#[derive(Debug)]
pub(crate) struct ReadPool {
    path: PathBuf,
    state: Mutex<PoolState>,
    returned: Condvar,
    /// Where waits for a connection are recorded.
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Connection>,
    open: usize,
    /// Reads in flight.
    reading: usize,
    /// A checkpoint waits for the reads in flight to end; no new read starts meanwhile.
    paused: bool,
}

/// While it lives, no read through the pool starts; dropping it lets them go on.
pub(crate) struct Paused<'a>(&'a ReadPool);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.lock().paused = false;
        self.0.returned.notify_all();
    }
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            state: Mutex::new(PoolState::default()),
            returned: Condvar::new(),
            metrics: None,
        }
    }

    /// Records each wait for a connection in `metrics` (the saturation of the pool).
    pub(crate) fn measured(self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> ReadPool {
        ReadPool { metrics: Some(metrics), ..self }
    }

    /// Runs `f` with a read-only connection.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.take()?;
        let result = f(&conn);
        let mut state = self.lock();
        state.idle.push(conn);
        state.reading -= 1;
        drop(state);
        // A waiting reader and a waiting checkpoint may both care.
        self.returned.notify_all();
        result
    }

    /// Holds new reads back and waits, at most `wait`, for the reads in flight to end, so that
    /// a checkpoint can empty the write-ahead log: a stream of overlapping reads would keep
    /// it busy for ever. A read that outlasts `wait` (one that reads again inside itself, say)
    /// only costs the checkpoint this attempt.
    pub(crate) fn pause(&self, wait: Duration) -> Paused<'_> {
        let deadline = std::time::Instant::now() + wait;
        let mut state = self.lock();
        state.paused = true;
        while state.reading > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .returned
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        Paused(self)
    }

    /// Whether a checkpoint is waiting for the reads in flight.
    #[cfg(test)]
    fn pausing(&self) -> bool {
        self.lock().paused
    }

    /// Closes the idle connections, so that the writer closes last and can fold the
    /// write-ahead log back into the database file.
    pub(crate) fn close_idle(&self) {
        let mut state = self.lock();
        let closed = state.idle.len();
        state.idle.clear();
        state.open -= closed;
    }

    fn take(&self) -> Result<Connection> {
        let mut waited: Option<std::time::Instant> = None;
        let taken = self.take_counting(&mut waited);
        if let (Some(started), Some(metrics)) = (waited, &self.metrics) {
            metrics.record_since(crate::metrics::Metric::ReadWait, "", started);
        }
        taken
    }

    /// Takes a connection; sets `waited` to when it began to wait, if it had to.
    fn take_counting(&self, waited: &mut Option<std::time::Instant>) -> Result<Connection> {
        let mut state = self.lock();
        loop {
            if state.paused {
                waited.get_or_insert_with(std::time::Instant::now);
                state = self.returned.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            if let Some(conn) = state.idle.pop() {
                state.reading += 1;
                return Ok(conn);
            }
            if state.open < READERS {
                state.open += 1;
                state.reading += 1;
                drop(state);
                return self.open().inspect_err(|_| {
                    let mut state = self.lock();
                    state.open -= 1;
                    state.reading -= 1;
                    drop(state);
                    self.returned.notify_all();
                });
            }
            waited.get_or_insert_with(std::time::Instant::now);
            state = self.returned.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn open(&self) -> Result<Connection> {
        open_reader(&self.path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state is two plain fields updated together; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

fn bad_text(column: usize, what: &str, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("unknown {what} {text:?}").into(),
    )
}

fn parse_col<T>(
    row: &Row,
    column: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| bad_text(column, what, &text))
}

pub(crate) const SOURCE_COLUMNS: &str = "id, twin_id, kind, origin, title, media_type, byte_size, \
     content_hash, state, error, chunk_count, created_at, updated_at";

pub(crate) fn source_from_row(row: &Row) -> rusqlite::Result<Source> {
    Ok(Source {
        id: row.get(0)?,
        twin_id: row.get(1)?,
        kind: parse_col(row, 2, "source kind", SourceKind::parse)?,
        origin: row.get(3)?,
        title: row.get(4)?,
        media_type: row.get(5)?,
        byte_size: row.get(6)?,
        content_hash: row.get(7)?,
        state: parse_col(row, 8, "source state", SourceState::parse)?,
        error: row.get(9)?,
        chunk_count: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
    })
}

pub(crate) const JOB_COLUMNS: &str = "id, kind, twin_id, source_id, origin, state, attempts, \
     next_attempt_at, last_error, last_error_code, outcome, duplicate_of, created_at, updated_at";

pub(crate) fn job_from_row(row: &Row) -> rusqlite::Result<Job> {
    let outcome: Option<String> = row.get(10)?;
    Ok(Job {
        id: row.get(0)?,
        kind: parse_col(row, 1, "job kind", JobKind::parse)?,
        twin_id: row.get(2)?,
        source_id: row.get(3)?,
        origin: row.get(4)?,
        state: parse_col(row, 5, "job state", JobState::parse)?,
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        last_error: row.get(8)?,
        last_error_code: row.get(9)?,
        outcome: match outcome {
            Some(text) => {
                Some(JobOutcome::parse(&text).ok_or_else(|| bad_text(10, "job outcome", &text))?)
            }
            None => None,
        },
        duplicate_of: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
    })
}

pub(crate) const CHUNK_COLUMNS: &str =
    "id, source_id, ordinal, text, location, line_start, line_end, page, token_count, text_hash";

pub(crate) fn chunk_from_row(row: &Row) -> rusqlite::Result<Chunk> {
    Ok(Chunk {
        id: row.get(0)?,
        source_id: row.get(1)?,
        ordinal: row.get(2)?,
        text: row.get(3)?,
        location: location_at(row, 4)?,
        token_count: row.get(8)?,
        text_hash: row.get(9)?,
    })
}

/// A location read from four columns starting at `first`: label, first line, last line, page.
pub(crate) fn location_at(row: &Row, first: usize) -> rusqlite::Result<Location> {
    Ok(Location {
        label: row.get(first)?,
        line_start: row.get(first + 1)?,
        line_end: row.get(first + 2)?,
        page: row.get(first + 3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_writer_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let writer = open_writer(&path).unwrap();
        let pool = ReadPool::new(path);
        let err = pool
            .with(|c| Ok(c.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')", [])?))
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        set_setting(&writer, "top_k", "5").unwrap();
        assert_eq!(pool.with(stored_settings).unwrap().get("top_k").map(String::as_str), Some("5"));
    }

    #[test]
    fn cr4_a_checkpoint_waits_out_a_reader_and_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let wal = dir.path().join("db.sqlite3-wal");
        let writer = open_writer(&path).unwrap();
        let pool = ReadPool::new(path.clone());
        let (holding, held) = std::sync::mpsc::channel();
        let (over, ended) = std::sync::mpsc::channel::<()>();
        let needle = b"walneedle93";
        std::thread::scope(|scope| {
            let pool = &pool;
            scope.spawn(move || {
                pool.with(|c| {
                    c.execute_batch("BEGIN")?;
                    c.query_row("SELECT count(*) FROM settings", [], |r| r.get::<_, i64>(0))?;
                    holding.send(()).unwrap();
                    // Keeps its snapshot, and so the log, until a checkpoint asks, or until the
                    // test is over.
                    while !pool.pausing() && ended.try_recv().is_err() {
                        std::thread::yield_now();
                    }
                    Ok(c.execute_batch("COMMIT")?)
                })
                .unwrap();
            });
            held.recv().unwrap();
            set_setting(&writer, "secret", "walneedle93").unwrap();
            writer.execute("DELETE FROM settings WHERE key = 'secret'", []).unwrap();
            let result = checkpoint(&writer, pool);
            let _ = over.send(());
            result.unwrap();
        });
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "the log is empty");
        for file in [&path, &wal] {
            let bytes = std::fs::read(file).unwrap();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{}", file.display());
        }
        // Reads go on afterwards.
        assert_eq!(pool.with(|c| count(c, Table::Sources)).unwrap(), 0);
    }

    /// Passages written straight into the store (as an ingest would, without parsing).
    fn add_source(writer: &mut Connection, title: &str, texts: &[String]) -> SourceId {
        let tx = writer.transaction().unwrap();
        let (source, _) = enqueue_text(&tx, DEFAULT_TWIN, title, "").unwrap();
        for (ordinal, text) in texts.iter().enumerate() {
            tx.execute(
                "INSERT INTO chunks (source_id, ordinal, text, token_count, text_hash)
                 VALUES (?1, ?2, ?3, 10, ?4)",
                rusqlite::params![source, ordinal as i64, text, format!("{title}-{ordinal}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        source
    }

    fn delete(writer: &mut Connection, source: SourceId) {
        let tx = writer.transaction().unwrap();
        write::delete_source(&tx, source).unwrap();
        tx.commit().unwrap();
    }

    /// Which of `terms` the keyword index still holds, and which files still hold their bytes.
    fn remembered(
        writer: &Connection,
        pool: &ReadPool,
        path: &Path,
        terms: &[&str],
    ) -> Vec<String> {
        checkpoint(writer, pool).unwrap();
        let mut found = Vec::new();
        for term in terms {
            let indexed: i64 = writer
                .query_row("SELECT count(*) FROM temp.vocab WHERE term = ?1", [term], |r| r.get(0))
                .unwrap();
            if indexed > 0 {
                found.push(format!("{term} in the index"));
            }
            for file in [path.to_path_buf(), path.with_extension("sqlite3-wal")] {
                let bytes = std::fs::read(&file).unwrap_or_default();
                if bytes.windows(term.len()).any(|w| w == term.as_bytes()) {
                    found.push(format!("{term} in {}", file.display()));
                }
            }
        }
        found
    }

    #[test]
    fn cr4_deleted_passages_leave_no_word_whichever_way_the_keyword_index_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let mut writer = open_writer(&path).unwrap();
        let pool = ReadPool::new(path.clone());
        writer
            .execute_batch("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, chunks_fts, row)")
            .unwrap();
        let filler = |n: usize| -> Vec<String> {
            (0..n).map(|i| format!("ordinary passage {i} about gardening")).collect()
        };
        let kept = add_source(&mut writer, "kept", &filler(400));
        // Needles no stemmer changes, starting with letters no other word starts with (so that
        // the index's prefix compression cannot split them).
        let small = add_source(&mut writer, "small", &["the qzv4417 recipe".to_string()]);
        let mut large_texts: Vec<String> = filler(300);
        large_texts.push("the xqj7731 letter".to_string());
        let large = add_source(&mut writer, "large", &large_texts);
        assert_eq!(remembered(&writer, &pool, &path, &["qzv4417", "xqj7731"]).len(), 4);

        // 301 passages of 702: the index is rewritten without them.
        delete(&mut writer, large);
        assert_eq!(remembered(&writer, &pool, &path, &["xqj7731"]), Vec::<String>::new());
        assert_eq!(remembered(&writer, &pool, &path, &["qzv4417"]).len(), 2, "the other stays");

        // A rewrite that is rolled back leaves the index as it was, secure deletes included.
        {
            let tx = writer.transaction().unwrap();
            write::delete_source(&tx, kept).unwrap();
        }
        // 1 passage of 401: its words are taken out where they lie.
        delete(&mut writer, small);
        assert_eq!(remembered(&writer, &pool, &path, &["qzv4417"]), Vec::<String>::new());
        let found: i64 = writer
            .query_row(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'gardening'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 400, "the kept passages are still found");
    }

    #[test]
    fn the_pool_is_bounded_and_shared_between_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let _writer = open_writer(&path).unwrap();
        let pool = std::sync::Arc::new(ReadPool::new(path));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let pool = std::sync::Arc::clone(&pool);
                std::thread::spawn(move || pool.with(|c| count(c, Table::Sources)).unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 0);
        }
        assert!(pool.lock().open <= READERS);
    }
}
