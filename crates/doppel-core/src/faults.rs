//! Faults a test can inject into the worker, to prove that one job's failure stays its own (the
//! audit's M3), and a hold on index rebuilds, to look at the app while one runs. Nothing a
//! person can set, type or drop turns one on: they are reachable only from Rust code, and each
//! applies only to jobs (or data directories) whose origin (or path) contains the marker it was
//! armed with, so tests running beside each other are not touched.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Origin markers: a job whose origin contains one panics in the middle of its work.
static PANIC_IN_JOB: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Origin markers with a count: recording the end of such a job fails that many times.
static FAIL_RECORD: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// Path markers: a rebuild of the vector index of a data directory whose path contains one
/// waits, once it has read the stored vectors, until the marker is released.
static HELD_REBUILDS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static REBUILDS_RELEASED: Condvar = Condvar::new();

/// Holds every rebuild of the vector index of a data directory whose path contains `marker`
/// (at open, after a change of the graph's shape) until [`release_rebuilds_of`], so that a test
/// can look at the app while it rebuilds. It still ends when its data directory is closed.
pub fn hold_rebuilds_of(marker: &str) {
    lock(&HELD_REBUILDS).push(marker.to_string());
}

/// Lets the rebuilds held for `marker` go on.
pub fn release_rebuilds_of(marker: &str) {
    lock(&HELD_REBUILDS).retain(|m| m != marker);
    REBUILDS_RELEASED.notify_all();
}

pub(crate) fn rebuild_held(database: &Path) -> bool {
    let path = database.to_string_lossy();
    lock(&HELD_REBUILDS).iter().any(|m| path.contains(m.as_str()))
}

/// Waits while the rebuild of `database`'s index is held; `cancel` ends the wait as a
/// cancellation.
pub(crate) fn wait_while_rebuild_held(database: &Path, cancel: &AtomicBool) -> crate::Result<()> {
    let mut held = lock(&HELD_REBUILDS);
    let path = database.to_string_lossy();
    while held.iter().any(|m| path.contains(m.as_str())) {
        if cancel.load(Ordering::Relaxed) {
            return Err(crate::Error::Cancelled);
        }
        // The wait wakes now and then to notice a cancel (its data directory being closed).
        held = REBUILDS_RELEASED
            .wait_timeout(held, Duration::from_millis(50))
            .map(|(guard, _)| guard)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    Ok(())
}

/// Origin markers: deleting a source whose origin contains one panics mid-transaction.
static PANIC_IN_DELETE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Makes deleting a source whose origin contains `marker` panic inside its transaction.
pub fn panic_in_deletes_of(marker: &str) {
    lock(&PANIC_IN_DELETE).push(marker.to_string());
}

pub(crate) fn panic_if_delete_armed(origin: &str) {
    let armed = lock(&PANIC_IN_DELETE).iter().any(|m| origin.contains(m.as_str()));
    if armed {
        panic!("fault injected into a delete");
    }
}

/// Makes every job whose origin contains `marker` panic after it has parsed its content.
pub fn panic_in_jobs_of(marker: &str) {
    lock(&PANIC_IN_JOB).push(marker.to_string());
}

/// Makes recording the end of a job whose origin contains `marker` fail `times` times.
pub fn fail_recording_jobs_of(marker: &str, times: u32) {
    lock(&FAIL_RECORD).push((marker.to_string(), times));
}

pub(crate) fn panic_if_armed(origin: &str) {
    let armed = lock(&PANIC_IN_JOB).iter().any(|m| origin.contains(m.as_str()));
    if armed {
        panic!("fault injected into a job");
    }
}

pub(crate) fn record_fault(origin: &str) -> crate::Result<()> {
    let mut armed = lock(&FAIL_RECORD);
    match armed.iter_mut().find(|(m, left)| *left > 0 && origin.contains(m.as_str())) {
        Some((_, left)) => {
            *left -= 1;
            Err(crate::Error::Io {
                path: "doppel.sqlite3".into(),
                source: std::io::Error::other("fault injected into recording a job's end"),
            })
        }
        None => Ok(()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
