//! The share page: a minimal, read-only chat page for a share link (a token of scope `ask`,
//! given in the link's fragment, which browsers never send to a server). It is served with the
//! same strict content security policy as the window: its own script and style only, no
//! inline code, no other origin, no framing.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The policy of the page and its files.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-src 'none'; \
     frame-ancestors 'none'";

fn serve(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn page() -> Response {
    serve("text/html; charset=utf-8", include_str!("share/index.html"))
}

pub(crate) async fn script() -> Response {
    serve("text/javascript; charset=utf-8", include_str!("share/app.js"))
}

pub(crate) async fn style() -> Response {
    serve("text/css; charset=utf-8", include_str!("share/style.css"))
}
