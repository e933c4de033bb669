//! `doppel watch`: the watched folders, and `watch run`, which keeps them in sync until Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use clap::Subcommand;
use doppel_core::{DEFAULT_TWIN, Doppel, Error, Event, JobOutcome};
use serde_json::{Value, json};

use crate::Printer;
use crate::chat::{INTERRUPTED, catch_interrupts};

#[derive(Subcommand)]
pub(crate) enum WatchAction {
    /// Watch a folder: `watch run` (or the app) then ingests what appears or changes in it and
    /// forgets what disappears.
    Add {
        /// The folder.
        path: PathBuf,
        /// The twin that learns its files.
        #[arg(long, default_value_t = DEFAULT_TWIN)]
        twin: i64,
    },
    /// List the watched folders.
    List,
    /// Stop watching a folder (its sources stay).
    Remove {
        /// The watched folder's id.
        id: i64,
    },
    /// Catch up with the watched folders, then follow their changes until Ctrl-C.
    Run,
}

impl WatchAction {
    /// Whether the command follows the folders (the others only read or change the list).
    pub(crate) fn runs(&self) -> bool {
        matches!(self, WatchAction::Run)
    }
}

pub(crate) fn watch(
    doppel: &Doppel,
    out: &Printer,
    action: WatchAction,
    events: Receiver<Event>,
) -> Result<(), Error> {
    match action {
        WatchAction::Add { path, twin } => {
            let folder = doppel.watch_folder(twin, &path)?;
            out.value(crate::json::watched_folder(&folder), || {
                format!(
                    "watching {} (folder {}); `doppel watch run` or the app keeps it in sync",
                    folder.path, folder.id
                )
            });
        }
        WatchAction::List => {
            let folders = doppel.watched_folders()?;
            out.value(
                Value::Array(folders.iter().map(crate::json::watched_folder).collect()),
                || {
                    if folders.is_empty() {
                        return "no watched folders: add one with `doppel watch add PATH`".into();
                    }
                    folders
                        .iter()
                        .map(crate::json::watched_folder_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        WatchAction::Remove { id } => {
            doppel.unwatch_folder(id)?;
            out.value(json!({ "removed": id }), || format!("folder {id} is no longer watched"));
        }
        WatchAction::Run => run(doppel, out, &events)?,
    }
    Ok(())
}

/// Prints a line per change until Ctrl-C: text for people, one JSON object per line with
/// `--json`.
fn run(doppel: &Doppel, out: &Printer, events: &Receiver<Event>) -> Result<(), Error> {
    catch_interrupts();
    let folders = doppel.watched_folders()?;
    if folders.is_empty() {
        out.note("no watched folders: add one with `doppel watch add PATH`");
        return Ok(());
    }
    out.note(&format!("watching {} folder(s); Ctrl-C stops", folders.len()));
    let origin = |job: i64| doppel.job(job).map_or_else(|_| format!("job {job}"), |j| j.origin);
    while !INTERRUPTED.load(Ordering::Relaxed) {
        // The time-out only lets Ctrl-C be noticed.
        let event = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (value, text) = match event {
            Event::WatchChanged { folder, queued, forgotten } => (
                json!({ "event": "watch_changed", "folder": folder, "queued": queued, "forgotten": forgotten }),
                format!(
                    "folder {folder}: {queued} file(s) queued, {forgotten} source(s) forgotten"
                ),
            ),
            Event::JobDone { job, source, outcome, chunks } => {
                let path = origin(job);
                let text = match outcome {
                    JobOutcome::Ingested => format!("indexed {path} ({chunks} passages)"),
                    JobOutcome::Unchanged => format!("unchanged {path}"),
                    JobOutcome::AlreadyPresent => format!(
                        "{path} is already present as source {}",
                        source.map_or("?".into(), |s| s.to_string())
                    ),
                };
                let value = json!({
                    "event": "job_done", "job": job, "source": source, "origin": path,
                    "outcome": outcome.as_str(), "chunks": chunks,
                });
                (value, text)
            }
            Event::JobFailed { job, source, code, message, retry_at } => {
                let path = origin(job);
                let will = if retry_at.is_some() { " (will retry)" } else { "" };
                let text = format!("failed {path}: {message}{will}");
                let value = json!({
                    "event": "job_failed", "job": job, "source": source, "origin": path,
                    "error": { "code": code, "message": message }, "retry_at": retry_at,
                });
                (value, text)
            }
            Event::SourceDeleted { source } => (
                json!({ "event": "source_deleted", "source": source }),
                format!("forgot source {source}"),
            ),
            _ => continue,
        };
        out.value(value, || text);
    }
    out.note("stopped watching");
    Ok(())
}
