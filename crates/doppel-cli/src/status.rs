//! `doppel status` (what the twin knows, and why something is not found), `doppel pause` and
//! `doppel resume`: the core's coverage, explanation and queue, printed.

use std::time::Duration;

use doppel_core::coverage::{Coverage, Explanation, Group, Problem, ProblemKind};
use doppel_core::{DEFAULT_TWIN, Doppel, Error, Hit, QueueProgress};
use serde_json::{Value, json};

use crate::json as shapes;
use crate::{Outcome, Printer};

/// Prints what the twin knows; with `why`, also what it holds of that word or file name.
pub(crate) fn status(
    doppel: &Doppel,
    out: &Printer,
    why: Option<String>,
) -> Result<Outcome, Error> {
    let coverage = doppel.coverage(DEFAULT_TWIN)?;
    let queue = doppel.queue_progress()?;
    let explanation = why.as_deref().map(|text| doppel.explain(DEFAULT_TWIN, text)).transpose()?;
    let mut value = json!({
        "coverage": coverage_value(&coverage),
        "queue": queue_value(&queue),
    });
    if let (Some(text), Some(explanation)) = (&why, &explanation) {
        value["why"] = explanation_value(text, explanation);
    }
    out.value(value, || {
        let mut text = coverage_text(&coverage, &queue);
        if let (Some(why), Some(explanation)) = (&why, &explanation) {
            text.push_str("\n\n");
            text.push_str(&explanation_text(why, explanation));
        }
        text
    });
    Ok(Outcome::Ok)
}

/// Pauses or resumes the queue, and says how it stands.
pub(crate) fn pause(doppel: &Doppel, out: &Printer, paused: bool) -> Result<Outcome, Error> {
    let queue = if paused { doppel.pause_queue()? } else { doppel.resume_queue()? };
    out.value(queue_value(&queue), || {
        let state = if paused {
            "queue paused: no file is read until `doppel resume` (kept across restarts)"
        } else {
            "queue resumed: `doppel wait` (or the app) processes it"
        };
        format!("{state}\n{}", queue_text(&queue))
    });
    Ok(Outcome::Ok)
}

/// "about 3 min left", for a time estimate.
pub(crate) fn time_left_text(left: Duration) -> String {
    let secs = left.as_secs();
    match secs {
        0..=59 => format!("about {} s left", secs.max(1)),
        60..=5399 => format!("about {} min left", (secs + 30) / 60),
        _ => format!("about {:.1} h left", secs as f64 / 3600.0),
    }
}

fn queue_value(q: &QueueProgress) -> Value {
    json!({
        "paused": q.paused,
        "started_at": q.started_at,
        "total": q.total,
        "ended": q.ended,
        "failed": q.failed,
        "running": q.running,
        "passages": q.passages,
        "time_left_ms": q.time_left.map(|d| d.as_millis() as u64),
    })
}

fn queue_text(q: &QueueProgress) -> String {
    let state = if q.paused { "paused" } else { "running" };
    if q.total == 0 {
        return if q.paused {
            "queue: paused, nothing waiting".to_string()
        } else {
            "queue: nothing waiting".to_string()
        };
    }
    let mut line = format!(
        "queue: {state}, {} of {} files done ({} failed), {} passages",
        q.ended, q.total, q.failed, q.passages
    );
    if let Some(left) = q.time_left {
        line.push_str(&format!(", {}", time_left_text(left)));
    }
    line
}

fn group_value(g: &Group) -> Value {
    json!({ "name": g.name, "sources": g.sources, "passages": g.passages })
}

fn kind_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Failed => "failed",
        ProblemKind::Skipped => "skipped",
        ProblemKind::Stale => "stale",
    }
}

fn problem_value(p: &Problem) -> Value {
    json!({
        "kind": kind_name(p.kind),
        "source_id": p.source,
        "title": p.title,
        "origin": p.origin,
        "code": p.code,
        "reason": p.reason,
        "retryable": p.retryable,
        "at": p.at,
    })
}

fn coverage_value(c: &Coverage) -> Value {
    let s = &c.states;
    json!({
        "states": {
            "ready": s.ready, "queued": s.queued, "processing": s.processing,
            "failed": s.failed, "skipped": s.skipped,
        },
        "formats": c.formats.iter().map(group_value).collect::<Vec<_>>(),
        "folders": c.folders.iter().map(group_value).collect::<Vec<_>>(),
        "other_folders": c.other_folders,
        "passages": c.passages,
        "embedded": c.embedded,
        "model": shapes::model_status(&c.model),
        "content_bytes": c.content_bytes,
        "disk_bytes": c.disk_bytes,
        "problems": c.problems.iter().map(problem_value).collect::<Vec<_>>(),
    })
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn coverage_text(c: &Coverage, q: &QueueProgress) -> String {
    let s = &c.states;
    let mut lines = vec![
        format!(
            "sources: {} ready · {} queued · {} being read · {} failed · {} skipped",
            s.ready, s.queued, s.processing, s.failed, s.skipped
        ),
        match &c.model {
            Ok(model) => format!(
                "passages: {} · {} found by meaning too (model {})",
                c.passages, c.embedded, model.name
            ),
            Err(reason) => {
                format!("passages: {} · found by keywords only ({reason})", c.passages)
            }
        },
        format!(
            "size: {} of documents · {} on disk (database and index)",
            size(c.content_bytes),
            size(c.disk_bytes)
        ),
        queue_text(q),
    ];
    if !c.formats.is_empty() {
        let formats: Vec<String> =
            c.formats.iter().map(|g| format!("{} {}", g.name, g.sources)).collect();
        lines.push(format!("formats: {}", formats.join(" · ")));
    }
    if !c.folders.is_empty() {
        lines.push("folders:".into());
        for g in &c.folders {
            lines
                .push(format!("  {:>6} sources {:>7} passages  {}", g.sources, g.passages, g.name));
        }
        if c.other_folders > 0 {
            lines.push(format!("  and {} more folders", c.other_folders));
        }
    }
    if !c.problems.is_empty() {
        lines.push("failed and skipped:".into());
        for p in &c.problems {
            let name = p.origin.as_deref().unwrap_or(&p.title);
            let retry = if p.retryable {
                format!(" (retry: doppel reingest {})", p.source)
            } else {
                String::new()
            };
            lines.push(format!("  {:<7} {name}: {}{retry}", kind_name(p.kind), p.reason));
        }
    }
    lines.join("\n")
}

fn explanation_value(text: &str, e: &Explanation) -> Value {
    json!({
        "text": text,
        "named": e.named.iter().map(shapes::source).collect::<Vec<_>>(),
        "words": e.words.iter().map(|w| json!({
            "word": w.word, "passages": w.passages, "sources": w.sources,
        })).collect::<Vec<_>>(),
        "keyword": e.keyword.iter().map(shapes::hit).collect::<Vec<_>>(),
        "meaning": match &e.meaning {
            Ok(hits) => json!({ "hits": hits.iter().map(shapes::hit).collect::<Vec<_>>() }),
            Err(reason) => json!({ "unavailable": reason }),
        },
    })
}

fn hit_line(h: &Hit) -> String {
    let place = h.location.to_string();
    let place = if place.is_empty() { String::new() } else { format!(" ({place})") };
    format!("  {}{place}: {}", h.source_title, h.snippet.replace('\n', " "))
}

fn explanation_text(text: &str, e: &Explanation) -> String {
    let mut lines = vec![format!("why isn't {text:?} found?")];
    if e.named.is_empty() {
        lines.push(
            "by name: no source is named like it (in folders, hidden files and images, audio, \
             video and archives are passed over)"
                .into(),
        );
    } else {
        lines.push("by name:".into());
        for s in &e.named {
            lines.push(format!("  {}", shapes::source_line(s)));
        }
    }
    if e.words.is_empty() {
        lines.push("by keywords: it has no word to search for".into());
    }
    for w in &e.words {
        lines.push(match w.passages {
            0 => format!("by keywords: {:?} is in no passage", w.word),
            n => format!(
                "by keywords: {:?} is in {n} passage{} of {} source{}",
                w.word,
                if n == 1 { "" } else { "s" },
                w.sources,
                if w.sources == 1 { "" } else { "s" }
            ),
        });
    }
    lines.extend(e.keyword.iter().map(hit_line));
    match &e.meaning {
        Ok(hits) if hits.is_empty() => lines.push("by meaning: no passage is close enough".into()),
        Ok(hits) => {
            lines.push("by meaning:".into());
            lines.extend(hits.iter().map(hit_line));
        }
        Err(reason) => lines.push(format!("by meaning: not available now ({reason})")),
    }
    lines.join("\n")
}
