//! Progress events published by the worker for any shell to follow.
//!
//! A shell calls `Doppel::subscribe` and receives every later [`Event`] on a channel. Sending never
//! blocks the worker: subscribers whose receiver is gone are dropped at the next publish.
//! Events carry ids, states and counts, never document text.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

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

/// Fans events out to subscribers.
#[derive(Debug, Default)]
pub(crate) struct EventBus {
    subscribers: Mutex<Vec<Sender<Event>>>,
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
        self.lock().retain(|tx| tx.send(event.clone()).is_ok());
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
}
