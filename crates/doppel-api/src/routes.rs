//! The `/v1` routes: asking (Server-Sent Events), searching, listing sources and
//! conversations, and the API's own description.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use doppel_core::access::Scope;
use doppel_core::chat::{Answer, AskRequest, Citation, GenerateOptions, Message};
use doppel_core::{Error, SearchMode, SearchRequest};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::App;
use crate::error::ApiError;
use crate::gate::{Caller, RequestId};

/// Every route, as the OpenAPI description lists it (checked by a test).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/ask"),
    ("GET", "/v1/search"),
    ("GET", "/v1/sources"),
    ("GET", "/v1/conversations"),
    ("GET", "/v1/conversations/{id}"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/openapi.json"),
];

const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/ask", post(ask))
        .route("/v1/search", get(search))
        .route("/v1/sources", get(sources))
        .route("/v1/conversations", get(conversations))
        .route("/v1/conversations/{id}", get(conversation))
        .route("/v1/chat/completions", post(crate::openai::completions))
        .route("/v1/models", get(crate::openai::models))
        .route("/v1/openapi.json", get(openapi))
        .route("/share", get(crate::share::page))
        .route("/share/app.js", get(crate::share::script))
        .route("/share/style.css", get(crate::share::style))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), crate::gate::authenticate))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), crate::gate::trace))
        .with_state(app)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    Error::NotFound { what: "endpoint", id: format!("{method} {}", uri.path()) }.into()
}

async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError {
        error: Error::InvalidInput(format!("{} does not take {method}", uri.path())),
        status: Some(StatusCode::METHOD_NOT_ALLOWED),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Runs blocking core work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or(Err(Error::Internal { during: "an API request" }))
        .map_err(ApiError::from)
}

/// Reads a JSON body within the size and time limits.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    app: &App,
    body: Body,
) -> Result<T, ApiError> {
    let limit = app.limits.max_body_bytes;
    let too_large = || ApiError::from(Error::TooLarge { what: "body", limit: limit as u64 });
    let read = tokio::time::timeout(app.limits.body_timeout, axum::body::to_bytes(body, limit));
    let bytes = match read.await {
        Err(_) => {
            return Err(ApiError {
                error: Error::InvalidInput("the request body did not arrive in time".into()),
                status: Some(StatusCode::REQUEST_TIMEOUT),
            });
        }
        Ok(Err(e)) => {
            let limited = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if limited {
                too_large()
            } else {
                Error::InvalidInput("the request body could not be read".into()).into()
            });
        }
        Ok(Ok(bytes)) => bytes,
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::InvalidInput(format!("the body is not the JSON this endpoint takes ({e})")).into()
    })
}

/// A body larger than the limit is refused from its declared length, before it is read.
pub(crate) fn check_length(app: &App, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = app.limits.max_body_bytes as u64;
    match declared {
        Some(length) if length > limit => Err(Error::TooLarge { what: "body", limit }.into()),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    question: String,
    /// The client's name for a conversation to continue (1 to 40 letters, digits, `-`, `_`).
    conversation: Option<String>,
    /// `false` answers with one JSON object instead of events.
    stream: Option<bool>,
}

/// A conversation of the API: its id is the client's name within the token's own space, so a
/// token continues only conversations it started.
pub(crate) fn conversation_id(
    token: i64,
    client: Option<&str>,
    request: &str,
) -> Result<String, ApiError> {
    match client {
        None => Ok(format!("api{token}-{request}")),
        Some(name)
            if (1..=40).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(format!("api{token}-c-{name}"))
        }
        Some(_) => Err(Error::InvalidInput(
            "a conversation is named by 1 to 40 letters, digits, '-' or '_'".into(),
        )
        .into()),
    }
}

/// Tokens of an answer as counted against budgets: about four characters each.
pub(crate) fn tokens_of(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// An answer being written in a blocking thread; it ends with the stored answer.
pub(crate) type Answering = tokio::task::JoinHandle<Result<Answer, Error>>;

/// Starts an answer in a blocking thread: pieces go to `pieces`, whose receiver going away (a
/// client that left or stopped reading for `write_timeout`) stops the answer. Checks the
/// budget and takes a place among the streams first.
pub(crate) fn start_answer(
    app: &Arc<App>,
    caller: &Caller,
    request_id: &str,
    question: String,
    conversation: String,
    max_tokens: Option<u32>,
) -> Result<(mpsc::Receiver<String>, Answering), ApiError> {
    doppel_core::chat::check_question(&question)?;
    let now = now_ms();
    let remaining = app.ledger.remaining(&app.doppel, &caller.token, now)?;
    let slot = app.streams.acquire(caller.token.id)?;
    let options = GenerateOptions {
        max_tokens: remaining.min(u64::from(max_tokens.unwrap_or(512).clamp(1, 4096))) as u32,
        ..GenerateOptions::default()
    };
    let ask = AskRequest {
        question,
        conversation: Some(conversation),
        twin: caller.token.twin,
        options,
        mode: None,
        request_id: Some(request_id.to_string()),
    };
    let (pieces, received) = mpsc::channel::<String>(64);
    let app = Arc::clone(app);
    let token = caller.token.id;
    let handle = tokio::runtime::Handle::current();
    let answer = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let cancel = AtomicBool::new(false);
        let timeout = app.limits.write_timeout;
        let result = app.doppel.ask(&ask, &cancel, &mut |piece| {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let sent =
                handle.block_on(tokio::time::timeout(timeout, pieces.send(piece.to_string())));
            if !matches!(sent, Ok(Ok(()))) {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        let generated = result.as_ref().map_or(0, |a| tokens_of(&a.message.content));
        app.ledger.add_generated(token, generated, now_ms());
        result
    });
    Ok((received, answer))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn ask(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(id)): Extension<RequestId>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Scope::Ask, "asking")?;
    check_length(&app, &headers)?;
    let body: AskBody = read_json(&app, body).await?;
    let conversation = conversation_id(caller.token.id, body.conversation.as_deref(), &id)?;
    let (mut pieces, answer) = start_answer(&app, &caller, &id, body.question, conversation, None)?;
    if body.stream == Some(false) {
        while pieces.recv().await.is_some() {}
        let answer = answer.await.unwrap_or(Err(Error::Internal { during: "an answer" }))?;
        return Ok(Json(answer_json(&answer)).into_response());
    }
    let events = async_stream(pieces, answer);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// `token` events as the answer is written, then one `answer` event (the stored answer with
/// its citations) or one `error` event.
fn async_stream(
    pieces: mpsc::Receiver<String>,
    answer: Answering,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    enum State {
        Pieces(mpsc::Receiver<String>, Answering),
        Done,
    }
    futures_util::stream::unfold(State::Pieces(pieces, answer), |state| async move {
        let State::Pieces(mut pieces, answer) = state else { return None };
        match pieces.recv().await {
            Some(piece) => {
                let event =
                    SseEvent::default().event("token").data(json!({ "text": piece }).to_string());
                Some((Ok(event), State::Pieces(pieces, answer)))
            }
            None => {
                let event =
                    match answer.await.unwrap_or(Err(Error::Internal { during: "an answer" })) {
                        Ok(answer) => SseEvent::default()
                            .event("answer")
                            .data(answer_json(&answer).to_string()),
                        Err(e) => SseEvent::default()
                            .event("error")
                            .data(crate::error::body(&e).to_string()),
                    };
                Some((Ok(event), State::Done))
            }
        }
    })
}

pub(crate) fn citation_json(c: &Citation) -> Value {
    json!({
        "number": c.number,
        "source_id": c.source_id,
        "source_title": c.source_title,
        "location": c.location,
        "quote": c.quote,
        "deleted": c.quote.is_none(),
    })
}

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "role": m.role.as_str(),
        "content": m.content,
        "state": m.state.as_str(),
        "grounding": m.grounding.map(|g| g.as_str()),
        "verified": m.verified,
        "citations": m.citations.iter().map(citation_json).collect::<Vec<_>>(),
        "created_at": m.created_at,
    })
}

fn answer_json(a: &Answer) -> Value {
    json!({ "conversation": a.conversation, "message": message_json(&a.message), "notes": a.notes })
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    k: Option<u32>,
    mode: Option<String>,
}

async fn search(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read, "searching")?;
    let Query(query) = query.map_err(|_| {
        Error::InvalidInput("a search needs `q` (the words), and takes `k` and `mode`".into())
    })?;
    let mode = match query.mode.as_deref() {
        None => SearchMode::Hybrid,
        Some(name) => SearchMode::parse(name).ok_or_else(|| {
            Error::InvalidInput(format!("no search mode {name:?}: hybrid, vector or keyword"))
        })?,
    };
    let request = SearchRequest {
        twin: caller.token.twin,
        query: query.q,
        limit: query.k.map(|k| k.clamp(1, 100)),
        sources: Vec::new(),
        mode,
    };
    let doppel = Arc::clone(&app.doppel);
    let results = blocking(move || doppel.search(&request)).await?;
    let hits: Vec<Value> = results
        .hits
        .iter()
        .map(|h| {
            json!({
                "chunk_id": h.chunk_id,
                "source_id": h.source_id,
                "source_title": h.source_title,
                "location": h.location.to_string(),
                "snippet": h.snippet,
                "text": h.text,
                "score": h.score,
                "retriever": h.retriever.as_str(),
            })
        })
        .collect();
    Ok(Json(json!({ "mode": results.mode.as_str(), "note": results.note, "hits": hits })))
}

async fn sources(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read, "listing sources")?;
    let doppel = Arc::clone(&app.doppel);
    let twin = caller.token.twin;
    let sources = blocking(move || doppel.sources(twin)).await?;
    let list: Vec<Value> = sources
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "kind": s.kind.as_str(),
                "origin": s.origin,
                "title": s.title,
                "state": s.state.as_str(),
                "passages": s.chunk_count,
                "created_at": s.created_at,
                "updated_at": s.updated_at,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

async fn conversations(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read, "listing conversations")?;
    let doppel = Arc::clone(&app.doppel);
    let twin = caller.token.twin;
    let list = blocking(move || doppel.conversations(twin)).await?;
    Ok(Json(Value::Array(
        list.iter()
            .map(|c| {
                json!({ "id": c.id, "title": c.title, "created_at": c.created_at, "updated_at": c.updated_at })
            })
            .collect(),
    )))
}

async fn conversation(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::Read, "reading conversations")?;
    let doppel = Arc::clone(&app.doppel);
    let twin = caller.token.twin;
    let (conversation, messages) = blocking(move || {
        let conversation = doppel.conversation(&id)?;
        // Another twin's conversation does not exist for this token.
        if conversation.twin != twin {
            return Err(Error::NotFound { what: "conversation", id });
        }
        Ok((conversation, doppel.messages(&id)?))
    })
    .await?;
    Ok(Json(json!({
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
    })))
}
