//! The commands of the views over a twin as a whole (docs/ipc.md): sources changed since a
//! moment, "what does my twin know?", "why isn't this found?", the search view, the queue's
//! pause and progress, and the desktop notification the window sends when a long ingest ends
//! while it is in the background. Each is one core call and a hand-written conversion, as in
//! `commands`.

use std::collections::HashMap;

use doppel_core::coverage::{self, ProblemKind, SourceFilter};
use doppel_core::find::{Found, FoundPassage};
use doppel_core::{
    FindRequest, QueueProgress, SearchMode, SourceChanges, SourceCounts, SourcePage, SourceQuery,
    SourceState,
};
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::dto;
use crate::error::IpcError;
use crate::state::Shell;

type Reply<T> = Result<T, IpcError>;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub queued: u64,
    pub processing: u64,
    pub ready: u64,
    pub failed: u64,
}

impl From<SourceCounts> for Counts {
    fn from(c: SourceCounts) -> Counts {
        Counts { queued: c.queued, processing: c.processing, ready: c.ready, failed: c.failed }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    pub sources: Vec<dto::Source>,
    pub cursor: i64,
    pub counts: Counts,
    /// Too many changed to list: the page reads what it shows again.
    pub more: bool,
}

impl From<SourceChanges> for Changes {
    fn from(c: SourceChanges) -> Changes {
        Changes {
            sources: c.sources.into_iter().map(dto::Source::from).collect(),
            cursor: c.cursor,
            counts: c.counts.into(),
            more: c.more,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub total: u64,
    pub counts: Counts,
    pub sources: Vec<dto::Source>,
    pub cursor: i64,
}

impl From<SourcePage> for Page {
    fn from(p: SourcePage) -> Page {
        Page {
            total: p.total,
            counts: p.counts.into(),
            sources: p.sources.into_iter().map(dto::Source::from).collect(),
            cursor: p.cursor,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateCounts {
    pub ready: u64,
    pub queued: u64,
    pub processing: u64,
    pub failed: u64,
    pub skipped: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub sources: u64,
    pub passages: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: &'static str,
    pub source_id: i64,
    pub title: String,
    pub origin: Option<String>,
    pub code: String,
    pub reason: String,
    pub retryable: bool,
    pub at: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub states: StateCounts,
    pub formats: Vec<Group>,
    pub folders: Vec<Group>,
    pub other_folders: u64,
    pub passages: u64,
    pub embedded: u64,
    /// The embedding model's name; `None` with `modelProblem` saying why there is none.
    pub model: Option<String>,
    pub model_problem: Option<String>,
    pub content_bytes: u64,
    pub disk_bytes: u64,
    pub problems: Vec<Problem>,
}

fn group(g: coverage::Group) -> Group {
    Group { name: g.name, sources: g.sources, passages: g.passages }
}

impl From<coverage::Coverage> for Coverage {
    fn from(c: coverage::Coverage) -> Coverage {
        let s = c.states;
        let (model, model_problem) = match c.model {
            Ok(info) => (Some(info.name), None),
            Err(reason) => (None, Some(reason)),
        };
        Coverage {
            states: StateCounts {
                ready: s.ready,
                queued: s.queued,
                processing: s.processing,
                failed: s.failed,
                skipped: s.skipped,
            },
            formats: c.formats.into_iter().map(group).collect(),
            folders: c.folders.into_iter().map(group).collect(),
            other_folders: c.other_folders,
            passages: c.passages,
            embedded: c.embedded,
            model,
            model_problem,
            content_bytes: c.content_bytes,
            disk_bytes: c.disk_bytes,
            problems: c
                .problems
                .into_iter()
                .map(|p| Problem {
                    kind: match p.kind {
                        ProblemKind::Failed => "failed",
                        ProblemKind::Skipped => "skipped",
                        ProblemKind::Stale => "stale",
                    },
                    source_id: p.source,
                    title: p.title,
                    origin: p.origin,
                    code: p.code,
                    reason: p.reason,
                    retryable: p.retryable,
                    at: p.at,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WordPresence {
    pub word: String,
    pub passages: u64,
    pub sources: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub named: Vec<dto::Source>,
    pub words: Vec<WordPresence>,
    pub keyword: Vec<dto::Hit>,
    /// Passages found by meaning; `None` with `meaningProblem` saying why it cannot run.
    pub meaning: Option<Vec<dto::Hit>>,
    pub meaning_problem: Option<String>,
}

impl From<coverage::Explanation> for Explanation {
    fn from(e: coverage::Explanation) -> Explanation {
        let (meaning, meaning_problem) = match e.meaning {
            Ok(hits) => (Some(hits.into_iter().map(dto::Hit::from).collect()), None),
            Err(reason) => (None, Some(reason)),
        };
        Explanation {
            named: e.named.into_iter().map(dto::Source::from).collect(),
            words: e
                .words
                .into_iter()
                .map(|w| WordPresence { word: w.word, passages: w.passages, sources: w.sources })
                .collect(),
            keyword: e.keyword.into_iter().map(dto::Hit::from).collect(),
            meaning,
            meaning_problem,
        }
    }
}

/// The search view's filter, as the front end sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Filter {
    pub sources: Vec<i64>,
    pub name: Option<String>,
    pub folder: Option<String>,
    pub format: Option<String>,
    pub from: Option<i64>,
    pub until: Option<i64>,
}

impl From<Filter> for SourceFilter {
    fn from(f: Filter) -> SourceFilter {
        SourceFilter {
            sources: f.sources,
            name: f.name.filter(|s| !s.trim().is_empty()),
            folder: f.folder.filter(|s| !s.is_empty()),
            format: f.format.filter(|s| !s.is_empty()),
            from: f.from,
            until: f.until,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub text: String,
    pub marked: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Passage {
    pub hit: dto::Hit,
    pub parts: Vec<Part>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindResults {
    pub passages: Vec<Passage>,
    pub mode: &'static str,
    pub notes: Vec<String>,
}

impl From<Found> for FindResults {
    fn from(f: Found) -> FindResults {
        let passage = |p: FoundPassage| Passage {
            hit: p.hit.into(),
            parts: p.parts.into_iter().map(|t| Part { text: t.text, marked: t.marked }).collect(),
        };
        FindResults {
            passages: f.passages.into_iter().map(passage).collect(),
            mode: f.mode.as_str(),
            notes: f.note.into_iter().collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    pub paused: bool,
    pub started_at: Option<i64>,
    pub total: u64,
    pub ended: u64,
    pub failed: u64,
    pub running: u64,
    pub passages: u64,
    pub time_left_ms: Option<u64>,
}

impl From<QueueProgress> for Queue {
    fn from(q: QueueProgress) -> Queue {
        Queue {
            paused: q.paused,
            started_at: q.started_at,
            total: q.total,
            ended: q.ended,
            failed: q.failed,
            running: q.running,
            passages: q.passages,
            time_left_ms: q.time_left.map(|d| d.as_millis() as u64),
        }
    }
}

#[tauri::command]
pub async fn sources_changed(shell: State<'_, Shell>, twin: i64, since: i64) -> Reply<Changes> {
    shell.run(move |d| Ok(d.sources_changed_since(twin, since)?.into())).await
}

#[tauri::command]
pub async fn source_page(
    shell: State<'_, Shell>,
    twin: i64,
    offset: u32,
    limit: u32,
    text: Option<String>,
    state: Option<String>,
) -> Reply<Page> {
    let state = match state.as_deref() {
        None | Some("") => None,
        Some(name) => Some(SourceState::parse(name).ok_or_else(|| {
            IpcError::invalid_input(format!(
                "unknown source state {name:?}: queued, processing, ready or failed"
            ))
        })?),
    };
    let query = SourceQuery { text, state, offset, limit };
    shell.run(move |d| Ok(d.source_page(twin, &query)?.into())).await
}

#[tauri::command]
pub async fn coverage(shell: State<'_, Shell>, twin: i64) -> Reply<Coverage> {
    shell.run(move |d| Ok(d.coverage(twin)?.into())).await
}

#[tauri::command]
pub async fn why_not_found(shell: State<'_, Shell>, twin: i64, text: String) -> Reply<Explanation> {
    shell.run(move |d| Ok(d.explain(twin, &text)?.into())).await
}

#[tauri::command]
pub async fn find(
    shell: State<'_, Shell>,
    twin: i64,
    query: String,
    mode: String,
    top_k: Option<u32>,
    filter: Option<Filter>,
) -> Reply<FindResults> {
    let mode = SearchMode::parse(&mode).ok_or_else(|| {
        IpcError::invalid_input(format!("unknown search mode {mode:?}: hybrid, vector or keyword"))
    })?;
    let request =
        FindRequest { twin, query, mode, limit: top_k, filter: filter.unwrap_or_default().into() };
    shell.run(move |d| Ok(d.find(&request)?.into())).await
}

#[tauri::command]
pub async fn queue_progress(shell: State<'_, Shell>) -> Reply<Queue> {
    shell.run(|d| Ok(d.queue_progress()?.into())).await
}

#[tauri::command]
pub async fn pause_queue(shell: State<'_, Shell>) -> Reply<Queue> {
    shell.run(|d| Ok(d.pause_queue()?.into())).await
}

#[tauri::command]
pub async fn resume_queue(shell: State<'_, Shell>) -> Reply<Queue> {
    shell.run(|d| Ok(d.resume_queue()?.into())).await
}

/// Shows a desktop notification through the session's notification server (the freedesktop
/// `org.freedesktop.Notifications` D-Bus interface that every Linux desktop provides).
#[tauri::command]
pub async fn notify(title: String, body: String) -> Reply<()> {
    tauri::async_runtime::spawn_blocking(move || send_notification(&title, &body))
        .await
        .map_err(|e| IpcError::internal(format!("a background task failed: {e}")))?
}

fn send_notification(title: &str, body: &str) -> Reply<()> {
    let failed = |e: zbus::Error| IpcError {
        code: "notify_failed".into(),
        message: format!("the desktop could not show a notification: {e}"),
    };
    let connection = zbus::blocking::Connection::session().map_err(failed)?;
    let hints: HashMap<&str, zbus::zvariant::Value> = HashMap::new();
    connection
        .call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &("Doppel", 0u32, "doppel", title, body, Vec::<&str>::new(), hints, -1i32),
        )
        .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_from_the_window_leaves_out_what_it_left_empty() {
        let filter: Filter =
            serde_json::from_str(r#"{"folder":"","format":"PDF","from":1000}"#).unwrap();
        let filter = SourceFilter::from(filter);
        assert_eq!(filter.folder, None);
        assert_eq!(filter.format.as_deref(), Some("PDF"));
        assert_eq!((filter.from, filter.until), (Some(1000), None));
        assert!(SourceFilter::from(Filter::default()).is_empty());
    }

    #[test]
    fn the_queue_reads_in_camel_case_with_its_time_left_in_milliseconds() {
        let queue = Queue::from(QueueProgress {
            paused: false,
            started_at: Some(5),
            total: 10,
            ended: 4,
            failed: 1,
            running: 1,
            passages: 40,
            time_left: Some(std::time::Duration::from_secs(3)),
        });
        assert_eq!(
            serde_json::to_string(&queue).unwrap(),
            r#"{"paused":false,"startedAt":5,"total":10,"ended":4,"failed":1,"running":1,"passages":40,"timeLeftMs":3000}"#
        );
    }
}
