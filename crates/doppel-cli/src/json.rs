//! The CLI's output shapes, converted by hand from the core's plain types.
//!
//! JSON field names here are the CLI's public contract; the text forms are for people.

use doppel_core::{
    Chunk, DoctorReport, Enqueued, Error, Hit, Job, Location, ModelInfo, Source, Twin,
    VectorStatus, WatchedFolder,
};
use serde_json::{Value, json};

/// The one error shape: `{"error":{"code":"...","message":"..."}}`.
pub(crate) fn error(e: &Error) -> Value {
    json!({ "error": error_value(e) })
}

/// `{"code":"...","message":"..."}` for an error.
pub(crate) fn error_value(e: &Error) -> Value {
    json!({ "code": e.code(), "message": e.to_string() })
}

fn location(loc: &Location) -> Value {
    json!({
        "label": loc.label,
        "page": loc.page,
        "line_start": loc.line_start,
        "line_end": loc.line_end,
        "text": loc.to_string(),
    })
}

pub(crate) fn twin(t: &Twin) -> Value {
    json!({ "id": t.id, "name": t.name, "created_at": t.created_at })
}

pub(crate) fn twin_line(t: &Twin) -> String {
    format!("{:>5}  {}", t.id, t.name)
}

pub(crate) fn watched_folder(f: &WatchedFolder) -> Value {
    json!({ "id": f.id, "twin_id": f.twin_id, "path": f.path, "created_at": f.created_at })
}

pub(crate) fn watched_folder_line(f: &WatchedFolder) -> String {
    format!("{:>5}  twin {:<4} {}", f.id, f.twin_id, f.path)
}

pub(crate) fn source(s: &Source) -> Value {
    json!({
        "id": s.id,
        "twin_id": s.twin_id,
        "kind": s.kind.as_str(),
        "origin": s.origin,
        "title": s.title,
        "media_type": s.media_type,
        "byte_size": s.byte_size,
        "content_hash": s.content_hash,
        "state": s.state.as_str(),
        "error": s.error,
        "chunk_count": s.chunk_count,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    })
}

pub(crate) fn source_line(s: &Source) -> String {
    let state = match &s.error {
        Some(error) => format!("{}: {error}", s.state),
        None => s.state.to_string(),
    };
    let origin = s.origin.as_deref().unwrap_or("(pasted text)");
    format!("{:>5}  {:<10} {:>5} passages  {}  [{}]", s.id, state, s.chunk_count, s.title, origin)
}

pub(crate) fn source_details(s: &Source, chunks: &[Chunk]) -> String {
    let mut out = format!(
        "source {}: {}\n  origin: {}\n  state: {}{}\n  type: {}\n  size: {} bytes\n  passages: {}\n",
        s.id,
        s.title,
        s.origin.as_deref().unwrap_or("(pasted text)"),
        s.state,
        s.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
        s.media_type.as_deref().unwrap_or("-"),
        s.byte_size.map_or("-".to_string(), |b| b.to_string()),
        s.chunk_count,
    );
    for c in chunks {
        out.push_str(&format!("\n[{}] {}\n{}\n", c.ordinal + 1, c.location, c.text));
    }
    out
}

pub(crate) fn chunk(c: &Chunk) -> Value {
    json!({
        "id": c.id,
        "ordinal": c.ordinal,
        "text": c.text,
        "location": location(&c.location),
        "token_count": c.token_count,
        "text_hash": c.text_hash,
    })
}

pub(crate) fn job(j: &Job) -> Value {
    json!({
        "id": j.id,
        "kind": j.kind.as_str(),
        "twin_id": j.twin_id,
        "source_id": j.source_id,
        "origin": j.origin,
        "state": j.state.as_str(),
        "attempts": j.attempts,
        "next_attempt_at": j.next_attempt_at,
        "error": j.last_error.as_ref().map(|m| json!({ "code": j.last_error_code, "message": m })),
        "outcome": j.outcome.map(|o| o.as_str()),
        "duplicate_of": j.duplicate_of,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
    })
}

pub(crate) fn job_line(j: &Job) -> String {
    let detail = match (&j.outcome, &j.last_error) {
        (Some(doppel_core::JobOutcome::AlreadyPresent), _) => {
            format!("already present (source {})", j.duplicate_of.unwrap_or_default())
        }
        (Some(outcome), _) => outcome.to_string(),
        (None, Some(error)) => error.clone(),
        (None, None) => String::new(),
    };
    format!("{:>5}  {:<9} attempt {}  {}  {}", j.id, j.state, j.attempts, j.origin, detail)
}

pub(crate) fn enqueued(q: &Enqueued) -> Value {
    json!({
        "origin": q.origin,
        "source_id": q.source_id,
        "job_id": q.job_id,
        "status": match q.status {
            doppel_core::EnqueueStatus::Queued => "queued",
            doppel_core::EnqueueStatus::AlreadyQueued => "already_queued",
        },
    })
}

pub(crate) fn hit(h: &Hit) -> Value {
    json!({
        "chunk_id": h.chunk_id,
        "source_id": h.source_id,
        "source_title": h.source_title,
        "origin": h.origin,
        "location": location(&h.location),
        "snippet": h.snippet,
        "text": h.text,
        "score": h.score,
        "retriever": h.retriever.as_str(),
    })
}

pub(crate) fn hit_text(rank: usize, h: &Hit) -> String {
    let place = h.location.to_string();
    let origin = h.origin.as_deref().unwrap_or("pasted text");
    let heading = if place.is_empty() {
        h.source_title.clone()
    } else if place.starts_with(&h.source_title) {
        place
    } else {
        format!("{} — {place}", h.source_title)
    };
    format!("{rank}. {heading}\n   {origin}\n   {}", h.snippet.replace('\n', " "))
}

pub(crate) fn doctor(r: &DoctorReport) -> Value {
    let counts = |pairs: &[(String, u64)]| -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    };
    json!({
        "ok": r.problems.is_empty(),
        "problems": r.problems,
        "data_dir": r.data_dir,
        "database": r.database,
        "app_version": r.app_version,
        "schema_version": r.schema_version,
        "sqlite_version": r.sqlite_version,
        "lock_holder": r.lock_holder,
        "twins": r.twins,
        "sources": counts(&r.sources),
        "chunks": r.chunks,
        "jobs": counts(&r.jobs),
        "model": model_status(&r.model),
        "index_entries": r.index_entries,
        "ef_search": r.ef_search,
        "chunks_without_vectors": r.chunks_without_vectors,
        "other_models": r.other_models.iter().map(|(info, vectors)| json!({
            "name": info.name, "dimension": info.dimension, "fingerprint": info.fingerprint,
            "vectors": vectors,
        })).collect::<Vec<_>>(),
    })
}

/// The embedding model in use, or why there is none.
pub(crate) fn model_status(model: &Result<ModelInfo, String>) -> Value {
    match model {
        Ok(info) => json!({
            "name": info.name, "dimension": info.dimension, "fingerprint": info.fingerprint,
        }),
        Err(reason) => json!({ "unavailable": reason }),
    }
}

/// The model's state for people: what it is, what is indexed, what is still being embedded.
pub(crate) fn model_text(status: &VectorStatus) -> String {
    match &status.model {
        Ok(info) => {
            let mut line = format!(
                "model: {} ({} dimensions, {}) · {} vectors indexed",
                info.name, info.dimension, info.fingerprint, status.index_entries
            );
            if status.waiting > 0 {
                line.push_str(&format!(
                    "\nre-embedding: {} passages still waiting for vectors; search uses keywords \
                     until they are done",
                    status.waiting
                ));
            }
            line
        }
        Err(reason) => format!("model: unavailable ({reason}); search uses keywords only"),
    }
}

/// Earlier models whose vectors are kept, one line each.
fn other_models_text(r: &DoctorReport) -> String {
    r.other_models
        .iter()
        .map(|(info, vectors)| {
            format!(
                "\nearlier model kept: {} ({} dimensions, {vectors} vectors; not used)",
                info.name, info.dimension
            )
        })
        .collect()
}

pub(crate) fn doctor_text(r: &DoctorReport) -> String {
    let counts = |pairs: &[(String, u64)]| -> String {
        if pairs.is_empty() {
            return "none".into();
        }
        pairs.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    };
    let verdict = if r.problems.is_empty() {
        "all checks passed".to_string()
    } else {
        format!("PROBLEMS:\n  {}", r.problems.join("\n  "))
    };
    format!(
        "data directory: {}\ndatabase: {}\nlocked by: pid {}\ndoppel {} · schema {} · SQLite {}\n\
         twins: {}\nsources: {}\npassages: {}\njobs: {}\n{}\n{verdict}",
        r.data_dir.display(),
        r.database.display(),
        r.lock_holder.map_or("?".to_string(), |p| p.to_string()),
        r.app_version,
        r.schema_version,
        r.sqlite_version,
        r.twins,
        counts(&r.sources),
        r.chunks,
        counts(&r.jobs),
        model_text(&VectorStatus {
            model: r.model.clone(),
            index_entries: r.index_entries,
            waiting: r.chunks_without_vectors,
            ef_search: r.ef_search,
            rebuilding: None,
            stalled: None,
        }) + &other_models_text(r),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_shape_is_pinned() {
        let e = Error::NotFound { what: "source", id: "42".into() };
        assert_eq!(
            error(&e).to_string(),
            r#"{"error":{"code":"not_found","message":"source 42 not found"}}"#
        );
    }
}
