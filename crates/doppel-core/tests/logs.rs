//! The log at its most talkative (`DOPPEL_LOG=trace`) after malformed files, a failing chat
//! server and a failing embedding server, with a key in the keychain: it carries the ids of the
//! jobs and of the ask, and not one word of a document, a question, a server's answer or the
//! key. (Logging is set up once per process, so this is a test binary of its own.)

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;

use common::read_request;
use doppel_core::chat::remote::ChatServer;
use doppel_core::chat::{AskRequest, ChatModel, MessageState};
use doppel_core::*;

/// A loopback server that answers every request with a 500 whose body says `words`.
fn failing_server(words: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            if read_request(&stream).is_none() {
                continue;
            }
            let body = serde_json::json!({ "error": words }).to_string();
            let head = format!(
                "HTTP/1.1 500 X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
        }
    });
    base
}

fn docx_of(xml: &str) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    out.start_file("word/document.xml", zip::write::SimpleFileOptions::default()).unwrap();
    out.write_all(xml.as_bytes()).unwrap();
    out.finish().unwrap().into_inner()
}

#[test]
fn m2_the_log_holds_ids_and_codes_but_no_document_text_or_secret_even_at_trace() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // SAFETY: set before any other thread of this test binary exists.
    unsafe { std::env::set_var("DOPPEL_LOG", "trace") };
    init_logging(data.path());
    let parser = ParserCommand {
        program: env!("CARGO_BIN_EXE_doppel-parse").into(),
        args: vec![PARSER_ARG.into()],
    };
    let config =
        Config { models: Some(data.path().join("no-models")), parser, ..Config::new(data.path()) };
    let doppel = Doppel::open(config).unwrap();
    doppel.set_setting("chat_timeout_s", "5").unwrap();
    doppel.set_setting("embed_retries", "0").unwrap();

    let good = files.path().join("good.md");
    std::fs::write(&good, "# Qlogtitle3390\nThe qlogtext5521 passage about rhubarb.\n").unwrap();
    let broken = files.path().join("broken.docx");
    let xml = r#"<w:document xmlns:w="w"><w:body><w:p><w:qlogtag4471>rhubarb</w:body>"#;
    std::fs::write(&broken, docx_of(xml)).unwrap();
    let report = doppel.ingest(IngestRequest::paths(vec![good, broken])).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    let jobs = doppel.wait_for(&ids, |_| {}).unwrap();
    assert_eq!(jobs[0].state, JobState::Done);
    assert_eq!(jobs[1].last_error_code.as_deref(), Some("malformed"));

    // An ask through a chat server that fails with its own words, with a key in the keychain.
    let chat = failing_server("qlogbody6612 exploded");
    let server = ChatServer::new(RemoteKind::OpenAi, &chat, "tiny").unwrap();
    doppel.set_chat_model(&ChatModel::Remote(server)).unwrap();
    doppel.set_chat_api_key("sk-qlogsecret8844").unwrap();
    let request = AskRequest {
        request_id: Some("req-m2-42".into()),
        ..AskRequest::new("What about qlogquestion9955 and rhubarb?")
    };
    let answer = doppel.ask(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(answer.message.state, MessageState::Failed);
    assert!(answer.message.error.unwrap().contains("qlogbody6612"), "the window gets the words");

    // A pasted text that an embedding server fails on, with its own words.
    let embedder = failing_server("qlogembed7001 broke");
    doppel
        .set_embedder(EmbedderChoice::remote(RemoteKind::Ollama, &embedder, "m").unwrap())
        .unwrap();
    let queued = doppel
        .add_text(TextRequest {
            twin: DEFAULT_TWIN,
            title: "Pasted".into(),
            text: "The qlogpasted1234 note.".into(),
        })
        .unwrap();
    let job = doppel.wait_for(&[queued.job_id], |_| {}).unwrap().remove(0);
    assert!(job.last_error.unwrap().contains("qlogembed7001"), "the job keeps the server's words");
    drop(doppel);

    let log = std::fs::read_to_string(data.path().join(LOG_DIR).join("doppel.log")).unwrap();
    assert!(log.contains("request=req-m2-42") && log.contains("answer failed"), "{log}");
    assert!(log.contains(&format!("id={}", jobs[1].id)) && log.contains("malformed"), "{log}");
    let lower = log.to_lowercase();
    for needle in [
        "qlogtitle3390",
        "qlogtext5521",
        "rhubarb",
        "qlogtag4471",
        "qlogbody6612",
        "qlogquestion9955",
        "qlogsecret8844",
        "qlogembed7001",
        "qlogpasted1234",
    ] {
        assert!(!lower.contains(needle), "{needle} in the log:\n{log}");
    }
}
