//! Faults a test can inject into the worker, to prove that one job's failure stays its own (the
//! audit's M3). Nothing a person can set, type or drop turns one on: they are reachable only
//! from Rust code, and each applies only to jobs whose origin contains the marker it was armed
//! with, so tests running beside each other are not touched.

use std::sync::Mutex;

/// Origin markers: a job whose origin contains one panics in the middle of its work.
static PANIC_IN_JOB: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Origin markers with a count: recording the end of such a job fails that many times.
static FAIL_RECORD: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

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
