//! The data directory and its lock.
//!
//! One data directory holds everything Doppel keeps: the database, later the index and the model
//! cache, and the logs. Exactly one process may use it at a time: [`DataDir::lock`] takes an
//! exclusive OS lock on `doppel.lock` and writes the holder's pid into it, so that a second process
//! is refused with a message that names the holder. The OS drops the lock when the process dies,
//! so a crash never leaves the directory locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const LOCK_FILE: &str = "doppel.lock";
/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "doppel.sqlite3";
/// The folder for log files inside the data directory.
pub const LOG_DIR: &str = "logs";

/// The platform's default data directory (`~/.local/share/doppel` on Linux).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "doppel").map(|dirs| dirs.data_dir().to_path_buf())
}

/// A locked data directory. The lock is held until this value is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    // Held for its lock only.
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and takes its exclusive lock.
    pub fn lock(path: &Path) -> Result<DataDir> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let path = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::AlreadyRunning { pid: read_pid(&mut file), dir: path });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let pid = std::process::id().to_string();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|()| file.sync_all());
        written.map_err(|e| Error::io(&lock_path, e))?;
        Ok(DataDir { path, _lock: file })
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.path.join(DATABASE_FILE)
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The pid recorded in a data directory's lock file, if any (for `doctor`).
pub fn lock_holder(path: &Path) -> Option<u32> {
    let mut file = File::open(path.join(LOCK_FILE)).ok()?;
    read_pid(&mut file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::lock(dir.path()).unwrap();
        let err = DataDir::lock(dir.path()).unwrap_err();
        let Error::AlreadyRunning { pid, .. } = &err else { panic!("unexpected error {err}") };
        assert_eq!(*pid, Some(std::process::id()));
        assert!(
            err.to_string().starts_with("Doppel is already running on this data directory (pid ")
        );
        drop(first);
        DataDir::lock(dir.path()).unwrap();
    }
}
