//! Backups of a data directory: one file, optionally encrypted, and restoring it.
//!
//! This module owns the backup file's format. A backup is a tar archive, gzip-compressed, of
//! two entries: `manifest.json` (the format, the app and schema versions, when it was made,
//! counts of what it holds, and the database's size and SHA-256), then `doppel.sqlite3`, a
//! consistent snapshot of the database. With a passphrase the whole stream is encrypted in the
//! age format (scrypt). `create` writes one (`create.rs`); `restore` checks one and puts it in
//! place of a data directory (`restore.rs`); `files.rs` writes files and swaps directories so
//! that a kill leaves the old state or the new one.
//!
//! A backup never holds the vector index (it is rebuilt from the stored vectors), the model
//! files (downloaded again, or kept from the directory a restore replaces), the logs, or any
//! secret: API keys stay in the OS keychain, and the database holds only the fact that one was
//! stored. Nothing here may change a data directory before the backup has been read whole and
//! checked.

mod create;
pub(crate) mod files;
mod restore;

use std::io::Read;
use std::path::Path;

use serde_json::{Value, json};

pub use crate::store::Counts;
pub(crate) use create::create;
pub use create::{BackupReport, BackupRequest};
pub(crate) use restore::restore;
pub use restore::{RestoreReport, RestoreRequest};

use crate::error::{Error, Result};
use crate::model::Millis;

/// The `format` field of every manifest.
const FORMAT: &str = "doppel-backup";
/// The version of the file format this build writes and reads.
const FORMAT_VERSION: u64 = 1;
const MANIFEST_ENTRY: &str = "manifest.json";
const DATABASE_ENTRY: &str = "doppel.sqlite3";
/// A manifest is a few hundred bytes; anything much larger is not one.
const MANIFEST_LIMIT: u64 = 64 * 1024;
/// How an encrypted backup begins (the age format's first line).
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
/// How a gzip stream begins.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// A step of a backup or a restore, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Copying the live database (pages).
    Snapshot,
    /// Writing the backup file (bytes of the database written).
    Write,
    /// Reading the backup file (bytes of the database read).
    Read,
    /// Checking the restored database (integrity, counts) and migrating it.
    Check,
    /// Rebuilding the vector index from the stored vectors (vectors).
    Index,
}

crate::model::text_names!(Stage {
    Snapshot => "snapshot",
    Write => "write",
    Read => "read",
    Check => "check",
    Index => "index",
});

/// How far a backup or a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The step under way.
    pub stage: Stage,
    /// Units of it done (pages, bytes or vectors, as the stage says).
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The version of Doppel that wrote it.
    pub app_version: String,
    /// The database's schema version.
    pub schema_version: i64,
    /// When it was made.
    pub created_at: Millis,
    /// What the database holds.
    pub counts: Counts,
    /// The database's size in bytes.
    pub database_bytes: u64,
    /// The database's SHA-256, in hex.
    pub database_sha256: String,
    /// Whether the file is encrypted with a passphrase.
    pub encrypted: bool,
}

impl Manifest {
    fn to_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> =
            self.counts.named().iter().map(|(name, n)| (name.to_string(), json!(n))).collect();
        json!({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": self.app_version,
            "schema_version": self.schema_version,
            "created_at": self.created_at,
            "counts": counts,
            "files": [{
                "name": DATABASE_ENTRY,
                "bytes": self.database_bytes,
                "sha256": self.database_sha256,
            }],
            // Left out on purpose, so that a reader of the manifest knows.
            "not_included": ["vector index (rebuilt on restore)", "model files", "logs",
                             "API keys (they stay in the OS keychain)"],
        })
    }

    /// Reads a manifest, refusing anything but this format's version 1.
    fn parse(bytes: &[u8], path: &Path, encrypted: bool) -> Result<Manifest> {
        let damaged = |reason: &str| Error::BackupDamaged {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| damaged("its manifest is not valid JSON"))?;
        if value["format"] != FORMAT {
            return Err(damaged("it is not a Doppel backup"));
        }
        let version = value["format_version"].as_u64().unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(damaged(&format!(
                "it is in backup format {version}, and this Doppel reads format {FORMAT_VERSION} \
                 (a newer Doppel wrote it?)"
            )));
        }
        let file = value["files"]
            .as_array()
            .and_then(|files| files.iter().find(|f| f["name"] == DATABASE_ENTRY))
            .ok_or_else(|| damaged("its manifest names no database"))?;
        let counts = &value["counts"];
        let manifest = Manifest {
            app_version: value["app_version"].as_str().unwrap_or_default().to_string(),
            schema_version: value["schema_version"]
                .as_i64()
                .ok_or_else(|| damaged("its manifest has no schema version"))?,
            created_at: value["created_at"].as_i64().unwrap_or(0),
            counts: Counts::from_named(|name| counts[name].as_u64()),
            database_bytes: file["bytes"]
                .as_u64()
                .ok_or_else(|| damaged("its manifest has no database size"))?,
            database_sha256: file["sha256"]
                .as_str()
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| damaged("its manifest has no database checksum"))?
                .to_ascii_lowercase(),
            encrypted,
        };
        Ok(manifest)
    }
}

/// Reads the manifest of a backup without restoring anything (for a shell to show what a
/// file holds before the owner confirms).
pub fn inspect(path: &Path, passphrase: Option<&str>) -> Result<Manifest> {
    let mut archive = restore::open_archive(path, passphrase)?;
    let mut entries = archive.entries().map_err(|e| restore::read_error(e, path))?;
    restore::read_manifest(&mut entries, path)
}

/// Whether restoring into `data_dir` replaces a twin (sources, conversations or verified
/// answers), which needs the owner's confirmation ([`RestoreRequest::replace`]).
pub fn replaces_a_twin(data_dir: &Path) -> bool {
    crate::store::holds_a_twin(&data_dir.join(crate::DATABASE_FILE))
}

/// A reader that counts what passes and stops when cancelled.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    cancel: &'a std::sync::atomic::AtomicBool,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, Cancelled));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        Ok(n)
    }
}

/// The marker inside an I/O error that means the owner cancelled.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

fn is_cancel(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}
