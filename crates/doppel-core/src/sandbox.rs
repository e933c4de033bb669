//! Parsing complex formats (PDF, DOCX, ODT, EPUB, e-mail) in a child process.
//!
//! Complex parsers are where a bad file hangs, panics, aborts or eats all memory. Here each such
//! file is parsed by a child process (the app's own binary in a hidden mode, see
//! [`run_parser_child`]) that gets the bytes on stdin and answers with JSON on stdout. The child
//! runs under a memory limit (`RLIMIT_AS`), a CPU limit, no core dumps and no file writes, in a
//! process group of its own, and the parent kills the whole group (the programs text
//! recognition starts included) when the wall-clock timeout passes or the job is cancelled.
//! A child that reports progress (one page of a scan read) restarts its timeout. Whatever
//! happens to the child, the parent gets one clear error for that file and goes on.
//!
//! This module holds the crate's only `unsafe` code for processes: `pre_exec` with `setrlimit`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::ingest::archive::ArchiveLimits;
use crate::ingest::ocr::OcrOptions;
use crate::ingest::{Block, Document, Format, Limits, parse_format};

/// The first argument that puts the app's binary into parser mode.
pub const PARSER_ARG: &str = "__doppel-parse";

/// Starts a line of the child's stderr that reports progress: `<mark>DONE TOTAL`.
pub(crate) const PROGRESS_MARK: char = '\u{1}';

/// How to start a parser child: a program and the arguments that put it in parser mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParserCommand {
    /// The program; by default the running executable.
    pub program: PathBuf,
    /// Arguments before the parser's own; by default `[PARSER_ARG]`.
    pub args: Vec<OsString>,
}

impl ParserCommand {
    /// The running executable in parser mode. Its `main` must call [`run_parser_child`] when
    /// its first argument is [`PARSER_ARG`].
    pub fn current_exe() -> ParserCommand {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("doppel"));
        ParserCommand { program, args: vec![PARSER_ARG.into()] }
    }
}

/// Time and memory allowed to one parse.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildLimits {
    pub timeout: Duration,
    pub memory_bytes: u64,
}

/// How often a waiting parent checks for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// The most a child may say on stderr that the parent keeps (for recognising out-of-memory).
const STDERR_CAP: u64 = 64 * 1024;

/// Parses `bytes` as `format` in a child process.
pub(crate) fn parse(
    command: &ParserCommand,
    child_limits: ChildLimits,
    limits: &Limits,
    format: Format,
    bytes: &[u8],
    cancelled: &dyn Fn() -> bool,
    progress: &dyn Fn(u32, u32),
) -> Result<Document> {
    let ocr = limits.ocr.as_ref();
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .arg(format.name())
        .arg(limits.max_bytes.to_string())
        .arg(limits.archive.max_bytes.to_string())
        .arg(limits.archive.max_entries.to_string())
        .arg(limits.archive.max_ratio.to_string())
        .arg(ocr.map_or("-", |o| o.languages.as_str()))
        .arg(ocr.map_or(0, |o| o.min_confidence).to_string())
        .arg(ocr.map_or(0, |o| o.dpi).to_string())
        .arg(ocr.map_or(0, |o| o.max_pages).to_string())
        // Nothing of the parent's environment (no secrets, no proxies) reaches the parser.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // A group of its own, so that a kill reaches the programs it starts.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let memory = child_limits.memory_bytes;
    let cpu_seconds = child_limits.timeout.as_secs() + 1;
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit, which
    // is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            limit(libc::RLIMIT_AS, memory)?;
            limit(libc::RLIMIT_CPU, cpu_seconds)?;
            limit(libc::RLIMIT_CORE, 0)?;
            limit(libc::RLIMIT_FSIZE, 0)?;
            Ok(())
        });
    }
    let mut child =
        cmd.spawn().map_err(|e| parser_failed(&format!("{}: {e}", command.program.display())))?;

    // Feed stdin and drain stdout and stderr on their own threads, so no pipe can fill up and
    // stall both sides.
    let mut stdin = child.stdin.take();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            // A child that stops reading (it failed early) closes the pipe: not our error.
            let _ = stdin.write_all(&input);
        }
    });
    let output_cap =
        limits.archive.max_bytes.max(limits.max_bytes).saturating_mul(4).saturating_add(1 << 20);
    let (done, finished) = channel();
    let mut stdout = child.stdout.take();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.take(output_cap + 1).read_to_end(&mut out);
        }
        let _ = done.send(out);
    });
    let mut stderr = child.stderr.take();
    let (report, reports) = channel();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(stderr) = stderr.as_mut() {
            let mut lines = std::io::BufReader::new(stderr.take(STDERR_CAP * 16));
            let mut line = String::new();
            while matches!(std::io::BufRead::read_line(&mut lines, &mut line), Ok(n) if n > 0) {
                match progress_of(&line) {
                    Some(step) => drop(report.send(step)),
                    None if text.len() < STDERR_CAP as usize => text.push_str(&line),
                    None => {}
                }
                line.clear();
            }
        }
        text
    });

    let mut started = Instant::now();
    let output = loop {
        let received = finished.recv_timeout(CANCEL_POLL);
        for (done, total) in reports.try_iter() {
            // Progress proves the child is working: its time starts again.
            started = Instant::now();
            progress(done, total);
        }
        match received {
            Ok(output) => break Some(output),
            Err(RecvTimeoutError::Disconnected) => break None,
            Err(RecvTimeoutError::Timeout) => {
                let stop = if cancelled() {
                    Some(Error::Cancelled)
                } else if started.elapsed() >= child_limits.timeout {
                    Some(Error::ParserTimedOut { seconds: child_limits.timeout.as_secs() })
                } else {
                    None
                };
                if let Some(error) = stop {
                    kill_group(&mut child);
                    let _ = child.wait();
                    let _ = writer.join();
                    return Err(error);
                }
            }
        }
    };
    let output = output.unwrap_or_default();
    if output.len() as u64 > output_cap {
        kill_group(&mut child);
    }
    let status = child.wait().map_err(|e| parser_failed(&e.to_string()))?;
    let _ = writer.join();
    let stderr = errors.join().unwrap_or_default();
    if output.len() as u64 > output_cap {
        return Err(Error::Malformed {
            reason: "the parser produced more text than the limits allow".into(),
        });
    }
    if status.success() {
        let mut doc = decode_answer(&output)?;
        doc.media_type = format.media_type();
        return Ok(doc);
    }
    Err(match status.signal() {
        Some(libc::SIGXCPU) => Error::ParserTimedOut { seconds: child_limits.timeout.as_secs() },
        _ if stderr.contains("memory allocation of") || stderr.contains("out of memory") => {
            Error::ParserOutOfMemory { limit_mb: memory / (1024 * 1024) }
        }
        Some(signal) => Error::Malformed {
            reason: format!("the parser crashed on this file (signal {signal})"),
        },
        None => Error::Malformed { reason: "the parser crashed on this file".into() },
    })
}

/// A progress line of the child: `(done, total)`.
fn progress_of(line: &str) -> Option<(u32, u32)> {
    let (done, total) = line.strip_prefix(PROGRESS_MARK)?.trim().split_once(' ')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// Kills the child and every program it started (they share its process group).
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill only sends a signal; the group is the child's own (see `process_group`).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
}

fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let rlimit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    if unsafe { libc::setrlimit(resource, &rlimit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn parser_failed(reason: &str) -> Error {
    Error::Malformed { reason: format!("the parser could not be started: {reason}") }
}

/// The entry point of parser mode. Reads the content on stdin, parses it, and writes the
/// document or the error as JSON on stdout. Shells call it when their first argument is
/// [`PARSER_ARG`], before anything else (no logging, no threads).
pub fn run_parser_child() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let answer = match child_request(&args) {
        Ok((format, limits)) => {
            let mut bytes = Vec::new();
            let read = std::io::stdin().take(limits.max_bytes + 1).read_to_end(&mut bytes);
            match read {
                Err(e) => {
                    Err(Error::Malformed { reason: format!("could not read the content: {e}") })
                }
                Ok(_) if bytes.len() as u64 > limits.max_bytes => {
                    Err(Error::FileTooLarge { size: bytes.len() as u64, limit: limits.max_bytes })
                }
                Ok(_) => parse_format(&bytes, Some(format), &limits, 0),
            }
        }
        Err(e) => Err(e),
    };
    let value = match answer {
        Ok(doc) => json!({ "document": encode_document(&doc) }),
        Err(e) => json!({ "error": encode_error(&e) }),
    };
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, &value).is_ok() && stdout.flush().is_ok();
    if written { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn child_request(args: &[String]) -> Result<(Format, Limits)> {
    let bad = || {
        Error::InvalidInput(
            "parser mode: expected FORMAT MAX_BYTES ARCHIVE_BYTES ENTRIES RATIO OCR_LANGUAGES OCR_MIN_CONFIDENCE OCR_DPI OCR_MAX_PAGES".into(),
        )
    };
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok()).ok_or_else(bad);
    let format = args.first().and_then(|name| Format::from_name(name)).ok_or_else(bad)?;
    let languages = args.get(5).ok_or_else(bad)?;
    let small = |i: usize| number(i).and_then(|n| u32::try_from(n).map_err(|_| bad()));
    let ocr = match languages.as_str() {
        "-" => None,
        codes if OcrOptions::valid_languages(codes) => Some(OcrOptions {
            languages: codes.to_string(),
            min_confidence: small(6)?,
            dpi: small(7)?,
            max_pages: small(8)?,
        }),
        _ => return Err(bad()),
    };
    let limits = Limits {
        max_bytes: number(1)?,
        archive: ArchiveLimits {
            max_bytes: number(2)?,
            max_entries: number(3)?,
            max_ratio: number(4)?,
        },
        ocr,
    };
    Ok((format, limits))
}

fn encode_document(doc: &Document) -> Value {
    let blocks: Vec<Value> = doc
        .blocks
        .iter()
        .map(|b| json!({ "s": b.section, "t": b.text, "l": b.first_line, "p": b.page, "m": b.time_ms }))
        .collect();
    json!({ "title": doc.title, "blocks": blocks, "warnings": doc.warnings })
}

fn decode_answer(output: &[u8]) -> Result<Document> {
    let malformed = || Error::Malformed { reason: "the parser gave an unreadable answer".into() };
    let value: Value = serde_json::from_slice(output).map_err(|_| malformed())?;
    if let Some(error) = value.get("error") {
        return Err(decode_error(error));
    }
    let doc = value.get("document").ok_or_else(malformed)?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let number = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let blocks = doc["blocks"]
        .as_array()
        .ok_or_else(malformed)?
        .iter()
        .map(|b| Block {
            section: text(&b["s"]).unwrap_or_default(),
            text: text(&b["t"]).unwrap_or_default(),
            first_line: number(&b["l"]),
            page: number(&b["p"]),
            time_ms: b["m"]
                .as_array()
                .and_then(|m| Some((m.first()?.as_u64()?, m.get(1)?.as_u64()?))),
        })
        .collect();
    let warnings =
        doc["warnings"].as_array().map(|w| w.iter().filter_map(text).collect()).unwrap_or_default();
    Ok(Document { title: text(&doc["title"]), media_type: "", blocks, warnings })
}

fn encode_error(e: &Error) -> Value {
    let reason = match e {
        Error::Malformed { reason }
        | Error::UnsupportedFormat { reason }
        | Error::ArchiveRefused { reason } => reason.clone(),
        other => other.to_string(),
    };
    let (size, limit) = match e {
        Error::FileTooLarge { size, limit } => (*size, *limit),
        _ => (0, 0),
    };
    let (reason, package) = match e {
        Error::NeedsOcr { reason } => (reason.clone(), String::new()),
        Error::ToolMissing { tool, package } => (tool.clone(), package.clone()),
        _ => (reason, String::new()),
    };
    json!({ "code": e.code(), "reason": reason, "size": size, "limit": limit, "package": package })
}

fn decode_error(value: &Value) -> Error {
    let reason = value["reason"].as_str().unwrap_or("unknown").to_string();
    match value["code"].as_str().unwrap_or("") {
        "unsupported_format" => Error::UnsupportedFormat { reason },
        "archive_refused" => Error::ArchiveRefused { reason },
        "empty" => Error::Empty,
        "needs_ocr" => Error::NeedsOcr { reason },
        "tool_missing" => Error::ToolMissing {
            tool: reason,
            package: value["package"].as_str().unwrap_or_default().to_string(),
        },
        "file_too_large" => Error::FileTooLarge {
            size: value["size"].as_u64().unwrap_or(0),
            limit: value["limit"].as_u64().unwrap_or(0),
        },
        _ => Error::Malformed { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_errors_cross_the_pipe_intact() {
        let doc = Document {
            title: Some("T".into()),
            media_type: "",
            blocks: vec![Block {
                section: "S".into(),
                text: "x\n\"y\"".into(),
                first_line: Some(3),
                time_ms: Some((1, 2)),
                page: Some(9),
            }],
            warnings: vec!["w".into()],
        };
        let wire = serde_json::to_vec(&json!({ "document": encode_document(&doc) })).unwrap();
        assert_eq!(decode_answer(&wire).unwrap(), doc);
        for e in [
            Error::Malformed { reason: "bad xref".into() },
            Error::ArchiveRefused { reason: "bomb".into() },
            Error::Empty,
            Error::FileTooLarge { size: 10, limit: 5 },
            Error::NeedsOcr { reason: "an image".into() },
            Error::ToolMissing { tool: "tesseract".into(), package: "tesseract-ocr".into() },
        ] {
            let wire = serde_json::to_vec(&json!({ "error": encode_error(&e) })).unwrap();
            assert_eq!(decode_answer(&wire).unwrap_err().to_string(), e.to_string());
        }
        assert_eq!(decode_answer(b"garbage").unwrap_err().code(), "malformed");
    }
}
