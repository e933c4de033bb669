//! What every request passes through: an id, the token check, the rate limit, and one log
//! line when it ends (id, method, route, status, token, time: never the query, the body or the
//! answer).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use doppel_core::Error;
use doppel_core::access::{ApiToken, Scope};
use tracing::Instrument;

use crate::App;
use crate::error::ApiError;

/// The request's id, carried by its log lines and sent back as `X-Request-Id`.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// The token a request came with, checked.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub token: ApiToken,
}

impl Caller {
    /// Refuses what the token's scope does not allow.
    pub(crate) fn require(&self, scope: Scope, what: &'static str) -> Result<(), ApiError> {
        if self.token.scope == scope {
            Ok(())
        } else {
            Err(Error::Forbidden { scope: self.token.scope.as_str(), what }.into())
        }
    }
}

/// Routes reachable without a token: the description of the API and the share page's files
/// (the page itself asks with the token from its link).
const PUBLIC: &[&str] = &["/v1/openapi.json", "/share", "/share/app.js", "/share/style.css"];

/// Gives the request an id and logs its end.
pub(crate) async fn trace(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = format!("api-{}", app.next_request.fetch_add(1, Ordering::Relaxed));
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let span = tracing::info_span!("api", request = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let token = response.extensions().get::<TokenSeen>().map(|t| t.0);
    span.in_scope(|| {
        tracing::info!(
            %method,
            route = %route,
            status = response.status().as_u16(),
            token,
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The id of the token that made a request, for its log line.
#[derive(Debug, Clone, Copy)]
struct TokenSeen(i64);

/// Checks the token, then its rate limit; a request without a valid token goes no further.
pub(crate) async fn authenticate(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    if route.as_deref().is_some_and(|r| PUBLIC.contains(&r)) {
        return next.run(request).await;
    }
    let presented = bearer(&request).to_string();
    let doppel = Arc::clone(&app.doppel);
    let checked = tokio::task::spawn_blocking(move || doppel.authenticate(&presented))
        .await
        .unwrap_or(Err(Error::Internal { during: "checking a token" }));
    let token = match checked {
        Ok(token) => token,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Err(e) = app.rates.check(&token) {
        let mut response = ApiError::from(e).into_response();
        response.extensions_mut().insert(TokenSeen(token.id));
        return response;
    }
    let id = token.id;
    app.ledger.touch(id, crate::routes::now_ms());
    request.extensions_mut().insert(Caller { token });
    let mut response = next.run(request).await;
    response.extensions_mut().insert(TokenSeen(id));
    response
}

/// The token of `Authorization: Bearer <token>`; empty when there is none. Nothing else of the
/// request (no other header, no query parameter) can stand in for it.
fn bearer(request: &Request) -> &str {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else { return "" };
    let Ok(value) = value.to_str() else { return "" };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => "",
    }
}
