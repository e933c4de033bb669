//! What several test files share.

#![allow(dead_code)] // Each test file uses its own share of these.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doppel_core::{DEFAULT_TWIN, Doppel, MODEL_CACHE_ENV, ModelFiles, TextRequest};
use serde_json::Value;

/// Every file below `dir`. A folder that vanishes while it is listed (the app runs beside the
/// scan) is passed over: it holds nothing any more.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// Every file below `dir` (recursively) that holds one of `needles`, as "what in path". Safe to
/// run while the app works: a file removed between the listing and its reading (an index file
/// replaced by its next save) holds nothing, and one created meanwhile is read by the next scan.
pub fn files_holding(dir: &Path, needles: &[(&str, &[u8])]) -> Vec<String> {
    let mut found = Vec::new();
    for file in walk(dir) {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == *needle) {
                found.push(format!("{what} in {}", file.display()));
            }
        }
    }
    found
}

/// The model cache that `scripts/test` fills (`DOPPEL_MODEL_CACHE`), checked to hold the model.
pub fn model_cache() -> PathBuf {
    let dir = std::env::var_os(MODEL_CACHE_ENV)
        .map(PathBuf::from)
        .expect("DOPPEL_MODEL_CACHE is set by scripts/test");
    assert!(
        ModelFiles::in_cache(&dir).model.is_file(),
        "run scripts/models to fill {}",
        dir.display()
    );
    dir
}

/// One HTTP request as a loopback model server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// Reads one request with a JSON body from `stream`.
pub fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut length, mut authorization) = (0, None);
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { path, authorization, body: serde_json::from_slice(&body).ok()? })
}

/// What a scripted loopback server does with a request: answer with a status and a JSON body,
/// never answer, or answer one byte at a time.
pub enum Answer {
    Json(u16, Value),
    /// Holds the connection open and silent well past any timeout under test.
    Hang,
    /// A 200 whose JSON body comes one byte at a time, each 0.8 s after the last: just inside
    /// a 1 s read timeout, so only a deadline on the whole body stops it.
    Trickle(Value),
}

/// A scripted server's behaviour.
pub type Handler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

/// Serves `handler` on a loopback port until the test process ends; returns the base URL and
/// the requests seen.
pub fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
            std::thread::spawn(move || {
                let Some(request) = read_request(&stream) else { return };
                log.lock().unwrap().push(request.clone());
                match handler(&request) {
                    Answer::Json(status, body) => respond(stream, status, &body),
                    // The server's behaviour, not a wait of the test.
                    Answer::Hang => std::thread::sleep(Duration::from_secs(30)),
                    Answer::Trickle(body) => trickle(stream, &body),
                }
            });
        }
    });
    (base, seen)
}

fn respond(mut stream: TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn trickle(mut stream: TcpStream, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    for byte in body.as_bytes() {
        // The server's pace, not a wait of the test: each byte comes 0.8 s after the last.
        std::thread::sleep(Duration::from_millis(800));
        if stream.write_all(&[*byte]).and_then(|()| stream.flush()).is_err() {
            return;
        }
    }
}

/// Teaches the twin of `doppel` one note of the garden, and waits until it is learnt.
pub fn learn_garden_note(doppel: &Doppel) {
    let queued = doppel
        .add_text(TextRequest {
            twin: DEFAULT_TWIN,
            title: "Garden notes".into(),
            text: "The tomatoes went in during May, after the last frost.".into(),
        })
        .unwrap();
    doppel.wait_for(&[queued.job_id], |_| {}).unwrap();
}

/// The name of the threads of [`endless_chat_server`], so that a count of threads can leave
/// them out.
pub const LOOPBACK_CHAT_THREAD: &str = "loopback-chat";

/// An OpenAI-compatible server that streams one piece after another until the client leaves.
pub fn endless_chat_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accept = move || {
        for mut stream in listener.incoming().flatten() {
            let serve = move || {
                if read_request(&stream).is_none() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                // Pieces that never repeat (a loop would be stopped as one), at the server's
                // pace, not a wait of the test: one every 2 ms until the client closes.
                for n in 0u64.. {
                    let words = format!("The tomatoes went in during May, note {n}. ");
                    let piece =
                        serde_json::json!({"choices": [{"index": 0, "delta": {"content": words}}]});
                    if stream.write_all(format!("data: {piece}\n\n").as_bytes()).is_err()
                        || stream.flush().is_err()
                    {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            };
            std::thread::Builder::new().name(LOOPBACK_CHAT_THREAD.into()).spawn(serve).unwrap();
        }
    };
    std::thread::Builder::new().name(LOOPBACK_CHAT_THREAD.into()).spawn(accept).unwrap();
    base
}
