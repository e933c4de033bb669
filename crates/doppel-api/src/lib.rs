//! Doppel's local API: `/v1` over HTTP, and the share page. Off unless the owner switches it
//! on; it listens on loopback unless the owner chose another address and confirmed it.
//!
//! Built on axum (routing), hyper (HTTP/1.1 with header-size and header-time limits), tokio and
//! tower, and governor (rate limits). Every request but the OpenAPI description and the share
//! page's own files needs `Authorization: Bearer <token>`, checked by the core (`access`):
//! there is no switch, header or variable that skips it. Each token reaches one twin, within
//! its scope, its rate limit and its daily budget. Errors are `{"error":{"code","message"}}`
//! with the core's codes. Each request gets an id that every log line of it carries; the log
//! never holds a question, an answer, a search or a document's text.
//!
//! - `routes.rs`: `/v1/ask` (Server-Sent Events), `/v1/search`, `/v1/sources`,
//!   `/v1/conversations`, `/v1/models`, `/v1/openapi.json`.
//! - `openai.rs`: `/v1/chat/completions`, OpenAI-compatible, answering as the twin.
//! - `gate.rs`: request ids, the token check, the rate limit, the log line of each request.
//! - `limits.rs`: rate limits, budgets, streams at once.
//! - `share.rs`: the share page, with a strict content security policy.
//! - `error.rs`: the error shape.

mod error;
mod gate;
mod limits;
mod openai;
mod routes;

pub use routes::ROUTES;
pub use share::CONTENT_SECURITY_POLICY;
mod share;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::Duration;

use doppel_core::{Doppel, Error};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::oneshot;

pub use limits::Gauges;

/// The limits of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); a larger one gets 431.
    pub max_header_bytes: usize,
    /// Time a client has to send its request head (slow clients are cut off).
    pub header_timeout: Duration,
    /// Time a client has to send its request body once the head arrived.
    pub body_timeout: Duration,
    /// Time a client may leave a streamed answer unread before the answer is stopped.
    pub write_timeout: Duration,
    /// Answers streaming at once, in all.
    pub max_streams: usize,
    /// Answers streaming at once, per token.
    pub max_streams_per_token: usize,
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
    /// How often the tokens' use is written to the database.
    pub flush_every: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_streams: 16,
            max_streams_per_token: 4,
            max_connections: 256,
            flush_every: Duration::from_secs(5),
        }
    }
}

/// What the server shares between requests.
pub(crate) struct App {
    pub doppel: Arc<Doppel>,
    pub limits: Limits,
    pub rates: limits::Rates,
    pub ledger: limits::Ledger,
    pub streams: Arc<limits::Streams>,
    pub next_request: AtomicU64,
}

/// A running API server. Dropping it stops it: no new connection is taken, requests in flight
/// get a few seconds to finish, the tokens' use is written down.
pub struct ApiServer {
    address: SocketAddr,
    gauges: Arc<Gauges>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").field("address", &self.address).finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds `address` and serves the twin of `doppel` from threads of its own.
    pub fn start(
        doppel: Arc<Doppel>,
        address: SocketAddr,
        limits: Limits,
    ) -> Result<ApiServer, Error> {
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| Error::Io { path: address.to_string().into(), source: e })?;
        let address =
            listener.local_addr().map_err(|e| Error::Io { path: "api".into(), source: e })?;
        listener.set_nonblocking(true).map_err(|e| Error::Io { path: "api".into(), source: e })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(limits.max_streams + 16)
            .thread_name("doppel-api")
            .enable_all()
            .build()
            .map_err(|e| Error::Io { path: "api".into(), source: e })?;
        let gauges = Arc::new(Gauges::default());
        let app = Arc::new(App {
            streams: Arc::new(limits::Streams::new(
                limits.max_streams,
                limits.max_streams_per_token,
                Arc::clone(&gauges),
            )),
            doppel,
            limits,
            rates: Default::default(),
            ledger: Default::default(),
            next_request: AtomicU64::new(1),
        });
        let (shutdown, stopped) = oneshot::channel();
        let serving = Arc::clone(&gauges);
        let thread = std::thread::Builder::new()
            .name("doppel-api".into())
            .spawn(move || runtime.block_on(serve(app, listener, serving, stopped)))
            .map_err(|e| Error::WorkerGone(format!("the API could not start: {e}")))?;
        tracing::info!(%address, "local API listening");
        Ok(ApiServer { address, gauges, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// The address it listens on (with the port chosen, when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Answers streaming and connections open.
    pub fn gauges(&self) -> &Gauges {
        &self.gauges
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // A server that already stopped has nothing to be told.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the API thread panicked");
        }
        tracing::info!("local API stopped");
    }
}

/// Takes connections until told to stop.
async fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    gauges: Arc<Gauges>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::error!("the API's socket could not be used");
        return;
    };
    let router = routes::router(Arc::clone(&app));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.limits.header_timeout)
        .max_header_size(app.limits.max_header_bytes)
        .keep_alive(true);
    let flusher = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(app.limits.flush_every);
            loop {
                every.tick().await;
                let app = Arc::clone(&app);
                drop(tokio::task::spawn_blocking(move || app.ledger.flush(&app.doppel)).await);
            }
        })
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "a connection could not be accepted");
                    continue;
                }
            },
        };
        if gauges.now().1 >= app.limits.max_connections {
            // Closed at once: the client sees the connection end and may try again.
            drop(stream);
            continue;
        }
        gauges.connections(1);
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        let gauges = Arc::clone(&gauges);
        tokio::spawn(async move {
            // A client that breaks off is its own business; nothing to log.
            drop(watched.await);
            gauges.connections(-1);
        });
    }
    drop(listener);
    flusher.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    let app = Arc::clone(&app);
    drop(tokio::task::spawn_blocking(move || app.ledger.flush(&app.doppel)).await);
}
