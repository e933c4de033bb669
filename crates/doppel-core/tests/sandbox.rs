//! Complex formats are parsed in a child process: whatever the child does (hang, crash, run out
//! of memory, answer garbage), the file fails alone with a clear reason and the worker goes on.

use std::io::Write;
use std::path::{Path, PathBuf};

use doppel_core::*;

fn real_parser() -> ParserCommand {
    ParserCommand {
        program: env!("CARGO_BIN_EXE_doppel-parse").into(),
        args: vec![PARSER_ARG.into()],
    }
}

/// A stand-in parser: a shell script. A real parser that hangs or crashes on demand does not
/// exist, so these behaviours are played by `sh`; the supervision under test is the real one.
fn script_parser(script: &str) -> ParserCommand {
    ParserCommand { program: "/bin/sh".into(), args: vec!["-c".into(), script.into(), "sh".into()] }
}

fn open(data: &Path, parser: ParserCommand) -> Doppel {
    Doppel::open(Config { parser, ..without_models(data) }).unwrap()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        out.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn docx(paragraphs: &[&str]) -> Vec<u8> {
    let body: String =
        paragraphs.iter().map(|p| format!("<w:p><w:r><w:t>{p}</w:t></w:r></w:p>")).collect();
    let xml = format!(r#"<w:document xmlns:w="w"><w:body>{body}</w:body></w:document>"#);
    zip_of(&[("word/document.xml", xml.as_bytes())])
}

/// Ingests files and returns each one's final job.
fn ingest(doppel: &Doppel, files: &[PathBuf]) -> Vec<Job> {
    let report = doppel.ingest(IngestRequest::paths(files.to_vec())).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap()
}

fn error_of(job: &Job) -> (&str, &str) {
    (job.last_error_code.as_deref().unwrap_or(""), job.last_error.as_deref().unwrap_or(""))
}

#[test]
fn a_hanging_parser_is_stopped_and_the_next_file_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let slow = files.path().join("slow.docx");
    std::fs::write(&slow, docx(&["never read"])).unwrap();
    let plain = files.path().join("plain.txt");
    std::fs::write(&plain, "the worker went on").unwrap();
    let doppel = open(data.path(), script_parser("exec sleep 600"));
    doppel.set_setting("parse_timeout_s", "1").unwrap();
    let jobs = ingest(&doppel, &[slow, plain]);
    assert_eq!(jobs[0].state, JobState::Failed);
    assert_eq!(error_of(&jobs[0]), ("parser_timed_out", "parser timed out (after 1 s)"));
    assert_eq!(jobs[0].attempts, 1, "a timeout is not retried");
    assert_eq!(jobs[1].state, JobState::Done);
    assert_eq!(doppel.search(&keyword("worker went")).unwrap().hits.len(), 1);
}

#[test]
fn a_crashing_or_babbling_parser_fails_only_its_file() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("doc.odt");
    std::fs::write(&file, b"whatever").unwrap();
    let cases = [
        ("kill -SEGV $$", "file is malformed: the parser crashed on this file (signal 11)"),
        ("exit 101", "file is malformed: the parser crashed on this file"),
        (
            "cat >/dev/null; echo not json",
            "file is malformed: the parser gave an unreadable answer",
        ),
        (
            "cat >/dev/null; echo 'memory allocation of 1073741824 bytes failed' >&2; kill -ABRT $$",
            "parser ran out of memory (limit 1024 MB)",
        ),
    ];
    for (script, expected) in cases {
        let doppel = open(data.path(), script_parser(script));
        let job = &ingest(&doppel, std::slice::from_ref(&file))[0];
        assert_eq!(job.state, JobState::Failed, "{script}");
        assert_eq!(job.last_error.as_deref(), Some(expected), "{script}");
        let source = doppel.source(job.source_id.unwrap()).unwrap();
        assert_eq!((source.state, source.error.as_deref()), (SourceState::Failed, Some(expected)));
    }
}

#[test]
fn the_real_parser_runs_out_of_memory_alone() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // 40 MB of varied words compress about 3:1: not a bomb, but more than 64 MB of memory to
    // inflate, decode and keep.
    let words: Vec<String> =
        (0..4_000_000u32).map(|i| format!("w{:x}", i.wrapping_mul(2_654_435_761))).collect();
    let big = files.path().join("big.docx");
    std::fs::write(&big, docx(&[&words.join(" ")])).unwrap();
    let small = files.path().join("small.docx");
    std::fs::write(&small, docx(&["a small kestrel document"])).unwrap();
    let doppel = open(data.path(), real_parser());
    doppel.set_setting("parse_memory_mb", "64").unwrap();
    let jobs = ingest(&doppel, &[big, small]);
    assert_eq!(
        error_of(&jobs[0]),
        ("parser_out_of_memory", "parser ran out of memory (limit 64 MB)")
    );
    assert_eq!(jobs[1].state, JobState::Done);
    assert_eq!(doppel.search(&keyword("kestrel")).unwrap().hits.len(), 1);
}

#[test]
fn zip_bombs_and_hostile_archives_are_refused_with_clear_reasons() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = files.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let zeros = vec![b'0'; 300 * 1024 * 1024];
    let bomb = write("bomb.docx", &zip_of(&[("word/document.xml", &zeros)]));
    drop(zeros);
    let many: Vec<(String, Vec<u8>)> = (0..10_001).map(|i| (format!("f{i}"), Vec::new())).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let crowded = write("crowded.epub", &zip_of(&refs));
    let traversal = {
        let container = r#"<container><rootfiles><rootfile full-path="../../content.opf"/></rootfiles></container>"#;
        let opf = r#"<package><metadata><title>Escape</title></metadata><manifest>
            <item id="a" href="../../../../tmp/doppel-escape.xhtml"/></manifest><spine><itemref idref="a"/></spine></package>"#;
        write(
            "traversal.epub",
            &zip_of(&[
                ("META-INF/container.xml", container.as_bytes()),
                ("../../content.opf", opf.as_bytes()),
                ("tmp/doppel-escape.xhtml", b"<p>the escaped stoat chapter</p>"),
            ]),
        )
    };
    let not_zip = write("binary.docx", &[0x42u8; 4096]);
    let good = write("good.docx", &docx(&["the sensible marmot"]));

    let doppel = open(data.path(), real_parser());
    let jobs = ingest(&doppel, &[bomb, crowded, traversal, not_zip, good]);
    let reasons: Vec<(&str, &str)> = jobs.iter().map(error_of).collect();
    assert_eq!(reasons[0].0, "archive_refused");
    assert!(reasons[0].1.starts_with("archive refused: an entry expands"), "{}", reasons[0].1);
    assert_eq!(reasons[1], ("archive_refused", "archive refused: 10001 entries (limit 10000)"));
    assert_eq!(reasons[3].0, "malformed");
    assert!(
        reasons[3].1.starts_with("file is malformed: not a valid DOCX document"),
        "{}",
        reasons[3].1
    );
    // Hostile entry names are only keys inside the archive: the book reads, nothing is written.
    assert_eq!(jobs[2].state, JobState::Done);
    assert!(!Path::new("/tmp/doppel-escape.xhtml").exists());
    assert_eq!(doppel.search(&keyword("stoat")).unwrap().hits.len(), 1);
    assert_eq!(jobs[4].state, JobState::Done);
    assert!(jobs.iter().all(|j| j.attempts == 1));
}

#[test]
fn word_documents_books_and_mail_become_searchable_passages() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let doc = files.path().join("report.docx");
    std::fs::write(&doc, docx(&["The quarterly narwhal census grew."])).unwrap();
    let mail = files.path().join("letter.eml");
    std::fs::write(
        &mail,
        "From: Grace <grace@example.org>\r\nTo: me@example.org\r\nSubject: Compiler news\r\n\
         Date: Tue, 2 Jan 1952 09:00:00 +0000\r\n\r\nThe first compiler, A-0, runs today.\r\n",
    )
    .unwrap();
    let doppel = open(data.path(), real_parser());
    let jobs = ingest(&doppel, &[doc, mail]);
    assert!(jobs.iter().all(|j| j.state == JobState::Done), "{jobs:?}");
    let hit = &doppel.search(&keyword("narwhal census")).unwrap().hits[0];
    assert_eq!(hit.source_title, "report.docx");
    let hit = &doppel.search(&keyword("compiler A-0")).unwrap().hits[0];
    assert_eq!(hit.source_title, "Compiler news");
    assert_eq!(
        hit.location.label,
        "Compiler news — Grace <grace@example.org>, 1952-01-02T09:00:00Z"
    );
    let source = doppel.source(hit.source_id).unwrap();
    assert_eq!(source.media_type.as_deref(), Some("message/rfc822"));
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
