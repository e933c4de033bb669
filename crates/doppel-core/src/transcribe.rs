//! Transcripts of recordings through a speech-to-text server: `POST /v1/audio/transcriptions`
//! as OpenAI's API, whisper.cpp's server and others speak it (a multipart form with the file,
//! the model and `response_format=verbose_json`; segments with their start and end in seconds
//! come back). It owns the choice of server (settings rows `transcribe.kind`, `transcribe.url`,
//! `transcribe.model`), the request and the checking of the answer.
//!
//! The request shares the other model servers' rules ([`crate::embed::remote::Post`]): a
//! connect timeout, a total timeout that covers the upload and the answer
//! (`transcribe_timeout_s`), tries again after a refused connection, 429 or 5xx
//! (`transcribe_retries`), an answer of at most 16 MB, the API key from the OS keychain, bound
//! to the server's URL. A cancelled job stops waiting at once. Segments become blocks with
//! their times, so that passages are cited like subtitles ("0:01:05 – 0:01:32"). No transcript
//! text is ever logged.

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use serde_json::Value;

use crate::embed::remote::{ChosenServer, RemotePolicy, ServerChoice, client_for};
use crate::error::{Error, Result};
use crate::ingest::{Block, Document};
use crate::settings::Settings;

/// Which speech-to-text server transcribes recordings, if any.
pub type TranscriberChoice = ServerChoice;

/// The row that says whether a server is chosen (`server` or `off`).
pub(crate) const KIND_KEY: &str = "transcribe.kind";

/// Where the choice is stored.
pub(crate) const CHOICE_KEYS: [&str; 3] = [KIND_KEY, "transcribe.url", "transcribe.model"];

/// The longest answer read: a transcript of hours takes a few megabytes.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// How often a waiting transcription checks for a cancel.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// A speech-to-text server ready to be asked.
#[derive(Debug)]
pub(crate) struct Transcriber {
    server: ChosenServer,
}

/// The server the owner chose, ready to be asked; `None` when none is.
pub(crate) fn configured(
    conn: &rusqlite::Connection,
    settings: &Settings,
) -> Result<Option<Transcriber>> {
    let policy = RemotePolicy {
        timeout: Duration::from_secs(u64::from(settings.transcribe_timeout_s)),
        retries: settings.transcribe_retries,
        backoff: Duration::from_secs(1),
    };
    Ok(ChosenServer::load(conn, CHOICE_KEYS, policy)?.map(|server| Transcriber { server }))
}

impl Transcriber {
    /// The transcript of a recording as blocks with times. `name` and `media` describe the
    /// file to the server; `cancelled` is asked while waiting.
    pub(crate) fn transcribe(
        self,
        name: &str,
        media: &str,
        audio: Vec<u8>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Document> {
        let boundary = format!("doppel-{}", crate::ingest::sha256_hex(&audio)[..24].to_owned());
        let body = form(&boundary, name, media, &audio, &self.server.model);
        drop(audio);
        let (done, answer) = channel();
        // The request runs on a thread of its own, so that a cancel is noticed while it waits;
        // a cancelled request ends by its own timeout.
        let server = self.server.url.clone();
        std::thread::Builder::new()
            .name("doppel-transcribe".into())
            .spawn(move || drop(done.send(self.request(&boundary, body))))
            .map_err(|e| failed(&server, format!("could not start the request: {e}"), true))?;
        let answer = loop {
            match answer.recv_timeout(CANCEL_POLL) {
                Ok(answer) => break answer?,
                Err(RecvTimeoutError::Timeout) if cancelled() => return Err(Error::Cancelled),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Internal { during: "a transcription" });
                }
            }
        };
        let blocks = blocks_of(&answer)
            .map_err(|what| failed(&server, format!("unexpected answer: {what}"), false))?;
        if blocks.is_empty() {
            return Err(Error::Empty);
        }
        Ok(Document { blocks, media_type: "", ..Document::default() })
    }

    /// Sends the form, trying again as the policy allows.
    fn request(&self, boundary: &str, body: Vec<u8>) -> Result<Value> {
        let client = client_for(self.server.policy)
            .map_err(|e| failed(&self.server.url, e.to_string(), false))?;
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let endpoint = endpoint(&self.server.url);
        let post =
            self.server.post(&endpoint, &content_type, MAX_ANSWER_BYTES, "doppel transcriber key");
        let mut tries = 0;
        loop {
            match post.send(&client, body.clone()) {
                Ok(answer) => return Ok(answer),
                Err(f) if f.retry && tries < self.server.policy.retries => {
                    let delay = self.server.policy.backoff.saturating_mul(1 << tries.min(16));
                    tracing::info!(server = %self.server.url, ?delay, "transcription will be retried");
                    std::thread::sleep(delay);
                    tries += 1;
                }
                Err(f) => return Err(failed(&self.server.url, f.reason, f.transient)),
            }
        }
    }
}

fn failed(server: &str, reason: String, transient: bool) -> Error {
    Error::TranscriptionServer { server: server.to_string(), reason, transient }
}

/// The URL requests go to: `/v1/audio/transcriptions` below a base URL, `audio/transcriptions`
/// below a `/v1` URL, and a URL that already names the endpoint (whisper.cpp's `/inference`
/// too) as it is.
fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/transcriptions") || url.ends_with("/inference") {
        url.to_string()
    } else if url.ends_with("/v1") {
        format!("{url}/audio/transcriptions")
    } else {
        format!("{url}/v1/audio/transcriptions")
    }
}

/// A `multipart/form-data` body: the file, the model, and the verbose answer with segments.
fn form(boundary: &str, name: &str, media: &str, audio: &[u8], model: &str) -> Vec<u8> {
    // The file name says only its extension: the server needs no more of the owner's names.
    let extension = std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("bin");
    let mut body = Vec::with_capacity(audio.len() + 1024);
    let field = |body: &mut Vec<u8>, name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    field(&mut body, "model", model);
    field(&mut body, "response_format", "verbose_json");
    field(&mut body, "timestamp_granularities[]", "segment");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"recording.{extension}\"\r\nContent-Type: {media}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The segments of an answer as blocks with their times in milliseconds; an answer with only
/// `text` gives one block without times.
fn blocks_of(answer: &Value) -> std::result::Result<Vec<Block>, String> {
    let segments = match answer.get("segments") {
        Some(Value::Array(segments)) if !segments.is_empty() => segments,
        Some(Value::Array(_)) | Some(Value::Null) | None => {
            let text = answer
                .get("text")
                .and_then(Value::as_str)
                .ok_or("no \"text\" and no \"segments\"")?;
            let text = text.trim();
            return Ok(if text.is_empty() {
                Vec::new()
            } else {
                vec![Block { text: text.to_string(), ..Block::default() }]
            });
        }
        Some(_) => return Err("\"segments\" is not a list".into()),
    };
    let mut blocks = Vec::with_capacity(segments.len());
    for segment in segments {
        let time = |key: &str| {
            segment
                .get(key)
                .and_then(Value::as_f64)
                .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e7)
                .map(|t| (t * 1000.0).round() as u64)
                .ok_or_else(|| format!("a segment without a valid \"{key}\" time"))
        };
        let (start, end) = (time("start")?, time("end")?);
        if end < start {
            return Err("a segment that ends before it starts".into());
        }
        let text = segment.get("text").and_then(Value::as_str).ok_or("a segment without text")?;
        let text = text.trim();
        if !text.is_empty() {
            blocks.push(Block {
                text: text.to_string(),
                time_ms: Some((start, end)),
                ..Block::default()
            });
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn segments_become_timed_blocks_and_bad_ones_are_refused() {
        let answer = json!({"text": "a b", "segments": [
            {"id": 0, "start": 0.0, "end": 2.5, "text": " Hello there."},
            {"id": 1, "start": 2.5, "end": 65.25, "text": "  "},
            {"id": 2, "start": 65.25, "end": 70.0, "text": "Second part."}
        ]});
        let blocks = blocks_of(&answer).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[0].text.as_str(), blocks[0].time_ms), ("Hello there.", Some((0, 2500))));
        assert_eq!(blocks[1].time_ms, Some((65_250, 70_000)));
        let plain = blocks_of(&json!({"text": " Only text. "})).unwrap();
        assert_eq!((plain[0].text.as_str(), plain[0].time_ms), ("Only text.", None));
        for bad in [
            json!({"segments": [{"start": 3.0, "end": 1.0, "text": "x"}]}),
            json!({"segments": [{"start": "0", "end": 1.0, "text": "x"}]}),
            json!({"segments": [{"start": 0.0, "end": 1.0}]}),
            json!({"segments": 3}),
            json!({"words": []}),
        ] {
            assert!(blocks_of(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_and_forms() {
        assert_eq!(endpoint("http://h:8080"), "http://h:8080/v1/audio/transcriptions");
        assert_eq!(endpoint("http://h/v1/"), "http://h/v1/audio/transcriptions");
        assert_eq!(endpoint("http://h/inference"), "http://h/inference");
        let body = form("B", "/home/me/secret name.MP3", "audio/mpeg", b"ID3", "whisper-1");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("filename=\"recording.MP3\""), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"), "{text}");
        assert!(text.ends_with("\r\n--B--\r\n"), "{text}");
    }
}
