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
                let pid = read_pid(&mut file);
                if pid != Some(std::process::id()) || !retry_own(&file) {
                    return Err(Error::AlreadyRunning { pid, dir: path });
                }
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

/// How long a lock that this same process held last is tried again. The lock belongs to the
/// open file, and a child process that another thread was starting (between its fork and its
/// exec) at the moment this process let go holds a copy of that file for an instant: without
/// this, closing a data directory and opening it again at once could be refused, rarely, as
/// if another Doppel held it.
const OWN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Tries again, for at most [`OWN_LOCK_WAIT`], to lock a file this process held last; true once
/// the lock is taken.
fn retry_own(file: &File) -> bool {
    let deadline = std::time::Instant::now() + OWN_LOCK_WAIT;
    while std::time::Instant::now() < deadline {
        #[cfg(test)]
        tests::RETRIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
        if file.try_lock().is_ok() {
            return true;
        }
    }
    false
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

    /// How many times a lock was tried again (see [`retry_own`]).
    pub(super) static RETRIES: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn a_directory_closed_by_this_process_opens_again_while_a_starting_child_holds_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::lock(dir.path()).unwrap();
        // What a child process between its fork and its exec holds: the same open file.
        let child = first._lock.try_clone().unwrap();
        drop(first);
        let retries = RETRIES.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::scope(|scope| {
            let again = scope.spawn(|| DataDir::lock(dir.path()));
            // The child lets go (it execs) once the opening is under way.
            while RETRIES.load(std::sync::atomic::Ordering::SeqCst) == retries
                && !again.is_finished()
            {
                std::thread::yield_now();
            }
            drop(child);
            let again = again.join().unwrap();
            assert!(again.is_ok(), "{:?}", again.err());
        });
    }

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
