//! Chat answers from a model server, streamed piece by piece: Ollama (`POST /api/chat`, one JSON
//! object per line) or any OpenAI-compatible endpoint (`POST /v1/chat/completions`, server-sent
//! events).
//!
//! Every wait is bounded: opening the connection by `connect_timeout`, the first piece of the
//! answer by `first_token_timeout`, each silence after it by `idle_timeout` and the whole answer
//! by `total_timeout`. Failures that may pass (refused connections, 429 and 5xx answers) are
//! retried with a doubling delay, but only until the first piece has reached the caller: after
//! that, trying again would repeat text the caller already shows, so any failure is an error and
//! the caller keeps what it received.
//!
//! The request runs on reqwest's async client, driven by a single-threaded runtime that the call
//! owns. The blocking client cannot be used here: one timeout governs both the wait for the
//! answer's headers and every read, and a blocked `send` cannot be interrupted, while Ollama
//! sends its headers only with the first token, after loading the model. Owning the runtime lets
//! the call stop waiting at any moment (the cancel flag is looked at every 50 ms), and when
//! [`stream_chat`] returns, for whatever reason, the runtime is shut down: the connection is
//! closed, so the server stops generating, and no thread is left behind.
//!
//! Logs name the server and the HTTP status, never the API key or any message text. Error
//! messages quote what a server says about its own failures, never the answer's text.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Finish, GenerateOptions, StreamPolicy, Turn};
use crate::embed::RemoteKind;
use crate::error::{Error, Result};

/// How often a wait looks at the cancel flag.
const TICK: Duration = Duration::from_millis(50);

/// Largest stream accepted for one answer.
const MAX_STREAM_BYTES: usize = 16 * 1024 * 1024;

/// Largest error answer read for the server's own words.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Longest wait, after the answer, for the runtime's threads. Only a name lookup in progress
/// can take longer (the system resolver cannot be interrupted); it ends on its own.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(100);

/// A chat model server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatServer {
    /// Which API it speaks.
    pub kind: RemoteKind,
    /// Its base URL, such as `http://127.0.0.1:11434` or `https://api.example.com/v1`.
    pub url: String,
    /// The model name the server knows.
    pub model: String,
}

impl ChatServer {
    /// A server after checking its URL and model name.
    pub fn new(kind: RemoteKind, url: &str, model: &str) -> Result<ChatServer> {
        let (url, model) = crate::embed::server_and_model(url, model)?;
        Ok(ChatServer { kind, url, model })
    }

    /// The URL requests go to.
    fn endpoint(&self) -> String {
        let url = self.url.trim_end_matches('/');
        match self.kind {
            RemoteKind::Ollama if url.ends_with("/api/chat") => url.to_string(),
            RemoteKind::Ollama => format!("{url}/api/chat"),
            RemoteKind::OpenAi if url.ends_with("/chat/completions") => url.to_string(),
            RemoteKind::OpenAi if url.ends_with("/v1") => format!("{url}/chat/completions"),
            RemoteKind::OpenAi => format!("{url}/v1/chat/completions"),
        }
    }

    fn failed(&self, reason: String) -> Error {
        Error::ChatServer { server: self.url.clone(), reason }
    }
}

/// Streams an answer: calls `on_token` with each piece of text as it arrives; returns why it
/// ended.
///
/// `cancel` is looked at before connecting, between retries and every 50 ms while waiting; once
/// it is set, the call returns `Ok(Finish::Cancelled)` and the connection is dropped. On an error
/// after some pieces have arrived, the caller keeps those pieces: nothing is retried then.
///
/// The call blocks its thread: from async code, run it on a thread of its own or with
/// `spawn_blocking`, since it drives its own runtime.
pub fn stream_chat(
    server: &ChatServer,
    api_key: Option<&str>,
    turns: &[Turn],
    options: &GenerateOptions,
    policy: &StreamPolicy,
    cancel: &AtomicBool,
    on_token: &mut dyn FnMut(&str),
) -> Result<Finish> {
    if cancel.load(Ordering::Relaxed) {
        return Ok(Finish::Cancelled);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| server.failed(format!("could not start the HTTP client: {e}")))?;
    let call = Call {
        server,
        api_key,
        body: request_body(server, turns, options),
        max_tokens: options.max_tokens,
        policy,
        cancel,
    };
    let finish = runtime.block_on(call.run(on_token));
    // Shutting the runtime down drops the connection, whatever state the answer was in.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    finish
}

/// One call of [`stream_chat`]: what to send and how patient to be.
struct Call<'a> {
    server: &'a ChatServer,
    api_key: Option<&'a str>,
    body: String,
    max_tokens: u32,
    policy: &'a StreamPolicy,
    cancel: &'a AtomicBool,
}

impl Call<'_> {
    /// Tries until an answer ends, a failure that will not pass, or the retries run out.
    async fn run(&self, on_token: &mut dyn FnMut(&str)) -> Result<Finish> {
        let client = reqwest::Client::builder()
            .connect_timeout(self.policy.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Doppel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| self.server.failed(format!("could not set up the HTTP client: {e}")))?;
        let end = after(Instant::now(), self.policy.total_timeout);
        let mut pieces = 0;
        let mut tries = 0;
        loop {
            let failure = match self.attempt(&client, end, &mut pieces, on_token).await {
                Ok(finish) => return Ok(finish),
                Err(failure) => failure,
            };
            // A failure after the caller asked to stop is no longer news.
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(Finish::Cancelled);
            }
            let reason = match tries {
                0 => failure.reason,
                _ => format!("{} ({} tries)", failure.reason, tries + 1),
            };
            if !(failure.retry && pieces == 0 && tries < self.policy.retries) {
                return Err(self.server.failed(reason));
            }
            let delay = self.policy.backoff.saturating_mul(1 << tries.min(16));
            // Not the reason: it may quote the server's answer.
            tracing::info!(server = %self.server.url, ?delay, "chat request will be retried");
            match wait(tokio::time::sleep(delay), end, self.cancel).await {
                Waited::Ready(()) => tries += 1,
                Waited::Cancelled => return Ok(Finish::Cancelled),
                Waited::TimedOut => return Err(self.server.failed(reason)),
            }
        }
    }

    /// One request and its streamed answer. `pieces` counts the pieces passed to `on_token`.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        end: Instant,
        pieces: &mut u32,
        on_token: &mut dyn FnMut(&str),
    ) -> Result<Finish, Failure> {
        let sent = Instant::now();
        let first_limit = self.policy.first_token_timeout.min(end.saturating_duration_since(sent));
        let first_deadline = after(sent, first_limit);
        let no_answer = || Failure::new(format!("no answer within {} s", seconds(first_limit)));

        let accept = match self.server.kind {
            RemoteKind::Ollama => "application/x-ndjson",
            RemoteKind::OpenAi => "text/event-stream",
        };
        let mut request = client
            .post(self.server.endpoint())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, accept)
            .body(self.body.clone());
        if let Some(key) = self.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = match wait(request.send(), first_deadline, self.cancel).await {
            Waited::Ready(Ok(response)) => response,
            Waited::Ready(Err(e)) => return Err(self.send_failure(&e)),
            Waited::Cancelled => return Ok(Finish::Cancelled),
            Waited::TimedOut => return Err(no_answer()),
        };
        let status = response.status();
        tracing::debug!(server = %self.server.url, %status, "chat server answered");
        if !status.is_success() {
            return Err(self.status_failure(response, first_deadline).await);
        }

        let mut decoder = Decoder::new(self.server.kind);
        let mut events = Vec::new();
        let mut received = 0;
        let mut last_heard = sent;
        loop {
            let (deadline, silence) = if *pieces == 0 {
                (first_deadline, Silence::NoAnswer)
            } else {
                let idle = after(last_heard, self.policy.idle_timeout);
                if idle < end { (idle, Silence::Stalled) } else { (end, Silence::TooLong) }
            };
            // Pieces decoded before a malformed line still reach the caller; the error follows.
            let decoded = match wait(response.chunk(), deadline, self.cancel).await {
                Waited::Ready(Ok(Some(chunk))) => {
                    received += chunk.len();
                    if received > MAX_STREAM_BYTES {
                        return Err(Failure::new(format!(
                            "the answer is larger than {}",
                            crate::error::human_size(MAX_STREAM_BYTES as u64)
                        )));
                    }
                    last_heard = Instant::now();
                    decoder.push(&chunk, &mut events)
                }
                Waited::Ready(Ok(None)) => decoder.end(&mut events),
                Waited::Ready(Err(e)) => {
                    return Err(Failure::new(format!(
                        "the answer broke off: {}",
                        crate::fetch::root_cause(&e)
                    )));
                }
                Waited::Cancelled => return Ok(Finish::Cancelled),
                Waited::TimedOut => {
                    return Err(match silence {
                        Silence::NoAnswer => no_answer(),
                        Silence::Stalled => Failure::new(format!(
                            "the answer stalled: nothing for {} s",
                            seconds(self.policy.idle_timeout)
                        )),
                        Silence::TooLong => Failure::new(format!(
                            "the answer took longer than {} s",
                            seconds(self.policy.total_timeout)
                        )),
                    });
                }
            };
            for event in events.drain(..) {
                match event {
                    Event::Piece(text) if text.is_empty() => {}
                    Event::Piece(_) if *pieces >= self.max_tokens => return Ok(Finish::Length),
                    Event::Piece(text) => {
                        if self.cancel.load(Ordering::Relaxed) {
                            return Ok(Finish::Cancelled);
                        }
                        on_token(&text);
                        *pieces += 1;
                    }
                    Event::End(finish) => return Ok(finish),
                }
            }
            decoded.map_err(Failure::new)?;
        }
    }

    /// Why sending the request failed.
    fn send_failure(&self, e: &reqwest::Error) -> Failure {
        if e.is_connect() && e.is_timeout() {
            Failure::new(format!(
                "could not connect within {} s",
                seconds(self.policy.connect_timeout)
            ))
        } else if e.is_connect() {
            Failure::retryable(format!("could not connect: {}", crate::fetch::root_cause(e)))
        } else {
            Failure::new(format!("the request failed: {}", crate::fetch::root_cause(e)))
        }
    }

    /// The failure an error status stands for, with the server's own words when they arrive
    /// before `deadline`.
    async fn status_failure(&self, mut response: reqwest::Response, deadline: Instant) -> Failure {
        let status = response.status();
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BYTES {
            match wait(response.chunk(), deadline, self.cancel).await {
                Waited::Ready(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let detail = crate::embed::error_detail(&String::from_utf8_lossy(&body));
        let reason = match status.as_u16() {
            401 | 403 => {
                format!("the server refused the request ({status}){detail}; check the API key")
            }
            404 => format!(
                "the server answered {status}{detail}; check the URL and that it serves the model \
                 \"{}\"",
                self.server.model
            ),
            _ => format!("the server answered {status}{detail}"),
        };
        if status.is_server_error() || status.as_u16() == 429 {
            Failure::retryable(reason)
        } else {
            Failure::new(reason)
        }
    }
}

/// A failed attempt, and whether it is worth another try after a pause.
struct Failure {
    reason: String,
    retry: bool,
}

impl Failure {
    fn new(reason: String) -> Failure {
        Failure { reason, retry: false }
    }

    /// Refused connections, 429 and 5xx: worth another try after a pause.
    fn retryable(reason: String) -> Failure {
        Failure { reason, retry: true }
    }
}

/// Which limit a silence of the server runs into.
#[derive(Clone, Copy)]
enum Silence {
    /// No piece has arrived yet.
    NoAnswer,
    /// Pieces stopped arriving.
    Stalled,
    /// The whole answer ran out of time.
    TooLong,
}

/// How a wait ended.
enum Waited<T> {
    Ready(T),
    Cancelled,
    TimedOut,
}

/// Polls `future` until it is ready, `deadline` passes or `cancel` is set, which is looked at
/// every [`TICK`]. A cancel already set wins over a ready future.
async fn wait<F: Future>(future: F, deadline: Instant, cancel: &AtomicBool) -> Waited<F::Output> {
    let mut future = std::pin::pin!(future);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Waited::Cancelled;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Waited::TimedOut;
        }
        if let Ok(output) = tokio::time::timeout(left.min(TICK), future.as_mut()).await {
            return Waited::Ready(output);
        }
    }
}

/// `start + wait`, or a year later when that is past what the clock can hold.
fn after(start: Instant, wait: Duration) -> Instant {
    start.checked_add(wait).unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600))
}

/// A duration in seconds for messages: whole seconds as such, others with one decimal.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 { d.as_secs().to_string() } else { format!("{:.1}", d.as_secs_f64()) }
}

/// The JSON request for an answer to `turns`.
fn request_body(server: &ChatServer, turns: &[Turn], options: &GenerateOptions) -> String {
    let messages: Vec<Value> = turns
        .iter()
        .map(|turn| json!({ "role": turn.role.as_str(), "content": turn.content }))
        .collect();
    // 0.3f32 widened to f64 is 0.30000001192092896; its shortest decimal form reads better.
    let temperature: f64 = options.temperature.to_string().parse().unwrap_or(0.0);
    match server.kind {
        RemoteKind::Ollama => json!({
            "model": server.model,
            "messages": messages,
            "stream": true,
            "options": {
                "temperature": temperature,
                "seed": options.seed,
                "num_predict": options.max_tokens,
            },
        }),
        RemoteKind::OpenAi => json!({
            "model": server.model,
            "messages": messages,
            "stream": true,
            "temperature": temperature,
            "seed": options.seed,
            "max_tokens": options.max_tokens,
        }),
    }
    .to_string()
}

/// What the stream says.
#[derive(Debug, PartialEq)]
enum Event {
    /// A piece of the answer (possibly empty).
    Piece(String),
    /// The answer is over.
    End(Finish),
}

/// Turns the bytes of a streamed answer into [`Event`]s. Bytes arrive in pieces that need not
/// end on a line or even on a character, so lines are put together from bytes first.
struct Decoder {
    kind: RemoteKind,
    /// The bytes of a line not complete yet.
    partial: Vec<u8>,
    /// The `data` of a server-sent event not complete yet.
    data: Option<String>,
    /// The `finish_reason` an OpenAI-compatible server gave, if any yet.
    finish: Option<Finish>,
    /// Whether the end was seen; anything after it is ignored.
    ended: bool,
}

impl Decoder {
    fn new(kind: RemoteKind) -> Decoder {
        Decoder { kind, partial: Vec::new(), data: None, finish: None, ended: false }
    }

    /// Takes the next bytes of the stream; adds the events of the lines they complete.
    fn push(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), String> {
        // Only the new bytes are searched, so a long line arriving in many pieces costs no more
        // than a short one.
        let Some(last) = bytes.iter().rposition(|&b| b == b'\n') else {
            self.partial.extend_from_slice(bytes);
            return Ok(());
        };
        let mut lines = std::mem::take(&mut self.partial);
        lines.extend_from_slice(&bytes[..last]);
        self.partial.extend_from_slice(&bytes[last + 1..]);
        for line in lines.split(|&b| b == b'\n') {
            self.line(line, events)?;
        }
        Ok(())
    }

    /// The stream is over: the events of what is left, and an error if the answer is not
    /// complete.
    fn end(&mut self, events: &mut Vec<Event>) -> Result<(), String> {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.line(&rest, events)?;
        }
        if self.kind == RemoteKind::OpenAi && !self.ended {
            // A last event without the blank line that should close it.
            self.dispatch(events)?;
        }
        if !self.ended {
            // Some servers close the stream after a `finish_reason` without sending `[DONE]`.
            let finish = self.finish.ok_or_else(|| {
                "the server closed the stream before the answer was complete".to_string()
            })?;
            self.ended = true;
            events.push(Event::End(finish));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|_| malformed("a line that is not UTF-8"))?;
        match self.kind {
            RemoteKind::Ollama => self.ndjson_line(line, events),
            RemoteKind::OpenAi => self.sse_line(line, events),
        }
    }

    /// One line of Ollama's stream: `{"message":{"content":"..."},"done":false}`, and at the end
    /// `{"done":true,"done_reason":"stop"}`.
    fn ndjson_line(&mut self, line: &str, events: &mut Vec<Event>) -> Result<(), String> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| malformed(format!("a line that is not JSON ({e})")))?;
        if let Some(error) = value.get("error") {
            return Err(reported(error));
        }
        let done = value
            .get("done")
            .and_then(Value::as_bool)
            .ok_or_else(|| malformed("a line without \"done\""))?;
        match value.pointer("/message/content") {
            Some(Value::String(text)) => events.push(Event::Piece(text.clone())),
            None | Some(Value::Null) if done => {}
            _ => return Err(malformed("a line without \"message.content\" text")),
        }
        if done {
            let finish = match value.get("done_reason").and_then(Value::as_str) {
                Some("length") => Finish::Length,
                _ => Finish::Stop,
            };
            self.ended = true;
            events.push(Event::End(finish));
        }
        Ok(())
    }

    /// One line of a server-sent event stream. Only `data` fields matter; a blank line ends an
    /// event, lines starting with `:` are comments (keep-alives), and `event:`, `id:` and
    /// `retry:` lines say nothing an answer needs.
    fn sse_line(&mut self, line: &str, events: &mut Vec<Event>) -> Result<(), String> {
        if line.is_empty() {
            return self.dispatch(events);
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        Ok(())
    }

    /// One complete event of an OpenAI-compatible stream:
    /// `{"choices":[{"delta":{"content":"..."},"finish_reason":null}]}`, and at the end
    /// `[DONE]`.
    fn dispatch(&mut self, events: &mut Vec<Event>) -> Result<(), String> {
        let Some(data) = self.data.take() else {
            return Ok(());
        };
        if data.trim() == "[DONE]" {
            self.ended = true;
            events.push(Event::End(self.finish.unwrap_or(Finish::Stop)));
            return Ok(());
        }
        let value: Value = serde_json::from_str(&data)
            .map_err(|e| malformed(format!("an event that is not JSON ({e})")))?;
        if let Some(error) = value.get("error") {
            return Err(reported(error));
        }
        let choices = value
            .get("choices")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("an event without \"choices\""))?;
        // Servers asked for usage send it in a last event without choices.
        let Some(choice) = choices.first() else {
            return Ok(());
        };
        let delta = choice
            .get("delta")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("a choice without \"delta\""))?;
        match delta.get("content") {
            Some(Value::String(text)) => events.push(Event::Piece(text.clone())),
            None | Some(Value::Null) => {}
            Some(_) => return Err(malformed("a \"delta.content\" that is not text")),
        }
        match choice.get("finish_reason") {
            None | Some(Value::Null) => {}
            Some(Value::String(reason)) if reason == "length" => self.finish = Some(Finish::Length),
            Some(Value::String(_)) => self.finish = Some(Finish::Stop),
            Some(_) => return Err(malformed("a \"finish_reason\" that is not text")),
        }
        Ok(())
    }
}

/// The reason for data that does not follow the protocol. It never quotes the data: that may be
/// the answer, drawn from the owner's documents.
fn malformed(what: impl std::fmt::Display) -> String {
    format!("the server sent malformed data: {what}")
}

/// The reason for an error the server reported in the stream.
fn reported(error: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| error.to_string());
    format!("the server reported an error: {}", shortened(&message))
}

/// At most 200 characters of `text`, without control characters.
fn shortened(text: &str) -> String {
    text.trim().chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex, mpsc};
    use std::thread::JoinHandle;

    use super::*;
    use crate::chat::Role;

    const KINDS: [RemoteKind; 2] = [RemoteKind::Ollama, RemoteKind::OpenAi];

    /// What the server got.
    #[derive(Debug, Clone)]
    struct Request {
        /// The request line and headers.
        head: String,
        body: Value,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
        }
    }

    type Respond = dyn Fn(usize, &mut TcpStream) + Send + Sync;

    /// A model server on loopback. Each connection gets its own thread, which reads one request,
    /// records it, lets `respond` write the answer (or nothing), then waits for the client to
    /// close the connection and reports that on `closed`.
    struct Server {
        url: String,
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<Request>>>,
        closed: mpsc::Receiver<()>,
        stop: Arc<AtomicBool>,
        acceptor: Option<JoinHandle<()>>,
    }

    impl Server {
        fn start(respond: impl Fn(usize, &mut TcpStream) + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (closed_tx, closed) = mpsc::channel();
            let stop = Arc::new(AtomicBool::new(false));
            let respond: Arc<Respond> = Arc::new(respond);
            let acceptor = {
                let (requests, stop) = (requests.clone(), stop.clone());
                let count = Arc::new(AtomicUsize::new(0));
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let (requests, respond, closed_tx, count) =
                            (requests.clone(), respond.clone(), closed_tx.clone(), count.clone());
                        std::thread::spawn(move || {
                            connection(stream, &requests, &*respond, &count, &closed_tx)
                        });
                    }
                })
            };
            Server {
                url: format!("http://{addr}"),
                addr,
                requests,
                closed,
                stop,
                acceptor: Some(acceptor),
            }
        }

        fn chat(&self, kind: RemoteKind) -> ChatServer {
            ChatServer::new(kind, &self.url, "tiny-model").unwrap()
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }

        /// Waits until the client has closed `n` connections.
        fn wait_closed(&self, n: usize) {
            for i in 0..n {
                self.closed
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| panic!("only {i} of {n} connections were closed"));
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            // Wakes the acceptor up so that it sees the flag.
            let _ = TcpStream::connect(self.addr);
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
    }

    fn connection(
        mut stream: TcpStream,
        requests: &Mutex<Vec<Request>>,
        respond: &Respond,
        count: &AtomicUsize,
        closed: &mpsc::Sender<()>,
    ) {
        // A safety net: a broken test must not keep this thread forever.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let Some(request) = read_request(&mut stream) else { return };
        let n = count.fetch_add(1, Ordering::SeqCst);
        requests.lock().unwrap().push(request);
        respond(n, &mut stream);
        let mut sink = [0u8; 4096];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => return,
            }
        }
        let _ = closed.send(());
    }

    fn read_request(stream: &mut TcpStream) -> Option<Request> {
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = stream.read(&mut buffer).ok().filter(|&n| n > 0)?;
            bytes.extend_from_slice(&buffer[..n]);
        };
        let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = bytes[head_end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut buffer).ok().filter(|&n| n > 0)?;
            body.extend_from_slice(&buffer[..n]);
        }
        Some(Request { head, body: serde_json::from_slice(&body).unwrap() })
    }

    /// Starts a streamed answer.
    fn head(stream: &mut TcpStream, kind: RemoteKind) {
        let content_type = match kind {
            RemoteKind::Ollama => "application/x-ndjson",
            RemoteKind::OpenAi => "text/event-stream",
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n"
        );
        let _ = stream.flush();
    }

    /// Sends `bytes` as one HTTP chunk, which the client reads apart from the next one.
    fn chunk(stream: &mut TcpStream, bytes: &[u8]) {
        let _ = write!(stream, "{:x}\r\n", bytes.len());
        let _ = stream.write_all(bytes);
        let _ = stream.write_all(b"\r\n");
        let _ = stream.flush();
    }

    /// Ends a streamed answer.
    fn finish(stream: &mut TcpStream) {
        let _ = stream.write_all(b"0\r\n\r\n");
        let _ = stream.flush();
    }

    /// A whole answer with a status.
    fn whole(stream: &mut TcpStream, status: &str, body: &str) {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.flush();
    }

    /// The stream's line or event carrying `text`.
    fn piece(kind: RemoteKind, text: &str) -> String {
        match kind {
            RemoteKind::Ollama => {
                format!(
                    "{}\n",
                    json!({"message": {"role": "assistant", "content": text}, "done": false})
                )
            }
            RemoteKind::OpenAi => {
                let event = json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
                format!("data: {event}\n\n")
            }
        }
    }

    /// The end of the stream, with the server's reason.
    fn done(kind: RemoteKind, reason: &str) -> String {
        match kind {
            RemoteKind::Ollama => format!(
                "{}\n",
                json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": reason})
            ),
            RemoteKind::OpenAi => {
                let event =
                    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]});
                format!("data: {event}\n\ndata: [DONE]\n\n")
            }
        }
    }

    /// A server that streams `pieces`, each in its own HTTP chunk, then ends with `stop`.
    fn streaming(kind: RemoteKind, pieces: &'static [&'static str]) -> Server {
        Server::start(move |_, stream| {
            head(stream, kind);
            for text in pieces {
                chunk(stream, piece(kind, text).as_bytes());
            }
            chunk(stream, done(kind, "stop").as_bytes());
            finish(stream);
        })
    }

    fn turns() -> Vec<Turn> {
        vec![
            Turn { role: Role::System, content: "You are the owner's twin.".into() },
            Turn { role: Role::User, content: "Where did I leave the keys?".into() },
        ]
    }

    /// Generous limits, for answers that should arrive.
    fn patient() -> StreamPolicy {
        StreamPolicy {
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(20),
            total_timeout: Duration::from_secs(60),
            retries: 2,
            backoff: Duration::from_millis(10),
        }
    }

    /// Short limits, for servers that are meant to run into them.
    fn impatient() -> StreamPolicy {
        StreamPolicy {
            first_token_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..patient()
        }
    }

    /// What a call gave: its result and the pieces passed to `on_token`.
    struct Outcome {
        result: Result<Finish>,
        pieces: Vec<String>,
    }

    impl Outcome {
        fn error(&self) -> String {
            match &self.result {
                Err(e) => {
                    assert_eq!(e.code(), "chat_server", "{e}");
                    e.to_string()
                }
                Ok(finish) => panic!("expected an error, got {finish:?} after {:?}", self.pieces),
            }
        }
    }

    fn call(server: &ChatServer, key: Option<&str>, policy: &StreamPolicy) -> Outcome {
        call_with(server, key, &GenerateOptions::default(), policy, &AtomicBool::new(false), |_| {})
    }

    /// Calls `stream_chat`, with `then` run after each piece (it gets the pieces so far).
    fn call_with(
        server: &ChatServer,
        key: Option<&str>,
        options: &GenerateOptions,
        policy: &StreamPolicy,
        cancel: &AtomicBool,
        then: impl Fn(&[String]),
    ) -> Outcome {
        let mut pieces = Vec::new();
        let result = stream_chat(server, key, &turns(), options, policy, cancel, &mut |text| {
            pieces.push(text.to_string());
            then(&pieces);
        });
        Outcome { result, pieces }
    }

    #[test]
    fn servers_are_checked_and_endpoints_follow_each_api() {
        assert!(ChatServer::new(RemoteKind::Ollama, "ftp://h", "m").is_err());
        assert!(ChatServer::new(RemoteKind::Ollama, "http://h", " ").is_err());
        assert!(ChatServer::new(RemoteKind::Ollama, "http://h", "a\nb").is_err());
        let server = ChatServer::new(RemoteKind::OpenAi, "http://h:1/v1/", " m ").unwrap();
        assert_eq!(server.url, "http://h:1/v1");
        assert_eq!(server.model, "m");
        assert_eq!(server.endpoint(), "http://h:1/v1/chat/completions");
        let endpoint = |kind, url| ChatServer::new(kind, url, "m").unwrap().endpoint();
        assert_eq!(
            endpoint(RemoteKind::OpenAi, "http://h:8080"),
            "http://h:8080/v1/chat/completions"
        );
        assert_eq!(endpoint(RemoteKind::Ollama, "http://h:11434/"), "http://h:11434/api/chat");
        assert_eq!(endpoint(RemoteKind::Ollama, "http://h/api/chat"), "http://h/api/chat");
    }

    #[test]
    fn pieces_arrive_in_order_and_the_request_is_complete() {
        for kind in KINDS {
            for key in [Some("sk-test-key"), None] {
                let server = streaming(kind, &["Under ", "the ", "door", "mat, ", "naïve 🙂"]);
                let outcome = call(&server.chat(kind), key, &patient());
                assert_eq!(outcome.result.unwrap(), Finish::Stop, "{kind:?}");
                assert_eq!(outcome.pieces, ["Under ", "the ", "door", "mat, ", "naïve 🙂"]);
                assert_eq!(outcome.pieces.concat(), "Under the doormat, naïve 🙂");

                let requests = server.requests();
                assert_eq!(requests.len(), 1);
                let request = &requests[0];
                let path = match kind {
                    RemoteKind::Ollama => "POST /api/chat ",
                    RemoteKind::OpenAi => "POST /v1/chat/completions ",
                };
                assert!(request.head.starts_with(path), "{}", request.head);
                let body = &request.body;
                assert_eq!(body["model"], "tiny-model");
                assert_eq!(body["stream"], true);
                assert_eq!(
                    body["messages"],
                    json!([
                        {"role": "system", "content": "You are the owner's twin."},
                        {"role": "user", "content": "Where did I leave the keys?"},
                    ])
                );
                match kind {
                    RemoteKind::Ollama => assert_eq!(
                        body["options"],
                        json!({"temperature": 0.3, "seed": 42, "num_predict": 512})
                    ),
                    RemoteKind::OpenAi => {
                        assert_eq!(body["temperature"], 0.3);
                        assert_eq!(body["seed"], 42);
                        assert_eq!(body["max_tokens"], 512);
                    }
                }
                assert_eq!(
                    request.header("authorization"),
                    key.map(|key| format!("Bearer {key}")).as_deref()
                );
                server.wait_closed(1);
            }
        }
    }

    #[test]
    fn a_silent_server_fails_within_the_first_token_timeout() {
        for kind in KINDS {
            for headers_first in [false, true] {
                // Ollama sends nothing until the model has loaded; other servers send their
                // headers at once and then nothing.
                let server = Server::start(move |_, stream| {
                    if headers_first {
                        head(stream, kind);
                    }
                });
                let outcome = call(&server.chat(kind), None, &impatient());
                let error = outcome.error();
                assert!(error.contains("no answer within 0.3 s"), "{error}");
                assert!(outcome.pieces.is_empty());
                // A timeout is not retried. (The server records a request before it sees the
                // connection closed.)
                server.wait_closed(1);
                assert_eq!(server.requests().len(), 1);
            }
        }
    }

    #[test]
    fn a_stall_mid_stream_is_an_error_and_the_pieces_so_far_stay() {
        for kind in KINDS {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "one ").as_bytes());
                chunk(stream, piece(kind, "two ").as_bytes());
            });
            let outcome = call(&server.chat(kind), None, &impatient());
            let error = outcome.error();
            assert!(error.contains("the answer stalled: nothing for 0.3 s"), "{error}");
            assert_eq!(outcome.pieces, ["one ", "two "]);
            server.wait_closed(1);
            assert_eq!(server.requests().len(), 1);
        }
    }

    #[test]
    fn the_total_timeout_bounds_a_started_answer() {
        for kind in KINDS {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "one ").as_bytes());
            });
            let policy = StreamPolicy { total_timeout: Duration::from_millis(300), ..patient() };
            let outcome = call(&server.chat(kind), None, &policy);
            let error = outcome.error();
            assert!(error.contains("the answer took longer than 0.3 s"), "{error}");
            assert_eq!(outcome.pieces, ["one "]);
            server.wait_closed(1);
        }
    }

    #[test]
    fn failures_that_may_pass_are_retried_before_the_first_token() {
        for kind in KINDS {
            // 500 twice, then an answer.
            let server = Server::start(move |n, stream| {
                if n < 2 {
                    whole(stream, "500 Internal Server Error", r#"{"error":"model is loading"}"#);
                } else {
                    head(stream, kind);
                    chunk(stream, piece(kind, "fine").as_bytes());
                    chunk(stream, done(kind, "stop").as_bytes());
                    finish(stream);
                }
            });
            let outcome = call(&server.chat(kind), None, &patient());
            assert_eq!(outcome.result.unwrap(), Finish::Stop);
            assert_eq!(outcome.pieces, ["fine"]);
            assert_eq!(server.requests().len(), 3);
            server.wait_closed(3);

            // 429, then an answer.
            let server = Server::start(move |n, stream| {
                if n == 0 {
                    whole(stream, "429 Too Many Requests", "");
                } else {
                    head(stream, kind);
                    chunk(stream, done(kind, "stop").as_bytes());
                }
            });
            assert_eq!(call(&server.chat(kind), None, &patient()).result.unwrap(), Finish::Stop);
            assert_eq!(server.requests().len(), 2);

            // 500 always: one try and `retries` more, then the server's words.
            let server = Server::start(|_, stream| {
                whole(
                    stream,
                    "500 Internal Server Error",
                    r#"{"error":{"message":"out of memory"}}"#,
                )
            });
            let error = call(&server.chat(kind), None, &patient()).error();
            assert!(error.contains("500 Internal Server Error: out of memory"), "{error}");
            assert!(error.contains("(3 tries)"), "{error}");
            assert_eq!(server.requests().len(), 3);
            server.wait_closed(3);
        }
    }

    #[test]
    fn client_errors_are_not_retried_and_say_what_to_check() {
        for kind in KINDS {
            for status in ["401 Unauthorized", "403 Forbidden"] {
                let server = Server::start(move |_, stream| {
                    whole(stream, status, r#"{"error":{"message":"invalid key"}}"#)
                });
                let error = call(&server.chat(kind), Some("sk-wrong"), &patient()).error();
                assert!(error.contains("check the API key"), "{error}");
                assert!(error.contains("invalid key"), "{error}");
                assert!(!error.contains("sk-wrong"), "{error}");
                assert_eq!(server.requests().len(), 1);
            }
            let server = Server::start(|_, stream| {
                whole(stream, "404 Not Found", r#"{"error":"model \"tiny-model\" not found"}"#)
            });
            let error = call(&server.chat(kind), None, &patient()).error();
            assert!(error.contains("404 Not Found"), "{error}");
            assert!(error.contains("check the URL") && error.contains("\"tiny-model\""), "{error}");
            assert_eq!(server.requests().len(), 1);
            let server = Server::start(|_, stream| whole(stream, "400 Bad Request", ""));
            let error = call(&server.chat(kind), None, &patient()).error();
            assert!(error.ends_with("the server answered 400 Bad Request"), "{error}");
            assert_eq!(server.requests().len(), 1);
        }
    }

    #[test]
    fn a_refused_connection_is_retried_then_reported() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = ChatServer::new(RemoteKind::Ollama, &format!("http://127.0.0.1:{port}"), "m");
        let outcome = call(&server.unwrap(), None, &patient());
        let error = outcome.error();
        assert!(error.contains("could not connect") && error.contains("(3 tries)"), "{error}");
    }

    #[test]
    fn a_stream_that_breaks_off_is_an_error() {
        for kind in KINDS {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "half an ").as_bytes());
                finish(stream);
            });
            let outcome = call(&server.chat(kind), None, &patient());
            let error = outcome.error();
            assert!(error.contains("closed the stream before the answer was complete"), "{error}");
            assert_eq!(outcome.pieces, ["half an "]);
            assert_eq!(server.requests().len(), 1);
        }
    }

    #[test]
    fn malformed_streams_are_clear_errors() {
        let cases: [(RemoteKind, &[u8], &str); 10] = [
            (RemoteKind::Ollama, b"{not json\n", "a line that is not JSON"),
            (RemoteKind::Ollama, b"{\"message\":{\"content\":\"x\"}}\n", "without \"done\""),
            (RemoteKind::Ollama, b"{\"done\":false}\n", "without \"message.content\""),
            (
                RemoteKind::Ollama,
                b"{\"message\":{\"content\":7},\"done\":false}\n",
                "content\" text",
            ),
            (RemoteKind::Ollama, b"{\"message\":{\"content\":\"\xff\xfe\"}}\n", "not UTF-8"),
            (RemoteKind::OpenAi, b"data: {\"choices\": [\n\n", "an event that is not JSON"),
            (RemoteKind::OpenAi, b"data: {\"id\":\"x\"}\n\n", "without \"choices\""),
            (RemoteKind::OpenAi, b"data: {\"choices\":[{\"index\":0}]}\n\n", "without \"delta\""),
            (
                RemoteKind::OpenAi,
                b"data: {\"choices\":[{\"delta\":{\"content\":[1]}}]}\n\n",
                "not text",
            ),
            (RemoteKind::OpenAi, b"data: \"\xc3\x28\"\n\n", "not UTF-8"),
        ];
        for (kind, bad, expected) in cases {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "fine ").as_bytes());
                chunk(stream, bad);
                chunk(stream, piece(kind, "never seen").as_bytes());
                chunk(stream, done(kind, "stop").as_bytes());
                finish(stream);
            });
            let outcome = call(&server.chat(kind), None, &patient());
            let error = outcome.error();
            assert!(error.contains("the server sent malformed data: "), "{error}");
            assert!(error.contains(expected), "{kind:?} {expected}: {error}");
            assert_eq!(outcome.pieces, ["fine "]);
            assert_eq!(server.requests().len(), 1, "malformed data is not retried");
        }
    }

    #[test]
    fn errors_in_the_stream_quote_the_server() {
        let cases = [
            (RemoteKind::Ollama, "{\"error\":\"model runner has unexpectedly stopped\"}\n"),
            (
                RemoteKind::OpenAi,
                "event: error\ndata: {\"error\":{\"message\":\"model runner has unexpectedly \
                 stopped\",\"type\":\"server_error\"}}\n\n",
            ),
        ];
        for (kind, line) in cases {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, line.as_bytes());
            });
            let error = call(&server.chat(kind), None, &patient()).error();
            assert!(
                error.contains(
                    "the server reported an error: model runner has unexpectedly stopped"
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn an_oversized_answer_is_refused() {
        for kind in KINDS {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                let block = vec![b'a'; 1024 * 1024];
                for _ in 0..17 {
                    chunk(stream, &block);
                }
            });
            let error = call(&server.chat(kind), None, &patient()).error();
            assert!(error.contains("the answer is larger than 16 MB"), "{error}");
            server.wait_closed(1);
        }
    }

    #[test]
    fn cancelling_mid_stream_returns_at_once_and_closes_the_connection() {
        for kind in KINDS {
            // After one piece the server says nothing more, for longer than the test runs.
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "first").as_bytes());
            });
            let cancel = AtomicBool::new(false);
            let outcome = call_with(
                &server.chat(kind),
                None,
                &GenerateOptions::default(),
                &patient(),
                &cancel,
                |_| cancel.store(true, Ordering::Relaxed),
            );
            assert_eq!(outcome.result.unwrap(), Finish::Cancelled);
            assert_eq!(outcome.pieces, ["first"]);
            server.wait_closed(1);
        }
    }

    #[test]
    fn cancelling_before_the_answer_starts_returns_at_once() {
        for kind in KINDS {
            // A model that takes longer to load than the test runs.
            let server = Server::start(|_, _| {});
            let cancel = AtomicBool::new(true);
            let outcome = call_with(
                &server.chat(kind),
                None,
                &GenerateOptions::default(),
                &patient(),
                &cancel,
                |_| {},
            );
            assert_eq!(outcome.result.unwrap(), Finish::Cancelled);
            assert!(server.requests().is_empty(), "nothing is sent once cancelled");
        }
    }

    #[test]
    fn abandoned_streams_leave_no_connection_open() {
        for kind in KINDS {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "first").as_bytes());
            });
            let chat = server.chat(kind);
            for _ in 0..50 {
                let cancel = AtomicBool::new(false);
                let outcome = call_with(
                    &chat,
                    None,
                    &GenerateOptions::default(),
                    &patient(),
                    &cancel,
                    |_| cancel.store(true, Ordering::Relaxed),
                );
                assert_eq!(outcome.result.unwrap(), Finish::Cancelled);
            }
            assert_eq!(server.requests().len(), 50);
            server.wait_closed(50);
        }
    }

    #[test]
    fn length_ends_the_answer() {
        for kind in KINDS {
            // The server says so.
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                chunk(stream, piece(kind, "a").as_bytes());
                chunk(stream, done(kind, "length").as_bytes());
                finish(stream);
            });
            let outcome = call(&server.chat(kind), None, &patient());
            assert_eq!(outcome.result.unwrap(), Finish::Length);
            assert_eq!(outcome.pieces, ["a"]);

            // The server sends more than was asked for: reading stops.
            let server = streaming(kind, &["1", "2", "3", "4", "5"]);
            let options = GenerateOptions { max_tokens: 3, ..GenerateOptions::default() };
            let cancel = AtomicBool::new(false);
            let outcome =
                call_with(&server.chat(kind), None, &options, &patient(), &cancel, |_| {});
            assert_eq!(outcome.result.unwrap(), Finish::Length);
            assert_eq!(outcome.pieces, ["1", "2", "3"]);
            let body = &server.requests()[0].body;
            let asked = match kind {
                RemoteKind::Ollama => &body["options"]["num_predict"],
                RemoteKind::OpenAi => &body["max_tokens"],
            };
            assert_eq!(asked, 3);
        }
    }

    #[test]
    fn lines_split_across_reads_still_parse() {
        for kind in KINDS {
            let server = Server::start(move |_, stream| {
                head(stream, kind);
                let mut bytes = Vec::new();
                if kind == RemoteKind::OpenAi {
                    // Keep-alives, event names and stray blank lines mean nothing.
                    bytes.extend_from_slice(b": keep-alive\n\nevent: message\r\n");
                }
                bytes.extend_from_slice(piece(kind, "h\u{e9}llo ").as_bytes());
                bytes.extend_from_slice(piece(kind, "w\u{f6}rld").as_bytes());
                bytes.extend_from_slice(done(kind, "stop").as_bytes());
                // One HTTP chunk per byte: every line, and "é" and "ö", arrive in pieces.
                for byte in &bytes {
                    chunk(stream, std::slice::from_ref(byte));
                }
                finish(stream);
            });
            let outcome = call(&server.chat(kind), None, &patient());
            assert_eq!(outcome.result.unwrap(), Finish::Stop);
            assert_eq!(outcome.pieces, ["h\u{e9}llo ", "w\u{f6}rld"]);
        }
    }

    #[test]
    fn the_decoder_takes_events_as_servers_send_them() {
        // `data:` without a space, an event split over two `data` lines, a usage event without
        // choices, and a stream that ends after `finish_reason` without `[DONE]`.
        let mut decoder = Decoder::new(RemoteKind::OpenAi);
        let mut events = Vec::new();
        let stream = "data:{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"x\"}}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n\
                      data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n";
        decoder.push(stream.as_bytes(), &mut events).unwrap();
        decoder.end(&mut events).unwrap();
        assert_eq!(events, [Event::Piece("x".into()), Event::End(Finish::Length)]);

        // An Ollama line without its newline at the end of the stream still counts.
        let mut decoder = Decoder::new(RemoteKind::Ollama);
        let mut events = Vec::new();
        decoder.push(b"{\"message\":{\"content\":\"y\"},\"done\":true}", &mut events).unwrap();
        decoder.end(&mut events).unwrap();
        assert_eq!(events, [Event::Piece("y".into()), Event::End(Finish::Stop)]);
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(seconds(Duration::from_secs(120)), "120");
        assert_eq!(seconds(Duration::from_millis(300)), "0.3");
        assert_eq!(
            reported(&json!({"message": "boom", "type": "x"})),
            "the server reported an error: boom"
        );
    }
}
