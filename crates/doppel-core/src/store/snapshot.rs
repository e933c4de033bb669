//! Consistent copies of the database, for backups, and what a copy holds.
//!
//! A snapshot is taken with SQLite's online backup API from a read-only connection that holds
//! one read transaction for the whole copy: in WAL mode the copy is the database as of that
//! moment, while the worker goes on writing. This module never writes to the live database.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;
use crate::error::{Error, Result};

/// Pages copied per step of the backup; progress is reported after each step.
const PAGES_PER_STEP: std::ffi::c_int = 256;

/// How many rows of each kind a database holds (tables a schema version lacks count 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Twins.
    pub twins: u64,
    /// Sources, in any state.
    pub sources: u64,
    /// Passages.
    pub chunks: u64,
    /// Stored vectors (of every model).
    pub vectors: u64,
    /// Conversations.
    pub conversations: u64,
    /// Messages, questions and answers.
    pub messages: u64,
    /// Verified answers.
    pub verified_answers: u64,
}

impl Counts {
    /// The counts as named pairs, in a fixed order (for manifests and reports).
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("twins", self.twins),
            ("sources", self.sources),
            ("chunks", self.chunks),
            ("vectors", self.vectors),
            ("conversations", self.conversations),
            ("messages", self.messages),
            ("verified_answers", self.verified_answers),
        ]
    }

    /// Counts from named pairs; a missing name counts 0.
    pub fn from_named(get: impl Fn(&str) -> Option<u64>) -> Counts {
        let n = |name| get(name).unwrap_or(0);
        Counts {
            twins: n("twins"),
            sources: n("sources"),
            chunks: n("chunks"),
            vectors: n("vectors"),
            conversations: n("conversations"),
            messages: n("messages"),
            verified_answers: n("verified_answers"),
        }
    }
}

/// Copies the database at `live` into a new file `dest` as it is at one moment, calling
/// `progress(pages copied, pages)` as it goes. The copy is left in rollback-journal mode (a
/// file that stands alone, without a write-ahead log) and checked with `quick_check`.
pub(crate) fn snapshot(
    live: &Path,
    dest: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let source = Connection::open_with_flags(live, flags)?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    // One read transaction for the whole copy: every step reads the same snapshot, so writes
    // of the worker meanwhile neither show in the copy nor restart it.
    source.execute_batch("BEGIN")?;
    source.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))?;
    let mut copy = Connection::open(dest)?;
    {
        let backup = Backup::new(&source, &mut copy)?;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let step = backup.step(PAGES_PER_STEP)?;
            let p = backup.progress();
            let total = p.pagecount.max(0) as u64;
            progress(total.saturating_sub(p.remaining.max(0) as u64), total);
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                // Only a writer could hold these locks, and neither connection writes to the
                // source; the copy is ours alone. Should it happen anyway, wait a moment.
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {}
            }
        }
    }
    source.execute_batch("COMMIT")?;
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Error::Corrupt(check));
    }
    Ok(())
}

/// What a database holds, counted on `conn`.
pub(crate) fn counts(conn: &Connection) -> Result<Counts> {
    let count = |table: &str| -> Result<u64> {
        let exists: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(0);
        }
        // `table` is one of the constant names below, never user text.
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as u64)
    };
    Ok(Counts {
        twins: count("twins")?,
        sources: count("sources")?,
        chunks: count("chunks")?,
        vectors: count("embeddings")?,
        conversations: count("conversations")?,
        messages: count("messages")?,
        verified_answers: count("verified_answers")?,
    })
}

/// Whether a data directory's database holds anything a person would lose: a source, a
/// conversation or a verified answer. A database that cannot be read counts as holding
/// something.
pub(crate) fn holds_a_twin(database: &Path) -> bool {
    if !database.exists() {
        return false;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let held = Connection::open_with_flags(database, flags)
        .map_err(Error::from)
        .and_then(|conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            counts(&conn)
        })
        .map(|c| c.sources + c.conversations + c.verified_answers > 0);
    held.unwrap_or(true)
}

/// How many model server API keys the settings say were stored in the keychain (the keys
/// themselves never are in the database).
pub(crate) fn stored_key_markers(conn: &Connection) -> Result<usize> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM settings WHERE key LIKE 'keychain.%' AND value = '1'",
        [],
        |r| r.get(0),
    )?;
    Ok(n as usize)
}
