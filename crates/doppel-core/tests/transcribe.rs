//! Recordings: audio and video files wait for a speech-to-text server, are transcribed once one
//! is set (segments become passages cited by their times), and a server that hangs, trickles,
//! errs, refuses the key or answers too much fails only the file it was asked about.
//!
//! The server is a real HTTP server on loopback that speaks `POST /v1/audio/transcriptions`
//! as whisper.cpp's server and OpenAI do; no speech model can run here, so it answers segments
//! chosen by the test for the recording it was sent.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Answer, Request, serve};
use doppel_core::*;
use serde_json::json;

fn open(data: &Path) -> Doppel {
    Doppel::open(Config { models: Some(data.join("no-models")), ..Config::new(data) }).unwrap()
}

fn keyword(query: &str) -> SearchRequest {
    SearchRequest { mode: SearchMode::Keyword, ..SearchRequest::new(query) }
}

fn ingest(doppel: &Doppel, files: &[PathBuf]) -> Vec<Job> {
    let report = doppel.ingest(IngestRequest::paths(files.to_vec())).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap()
}

fn error_of(job: &Job) -> (String, String) {
    (job.last_error_code.clone().unwrap_or_default(), job.last_error.clone().unwrap_or_default())
}

/// What a request's multipart form says in its text part named `field`.
fn field(request: &Request, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&request.raw);
    let start = text.find(&format!("name=\"{name}\"\r\n\r\n"))? + name.len() + 11;
    Some(text[start..].split("\r\n").next()?.to_string())
}

fn holds(request: &Request, marker: &str) -> bool {
    request.raw.windows(marker.len()).any(|w| w == marker.as_bytes())
}

fn segments() -> serde_json::Value {
    json!({
        "text": "The lighthouse keeper logged the storm. Boats stayed in the harbour.",
        "segments": [
            {"id": 0, "start": 5.0, "end": 9.5, "text": " The lighthouse keeper logged the storm."},
            {"id": 1, "start": 65.0, "end": 71.25, "text": " Boats stayed in the harbour."}
        ]
    })
}

#[test]
fn recordings_wait_for_a_server_and_are_transcribed_once_one_is_set() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memo = dir.path().join("voice memo.mp3");
    std::fs::write(&memo, b"ID3\x04 a recording of the keeper").unwrap();
    let talk = dir.path().join("talk.webm");
    std::fs::write(&talk, b"\x1aE\xdf\xa3 a video with a sound track").unwrap();
    let doppel = open(data.path());
    assert_eq!(doppel.transcriber().unwrap(), TranscriberChoice::Off);

    let jobs = ingest(&doppel, &[memo.clone(), talk.clone()]);
    for job in &jobs {
        let (code, message) = error_of(job);
        assert_eq!(code, "needs_transcriber", "{message}");
        assert!(message.contains("`doppel transcriber server URL`"), "{message}");
        assert!(message.contains("read again once one is set"), "{message}");
    }
    let coverage = doppel.coverage(DEFAULT_TWIN).unwrap();
    assert!(coverage.problems.iter().all(|p| p.code == "needs_transcriber" && p.retryable));

    let handler: common::Handler = Arc::new(|request: &Request| {
        if request.path != "/v1/audio/transcriptions" {
            return Answer::Json(404, json!({"error": "no such path"}));
        }
        Answer::Json(200, segments())
    });
    let (url, seen) = serve(handler);
    // Setting the server queues the waiting recordings again before it returns.
    doppel.set_transcriber(&TranscriberChoice::server(&url, "whisper-1").unwrap()).unwrap();
    let active = doppel.jobs(JobFilter { active_only: true, limit: 10 }).unwrap();
    assert_eq!(active.len(), 2, "{active:?}");
    let ids: Vec<JobId> = active.iter().map(|j| j.id).collect();
    let ended = doppel.wait_for(&ids, |_| {}).unwrap();
    assert!(ended.iter().all(|j| j.state == JobState::Done), "{ended:?}");

    let hits = doppel.search(&keyword("harbour boats")).unwrap().hits;
    let hit = hits.iter().find(|h| h.source_title == "voice memo.mp3").expect("the memo");
    // Both short segments fit one passage, cited by the times it spans.
    assert_eq!(hit.location.label, "00:00:05 – 00:01:11");
    let source = doppel.source(hit.source_id).unwrap();
    assert_eq!(source.media_type.as_deref(), Some("audio/mpeg"));
    assert_eq!(doppel.search(&keyword("lighthouse keeper")).unwrap().hits.len(), 2);

    let requests = seen.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let memo_request = requests.iter().find(|r| holds(r, "a recording of the keeper")).unwrap();
    assert_eq!(field(memo_request, "model").as_deref(), Some("whisper-1"));
    assert_eq!(field(memo_request, "response_format").as_deref(), Some("verbose_json"));
    assert!(holds(memo_request, "filename=\"recording.mp3\"\r\nContent-Type: audio/mpeg"));
    assert!(!holds(memo_request, "voice memo"), "the server is not told the file's name");
    let talk_request = requests.iter().find(|r| holds(r, "sound track")).unwrap();
    assert!(holds(talk_request, "Content-Type: video/webm"));
}

#[test]
fn a_failing_server_fails_only_the_recording_it_was_asked_about() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kinds = ["hang", "trickle", "error", "refuse", "oversize", "garbled", "fine"];
    let files: Vec<PathBuf> = kinds
        .iter()
        .map(|kind| {
            let path = dir.path().join(format!("{kind}.ogg"));
            std::fs::write(&path, format!("OggS marker-{kind}")).unwrap();
            path
        })
        .collect();
    let handler: common::Handler = Arc::new(|request: &Request| {
        let is = |kind: &str| holds(request, &format!("marker-{kind}"));
        if is("hang") {
            Answer::Hang
        } else if is("trickle") {
            Answer::Trickle(segments())
        } else if is("error") {
            Answer::Json(503, json!({"error": {"message": "model is loading"}}))
        } else if is("refuse") {
            Answer::Json(401, json!({"error": {"message": "invalid api key"}}))
        } else if is("oversize") {
            Answer::Json(200, json!({"text": "x".repeat(17 * 1024 * 1024)}))
        } else if is("garbled") {
            Answer::Json(200, json!({"segments": [{"start": 9.0, "end": 2.0, "text": "back"}]}))
        } else {
            Answer::Json(200, segments())
        }
    });
    let (url, seen) = serve(handler);
    let doppel = open(data.path());
    for (key, value) in
        [("transcribe_timeout_s", "5"), ("transcribe_retries", "1"), ("max_attempts", "1")]
    {
        doppel.set_setting(key, value).unwrap();
    }
    doppel.set_transcriber(&TranscriberChoice::server(&url, "whisper-1").unwrap()).unwrap();
    let jobs = ingest(&doppel, &files);
    let server = format!("speech-to-text server {url}: ");
    let expected = [
        "no answer within 5 s",
        "the answer did not arrive within 5 s",
        "the server answered 503 Service Unavailable",
        "check the API key (`doppel transcriber key`)",
        "the answer is larger than 16 MB",
        "unexpected answer: a segment that ends before it starts",
    ];
    for (job, reason) in jobs.iter().zip(expected) {
        let (code, message) = error_of(job);
        assert_eq!(job.state, JobState::Failed, "{}", job.origin);
        assert_eq!(code, "transcription_server", "{message}");
        assert!(message.starts_with(&server) && message.contains(reason), "{message}");
    }
    assert_eq!(jobs[6].state, JobState::Done, "{:?}", error_of(&jobs[6]));
    let hits = doppel.search(&keyword("lighthouse")).unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].source_title, "fine.ogg");
    // The 503 was tried again once (transcribe_retries); the 401 was not.
    let requests = seen.lock().unwrap();
    let count =
        |kind: &str| requests.iter().filter(|r| holds(r, &format!("marker-{kind}"))).count();
    assert_eq!((count("error"), count("refuse")), (2, 1));
}

#[test]
fn the_servers_key_lives_in_the_keychain_and_is_sent_only_to_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memo = dir.path().join("memo.flac");
    std::fs::write(&memo, b"fLaC memo").unwrap();
    let handler: common::Handler = Arc::new(|_: &Request| Answer::Json(200, segments()));
    let (url, seen) = serve(handler);
    let doppel = open(data.path());
    doppel.set_transcriber(&TranscriberChoice::server(&url, "whisper-1").unwrap()).unwrap();
    doppel.set_transcriber_api_key("sk-speech-0123456789wxyz").unwrap();
    assert_eq!(doppel.transcriber_api_key_hint().unwrap().as_deref(), Some("••••wxyz"));
    let job = &ingest(&doppel, &[memo])[0];
    assert_eq!(job.state, JobState::Done, "{:?}", error_of(job));
    let authorization = seen.lock().unwrap()[0].authorization.clone();
    assert_eq!(authorization.as_deref(), Some("Bearer sk-speech-0123456789wxyz"));
    let found = common::files_holding(data.path(), &[("key", b"sk-speech-0123456789wxyz")]);
    assert!(found.is_empty(), "{found:?}");
    assert!(doppel.delete_transcriber_api_key().unwrap());
    assert_eq!(doppel.transcriber_api_key_hint().unwrap(), None);
}
