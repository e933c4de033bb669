//! Writing a backup: snapshot, manifest, archive, optional encryption, atomic rename.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::files::{Cleanup, beside, parent_of, rename_durably};
use super::{Counting, DATABASE_ENTRY, MANIFEST_ENTRY, Manifest, Progress, Stage, is_cancel};
use crate::datadir::DATABASE_FILE;
use crate::error::{Error, Result};
use crate::store;

/// A backup to write.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// The file to write; replaced whole if it exists.
    pub path: PathBuf,
    /// Encrypts the file with this passphrase (the age format, scrypt) when given.
    pub passphrase: Option<String>,
}

/// A backup written.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// What it holds.
    pub manifest: Manifest,
}

/// The compression level: gzip's default, a good trade of time for size on passages and
/// vectors.
const LEVEL: u32 = 6;

/// Backs up the data directory `data_dir` into one file. It may be open meanwhile, in this
/// process or another: the snapshot is consistent.
pub(crate) fn create(
    data_dir: &Path,
    request: &BackupRequest,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupReport> {
    let database = data_dir.join(DATABASE_FILE);
    if !database.is_file() {
        return Err(Error::InvalidInput(format!(
            "{} holds no Doppel database to back up",
            data_dir.display()
        )));
    }
    let dest = std::path::absolute(&request.path).map_err(|e| Error::io(&request.path, e))?;
    check_destination(data_dir, &dest)?;
    if let Some(p) = &request.passphrase
        && p.is_empty()
    {
        return Err(Error::InvalidInput("the passphrase is empty".into()));
    }
    let snapshot = beside(&dest, "snapshot")?;
    let part = beside(&dest, "part")?;
    // Leftovers of a try that was killed go first.
    let cleanup = Cleanup(vec![snapshot.clone(), part.clone()]);
    for path in &cleanup.0 {
        super::files::remove_any(path)?;
    }

    store::snapshot(&database, &snapshot, cancel, &mut |done, total| {
        progress(Progress { stage: Stage::Snapshot, done, total })
    })?;
    let (schema_version, counts) = {
        let conn = rusqlite::Connection::open(&snapshot)?;
        (store::stored_version(&conn)?, store::counts(&conn)?)
    };
    let (database_bytes, database_sha256) = hash_file(&snapshot)?;
    let manifest = Manifest {
        app_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version,
        created_at: store::now_ms(),
        counts,
        database_bytes,
        database_sha256,
        encrypted: request.passphrase.is_some(),
    };

    let file = File::create(&part).map_err(|e| Error::io(&part, e))?;
    let out = BufWriter::new(file);
    let out = match &request.passphrase {
        None => write_archive(out, &manifest, &snapshot, cancel, progress)
            .map_err(|e| write_error(e, &part))?,
        Some(passphrase) => {
            let secret = age::secrecy::SecretString::from(passphrase.clone());
            let sealed = age::Encryptor::with_user_passphrase(secret)
                .wrap_output(out)
                .map_err(|e| Error::io(&part, e))?;
            write_archive(sealed, &manifest, &snapshot, cancel, progress)
                .map_err(|e| write_error(e, &part))?
                .finish()
                .map_err(|e| Error::io(&part, e))?
        }
    };
    let file = out.into_inner().map_err(|e| Error::io(&part, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(&part, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(&part, e))?.len();
    drop(file);
    rename_durably(&part, &dest)?;
    drop(cleanup);
    tracing::info!(bytes, schema_version, "backup written");
    Ok(BackupReport { path: dest, bytes, manifest })
}

/// A backup inside the data directory would keep words of sources forgotten later (no file
/// there may hold them), and would itself be in the way of a restore.
fn check_destination(data_dir: &Path, dest: &Path) -> Result<()> {
    let dir = data_dir.canonicalize().map_err(|e| Error::io(data_dir, e))?;
    let parent = parent_of(dest);
    let parent = parent.canonicalize().map_err(|e| Error::io(&parent, e))?;
    if parent.starts_with(&dir) {
        return Err(Error::InvalidInput(format!(
            "{} is inside the data directory: write the backup elsewhere",
            dest.display()
        )));
    }
    if dest.is_dir() {
        return Err(Error::InvalidInput(format!("{} is a folder: name a file", dest.display())));
    }
    Ok(())
}

/// The tar archive, gzip-compressed, into `out`; returns `out` once everything is written.
fn write_archive<W: Write>(
    out: W,
    manifest: &Manifest,
    snapshot: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> std::io::Result<W> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(LEVEL));
    let mut tar = tar::Builder::new(gz);
    let json = serde_json::to_vec_pretty(&manifest.to_json())?;
    let mtime = (manifest.created_at / 1000).max(0) as u64;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    tar.append_data(&mut header, MANIFEST_ENTRY, json.as_slice())?;

    let total = manifest.database_bytes;
    let file = File::open(snapshot)?;
    let mut reader = Counting { inner: BufReader::with_capacity(1 << 20, file), done: 0, cancel };
    let mut header = tar::Header::new_gnu();
    header.set_size(total);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    // Progress in steps of the reader's buffer: a wrapper reports as the tar copies.
    let mut reporting = Reporting { inner: &mut reader, total, progress, last: 0 };
    tar.append_data(&mut header, DATABASE_ENTRY, &mut reporting)?;
    progress(Progress { stage: Stage::Write, done: total, total });
    let gz = tar.into_inner()?;
    gz.finish()
}

/// Passes reads through and reports progress about every megabyte.
struct Reporting<'a, 'b, R> {
    inner: &'a mut Counting<'b, R>,
    total: u64,
    progress: &'a mut dyn FnMut(Progress),
    last: u64,
}

impl<R: Read> Read for Reporting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.done - self.last >= 1 << 20 {
            self.last = self.inner.done;
            (self.progress)(Progress { stage: Stage::Write, done: self.last, total: self.total });
        }
        Ok(n)
    }
}

fn write_error(e: std::io::Error, part: &Path) -> Error {
    if is_cancel(&e) { Error::Cancelled } else { Error::io(part, e) }
}

/// The size and SHA-256 (hex) of a file.
pub(super) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
