//! Logs go to `logs/doppel.log` in the data directory, never to the terminal; both shells (the
//! CLI and the desktop window) start them here once they know the data directory.
//!
//! The level comes from `DOPPEL_LOG` (for example `debug`), default `info`. The core logs ids,
//! states, counts and paths; never document text or secrets. A log over 10 MB is moved aside to
//! `doppel.log.1` at start, so logs stay bounded.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// Starts logging to the data directory's log file; does nothing if it cannot be opened or a
/// logger is already set.
pub fn init_logging(data_dir: &Path) {
    let dir = data_dir.join(crate::LOG_DIR);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join("doppel.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        // Best effort: a log that cannot be rotated is simply appended to.
        let _ = std::fs::rename(&path, dir.join("doppel.log.1"));
    }
    let Ok(file) = OpenOptions::new().create(true).append(true).open(&path) else {
        return;
    };
    let filter = EnvFilter::try_from_env("DOPPEL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}
