//! Progress events published by the worker for any shell to follow.
//!
//! A shell calls `Doppel::subscribe` and receives every later [`Event`] on a channel. Sending never
//! blocks the worker: subscribers whose receiver is gone are dropped at the next publish.
//! Events carry ids, states and counts, never document text.
//!
//! Progress is thinned here, once for every shell: a job's `JobProgress` and `JobEmbedding`,
//! an index rebuild and the background embedding reach subscribers at most every
//! [`PROGRESS_EVERY`] each (per job for jobs), always with the first and the last of a run
//! (`done == total`, nothing `remaining`). A window then spends nothing per batch of 16
//! passages, however fast the worker goes, and nothing else is ever held back: state changes,
//! job ends and failures pass at once. A thinned `Backfill` carries the passages embedded by the
//! steps held back, so that its `embedded` counts still add up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use crate::model::{FolderId, JobId, JobOutcome, SourceId, SourceState};

/// Something that happened in the background.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A job was added to the queue.
    JobQueued {
        /// The job.
        job: JobId,
        /// Its source.
        source: SourceId,
    },
    /// The worker claimed a job.
    JobStarted {
        /// The job.
        job: JobId,
        /// Its source.
        source: Option<SourceId>,
        /// Which attempt this is, from 1.
        attempt: u32,
    },
    /// A running job made progress.
    JobProgress {
        /// The job.
        job: JobId,
        /// Units done (chunks).
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// A running job embedded some of its passages.
    JobEmbedding {
        /// The job.
        job: JobId,
        /// Passages embedded so far.
        done: u64,
        /// Passages to embed in all (those whose text had no vector yet).
        total: u64,
    },
    /// A running job read some pages of a scan (or an image) by text recognition.
    JobPages {
        /// The job.
        job: JobId,
        /// Pages read so far.
        done: u64,
        /// Pages to read in all.
        total: u64,
    },
    /// The vector index is being rebuilt from the stored vectors.
    IndexRebuild {
        /// Vectors added so far.
        done: u64,
        /// Vectors in all.
        total: u64,
    },
    /// Passages stored earlier (before a model was available, or under another model) received
    /// vectors in the background.
    Backfill {
        /// Passages embedded in this step.
        embedded: u64,
        /// Passages still without a vector.
        remaining: u64,
    },
    /// Embedding passages in the background failed for now (a model server that is down, say);
    /// it is tried again when the worker is next idle.
    BackfillStalled {
        /// Why, for the person to read.
        reason: String,
    },
    /// A job finished.
    JobDone {
        /// The job.
        job: JobId,
        /// The source it filled (for `AlreadyPresent`, the source that already held the content).
        source: Option<SourceId>,
        /// How it ended.
        outcome: JobOutcome,
        /// Chunks indexed.
        chunks: u64,
    },
    /// A job failed; `retry_at` is set when it will be tried again.
    JobFailed {
        /// The job.
        job: JobId,
        /// Its source.
        source: Option<SourceId>,
        /// Stable error code.
        code: String,
        /// Readable reason.
        message: String,
        /// When the next attempt may start (ms since the epoch), if there is one.
        retry_at: Option<i64>,
    },
    /// A job was cancelled.
    JobCancelled {
        /// The job.
        job: JobId,
    },
    /// A source changed state.
    SourceChanged {
        /// The source.
        source: SourceId,
        /// Its new state.
        state: SourceState,
    },
    /// A source was deleted.
    SourceDeleted {
        /// The source.
        source: SourceId,
    },
    /// The write-ahead log was folded into the database file and emptied: text deleted before
    /// it (a forgotten source, an edit's removed paragraphs) has left every file. Sent after
    /// each delete or edit, or later if a reader outside Doppel held the log until then.
    LogCheckpointed,
    /// A watched folder was caught up with (when watching starts; sent even when nothing
    /// changed) or noticed changes (only when something was queued or forgotten).
    WatchChanged {
        /// The watched folder.
        folder: FolderId,
        /// Files handed to the queue (new or changed since they were last read).
        queued: u64,
        /// Sources forgotten because their file is gone.
        forgotten: u64,
    },
}

/// The least time between two progress events of one job (or of one kind of background work)
/// that subscribers receive: four a second.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Fans events out to subscribers.
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    subscribers: Mutex<Vec<Sender<Event>>>,
    thinning: Mutex<Thinning>,
}

/// What a stream of progress events is about: one job, or one kind of background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stream {
    Job(JobId),
    IndexRebuild,
    Backfill,
}

/// When each progress stream last passed, and what a held-back `Backfill` embedded.
#[derive(Debug, Default)]
struct Thinning {
    passed: HashMap<Stream, Instant>,
    backfill_held: u64,
}

impl Thinning {
    /// The event to send now, if any: progress passes when it is the first or the last of its
    /// stream, or when [`PROGRESS_EVERY`] went by since its stream last passed.
    fn admit(&mut self, event: Event, now: Instant) -> Option<Event> {
        let (stream, last) = match &event {
            Event::JobProgress { job, done, total } | Event::JobEmbedding { job, done, total } => {
                (Stream::Job(*job), done >= total)
            }
            Event::IndexRebuild { done, total } => (Stream::IndexRebuild, done >= total),
            Event::Backfill { remaining, .. } => (Stream::Backfill, *remaining == 0),
            Event::JobDone { job, .. }
            | Event::JobCancelled { job }
            | Event::JobFailed { job, .. } => {
                self.passed.remove(&Stream::Job(*job));
                return Some(event);
            }
            _ => return Some(event),
        };
        let due =
            self.passed.get(&stream).is_none_or(|at| now.duration_since(*at) >= PROGRESS_EVERY);
        if !due && !last {
            if let Event::Backfill { embedded, .. } = event {
                self.backfill_held += embedded;
            }
            return None;
        }
        self.passed.insert(stream, now);
        if let Event::Backfill { embedded, remaining } = event {
            let embedded = embedded + std::mem::take(&mut self.backfill_held);
            return Some(Event::Backfill { embedded, remaining });
        }
        Some(event)
    }
}

impl EventBus {
    pub(crate) fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = channel();
        self.attach(tx);
        rx
    }

    /// Adds a subscriber made by the caller.
    pub(crate) fn attach(&self, subscriber: Sender<Event>) {
        self.lock().push(subscriber);
    }

    pub(crate) fn publish(&self, event: Event) {
        self.publish_at(event, Instant::now());
    }

    /// Publishes `event` as of `now` (tests give their own clock).
    fn publish_at(&self, event: Event, now: Instant) {
        let admitted = {
            let mut thinning = self.thinning.lock().unwrap_or_else(|p| p.into_inner());
            thinning.admit(event, now)
        };
        if let Some(event) = admitted {
            self.lock().retain(|tx| tx.send(event.clone()).is_ok());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<Event>>> {
        // A panic while holding this lock cannot leave the list inconsistent, so a poisoned
        // lock is still usable.
        self.subscribers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_subscribers_do_not_block_others() {
        let bus = EventBus::default();
        let gone = bus.subscribe();
        let kept = bus.subscribe();
        drop(gone);
        bus.publish(Event::JobCancelled { job: 7 });
        assert_eq!(kept.recv().unwrap(), Event::JobCancelled { job: 7 });
        assert_eq!(bus.lock().len(), 1);
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn progress_reaches_subscribers_a_few_times_a_second_per_job_with_its_last_step() {
        let bus = EventBus::default();
        let events = bus.subscribe();
        let start = Instant::now();
        // Two jobs report 1,000 steps each over one second, interleaved, as a fast worker would.
        for step in 1..=1000u64 {
            for job in [1, 2] {
                let event = if step <= 500 {
                    Event::JobProgress { job, done: step, total: 500 }
                } else {
                    Event::JobEmbedding { job, done: step - 500, total: 500 }
                };
                bus.publish_at(event, at(start, step));
            }
        }
        bus.publish_at(
            Event::SourceChanged { source: 9, state: SourceState::Ready },
            at(start, 1000),
        );
        let seen: Vec<Event> = events.try_iter().collect();
        for job in [1, 2] {
            let of_job: Vec<&Event> = seen
                .iter()
                .filter(|e| matches!(e, Event::JobProgress { job: j, .. } | Event::JobEmbedding { job: j, .. } if *j == job))
                .collect();
            // One a quarter second, plus the end of reading and the end of embedding.
            assert!((4..=7).contains(&of_job.len()), "{of_job:?}");
            assert_eq!(of_job[0], &Event::JobProgress { job, done: 1, total: 500 });
            assert!(of_job.contains(&&Event::JobProgress { job, done: 500, total: 500 }));
            assert_eq!(of_job.last(), Some(&&Event::JobEmbedding { job, done: 500, total: 500 }));
        }
        assert_eq!(
            seen.last(),
            Some(&Event::SourceChanged { source: 9, state: SourceState::Ready })
        );
    }

    #[test]
    fn a_new_attempt_of_a_job_shows_its_first_step_at_once() {
        let bus = EventBus::default();
        let events = bus.subscribe();
        let start = Instant::now();
        bus.publish_at(Event::JobProgress { job: 3, done: 1, total: 10 }, at(start, 0));
        bus.publish_at(
            Event::JobFailed {
                job: 3,
                source: None,
                code: "io".into(),
                message: "x".into(),
                retry_at: Some(5),
            },
            at(start, 1),
        );
        bus.publish_at(Event::JobProgress { job: 3, done: 1, total: 10 }, at(start, 2));
        let progress = events.try_iter().filter(|e| matches!(e, Event::JobProgress { .. })).count();
        assert_eq!(progress, 2);
    }

    #[test]
    fn thinned_background_embedding_still_counts_every_passage() {
        let bus = EventBus::default();
        let events = bus.subscribe();
        let start = Instant::now();
        let mut remaining = 16 * 100;
        for step in 0..100 {
            remaining -= 16;
            bus.publish_at(Event::Backfill { embedded: 16, remaining }, at(start, step * 10));
        }
        let seen: Vec<Event> = events.try_iter().collect();
        assert!(seen.len() <= 6, "{seen:?}");
        let embedded: u64 = seen
            .iter()
            .map(|e| if let Event::Backfill { embedded, .. } = e { *embedded } else { 0 })
            .sum();
        assert_eq!(embedded, 1600);
        assert!(matches!(seen.last(), Some(Event::Backfill { remaining: 0, .. })), "{seen:?}");
    }
}
