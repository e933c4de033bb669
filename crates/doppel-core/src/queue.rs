//! The ingestion queue as a whole: pausing and resuming it, and how far its current run is.
//!
//! Whether the queue is paused is a stored setting ([`PAUSED_KEY`]), so a paused queue stays
//! paused across a restart, by the window or the CLI alike. [`QueueGate`] holds it in memory
//! for the worker, which claims no job and embeds nothing in the background while it is set;
//! a job already running finishes. This module never writes: the setting goes to the worker
//! like every other write.
//!
//! A *run* is what the queue has been doing since it was last empty: the jobs waiting or
//! running, and those that ended since the oldest of them was queued. Its estimate of the time
//! left ([`time_left`]) comes from how fast its latest jobs ended.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::model::Millis;
use crate::store::Run;

/// The stored setting that says the queue is paused (`"1"`) or not.
pub(crate) const PAUSED_KEY: &str = "queue_paused";

/// How many of the latest ended jobs the estimate of the time left is taken from.
pub const RECENT: u32 = 50;

/// Whether the worker may take jobs; shared by the handle and the worker.
#[derive(Debug, Default)]
pub(crate) struct QueueGate {
    paused: AtomicBool,
}

impl QueueGate {
    /// Whether the queue is paused.
    pub(crate) fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }
}

/// Whether the stored settings say the queue is paused.
pub(crate) fn stored_paused(stored: &BTreeMap<String, String>) -> bool {
    stored.get(PAUSED_KEY).is_some_and(|v| v == "1")
}

/// How far the queue's current run is (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueProgress {
    /// Whether the queue is paused (kept across restarts).
    pub paused: bool,
    /// When the oldest waiting or running job was queued; `None` when nothing waits.
    pub started_at: Option<Millis>,
    /// Files (and pages, and pasted texts) in the run.
    pub total: u64,
    /// Those that ended: learnt, failed or cancelled.
    pub ended: u64,
    /// Those of them that failed.
    pub failed: u64,
    /// Those being read right now (0 or 1).
    pub running: u64,
    /// Passages stored by the run so far.
    pub passages: u64,
    /// About how long the rest will take; `None` while paused, or before two jobs ended.
    pub time_left: Option<Duration>,
}

impl QueueProgress {
    /// Files still waiting or running.
    pub fn remaining(&self) -> u64 {
        self.total - self.ended
    }
}

/// The progress of a run as the store counted it.
pub(crate) fn progress(run: &Run, paused: bool) -> QueueProgress {
    let ended = run.done + run.failed + run.cancelled;
    let remaining = run.queued + run.running;
    QueueProgress {
        paused,
        started_at: run.started,
        total: ended + remaining,
        ended,
        failed: run.failed,
        running: run.running,
        passages: run.passages,
        time_left: if paused { None } else { time_left(remaining, &run.ended) },
    }
}

/// About how long `remaining` jobs will take, from when the latest jobs ended (`ended`, in any
/// order): the average time between two of them, times what is left. `None` before two ended.
pub fn time_left(remaining: u64, ended: &[Millis]) -> Option<Duration> {
    let first = ended.iter().min()?;
    let last = ended.iter().max()?;
    if ended.len() < 2 {
        return None;
    }
    let each = (last - first).max(0) as f64 / (ended.len() - 1) as f64;
    Some(Duration::from_millis((each * remaining as f64).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_pace_of_the_latest_jobs() {
        assert_eq!(time_left(10, &[]), None);
        assert_eq!(time_left(10, &[5_000]), None);
        // Five jobs ended 2 s apart: ten more take about 20 s.
        let ended = [10_000, 8_000, 6_000, 4_000, 2_000];
        assert_eq!(time_left(10, &ended), Some(Duration::from_secs(20)));
        assert_eq!(time_left(0, &ended), Some(Duration::ZERO));
    }

    #[test]
    fn a_paused_run_has_no_estimate_and_counts_every_job_once() {
        let run = Run {
            started: Some(1_000),
            queued: 7,
            running: 1,
            done: 3,
            failed: 1,
            cancelled: 0,
            passages: 42,
            ended: vec![4_000, 3_000, 2_000, 1_000],
        };
        let going = progress(&run, false);
        assert_eq!((going.total, going.ended, going.remaining(), going.failed), (12, 4, 8, 1));
        assert_eq!(going.time_left, Some(Duration::from_secs(8)));
        let paused = progress(&run, true);
        assert!(paused.paused);
        assert_eq!(paused.time_left, None);
        assert_eq!(progress(&Run::default(), false), QueueProgress::default());
    }

    #[test]
    fn only_a_stored_one_means_paused() {
        let stored = |v: &str| BTreeMap::from([(PAUSED_KEY.to_string(), v.to_string())]);
        assert!(stored_paused(&stored("1")));
        assert!(!stored_paused(&stored("0")));
        assert!(!stored_paused(&BTreeMap::new()));
    }
}
