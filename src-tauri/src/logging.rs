//! Logs go to `logs/doppel.log` in the data directory, as the CLI's do (level from
//! `DOPPEL_LOG`, default `info`; a log over 10 MB is moved aside to `doppel.log.1` at start).
//! The core logs ids, states, counts and paths; never document text or secrets.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

pub fn init(data_dir: &Path) {
    let dir = data_dir.join(doppel_core::LOG_DIR);
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
