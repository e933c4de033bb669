//! The local API over real HTTP on loopback, with a real twin (notes learnt without a model,
//! answered in grounded mode): every endpoint and error, the bypass attempts of the audit
//! (CR2), rate limits and budgets at exact counts (M4), slow and oversize clients, and 100
//! concurrent streams, some abandoned (H4).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use doppel_api::{ApiServer, Limits};
use doppel_core::access::{NewToken, Scope, TokenRequest};
use doppel_core::chat::ChatModel;
use doppel_core::{Config, DEFAULT_TWIN, Doppel, JobId, TextRequest};
use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

struct Twin {
    _data: tempfile::TempDir,
    doppel: Arc<Doppel>,
    server: Option<ApiServer>,
}

fn open(data: &Path) -> Doppel {
    let doppel =
        Doppel::open(Config { models: Some(data.join("no-models")), ..Config::new(data) }).unwrap();
    doppel.set_chat_model(&ChatModel::Off).unwrap();
    doppel
}

fn learn(doppel: &Doppel, twin: i64, title: &str, text: &str) {
    let queued =
        doppel.add_text(TextRequest { twin, title: title.into(), text: text.into() }).unwrap();
    let ids: Vec<JobId> = vec![queued.job_id];
    doppel.wait_for(&ids, |_| {}).unwrap();
}

impl Twin {
    fn start(limits: Limits) -> Twin {
        let data = tempfile::tempdir().unwrap();
        let doppel = open(data.path());
        learn(
            &doppel,
            DEFAULT_TWIN,
            "Garden notes",
            "# Tomatoes\n\nThe tomatoes went in during May, after the last frost. \
             They were watered every morning.\n\n# Basil\n\nBasil was sown beside them in June.",
        );
        let doppel = Arc::new(doppel);
        let server =
            ApiServer::start(Arc::clone(&doppel), "127.0.0.1:0".parse().unwrap(), limits).unwrap();
        Twin { _data: data, doppel, server: Some(server) }
    }

    fn address(&self) -> SocketAddr {
        self.server.as_ref().unwrap().address()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address())
    }

    fn token(&self, scope: Scope, rate: Option<u32>, budget: Option<u64>) -> NewToken {
        self.token_of(DEFAULT_TWIN, scope, rate, budget)
    }

    fn token_of(
        &self,
        twin: i64,
        scope: Scope,
        rate: Option<u32>,
        budget: Option<u64>,
    ) -> NewToken {
        self.doppel
            .create_api_token(&TokenRequest {
                twin,
                name: format!("{scope} token"),
                scope,
                rate_per_minute: rate,
                daily_tokens: budget,
            })
            .unwrap()
    }
}

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn get(twin: &Twin, path: &str, token: &str) -> Response {
    client().get(twin.url(path)).header(AUTHORIZATION, format!("Bearer {token}")).send().unwrap()
}

fn post(twin: &Twin, path: &str, token: &str, body: Value) -> Response {
    client()
        .post(twin.url(path))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .json(&body)
        .send()
        .unwrap()
}

/// Asserts the one error shape and its code; returns the message.
fn error_of(response: Response, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "{code}");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

/// The events of a Server-Sent Events body: (event, data) pairs.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            (!data.is_empty()).then(|| (event, serde_json::from_str(&data).unwrap_or(json!(data))))
        })
        .collect()
}

#[test]
fn every_endpoint_answers_within_its_scope_and_every_error_has_one_shape() {
    let twin = Twin::start(Limits::default());
    let read = twin.token(Scope::Read, None, None).secret;
    let ask = twin.token(Scope::Ask, None, None).secret;

    // Asking streams tokens, then the stored answer with its citations.
    let response =
        post(&twin, "/v1/ask", &ask, json!({ "question": "When did the tomatoes go in?" }));
    assert_eq!(response.status(), 200);
    assert!(response.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    let events = events(&response.text().unwrap());
    assert!(events.iter().any(|(e, _)| e == "token"), "{events:?}");
    let (last, answer) = events.last().unwrap();
    assert_eq!(last, "answer");
    let content = answer["message"]["content"].as_str().unwrap();
    assert!(content.contains("May"), "{content}");
    let citation = &answer["message"]["citations"][0];
    assert_eq!(citation["source_title"], "Garden notes");
    assert!(citation["quote"].as_str().unwrap().contains("tomatoes"));
    // A named conversation continues; without `stream`, one JSON answer.
    let first = post(
        &twin,
        "/v1/ask",
        &ask,
        json!({ "question": "What about basil?", "conversation": "garden", "stream": false }),
    );
    assert_eq!(first.status(), 200);
    let first: Value = first.json().unwrap();
    let again: Value = post(
        &twin,
        "/v1/ask",
        &ask,
        json!({ "question": "And the tomatoes?", "conversation": "garden", "stream": false }),
    )
    .json()
    .unwrap();
    assert_eq!(first["conversation"], again["conversation"]);

    // Reading: sources, search, conversations with their messages.
    let sources: Value = get(&twin, "/v1/sources", &read).json().unwrap();
    assert_eq!(sources[0]["title"], "Garden notes");
    assert_eq!(sources[0]["state"], "ready");
    let found: Value = get(&twin, "/v1/search?q=basil%20sown&k=3", &read).json().unwrap();
    assert!(found["hits"][0]["text"].as_str().unwrap().contains("Basil"), "{found}");
    let conversations: Value = get(&twin, "/v1/conversations", &read).json().unwrap();
    assert_eq!(conversations.as_array().unwrap().len(), 2, "{conversations}");
    let id = first["conversation"].as_str().unwrap();
    let conversation: Value = get(&twin, &format!("/v1/conversations/{id}"), &read).json().unwrap();
    assert_eq!(conversation["messages"].as_array().unwrap().len(), 4);

    // OpenAI's shape, whole and streamed.
    let completion: Value = post(&twin, "/v1/chat/completions", &ask, json!({
        "model": "anything", "messages": [{ "role": "user", "content": "When did the tomatoes go in?" }]
    }))
    .json()
    .unwrap();
    assert_eq!(completion["object"], "chat.completion");
    let text = completion["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("May") && text.contains("Sources:\n[1] Garden notes"), "{text}");
    assert_eq!(completion["citations"][0]["source_title"], "Garden notes");
    let streamed = post(&twin, "/v1/chat/completions", &ask, json!({
        "messages": [{ "role": "user", "content": "When did the tomatoes go in?" }], "stream": true
    }))
    .text()
    .unwrap();
    assert!(streamed.trim_end().ends_with("data: [DONE]"), "{streamed}");
    let chunks: String = streamed
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(chunks.contains("May") && chunks.contains("[1] Garden notes"), "{chunks}");
    let models: Value = get(&twin, "/v1/models", &ask).json().unwrap();
    assert_eq!(models["data"][0]["id"], "doppel-twin");

    // Scopes: a read token cannot ask, an ask token cannot read.
    error_of(post(&twin, "/v1/ask", &read, json!({ "question": "x" })), 403, "forbidden");
    error_of(get(&twin, "/v1/sources", &ask), 403, "forbidden");
    error_of(get(&twin, "/v1/conversations", &ask), 403, "forbidden");
    // Errors of every kind: one shape.
    error_of(get(&twin, "/v1/nothing-here", &read), 404, "not_found");
    error_of(get(&twin, "/v1/conversations/nope", &read), 404, "not_found");
    error_of(
        client()
            .delete(twin.url("/v1/sources"))
            .header(AUTHORIZATION, format!("Bearer {read}"))
            .send()
            .unwrap(),
        405,
        "invalid_input",
    );
    error_of(get(&twin, "/v1/search", &read), 400, "invalid_input");
    error_of(get(&twin, "/v1/search?q=x&mode=psychic", &read), 400, "invalid_input");
    error_of(post(&twin, "/v1/ask", &ask, json!({ "question": "" })), 400, "invalid_input");
    error_of(
        post(&twin, "/v1/ask", &ask, json!({ "question": "x", "conversation": "../../etc" })),
        400,
        "invalid_input",
    );
    error_of(post(&twin, "/v1/ask", &ask, json!({ "questio": "typo" })), 400, "invalid_input");
    let bad = client()
        .post(twin.url("/v1/ask"))
        .header(AUTHORIZATION, format!("Bearer {ask}"))
        .body("{not json")
        .send()
        .unwrap();
    error_of(bad, 400, "invalid_input");
    error_of(
        post(&twin, "/v1/chat/completions", &ask, json!({ "messages": [] })),
        400,
        "invalid_input",
    );

    // The description lists every route, and needs no token.
    let spec: Value = client().get(twin.url("/v1/openapi.json")).send().unwrap().json().unwrap();
    for (method, path) in doppel_api::ROUTES {
        assert!(spec["paths"][path][method.to_lowercase()].is_object(), "{method} {path}");
    }
    assert_eq!(spec["paths"].as_object().unwrap().len(), doppel_api::ROUTES.len());
}

#[test]
fn cr2_no_header_query_other_twins_token_or_revoked_token_gets_past_the_check() {
    let twin = Twin::start(Limits::default());
    let other = twin.doppel.create_twin("Other").unwrap();
    learn(&twin.doppel, other.id, "Other notes", "Secret of the other twin: qz8812.");
    let read = twin.token(Scope::Read, None, None);
    let others = twin.token_of(other.id, Scope::Read, None, None).secret;
    let revoked = twin.token(Scope::Read, None, None);
    twin.doppel.revoke_api_token(revoked.token.id).unwrap();
    let url = twin.url("/v1/sources");
    let attempts: Vec<(&str, reqwest::blocking::RequestBuilder)> = vec![
        ("no token", client().get(&url)),
        ("empty bearer", client().get(&url).header(AUTHORIZATION, "Bearer ")),
        ("bearer alone", client().get(&url).header(AUTHORIZATION, "Bearer")),
        (
            "dev mode",
            client()
                .get(&url)
                .header("X-Dev-Mode", "1")
                .header("X-Debug", "true")
                .header("X-Auth-Disabled", "1"),
        ),
        (
            "forwarded loopback",
            client()
                .get(&url)
                .header("X-Forwarded-For", "127.0.0.1")
                .header("X-Real-IP", "127.0.0.1"),
        ),
        (
            "token in the query",
            client().get(format!("{url}?token={}&access_token={}", read.secret, read.secret)),
        ),
        ("basic auth", client().get(&url).basic_auth("doppel", Some(&read.secret))),
        (
            "another scheme",
            client().get(&url).header(AUTHORIZATION, format!("Token {}", read.secret)),
        ),
        ("revoked", client().get(&url).header(AUTHORIZATION, format!("Bearer {}", revoked.secret))),
        (
            "prefix only",
            client().get(&url).header(AUTHORIZATION, format!("Bearer {}", &read.secret[..17])),
        ),
        (
            "one character off",
            client().get(&url).header(
                AUTHORIZATION,
                format!("Bearer {}x", &read.secret[..read.secret.len() - 1]),
            ),
        ),
        (
            "two tokens",
            client()
                .get(&url)
                .header(AUTHORIZATION, format!("Bearer {} {}", read.secret, read.secret)),
        ),
    ];
    // Every failure reads the same: nothing tells a wrong secret from an unknown token.
    let mut messages = std::collections::HashSet::new();
    for (what, attempt) in attempts {
        let response = attempt.send().unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{what}");
        messages.insert(error_of(response, 401, "unauthorized"));
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    // A token of another twin sees that twin only.
    let theirs: Value = get(&twin, "/v1/sources", &others).json().unwrap();
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    assert_eq!(theirs[0]["title"], "Other notes");
    let found: Value = get(&twin, "/v1/search?q=tomatoes", &others).json().unwrap();
    assert_eq!(found["hits"], json!([]), "{found}");
    let mine: Value = get(&twin, "/v1/conversations", &read.secret).json().unwrap();
    assert!(mine.as_array().unwrap().is_empty());
    twin.doppel
        .ask(&doppel_core::chat::AskRequest::new("tomatoes?"), &Default::default(), &mut |_| {})
        .unwrap();
    let id = twin.doppel.conversations(DEFAULT_TWIN).unwrap()[0].id.clone();
    error_of(get(&twin, &format!("/v1/conversations/{id}"), &others), 404, "not_found");
    assert_eq!(get(&twin, &format!("/v1/conversations/{id}"), &read.secret).status(), 200);
    // Revoking takes effect at the next request.
    twin.doppel.revoke_api_token(read.token.id).unwrap();
    error_of(get(&twin, "/v1/sources", &read.secret), 401, "unauthorized");
    // Tokens are stored as salted hashes: the secret is in no file of the data directory.
    drop(twin.server);
    let secret = others.split('_').nth(2).unwrap().as_bytes().to_vec();
    for file in walk(twin._data.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{}", file.display());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn m4_rate_limits_and_daily_budgets_answer_429_with_retry_after_at_exact_counts() {
    let twin = Twin::start(Limits { flush_every: Duration::from_secs(3600), ..Limits::default() });
    let limited = twin.token(Scope::Read, Some(3), None).secret;
    let other = twin.token(Scope::Read, Some(3), None).secret;
    for n in 1..=3 {
        assert_eq!(get(&twin, "/v1/sources", &limited).status(), 200, "request {n}");
    }
    let refused = get(&twin, "/v1/sources", &limited);
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let message = error_of(refused, 429, "rate_limited");
    assert!(message.contains("3 requests per minute"), "{message}");
    // Per token: another token is not held back.
    assert_eq!(get(&twin, "/v1/sources", &other).status(), 200);

    // A budget of 1 generated token: one answer, then 429 until midnight UTC.
    let frugal = twin.token(Scope::Ask, None, Some(1));
    let ask = json!({ "question": "When did the tomatoes go in?", "stream": false });
    assert_eq!(post(&twin, "/v1/ask", &frugal.secret, ask.clone()).status(), 200);
    let refused = post(&twin, "/v1/ask", &frugal.secret, ask.clone());
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let midnight = (now / 86_400 + 1) * 86_400;
    assert!(retry.abs_diff(midnight - now) <= 5, "{retry} vs {}", midnight - now);
    error_of(refused, 429, "budget_exhausted");
    error_of(
        post(
            &twin,
            "/v1/chat/completions",
            &frugal.secret,
            json!({ "messages": [{ "role": "user", "content": "hi" }] }),
        ),
        429,
        "budget_exhausted",
    );
    // The use is recorded when the server stops, and still counts after a restart.
    let Twin { _data, doppel, server } = twin;
    drop(server);
    let used = doppel.api_tokens().unwrap().into_iter().find(|t| t.id == frugal.token.id).unwrap();
    assert!(used.last_used_at.is_some());
    let day = (now / 86_400) as i64;
    assert!(doppel.api_tokens_generated(frugal.token.id, day).unwrap() >= 1);
    let server =
        ApiServer::start(Arc::clone(&doppel), "127.0.0.1:0".parse().unwrap(), Limits::default())
            .unwrap();
    let twin = Twin { _data, doppel, server: Some(server) };
    error_of(post(&twin, "/v1/ask", &frugal.secret, ask), 429, "budget_exhausted");
}

/// A raw connection, for what an HTTP client library would not send.
fn raw(twin: &Twin) -> TcpStream {
    let stream = TcpStream::connect(twin.address()).unwrap();
    // Only a guard against a hang: each read below ends on the server's answer or close.
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
}

fn status_line(stream: &mut TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn slow_clients_and_oversize_requests_are_cut_off_while_others_are_served() {
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let twin = Twin::start(limits);
    let read = twin.token(Scope::Read, None, None).secret;
    let ask = twin.token(Scope::Ask, None, None).secret;

    // Slow loris: a head that never ends is closed; others are served meanwhile.
    let mut lazy = raw(&twin);
    lazy.write_all(b"GET /v1/sources HTTP/1.1\r\nHost: x\r\nX-A: ").unwrap();
    assert_eq!(get(&twin, "/v1/sources", &read).status(), 200);
    let mut rest = Vec::new();
    let closed = lazy.read_to_end(&mut rest);
    assert!(closed.is_ok() || closed.is_err(), "the connection ended");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "{rest:?}");

    // A body that stops arriving: 408.
    let mut slow = raw(&twin);
    write!(slow, "POST /v1/ask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ask}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"question\":").unwrap();
    assert!(status_line(&mut slow).starts_with("HTTP/1.1 408"));

    // A declared body over the limit: refused before it is read.
    let mut big = raw(&twin);
    write!(big, "POST /v1/ask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ask}\r\nContent-Length: 10000000\r\n\r\n").unwrap();
    assert!(status_line(&mut big).starts_with("HTTP/1.1 413"));
    // One sent in chunks, with no length: refused at the limit.
    let chunked = client()
        .post(twin.url("/v1/ask"))
        .header(AUTHORIZATION, format!("Bearer {ask}"))
        .body(reqwest::blocking::Body::new(std::io::repeat(b'a').take(1_000_000)))
        .send();
    if let Ok(response) = chunked {
        error_of(response, 413, "too_large");
    }
    // Headers over the limit: 431.
    let huge = client()
        .get(twin.url("/v1/sources"))
        .header(AUTHORIZATION, format!("Bearer {read}"))
        .header("X-Padding", "a".repeat(32 * 1024))
        .send()
        .unwrap();
    assert_eq!(huge.status(), 431);
    assert_eq!(get(&twin, "/v1/sources", &read).status(), 200, "still serving");
}

#[test]
fn h4_a_hundred_concurrent_streams_some_abandoned_leave_nothing_behind() {
    let limits = Limits { max_streams: 128, max_streams_per_token: 128, ..Limits::default() };
    let twin = Twin::start(limits);
    let ask = twin.token(Scope::Ask, Some(1000), None).secret;
    let read = twin.token(Scope::Read, None, None).secret;
    let url = twin.url("/v1/ask");
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (url, ask) = (url.clone(), ask.clone());
            std::thread::spawn(move || {
                let response = client()
                    .post(url)
                    .header(AUTHORIZATION, format!("Bearer {ask}"))
                    .json(&json!({ "question": format!("When did the tomatoes go in? ({i})") }))
                    .send()
                    .unwrap();
                assert_eq!(response.status(), 200);
                let mut reader = BufReader::new(response);
                let mut line = String::new();
                if i % 2 == 1 {
                    // Abandoned after the first event line: the client goes away.
                    reader.read_line(&mut line).unwrap();
                    return false;
                }
                let mut all = String::new();
                reader.read_to_string(&mut all).unwrap();
                all.contains("event: answer")
            })
        })
        .collect();
    let finished = threads.into_iter().filter_map(|t| t.join().ok()).filter(|done| *done).count();
    assert_eq!(finished, 50);
    let server = twin.server.as_ref().unwrap();
    assert_eq!(
        server.gauges().wait_idle(Duration::from_secs(120)),
        (0, 0),
        "streams and connections end"
    );
    // Every answer was stored, finished or stopped: none is left streaming.
    let conversations: Value = get(&twin, "/v1/conversations", &read).json().unwrap();
    assert_eq!(conversations.as_array().unwrap().len(), 100);
    for c in twin.doppel.conversations(DEFAULT_TWIN).unwrap() {
        for m in twin.doppel.messages(&c.id).unwrap() {
            assert_ne!(m.state, doppel_core::chat::MessageState::Streaming, "{}", c.id);
        }
    }
}

#[test]
fn the_share_page_is_served_with_a_strict_policy_and_needs_no_token_to_load() {
    let twin = Twin::start(Limits::default());
    for path in ["/share", "/share/app.js", "/share/style.css"] {
        let response = client().get(twin.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let policy = response.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe"), "{policy}");
        let body = response.text().unwrap();
        if path == "/share" {
            assert!(!body.contains("<script>") && !body.contains("style="), "nothing inline");
        }
    }
}

#[test]
fn an_openai_client_library_talks_to_the_twin() {
    let twin = Twin::start(Limits::default());
    let ask = twin.token(Scope::Ask, None, None).secret;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("scripts/openai-venv");
    let made = std::process::Command::new(&venv).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let python = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let out = std::process::Command::new(python)
        .arg(root.join("crates/doppel-api/tests/openai_client.py"))
        .env("DOPPEL_API_URL", format!("http://{}/v1", twin.address()))
        .env("DOPPEL_API_TOKEN", &ask)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["whole"].as_str().unwrap().contains("May"), "{report}");
    assert!(report["whole"].as_str().unwrap().contains("[1] Garden notes"), "{report}");
    assert!(report["streamed"].as_str().unwrap().contains("May"), "{report}");
    assert_eq!(report["models"], json!(["doppel-twin"]));
    assert_eq!(report["refused"], "AuthenticationError");
}
