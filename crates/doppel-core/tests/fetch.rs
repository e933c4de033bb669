//! URL ingestion against real HTTP servers on loopback: one that never answers, one that
//! trickles forever, one that floods, one that redirects in a loop, one that claims 10 GB, one
//! that errors. Each URL fails in bounded time with a clear error, and the worker goes on.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use doppel_core::*;

/// Longest any server connection lives, so that every server stops by itself.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(20);

/// Serves up to `connections` connections on a loopback port with `handler`; returns the base URL.
fn serve(connections: usize, handler: fn(TcpStream, &str)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections).flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                handler(stream, &path);
            });
        }
    });
    base
}

fn respond(mut stream: TcpStream, status: &str, headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn page(stream: TcpStream, path: &str) {
    let body = format!(
        "<html><head><title>Loopback page</title></head><body><nav>Menu</nav>\
         <main><h1>Field notes</h1><p>The lyrebird sings at {path}.</p></main>\
         <footer>Footer words</footer></body></html>"
    );
    respond(stream, "200 OK", "Content-Type: text/html; charset=utf-8\r\n", body.as_bytes());
}

fn pdf(stream: TcpStream, _: &str) {
    let body = std::fs::read("/usr/share/doc/libtasn1-doc/libtasn1.pdf").unwrap();
    respond(stream, "200 OK", "Content-Type: application/pdf\r\n", &body);
}

fn silent(stream: TcpStream, _: &str) {
    // Holds the connection open without a byte of answer.
    let _ = stream.set_read_timeout(Some(CONNECTION_LIFETIME));
    let _ = std::io::Read::read(&mut &stream, &mut [0u8; 1]);
}

fn trickle(mut stream: TcpStream, _: &str) {
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let started = Instant::now();
    while started.elapsed() < CONNECTION_LIFETIME {
        if stream.write_all(b"1\r\na\r\n").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn flood(mut stream: TcpStream, _: &str) {
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = format!("10000\r\n{}\r\n", "word ".repeat(0x10000 / 5) + "w");
    let started = Instant::now();
    while started.elapsed() < CONNECTION_LIFETIME && stream.write_all(chunk.as_bytes()).is_ok() {}
}

fn huge(mut stream: TcpStream, _: &str) {
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10737418240\r\n\r\nstart",
    );
}

fn redirect_loop(stream: TcpStream, path: &str) {
    respond(stream, "302 Found", &format!("Location: {path}\r\n"), b"");
}

fn broken(stream: TcpStream, _: &str) {
    respond(stream, "500 Internal Server Error", "", b"oops");
}

fn missing(stream: TcpStream, _: &str) {
    respond(stream, "404 Not Found", "", b"no");
}

#[test]
fn h2_every_hostile_server_ends_in_a_clear_error_and_the_worker_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let parser = ParserCommand {
        program: env!("CARGO_BIN_EXE_doppel-parse").into(),
        args: vec![PARSER_ARG.into()],
    };
    let doppel = Doppel::open(Config { parser, ..without_models(data.path()) }).unwrap();
    doppel.set_setting("fetch_timeout_s", "1").unwrap();
    doppel.set_setting("max_file_mb", "2").unwrap();
    doppel.set_setting("max_attempts", "2").unwrap();
    doppel.set_setting("retry_backoff_ms", "1").unwrap();

    let urls = [
        format!("{}/silent", serve(2, silent)),
        format!("{}/trickle", serve(2, trickle)),
        format!("{}/flood", serve(2, flood)),
        format!("{}/huge", serve(2, huge)),
        format!("{}/loop", serve(20, redirect_loop)),
        format!("{}/broken", serve(2, broken)),
        format!("{}/missing", serve(2, missing)),
        format!("{}/notes", serve(2, page)),
        format!("{}/download?id=7", serve(2, pdf)),
    ];
    let report = doppel
        .ingest(IngestRequest { urls: urls.to_vec(), ..IngestRequest::paths(Vec::new()) })
        .unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    let jobs = doppel.wait_for(&ids, |_| {}).unwrap();
    let outcome = |i: usize| {
        let job = &jobs[i];
        (job.state, job.attempts, job.last_error.clone().unwrap_or_default())
    };
    let failed = |i: usize, attempts: u32, message: String| {
        assert_eq!(outcome(i), (JobState::Failed, attempts, message), "{}", urls[i]);
    };
    failed(0, 2, format!("{}: timed out after 1 s", urls[0]));
    failed(1, 2, format!("{}: timed out after 1 s", urls[1]));
    failed(2, 1, "file too large (2.0 MB > limit of 2 MB)".into());
    failed(3, 1, "file too large (10240 MB > limit of 2 MB)".into());
    failed(4, 1, format!("{}: redirect refused: more than 5 redirects", urls[4]));
    failed(5, 2, format!("{}: the server answered 500 Internal Server Error", urls[5]));
    failed(6, 1, format!("{}: the server answered 404 Not Found", urls[6]));

    // The worker went on: the good page is in, with its main content only.
    assert_eq!(jobs[7].state, JobState::Done);
    let hit = &doppel.search(&keyword("lyrebird")).unwrap().hits[0];
    assert_eq!(hit.origin.as_deref(), Some(urls[7].as_str()));
    assert_eq!(hit.source_title, "Loopback page");
    assert_eq!(hit.location.label, "Field notes");
    assert!(doppel.search(&keyword("Footer Menu")).unwrap().hits.is_empty());
    let source = doppel.source(hit.source_id).unwrap();
    assert_eq!(source.kind, SourceKind::Url);

    // A PDF is recognised by its content type and parsed in the sandbox, with its pages.
    assert_eq!(jobs[8].state, JobState::Done, "{:?}", jobs[8]);
    let hit = &doppel.search(&keyword("C-style comments are not supported")).unwrap().hits[0];
    assert_eq!(hit.origin.as_deref(), Some(urls[8].as_str()));
    assert_eq!(hit.location.page, Some(5));
}

#[test]
fn only_http_and_https_urls_are_queued() {
    let data = tempfile::tempdir().unwrap();
    let doppel =
        Doppel::open(Config { process_queue: false, ..without_models(data.path()) }).unwrap();
    let urls = vec![
        "file:///etc/passwd".to_string(),
        "ftp://example.org/x".to_string(),
        "https://".to_string(),
    ];
    let report = doppel.ingest(IngestRequest { urls, ..IngestRequest::paths(Vec::new()) }).unwrap();
    assert!(report.queued.is_empty());
    let messages: Vec<String> = report.skipped.iter().map(|e| e.to_string()).collect();
    assert_eq!(messages[0], "file:///etc/passwd: only http and https URLs can be ingested");
    assert_eq!(messages[1], "ftp://example.org/x: only http and https URLs can be ingested");
    assert!(messages[2].starts_with("https://: not a valid URL"), "{}", messages[2]);
}

/// A keyword-only search of the default twin (vector search is tested on its own).
fn keyword(query: impl Into<String>) -> SearchRequest {
    SearchRequest { mode: SearchMode::Keyword, ..SearchRequest::new(query) }
}

/// These tests are about the queue, parsing and keyword search: they run without the embedding
/// model (vector search has tests of its own), which keeps them fast.
fn without_models(dir: &Path) -> Config {
    Config { models: Some(dir.join("no-models")), ..Config::new(dir) }
}
