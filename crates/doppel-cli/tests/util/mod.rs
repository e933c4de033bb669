//! Drives the built `doppel` binary in a temporary data directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub struct Cli {
    pub data: tempfile::TempDir,
    pub files: tempfile::TempDir,
    pub models: bool,
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            data: tempfile::tempdir().unwrap(),
            files: tempfile::tempdir().unwrap(),
            models: false,
        }
    }

    /// A CLI that loads the embedding model from `$DOPPEL_MODEL_CACHE`.
    pub fn with_models() -> Cli {
        Cli { models: true, ..Cli::new() }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A path under the scratch folder for input files, with parent folders created.
    pub fn file(&self, name: &str) -> PathBuf {
        let path = self.files.path().canonicalize().unwrap().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_doppel"));
        // Without a model the CLI searches by keywords: most tests need no vectors and run
        // much faster without embedding; `with_models` turns them on.
        cmd.arg("--data-dir")
            .arg(self.data.path())
            .env_remove("DOPPEL_DATA_DIR")
            .env_remove("DOPPEL_MODEL_CACHE")
            .stdin(Stdio::null());
        if self.models {
            cmd.env(
                "DOPPEL_MODEL_CACHE",
                std::env::var_os("DOPPEL_MODEL_CACHE").expect("set by scripts/test"),
            );
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs with `--json`, returning stdout parsed, the exit status and the process's own peak
    /// memory in KB (from `wait4`, so other tests' processes do not count).
    // The child is reaped by `wait4` below, which also reports its memory.
    #[allow(clippy::zombie_processes)]
    pub fn json_measured(&self, args: &[&str]) -> (Value, i32, i64) {
        use std::io::Read;
        let mut child =
            self.command().arg("--json").args(args).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).unwrap();
            text
        });
        let mut status = 0;
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: waits for our own child and fills the status and usage it is given.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
        assert_eq!(pid, child.id() as i32);
        // SAFETY: initialised by the successful wait4 above.
        let peak_kb = unsafe { usage.assume_init() }.ru_maxrss;
        let text = reader.join().unwrap();
        let value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (value, libc::WEXITSTATUS(status), peak_kb)
    }

    /// Runs with `--json`, asserts the exit status, and parses stdout.
    pub fn json_status(&self, args: &[&str], status: i32) -> Value {
        let out = self.command().arg("--json").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(status),
            "doppel {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    pub fn json(&self, args: &[&str]) -> Value {
        self.json_status(args, 0)
    }

    /// `doctor`'s report. A CLI without models (most tests) leaves out the problems that say
    /// so, which `doctor` rightly reports, so that the tests see every other problem; `ok` then
    /// tells whether any is left.
    pub fn doctor(&self) -> Value {
        let out = self.command().args(["--json", "doctor"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut report: Value = serde_json::from_str(stdout.trim()).unwrap();
        let problems = report["problems"].as_array().unwrap().clone();
        // doctor exits 2 when it found any problem, model problems included.
        let status = if problems.is_empty() { 0 } else { 2 };
        assert_eq!(out.status.code(), Some(status), "{stdout}");
        if !self.models {
            let install = "Fix: run `doppel models install-defaults`";
            let other: Vec<Value> =
                problems.into_iter().filter(|p| !p.as_str().unwrap().contains(install)).collect();
            report["ok"] = Value::Bool(other.is_empty());
            report["problems"] = Value::Array(other);
        }
        report
    }

    pub fn sources(&self) -> Vec<Value> {
        self.json(&["sources"]).as_array().unwrap().clone()
    }

    pub fn source_by_origin(&self, path: &Path) -> Option<Value> {
        let origin = path.to_string_lossy();
        self.sources().into_iter().find(|s| s["origin"] == *origin)
    }

    /// Keyword search (vector search is tested on its own), returning the hits.
    pub fn search(&self, query: &str) -> Vec<Value> {
        self.json(&["search", query, "-k", "20", "--mode", "keyword"])["hits"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The `{"error":{...}}` shape, returning (code, message).
pub fn error_of(value: &Value) -> (String, String) {
    let error = value.get("error").unwrap_or_else(|| panic!("no error in {value}"));
    assert_eq!(error.as_object().unwrap().len(), 2, "{value}");
    (error["code"].as_str().unwrap().to_string(), error["message"].as_str().unwrap().to_string())
}

/// An Ollama chat server on loopback for one request: it says `piece`, then holds the connection
/// open and silent until the client hangs up, which it reports on the returned channel.
pub fn ollama_that_stalls_after(piece: &str) -> (String, std::sync::mpsc::Receiver<()>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let line =
        serde_json::json!({"message": {"role": "assistant", "content": piece}, "done": false});
    let (closed_tx, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            if header.trim_end().is_empty() {
                break;
            }
        }
        reader.read_exact(&mut vec![0; length]).unwrap();
        write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{line}\n").unwrap();
        // Reads until the client closes the connection (0 bytes) or resets it.
        let _ = reader.read(&mut [0; 64]);
        let _ = closed_tx.send(());
    });
    (url, closed)
}

/// How [`file_server`] answers.
#[derive(Clone, Copy)]
pub enum Serving {
    /// Every file whole, and from a `Range` start when asked.
    Whole,
    /// Each answer promises the rest of the file but sends at most this many bytes, then
    /// closes the connection: a transfer cut off, to be resumed.
    CutAfter(usize),
}

/// A static file server on loopback: `GET /NAME` answers `files[NAME]` as `serving` says, with
/// `Range` honoured. Returns its base URL and the `Range` starts of the requests, in order
/// (0 without one).
pub fn file_server(
    files: Vec<(String, Vec<u8>)>,
    serving: Serving,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<u64>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/');
            let path = path.to_string();
            let mut start = 0u64;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim_end().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    start = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                }
            }
            log.lock().unwrap().push(start);
            let Some((_, body)) = files.iter().find(|(name, _)| *name == path) else {
                let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            let len = body.len() as u64;
            let rest = &body[start.min(len) as usize..];
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n",
                    len - 1
                )
            } else {
                "HTTP/1.1 200 OK\r\n".to_string()
            };
            let _ =
                write!(stream, "{head}Content-Length: {}\r\nConnection: close\r\n\r\n", rest.len());
            let sent = match serving {
                Serving::Whole => rest,
                Serving::CutAfter(n) => &rest[..n.min(rest.len())],
            };
            let _ = stream.write_all(sent);
        }
    });
    (url, seen)
}

/// An Ollama embedding server on loopback (`/api/embed`) that gives each text a vector of four
/// numbers drawn from its bytes, for as long as the test runs; returns its URL.
pub fn ollama_embedder() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if header.trim_end().is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            let vectors: Vec<Vec<f32>> = request["input"]
                .as_array()
                .map(|texts| {
                    texts
                        .iter()
                        .map(|t| {
                            let t = t.as_str().unwrap_or_default().as_bytes();
                            (0..4).map(|i| 1.0 + t.get(i).copied().unwrap_or(0) as f32).collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let answer = serde_json::json!({ "embeddings": vectors }).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    url
}
