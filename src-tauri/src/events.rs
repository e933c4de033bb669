//! The core's background events, forwarded to the window as the Tauri event `doppel://event`.
//!
//! One thread per open data directory receives [`doppel_core::Event`]s from
//! `Doppel::subscribe` and emits them as JSON objects with a `type` tag and camelCase fields
//! (docs/ipc.md, "Events"), in batches: the events that arrive within [`BATCH_WINDOW`] of the
//! first go out as one array, in order. Each Tauri event costs the page a script evaluation, so
//! a folder of thousands of files (two events each as it is queued) costs it a few batches,
//! not thousands of evaluations. The thread holds no handle to the core: it ends when the core
//! is dropped and its event channel closes.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use doppel_core::Event as CoreEvent;
use serde::Serialize;
use tauri::{AppHandle, Emitter};

/// The Tauri event that carries core events, an array of them at a time.
pub const EVENT: &str = "doppel://event";
/// How long events are gathered after the first of a batch arrives.
pub const BATCH_WINDOW: Duration = Duration::from_millis(25);
/// Most events in one batch.
pub const BATCH_MAX: usize = 5000;
/// The Tauri event that carries download progress.
pub const DOWNLOAD: &str = "doppel://download";
/// Progress of a backup or a restore: `{ stage, done, total }`.
pub const BACKUP: &str = "doppel://backup";

/// One core event as the front end receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Event {
    JobQueued {
        job: i64,
        source: i64,
    },
    JobStarted {
        job: i64,
        source: Option<i64>,
        attempt: u32,
    },
    JobProgress {
        job: i64,
        done: u64,
        total: u64,
    },
    JobEmbedding {
        job: i64,
        done: u64,
        total: u64,
    },
    JobPages {
        job: i64,
        done: u64,
        total: u64,
    },
    IndexRebuild {
        done: u64,
        total: u64,
    },
    Backfill {
        embedded: u64,
        remaining: u64,
    },
    BackfillStalled {
        reason: String,
    },
    JobDone {
        job: i64,
        source: Option<i64>,
        outcome: &'static str,
        chunks: u64,
    },
    JobFailed {
        job: i64,
        source: Option<i64>,
        code: String,
        message: String,
        retry_at: Option<i64>,
    },
    JobCancelled {
        job: i64,
    },
    SourceChanged {
        source: i64,
        state: &'static str,
    },
    SourceDeleted {
        source: i64,
    },
    WatchChanged {
        folder: i64,
        queued: u64,
        forgotten: u64,
    },
}

impl Event {
    /// The event as the front end sees it; `None` for a kind of event this shell does not know
    /// (the core's `Event` is non-exhaustive).
    pub fn from_core(event: CoreEvent) -> Option<Event> {
        Some(match event {
            CoreEvent::JobQueued { job, source } => Event::JobQueued { job, source },
            CoreEvent::JobStarted { job, source, attempt } => {
                Event::JobStarted { job, source, attempt }
            }
            CoreEvent::JobProgress { job, done, total } => Event::JobProgress { job, done, total },
            CoreEvent::JobEmbedding { job, done, total } => {
                Event::JobEmbedding { job, done, total }
            }
            CoreEvent::JobPages { job, done, total } => Event::JobPages { job, done, total },
            CoreEvent::IndexRebuild { done, total } => Event::IndexRebuild { done, total },
            CoreEvent::Backfill { embedded, remaining } => Event::Backfill { embedded, remaining },
            CoreEvent::BackfillStalled { reason } => Event::BackfillStalled { reason },
            CoreEvent::JobDone { job, source, outcome, chunks } => {
                Event::JobDone { job, source, outcome: outcome.as_str(), chunks }
            }
            CoreEvent::JobFailed { job, source, code, message, retry_at } => {
                Event::JobFailed { job, source, code, message, retry_at }
            }
            CoreEvent::JobCancelled { job } => Event::JobCancelled { job },
            CoreEvent::SourceChanged { source, state } => {
                Event::SourceChanged { source, state: state.as_str() }
            }
            CoreEvent::SourceDeleted { source } => Event::SourceDeleted { source },
            CoreEvent::WatchChanged { folder, queued, forgotten } => {
                Event::WatchChanged { folder, queued, forgotten }
            }
            _ => return None,
        })
    }
}

/// Forwards every event of `events` to the window, in batches, until the core closes the
/// channel.
pub fn forward(app: AppHandle, events: Receiver<CoreEvent>) {
    let spawned = std::thread::Builder::new().name("doppel-events".into()).spawn(move || {
        while let Some(batch) = next_batch(&events) {
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = app.emit(EVENT, &batch) {
                tracing::warn!(error = %e, "could not forward events to the window");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the event thread; progress will not show");
    }
}

/// The next batch: the first event to arrive, and those that follow it within
/// [`BATCH_WINDOW`] (at most [`BATCH_MAX`]). `None` once the channel is closed and empty.
fn next_batch(events: &Receiver<CoreEvent>) -> Option<Vec<Event>> {
    let first = events.recv().ok()?;
    let deadline = Instant::now() + BATCH_WINDOW;
    let mut batch: Vec<Event> = Event::from_core(first).into_iter().collect();
    while batch.len() < BATCH_MAX {
        // What has arrived already joins the batch however late it is; then the window waits.
        let next = match events.try_recv() {
            Ok(event) => Ok(event),
            Err(_) => events.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok(event) => batch.extend(Event::from_core(event)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_core::{JobOutcome, SourceState};

    fn json(event: CoreEvent) -> String {
        serde_json::to_string(&Event::from_core(event).unwrap()).unwrap()
    }

    #[test]
    fn events_carry_a_type_tag_and_camel_case_fields() {
        assert_eq!(
            json(CoreEvent::JobProgress { job: 12, done: 40, total: 96 }),
            r#"{"type":"jobProgress","job":12,"done":40,"total":96}"#
        );
        assert_eq!(
            json(CoreEvent::JobPages { job: 12, done: 3, total: 12 }),
            r#"{"type":"jobPages","job":12,"done":3,"total":12}"#
        );
        assert_eq!(
            json(CoreEvent::SourceChanged { source: 7, state: SourceState::Ready }),
            r#"{"type":"sourceChanged","source":7,"state":"ready"}"#
        );
        assert_eq!(
            json(CoreEvent::JobFailed {
                job: 12,
                source: Some(7),
                code: "malformed".into(),
                message: "file is malformed: bad xref".into(),
                retry_at: None,
            }),
            r#"{"type":"jobFailed","job":12,"source":7,"code":"malformed","message":"file is malformed: bad xref","retryAt":null}"#
        );
    }

    #[test]
    fn a_burst_of_events_goes_out_as_one_batch_in_order() {
        let (tx, rx) = std::sync::mpsc::channel();
        for job in 1..=3000 {
            tx.send(CoreEvent::JobQueued { job, source: job }).unwrap();
        }
        drop(tx);
        let batch = next_batch(&rx).unwrap();
        assert_eq!(batch.len(), 3000);
        assert_eq!(batch[0], Event::JobQueued { job: 1, source: 1 });
        assert_eq!(batch[2999], Event::JobQueued { job: 3000, source: 3000 });
        assert_eq!(next_batch(&rx), None);
    }

    #[test]
    fn outcomes_and_background_work_read_by_name() {
        assert_eq!(
            json(CoreEvent::JobDone {
                job: 3,
                source: Some(2),
                outcome: JobOutcome::AlreadyPresent,
                chunks: 0,
            }),
            r#"{"type":"jobDone","job":3,"source":2,"outcome":"already_present","chunks":0}"#
        );
        assert_eq!(
            json(CoreEvent::Backfill { embedded: 16, remaining: 80 }),
            r#"{"type":"backfill","embedded":16,"remaining":80}"#
        );
        assert_eq!(
            json(CoreEvent::BackfillStalled { reason: "server down".into() }),
            r#"{"type":"backfillStalled","reason":"server down"}"#
        );
        assert_eq!(
            json(CoreEvent::JobStarted { job: 1, source: None, attempt: 2 }),
            r#"{"type":"jobStarted","job":1,"source":null,"attempt":2}"#
        );
    }
}
