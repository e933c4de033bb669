//! Restoring a backup: read and check it whole into a folder beside the data directory,
//! migrate it and rebuild its index there, then swap the folders in one step.
//!
//! Until the swap nothing of the data directory has changed; the swap is the one step that
//! makes the restore happen, and the replaced folder is removed only after it. A kill before
//! the swap leaves the previous data directory as it was (and a hidden folder beside it, which
//! the next restore removes); a kill after it leaves the restored one, whole.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use super::create::hex;
use super::files::{Cleanup, beside, exchange, remove_any, rename_durably, sync_dir, sync_file};
use super::{
    AGE_MAGIC, Counting, DATABASE_ENTRY, GZIP_MAGIC, MANIFEST_ENTRY, MANIFEST_LIMIT, Manifest,
    Progress, Stage, is_cancel,
};
use crate::datadir::{DATABASE_FILE, DataDir, LOG_DIR};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::store::{self, Counts, SCHEMA_VERSION};
use crate::{Config, Doppel, INDEX_DIR, MODELS_DIR};

/// A restore to run.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The backup file.
    pub backup: PathBuf,
    /// Its passphrase, when it is encrypted.
    pub passphrase: Option<String>,
    /// The owner confirmed that the data directory, which holds a twin, is to be replaced.
    /// Without it a data directory that holds sources, conversations or verified answers is
    /// left alone and the restore fails with `confirmation_needed`.
    pub replace: bool,
    /// How the restored directory is opened (its `data_dir` is the one restored into; the
    /// model folders are used to rebuild the index).
    pub config: Config,
}

/// A restore done.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The data directory restored.
    pub data_dir: PathBuf,
    /// What the backup said of itself.
    pub manifest: Manifest,
    /// What the restored database holds.
    pub counts: Counts,
    /// The schema version it had in the backup, when it was migrated from an older one.
    pub migrated_from: Option<i64>,
    /// Whether a data directory holding a twin was replaced.
    pub replaced: bool,
    /// Entries in the rebuilt vector index (0 without a usable embedding model).
    pub index_entries: u64,
    /// Things the owner should know (API keys to enter again, a model that could not be kept).
    pub notes: Vec<String>,
}

/// What a data directory may hold; a folder with anything else is not one, and is never
/// replaced.
const DATA_DIR_ENTRIES: &[&str] = &[
    "doppel.lock",
    DATABASE_FILE,
    "doppel.sqlite3-wal",
    "doppel.sqlite3-shm",
    "doppel.sqlite3-journal",
    LOG_DIR,
    MODELS_DIR,
    INDEX_DIR,
];

pub(crate) fn restore(
    request: RestoreRequest,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<RestoreReport> {
    let target = std::path::absolute(&request.config.data_dir)
        .map_err(|e| Error::io(&request.config.data_dir, e))?;
    // Held until the swap: no other process opens the directory meanwhile.
    let lock = if target.exists() { Some(lock_data_dir(&target)?) } else { None };
    let occupied = lock.is_some() && store::holds_a_twin(&target.join(DATABASE_FILE));
    if occupied && !request.replace {
        return Err(Error::ConfirmationNeeded(format!(
            "{} holds a twin: restoring replaces it (its sources, conversations and verified \
             answers) with the backup's; confirm to go ahead (`--yes`)",
            target.display()
        )));
    }

    let staging = beside(&target, "restoring")?;
    remove_any(&staging)?;
    std::fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;
    let cleanup = Cleanup(vec![staging.clone()]);
    let database = staging.join(DATABASE_FILE);
    let manifest = read_backup(&request, &database, cancel, progress)?;

    progress(Progress { stage: Stage::Check, done: 0, total: 1 });
    check_database(&database, &manifest, &request.backup)?;
    let mut notes = Vec::new();
    if lock.is_some() {
        keep_models(&target.join(MODELS_DIR), &staging.join(MODELS_DIR), &mut notes);
    }
    progress(Progress { stage: Stage::Check, done: 1, total: 1 });

    let (counts, index_entries, keys) = open_restored(&request.config, &staging, progress)?;
    if keys > 0 {
        notes.push(format!(
            "{keys} model server API key{} not in the backup: enter {} again if this computer's \
             keychain lacks {}",
            if keys == 1 { " is" } else { "s are" },
            if keys == 1 { "it" } else { "them" },
            if keys == 1 { "it" } else { "them" },
        ));
    }
    sync_file(&database)?;
    sync_dir(&staging)?;
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }

    // The one step that restores.
    if lock.is_some() {
        exchange(&staging, &target)?;
        drop(lock);
        // `staging` now holds the replaced directory: it goes once the restored one is in place.
        drop(cleanup);
    } else {
        rename_durably(&staging, &target)?;
        cleanup.keep();
    }
    tracing::info!(
        schema_version = manifest.schema_version,
        sources = counts.sources,
        index_entries,
        "backup restored"
    );
    Ok(RestoreReport {
        data_dir: target,
        migrated_from: (manifest.schema_version < SCHEMA_VERSION)
            .then_some(manifest.schema_version),
        manifest,
        counts,
        replaced: occupied,
        index_entries,
        notes,
    })
}

/// Locks an existing folder as a data directory, refusing one that holds other things.
fn lock_data_dir(target: &Path) -> Result<DataDir> {
    if !target.is_dir() {
        return Err(Error::InvalidInput(format!("{} is not a folder", target.display())));
    }
    let entries = std::fs::read_dir(target).map_err(|e| Error::io(target, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(target, e))?;
        let name = entry.file_name();
        if !DATA_DIR_ENTRIES.iter().any(|known| name == *known) {
            return Err(Error::InvalidInput(format!(
                "{} is not a Doppel data directory (it holds {}): restore into an empty folder \
                 or a data directory",
                target.display(),
                name.to_string_lossy()
            )));
        }
    }
    DataDir::lock(target)
}

/// The layers of a backup file: decrypted when encrypted, decompressed, as a tar archive.
pub(super) fn open_archive(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<tar::Archive<Box<dyn Read>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    let stream: Box<dyn Read> = if head.starts_with(AGE_MAGIC) {
        let passphrase = passphrase.filter(|p| !p.is_empty()).ok_or(Error::PassphraseNeeded)?;
        let decryptor = age::Decryptor::new_buffered(reader).map_err(|e| age_error(e, path))?;
        let mut identity =
            age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_string()));
        // A slower computer than the one that wrote it may need more work than its own target.
        identity.set_max_work_factor(22);
        let decrypted = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| age_error(e, path))?;
        Box::new(decrypted)
    } else if head.starts_with(GZIP_MAGIC) {
        Box::new(reader)
    } else {
        return Err(damaged(path, "it is not a Doppel backup"));
    };
    Ok(tar::Archive::new(Box::new(flate2::read::GzDecoder::new(stream))))
}

fn age_error(e: age::DecryptError, path: &Path) -> Error {
    use age::DecryptError as E;
    match e {
        E::NoMatchingKeys | E::KeyDecryptionFailed | E::DecryptionFailed => Error::WrongPassphrase,
        E::ExcessiveWork { .. } => {
            damaged(path, "its encryption asks for more work than this Doppel allows")
        }
        E::InvalidMac => damaged(path, "its encryption header was altered"),
        E::Io(e) => read_error(e, path),
        _ => damaged(path, "its encryption header is not valid"),
    }
}

fn damaged(path: &Path, reason: &str) -> Error {
    Error::BackupDamaged { path: path.to_path_buf(), reason: reason.to_string() }
}

/// An error while reading the backup: the file's fault, unless it was a cancel.
pub(super) fn read_error(e: std::io::Error, path: &Path) -> Error {
    if is_cancel(&e) {
        return Error::Cancelled;
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => damaged(path, "it ends too early (it was cut off)"),
        _ => damaged(path, &format!("it is damaged ({e})")),
    }
}

/// Reads and checks the manifest, the archive's first entry.
pub(super) fn read_manifest(
    entries: &mut tar::Entries<'_, Box<dyn Read>>,
    path: &Path,
) -> Result<Manifest> {
    let mut entry = match entries.next() {
        Some(entry) => entry.map_err(|e| read_error(e, path))?,
        None => return Err(damaged(path, "it is empty")),
    };
    let name = entry.path().map_err(|e| read_error(e, path))?.into_owned();
    if name != Path::new(MANIFEST_ENTRY) || entry.size() > MANIFEST_LIMIT {
        return Err(damaged(path, "it does not begin with a manifest"));
    }
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| read_error(e, path))?;
    // Only a decrypted stream gets this far when the file is encrypted.
    let encrypted = {
        let mut head = [0u8; 21];
        File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == *AGE_MAGIC
    };
    let manifest = Manifest::parse(&bytes, path, encrypted)?;
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: manifest.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(manifest)
}

/// Reads the whole backup: the manifest, then the database into `database`, checked against
/// the manifest's size and checksum, then the rest of the file (which checks the compressed
/// stream's own checksum and, when encrypted, every chunk's authentication).
fn read_backup(
    request: &RestoreRequest,
    database: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest> {
    let path = &request.backup;
    let mut archive = open_archive(path, request.passphrase.as_deref())?;
    let mut hasher = Sha256::new();
    let manifest = {
        let mut entries = archive.entries().map_err(|e| read_error(e, path))?;
        let manifest = read_manifest(&mut entries, path)?;
        let total = manifest.database_bytes;
        let entry = match entries.next() {
            Some(entry) => entry.map_err(|e| read_error(e, path))?,
            None => return Err(damaged(path, "it ends before its database")),
        };
        let name = entry.path().map_err(|e| read_error(e, path))?.into_owned();
        if name != Path::new(DATABASE_ENTRY) || entry.size() != total {
            return Err(damaged(path, "its database is not the one its manifest describes"));
        }
        let mut reader = Counting { inner: entry, done: 0, cancel };
        let mut out = File::create(database).map_err(|e| Error::io(database, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut reported = 0;
        loop {
            let n = reader.read(&mut buf).map_err(|e| read_error(e, path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(database, e))?;
            if reader.done - reported >= 1 << 20 || reader.done == total {
                reported = reader.done;
                progress(Progress { stage: Stage::Read, done: reported, total });
            }
        }
        if reader.done != total {
            return Err(damaged(path, "it ends too early (it was cut off)"));
        }
        if let Some(extra) = entries.next() {
            extra.map_err(|e| read_error(e, path))?;
            return Err(damaged(path, "it holds more than a backup does"));
        }
        manifest
    };
    // The end of the compressed stream carries its checksum; reading to it checks it.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| read_error(e, path))?;
    if hex(&hasher.finalize()) != manifest.database_sha256 {
        return Err(damaged(path, "its database does not match its checksum"));
    }
    Ok(manifest)
}

/// The restored database is whole and holds what the manifest says.
fn check_database(database: &Path, manifest: &Manifest, backup: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(database)?;
    let version = store::stored_version(&conn)?;
    if version != manifest.schema_version {
        return Err(damaged(backup, "its database's schema version differs from its manifest's"));
    }
    store::integrity_check(&conn).map_err(|_| damaged(backup, "its database is corrupt"))?;
    if store::counts(&conn)? != manifest.counts {
        return Err(damaged(backup, "its database does not hold what its manifest counts"));
    }
    Ok(())
}

/// Model files of the replaced directory are linked into the restored one (no copy, and the
/// replaced directory is not changed), so that downloaded models stay. A model that cannot be
/// linked (another file system) is left out and named.
fn keep_models(from: &Path, to: &Path, notes: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(from) else { return };
    if std::fs::create_dir_all(to).is_err() {
        notes.push("the models of the replaced directory could not be kept".into());
        return;
    }
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if std::fs::hard_link(&path, to.join(entry.file_name())).is_err() {
            notes.push(format!(
                "the model {} was not kept: download or import it again",
                entry.file_name().to_string_lossy()
            ));
        }
    }
}

/// Opens the restored directory once: migrations, queue recovery, the vector index rebuilt
/// from the stored vectors (with progress), the local API switched off. Returns its counts,
/// its index entries and how many model server keys it refers to.
fn open_restored(
    config: &Config,
    staging: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Counts, u64, usize)> {
    let (events, received) = mpsc::channel();
    let config = Config {
        data_dir: staging.to_path_buf(),
        process_queue: false,
        watch: false,
        subscriber: Some(events),
        ..config.clone()
    };
    std::thread::scope(|scope| {
        let opened = scope.spawn(move || -> Result<(Counts, u64, usize)> {
            let doppel = Doppel::open(config)?;
            // The index is rebuilt in the background: it is waited for, so that it is saved
            // when the handle closes.
            doppel.wait_for_index(|_| {})?;
            doppel.reset_after_restore()?;
            let counts = doppel.readers.with(store::counts)?;
            let keys = doppel.readers.with(store::stored_key_markers)?;
            Ok((counts, doppel.vector_status().index_entries, keys))
        });
        // Ends when the handle, which holds the sender, is dropped.
        for event in received {
            if let Event::IndexRebuild { done, total } = event {
                progress(Progress { stage: Stage::Index, done, total });
            }
        }
        opened.join().unwrap_or(Err(Error::Internal { during: "opening the restored directory" }))
    })
}
