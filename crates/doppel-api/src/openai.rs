//! `/v1/chat/completions`, as OpenAI's API has it, so that any OpenAI client talks to the twin.
//!
//! The last user message is the question; the twin answers it as it answers in the window
//! (grounded in the documents, checked, with citations), in a new conversation of the token.
//! The reply's content ends with its sources, and the citations are also given as data
//! (`citations`). Streaming follows OpenAI's chunks and ends with `data: [DONE]`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use doppel_core::Error;
use doppel_core::access::Scope;
use doppel_core::chat::{Answer, Citation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::error::ApiError;
use crate::gate::{Caller, RequestId};
use crate::routes::{
    check_length, citation_json, conversation_id, read_json, start_answer, tokens_of,
};

/// The model name the twin answers as (any name a client sends is accepted and echoed).
const MODEL: &str = "doppel-twin";

#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    stream: Option<bool>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Value,
}

/// A message's text: a string, or OpenAI's list of parts, whose text parts are joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

pub(crate) async fn models(Extension(_caller): Extension<Caller>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{ "id": MODEL, "object": "model", "created": 0, "owned_by": "doppel" }],
    }))
}

pub(crate) async fn completions(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ask, "asking")?;
    check_length(&app, &headers)?;
    let request: Completion = read_json(&app, body).await?;
    let question = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| Error::InvalidInput("the messages hold no question from the user".into()))?;
    let model = request.model.clone().unwrap_or_else(|| MODEL.to_string());
    let conversation = conversation_id(caller.token.id, None, &id)?;
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let (mut pieces, answer) =
        start_answer(&app, &caller, &id, question, conversation, max_tokens)?;
    let created = crate::routes::now_ms() / 1000;
    let completion_id = format!("chatcmpl-{id}");
    if request.stream != Some(true) {
        while pieces.recv().await.is_some() {}
        let answer = answer.await.unwrap_or(Err(Error::Internal { during: "an answer" }))?;
        let content = with_sources(&answer.message.content, &answer.message.citations);
        let completion_tokens = tokens_of(&answer.message.content);
        return Ok(Json(json!({
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content },
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 0,
                "completion_tokens": completion_tokens,
                "total_tokens": completion_tokens,
            },
            "citations": answer.message.citations.iter().map(citation_json).collect::<Vec<_>>(),
            "conversation": answer.conversation,
        }))
        .into_response());
    }
    let chunk = move |delta: Value, finish: Option<&str>, extra: Option<(&Answer, &str)>| {
        let mut value = json!({
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        if let Some((answer, _)) = extra {
            value["citations"] =
                Value::Array(answer.message.citations.iter().map(citation_json).collect());
            value["conversation"] = json!(answer.conversation);
        }
        SseEvent::default().data(value.to_string())
    };
    enum Step {
        First,
        Pieces,
        End,
        Done,
    }
    let stream = futures_util::stream::unfold(
        (Step::First, pieces, Some(answer), chunk),
        |(step, mut pieces, answer, chunk)| async move {
            match step {
                Step::First => {
                    let event = chunk(json!({ "role": "assistant", "content": "" }), None, None);
                    Some((Ok::<_, Infallible>(event), (Step::Pieces, pieces, answer, chunk)))
                }
                Step::Pieces => match pieces.recv().await {
                    Some(piece) => {
                        let event = chunk(json!({ "content": piece }), None, None);
                        Some((Ok(event), (Step::Pieces, pieces, answer, chunk)))
                    }
                    None => {
                        let done = match answer {
                            Some(a) => {
                                a.await.unwrap_or(Err(Error::Internal { during: "an answer" }))
                            }
                            None => Err(Error::Internal { during: "an answer" }),
                        };
                        let event = match done {
                            Ok(answer) => {
                                let sources = with_sources("", &answer.message.citations);
                                chunk(
                                    json!({ "content": sources }),
                                    Some("stop"),
                                    Some((&answer, "")),
                                )
                            }
                            Err(e) => SseEvent::default().data(crate::error::body(&e).to_string()),
                        };
                        Some((Ok(event), (Step::End, pieces, None, chunk)))
                    }
                },
                Step::End => Some((
                    Ok(SseEvent::default().data("[DONE]")),
                    (Step::Done, pieces, None, chunk),
                )),
                Step::Done => None,
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// The answer followed by its numbered sources, so that a client showing only the text still
/// shows where each fact came from.
fn with_sources(content: &str, citations: &[Citation]) -> String {
    if citations.is_empty() {
        return content.to_string();
    }
    let mut out = format!("{}\n\nSources:", content.trim_end());
    for c in citations {
        let place = if c.location.is_empty() { String::new() } else { format!(", {}", c.location) };
        match &c.quote {
            Some(_) => out.push_str(&format!("\n[{}] {}{place}", c.number, c.source_title)),
            None => out.push_str(&format!("\n[{}] source deleted", c.number)),
        }
    }
    out
}
