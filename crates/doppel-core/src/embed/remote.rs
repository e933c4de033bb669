//! Embeddings from a model server: Ollama (`POST /api/embed`) or any OpenAI-compatible
//! endpoint (`POST /v1/embeddings`).
//!
//! Every request has a connect timeout and a total timeout that covers the body; failures
//! that may pass (refused connections, 429 and 5xx answers) are retried a bounded number of
//! times with a doubling delay, and a timeout is not retried here (the job's own retry policy
//! decides). The API key comes from the OS keychain and is only ever sent to the server it was
//! stored for. A server's answer is checked before anything is stored: one vector per text,
//! all of the model's dimension, finite numbers.

use std::io::Read;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::ModelInfo;
use crate::error::{Error, Result};

/// The kind of model server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// Ollama's native API (`/api/embed`).
    Ollama,
    /// The OpenAI embeddings API (`/v1/embeddings`), spoken by many servers.
    OpenAi,
}

impl RemoteKind {
    /// The name used in settings and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteKind::Ollama => "ollama",
            RemoteKind::OpenAi => "openai",
        }
    }
}

/// Which embedder the owner chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EmbedderChoice {
    /// The local model from the model cache (the default; no network).
    #[default]
    Local,
    /// A model server.
    Remote {
        /// Which API it speaks.
        kind: RemoteKind,
        /// Its base URL, such as `http://127.0.0.1:11434` or `https://api.example.com/v1`.
        url: String,
        /// The model name the server knows.
        model: String,
    },
}

/// Largest answer accepted from a model server.
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

impl EmbedderChoice {
    /// A remote choice after checking its URL and model name.
    pub fn remote(kind: RemoteKind, url: &str, model: &str) -> Result<EmbedderChoice> {
        let (url, model) = server_and_model(url, model)?;
        Ok(EmbedderChoice::Remote { kind, url, model })
    }

    /// The choice as stored: `(kind, url, model)`.
    pub(crate) fn to_stored(&self) -> (String, String, String) {
        match self {
            EmbedderChoice::Local => ("local".into(), String::new(), String::new()),
            EmbedderChoice::Remote { kind, url, model } => {
                (kind.as_str().into(), url.clone(), model.clone())
            }
        }
    }

    /// The stored choice; anything unreadable means the local model.
    pub(crate) fn from_stored(kind: &str, url: &str, model: &str) -> EmbedderChoice {
        let kind = match kind {
            "ollama" => RemoteKind::Ollama,
            "openai" => RemoteKind::OpenAi,
            _ => return EmbedderChoice::Local,
        };
        EmbedderChoice::remote(kind, url, model).unwrap_or_default()
    }

    /// The server's URL, for a remote choice.
    pub fn url(&self) -> Option<&str> {
        match self {
            EmbedderChoice::Local => None,
            EmbedderChoice::Remote { url, .. } => Some(url),
        }
    }
}

/// A model server's base URL (checked, without a trailing `/`) and a model name (1 to 200
/// printable characters), as every model-server choice needs them.
pub(crate) fn server_and_model(url: &str, model: &str) -> Result<(String, String)> {
    let url = crate::fetch::check_url(url)?.trim_end_matches('/').to_string();
    let model = model.trim();
    if model.is_empty() || model.len() > 200 || model.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "a model name of 1 to 200 printable characters is needed".into(),
        ));
    }
    Ok((url, model.to_string()))
}

/// A model server chosen for one role (reranking, transcription), or none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerChoice {
    /// No server: nothing is sent anywhere (the default).
    #[default]
    Off,
    /// A server.
    Server {
        /// Its base URL (`http://127.0.0.1:8080`), a `/v1` URL, or the full endpoint.
        url: String,
        /// The model name the server knows.
        model: String,
    },
}

impl ServerChoice {
    /// A server choice after checking its URL and model name.
    pub fn server(url: &str, model: &str) -> Result<ServerChoice> {
        let (url, model) = server_and_model(url, model)?;
        Ok(ServerChoice::Server { url, model })
    }

    /// The server's URL, when one is chosen.
    pub fn url(&self) -> Option<&str> {
        match self {
            ServerChoice::Off => None,
            ServerChoice::Server { url, .. } => Some(url),
        }
    }

    /// The rows to store under `keys` (kind, URL, model).
    pub(crate) fn to_stored(&self, keys: [&str; 3]) -> Vec<(String, String)> {
        let values = match self {
            ServerChoice::Off => ["off", "", ""],
            ServerChoice::Server { url, model } => ["server", url.as_str(), model.as_str()],
        };
        keys.iter().zip(values).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The choice stored under `keys`; anything unreadable means none.
    pub(crate) fn from_stored(
        stored: &std::collections::BTreeMap<String, String>,
        keys: [&str; 3],
    ) -> ServerChoice {
        let [kind, url, model] =
            keys.map(|k| stored.get(k).map(String::as_str).unwrap_or_default());
        match kind {
            "server" => ServerChoice::server(url, model).unwrap_or_default(),
            _ => ServerChoice::Off,
        }
    }
}

/// A model server chosen for one role (reranking, transcription), ready to be asked.
pub(crate) struct ChosenServer {
    /// Its base URL, for messages and the keychain.
    pub url: String,
    /// The model name.
    pub model: String,
    /// The API key from the keychain, if one is stored.
    pub api_key: Option<String>,
    /// Timeouts and retries.
    pub policy: RemotePolicy,
}

impl std::fmt::Debug for ChosenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is left out on purpose.
        f.debug_struct("ChosenServer").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ChosenServer {
    /// The server chosen under `keys`, or `None`. Its API key is read from the keychain only
    /// when one was stored for it; a keychain that cannot be read leaves the requests without
    /// a key (a server that needs one then says so).
    pub(crate) fn load(
        conn: &rusqlite::Connection,
        keys: [&str; 3],
        policy: RemotePolicy,
    ) -> Result<Option<ChosenServer>> {
        let choice = ServerChoice::from_stored(&crate::store::stored_settings(conn)?, keys);
        let ServerChoice::Server { url, model } = choice else { return Ok(None) };
        let api_key = if crate::store::key_stored(conn, &url)? {
            crate::secrets::api_key(&url).unwrap_or_else(|e| {
                tracing::warn!(code = e.code(), server = %url, "no API key for a model server");
                None
            })
        } else {
            None
        };
        Ok(Some(ChosenServer { url, model, api_key, policy }))
    }

    /// A request to `endpoint` with this server's key, timeout and model.
    pub(crate) fn post<'a>(
        &'a self,
        endpoint: &'a str,
        content_type: &'a str,
        max_answer: u64,
        key_command: &'a str,
    ) -> Post<'a> {
        Post {
            url: endpoint,
            api_key: self.api_key.as_deref(),
            content_type,
            timeout: self.policy.timeout,
            max_answer,
            key_command,
            model: &self.model,
        }
    }
}

/// How patient to be with a model server, from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemotePolicy {
    /// Total time for one request, body included.
    pub timeout: Duration,
    /// Extra tries after a failure that may pass.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl RemotePolicy {
    /// The policy the settings ask for.
    pub(crate) fn of(settings: &crate::settings::Settings) -> RemotePolicy {
        RemotePolicy {
            timeout: Duration::from_secs(u64::from(settings.embed_timeout_s)),
            retries: settings.embed_retries,
            backoff: Duration::from_millis(500),
        }
    }
}

/// An HTTP client whose every request ends within the policy's timeout (shared by the
/// reranker, [`crate::rerank`]).
pub(crate) fn client_for(policy: RemotePolicy) -> Result<Client> {
    Client::builder()
        .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
        .timeout(policy.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Doppel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::ModelUnavailable {
            reason: format!("could not set up the HTTP client: {e}"),
        })
}

pub(crate) struct RemoteEmbedder {
    client: Client,
    kind: RemoteKind,
    endpoint: String,
    /// The server's base URL, for messages (never carries a query string or credentials).
    server: String,
    model: String,
    api_key: Option<String>,
    policy: RemotePolicy,
    pub info: ModelInfo,
}

impl std::fmt::Debug for RemoteEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is left out on purpose.
        f.debug_struct("RemoteEmbedder").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl RemoteEmbedder {
    /// An embedder for a server; nothing is sent until the first [`RemoteEmbedder::embed`].
    /// `dimension` is the one recorded for this model, or 0 when it has not answered yet.
    pub(crate) fn new(
        kind: RemoteKind,
        url: &str,
        model: &str,
        api_key: Option<String>,
        policy: RemotePolicy,
        dimension: usize,
    ) -> Result<RemoteEmbedder> {
        let client = client_for(policy)?;
        let endpoint = endpoint(kind, url);
        Ok(RemoteEmbedder {
            client,
            kind,
            endpoint,
            server: url.to_string(),
            model: model.to_string(),
            api_key,
            policy,
            info: info(kind, url, model, dimension),
        })
    }

    /// Applies new timeouts and retries to the requests from now on.
    /// A copy with a client of its own, for another thread's requests: the blocking client
    /// drives its requests on one background runtime, and a clone of it shares that.
    pub(crate) fn with_own_client(&self) -> Result<RemoteEmbedder> {
        Ok(RemoteEmbedder {
            client: client_for(self.policy)?,
            kind: self.kind,
            endpoint: self.endpoint.clone(),
            server: self.server.clone(),
            model: self.model.clone(),
            api_key: self.api_key.clone(),
            policy: self.policy,
            info: self.info.clone(),
        })
    }

    pub(crate) fn set_policy(&mut self, policy: RemotePolicy) -> Result<()> {
        self.client = client_for(policy)?;
        self.policy = policy;
        Ok(())
    }

    fn failed(&self, reason: String, transient: bool) -> Error {
        Error::EmbeddingServer { server: self.server.clone(), reason, transient }
    }

    /// One normalised vector per text. The first answer fixes the model's dimension; any
    /// later answer of another dimension is refused.
    pub(crate) fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let body = json!({ "model": self.model, "input": texts }).to_string();
        let mut tries = 0;
        let answer = loop {
            match self.request(&body) {
                Ok(answer) => break answer,
                Err(failure) if failure.retry && tries < self.policy.retries => {
                    let delay = self.policy.backoff.saturating_mul(1 << tries.min(16));
                    // Not the reason: it may quote the server's answer.
                    tracing::info!(server = %self.server, ?delay, "embedding request will be retried");
                    std::thread::sleep(delay);
                    tries += 1;
                }
                Err(failure) => return Err(self.failed(failure.reason, failure.transient)),
            }
        };
        let vectors = self.vectors_of(&answer, texts.len())?;
        if self.info.dimension == 0 {
            self.info.dimension = vectors[0].len();
        }
        Ok(vectors)
    }

    /// One request.
    fn request(&self, body: &str) -> std::result::Result<Value, Failure> {
        let post = Post {
            url: &self.endpoint,
            api_key: self.api_key.as_deref(),
            content_type: "application/json",
            timeout: self.policy.timeout,
            max_answer: MAX_ANSWER_BYTES,
            key_command: "doppel embedder key",
            model: &self.model,
        };
        post.send(&self.client, body.as_bytes().to_vec())
    }

    /// The vectors in an answer, checked and normalised.
    fn vectors_of(&self, answer: &Value, expected: usize) -> Result<Vec<Vec<f32>>> {
        let malformed = |what: &str| self.failed(format!("unexpected answer: {what}"), false);
        let rows: Vec<&Value> = match self.kind {
            RemoteKind::Ollama => answer
                .get("embeddings")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed("no \"embeddings\" list"))?
                .iter()
                .collect(),
            RemoteKind::OpenAi => {
                let data = answer
                    .get("data")
                    .and_then(Value::as_array)
                    .ok_or_else(|| malformed("no \"data\" list"))?;
                // Items carry their position; servers may return them in any order.
                let mut rows: Vec<Option<&Value>> = vec![None; data.len()];
                for (position, item) in data.iter().enumerate() {
                    let at =
                        item.get("index").and_then(Value::as_u64).map_or(position, |i| i as usize);
                    let slot =
                        rows.get_mut(at).ok_or_else(|| malformed("an index out of range"))?;
                    *slot = Some(
                        item.get("embedding")
                            .ok_or_else(|| malformed("an item without \"embedding\""))?,
                    );
                }
                rows.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| malformed("a repeated index"))?
            }
        };
        if rows.len() != expected {
            return Err(malformed(&format!("{} vectors for {expected} texts", rows.len())));
        }
        let mut vectors = Vec::with_capacity(rows.len());
        for row in rows {
            let numbers = row.as_array().ok_or_else(|| malformed("a vector that is not a list"))?;
            let mut vector = Vec::with_capacity(numbers.len());
            for n in numbers {
                let x = n.as_f64().ok_or_else(|| malformed("a vector with a non-number"))? as f32;
                if !x.is_finite() {
                    return Err(malformed("a vector with a non-finite number"));
                }
                vector.push(x);
            }
            let want = if self.info.dimension == 0 {
                vectors.first().map_or(vector.len(), Vec::len)
            } else {
                self.info.dimension
            };
            if vector.is_empty() || vector.len() != want {
                return Err(self.failed(
                    format!(
                        "the server sent a vector of {} dimensions where model \"{}\" makes {want}; \
                         nothing was stored. If the server now runs a different model under the \
                         same name, give it another name and choose it again",
                        vector.len(),
                        self.model
                    ),
                    false,
                ));
            }
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm == 0.0 {
                return Err(malformed("a vector of zeros"));
            }
            vectors.push(vector.into_iter().map(|x| x / norm).collect());
        }
        Ok(vectors)
    }
}

/// A failed request: whether the job may succeed later, and whether to retry at once.
pub(crate) struct Failure {
    /// What went wrong.
    pub reason: String,
    /// Whether a later try may succeed.
    pub transient: bool,
    /// Whether to try again at once (after a pause).
    pub retry: bool,
}

impl Failure {
    fn new(reason: String, transient: bool) -> Failure {
        Failure { reason, transient, retry: false }
    }

    /// Refused connections, 429 and 5xx: worth another try after a pause.
    fn retryable(reason: String) -> Failure {
        Failure { reason, transient: true, retry: true }
    }
}

/// One POST to a model server that answers JSON: embeddings, reranking and transcription
/// share it, so that each treats timeouts, refusals and oversized or slow answers alike.
pub(crate) struct Post<'a> {
    /// The endpoint.
    pub url: &'a str,
    /// The API key from the keychain, sent as a bearer token.
    pub api_key: Option<&'a str>,
    /// The body's media type.
    pub content_type: &'a str,
    /// The whole request's time, the answer's body included.
    pub timeout: Duration,
    /// The longest answer read; a longer one is refused.
    pub max_answer: u64,
    /// The command that sets the server's key, for a 401 or 403.
    pub key_command: &'a str,
    /// The model asked for, for a 404.
    pub model: &'a str,
}

impl Post<'_> {
    /// Sends `body` and reads the JSON answer; a failure says why, whether another try may
    /// help at once (a refused connection, 429, 5xx) and whether a later one may (a timeout).
    pub(crate) fn send(
        &self,
        client: &Client,
        body: Vec<u8>,
    ) -> std::result::Result<Value, Failure> {
        let mut request = client
            .post(self.url)
            .header(reqwest::header::CONTENT_TYPE, self.content_type)
            .body(body);
        if let Some(key) = self.api_key {
            request = request.bearer_auth(key);
        }
        let seconds = self.timeout.as_secs_f64();
        let started = std::time::Instant::now();
        let response = request.send().map_err(|e| {
            if e.is_timeout() {
                Failure::new(format!("no answer within {seconds} s"), true)
            } else if e.is_connect() {
                Failure::retryable(format!("could not connect: {}", crate::fetch::root_cause(&e)))
            } else {
                Failure::new(crate::fetch::root_cause(&e), true)
            }
        })?;
        let status = response.status();
        let read = read_within(response, started + self.timeout, self.max_answer);
        let text = match &read {
            Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Err(_) => String::new(),
        };
        if !status.is_success() {
            let (reason, retry) = refusal(status, &text, self.key_command, self.model);
            return Err(if retry {
                Failure::retryable(reason)
            } else {
                Failure::new(reason, false)
            });
        }
        if let Err(e) = read {
            let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                || e.to_string().to_ascii_lowercase().contains("timed out");
            return Err(if timed_out {
                Failure::new(format!("the answer did not arrive within {seconds} s"), true)
            } else if e.kind() == std::io::ErrorKind::FileTooLarge {
                Failure::new(e.to_string(), false)
            } else {
                Failure::new(format!("the answer could not be read: {e}"), true)
            });
        }
        serde_json::from_str(&text)
            .map_err(|e| Failure::new(format!("the answer is not valid JSON ({e})"), false))
    }
}

/// The body of `response`, at most `max` bytes, read by `deadline`. The client's timeout
/// bounds each read, not their sum: a server that sends a byte just inside it, again and again,
/// would hold the worker (and the embedder's lock, which searches wait for) for as long as it
/// likes.
pub(crate) fn read_within(
    response: impl Read,
    deadline: std::time::Instant,
    max: u64,
) -> std::io::Result<Vec<u8>> {
    let mut body = response.take(max.saturating_add(1));
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if std::time::Instant::now() > deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        }
        match body.read(&mut buffer) {
            Ok(0) => return Ok(bytes),
            Ok(n) if (bytes.len() + n) as u64 > max => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("the answer is larger than {} MB", max / (1024 * 1024)),
                ));
            }
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The URL requests go to.
fn endpoint(kind: RemoteKind, url: &str) -> String {
    let url = url.trim_end_matches('/');
    match kind {
        RemoteKind::Ollama if url.ends_with("/api/embed") => url.to_string(),
        RemoteKind::Ollama => format!("{url}/api/embed"),
        RemoteKind::OpenAi if url.ends_with("/embeddings") => url.to_string(),
        RemoteKind::OpenAi if url.ends_with("/v1") => format!("{url}/embeddings"),
        RemoteKind::OpenAi => format!("{url}/v1/embeddings"),
    }
}

/// What a server's model is recorded as. Its weights cannot be read, so the fingerprint is that
/// of the kind, URL and model name: another server or model never shares vectors with it.
pub(crate) fn info(kind: RemoteKind, url: &str, model: &str, dimension: usize) -> ModelInfo {
    let identity = format!("{}\n{url}\n{model}", kind.as_str());
    ModelInfo {
        name: format!("{model} ({} at {url})", kind.as_str()),
        dimension,
        fingerprint: crate::ingest::sha256_hex(identity.as_bytes())[..16].to_string(),
    }
}

/// Why a model server refused a request (with the fix for a key or a model it lacks), and
/// whether trying again may help (a 5xx or 429 answer).
pub(crate) fn refusal(
    status: reqwest::StatusCode,
    body: &str,
    key_command: &str,
    model: &str,
) -> (String, bool) {
    let detail = error_detail(body);
    let reason = match status.as_u16() {
        401 | 403 => format!(
            "the server refused the request ({status}){detail}; check the API key (`{key_command}`)"
        ),
        404 => format!(
            "the server answered {status}{detail}; check the URL and that it serves the model \"{model}\""
        ),
        _ => format!("the server answered {status}{detail}"),
    };
    (reason, status.is_server_error() || status.as_u16() == 429)
}

/// The server's own words on an error, shortened to 200 characters without control characters:
/// `error.message`, `error` or the start of the body (`": words"`, or nothing). Shared by every
/// model-server client.
pub(crate) fn error_detail(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message").or_else(|| v.get("error")).and_then(Value::as_str)
        })
        .unwrap_or(body);
    let message: String = message.trim().chars().filter(|c| !c.is_control()).take(200).collect();
    if message.is_empty() { String::new() } else { format!(": {message}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_each_api() {
        assert_eq!(endpoint(RemoteKind::Ollama, "http://h:11434"), "http://h:11434/api/embed");
        assert_eq!(endpoint(RemoteKind::OpenAi, "https://a.io/v1/"), "https://a.io/v1/embeddings");
        assert_eq!(endpoint(RemoteKind::OpenAi, "http://h:8080"), "http://h:8080/v1/embeddings");
    }

    #[test]
    fn server_identity_decides_the_fingerprint() {
        let a = info(RemoteKind::Ollama, "http://h:1", "m", 0);
        let b = info(RemoteKind::Ollama, "http://h:1", "n", 0);
        let c = info(RemoteKind::OpenAi, "http://h:1", "m", 0);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.fingerprint, info(RemoteKind::Ollama, "http://h:1", "m", 3).fingerprint);
    }

    #[test]
    fn choices_are_checked() {
        assert!(EmbedderChoice::remote(RemoteKind::Ollama, "ftp://h", "m").is_err());
        assert!(EmbedderChoice::remote(RemoteKind::Ollama, "http://h", " ").is_err());
        let choice = EmbedderChoice::remote(RemoteKind::OpenAi, "http://h:1/v1/", "m").unwrap();
        let (kind, url, model) = choice.to_stored();
        assert_eq!(EmbedderChoice::from_stored(&kind, &url, &model), choice);
        assert_eq!(EmbedderChoice::from_stored("bogus", "", ""), EmbedderChoice::Local);
        assert_eq!(error_detail(r#"{"error":{"message":"bad key"}}"#), ": bad key");
        assert_eq!(error_detail(""), "");
        assert_eq!(error_detail("  "), "");
    }
}
