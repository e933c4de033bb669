//! Text recognition: scanned PDFs and images wait until it is turned on, are then read with
//! their page numbers (Tesseract and poppler, the real programs, in the real parser sandbox),
//! and hostile images and scans fail alone, each with a clear reason.
//!
//! The scans are pages of a real document that no one here wrote (the Shared MIME-info
//! specification in Debian's `shared-mime-info` package), rendered to images.

mod common;

use std::path::{Path, PathBuf};

use common::{PdfPage, pdf_of, render_page, run_tool, scan_pdf};
use doppel_core::*;

const SPEC: &str = "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf";

fn open(data: &Path) -> Doppel {
    let parser = ParserCommand {
        program: env!("CARGO_BIN_EXE_doppel-parse").into(),
        args: vec![PARSER_ARG.into()],
    };
    let config = Config { models: Some(data.join("no-models")), ..Config::new(data) };
    Doppel::open(Config { parser, ..config }).unwrap()
}

fn keyword(query: &str) -> SearchRequest {
    SearchRequest { mode: SearchMode::Keyword, ..SearchRequest::new(query) }
}

fn ingest(doppel: &Doppel, files: &[PathBuf]) -> Vec<Job> {
    let report = doppel.ingest(IngestRequest::paths(files.to_vec())).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap()
}

/// Waits for every queued or running job; returns them as they ended.
fn wait_for_queue(doppel: &Doppel) -> Vec<Job> {
    let active = doppel.jobs(JobFilter { active_only: true, limit: 1000 }).unwrap();
    let ids: Vec<JobId> = active.iter().map(|j| j.id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap()
}

fn error_of(job: &Job) -> (String, String) {
    (job.last_error_code.clone().unwrap_or_default(), job.last_error.clone().unwrap_or_default())
}

/// The page a keyword search finds `phrase` on, in the source titled `title`; the source's
/// passages in the failure message when it is not found.
fn found_on(doppel: &Doppel, phrase: &str, title: &str) -> Option<Option<u32>> {
    let hits = doppel.search(&keyword(phrase)).unwrap().hits;
    let found = hits.iter().find(|h| h.source_title == title).map(|h| h.location.page);
    if found.is_none() {
        let sources = doppel.sources(DEFAULT_TWIN).unwrap();
        let source = sources.iter().find(|s| s.title == title).expect("the source");
        for chunk in doppel.chunks(source.id).unwrap() {
            eprintln!("{title} {:?}: {}", chunk.location, chunk.text);
        }
    }
    found
}

#[test]
fn scans_and_images_wait_for_text_recognition_and_are_then_read_with_their_pages() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(SPEC);
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // Pages 1 to 3 scanned at 150 dpi; page 4 a 300-dpi PNG; page 5 turned a quarter; page 6
    // photographed at an angle; a blank sheet; and a text file beside them.
    let jpegs: Vec<Vec<u8>> = (1..=3).map(|p| render_page(spec, p, 150, "-jpeg")).collect();
    let scan = file("scan.pdf", &scan_pdf(&jpegs, 150.0));
    let png = file("page4.png", &render_page(spec, 4, 300, "-png"));
    let upright = file("upright5.png", &render_page(spec, 5, 150, "-png"));
    let rotated = dir.path().join("rotated.png");
    let (from, to) = (upright.to_str().unwrap(), rotated.to_str().unwrap());
    run_tool("convert", &[from, "-rotate", "90", to]);
    std::fs::remove_file(&upright).unwrap();
    let flat = file("flat6.png", &render_page(spec, 6, 150, "-png"));
    let photo = dir.path().join("photo.jpg");
    let (from, to) = (flat.to_str().unwrap(), photo.to_str().unwrap());
    let corners = "0,0 40,30  1271,0 1220,10  0,1644 20,1600  1271,1644 1271,1644";
    run_tool("convert", &[from, "-virtual-pixel", "white", "-distort", "Perspective", corners, to]);
    std::fs::remove_file(&flat).unwrap();
    let blank = dir.path().join("blank.png");
    run_tool("convert", &["-size", "1240x1754", "xc:white", blank.to_str().unwrap()]);
    let note = file("note.txt", b"A plain note beside the scans.");
    let files = [scan, png, rotated, photo, blank, note];

    let doppel = open(data.path());
    assert_eq!(doppel.settings().unwrap().ocr, 0, "text recognition is off by default");
    let jobs = ingest(&doppel, &files);
    for job in &jobs[..5] {
        let (code, message) = error_of(job);
        assert_eq!(code, "needs_ocr", "{}: {message}", job.origin);
        assert!(message.contains("doppel settings set ocr true"), "{message}");
    }
    assert!(error_of(&jobs[0]).1.starts_with("a scanned PDF: no page has a text layer"));
    assert_eq!(jobs[5].state, JobState::Done);
    let coverage = doppel.coverage(DEFAULT_TWIN).unwrap();
    let waiting = coverage.problems.iter().filter(|p| p.code == "needs_ocr").count();
    assert_eq!(waiting, 5, "{:?}", coverage.problems);
    assert!(
        coverage.problems.iter().all(|p| p.retryable && p.kind == coverage::ProblemKind::Skipped)
    );

    // Turning it on queues them again at once; nothing else is needed.
    doppel.set_setting("ocr", "true").unwrap();
    let pages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&pages);
    let events = doppel.subscribe();
    let watcher = std::thread::spawn(move || {
        while let Ok(event) = events.recv() {
            if let Event::JobPages { done, total, .. } = event {
                seen.lock().unwrap().push((done, total));
            }
        }
    });
    let ended = wait_for_queue(&doppel);
    assert_eq!(ended.len(), 5, "{ended:?}");
    let by_name = |name: &str| {
        let job = doppel.jobs(JobFilter { active_only: false, limit: 100 }).unwrap();
        job.into_iter().find(|j| j.origin.ends_with(name)).unwrap()
    };
    for name in ["scan.pdf", "page4.png", "rotated.png", "photo.jpg"] {
        let job = by_name(name);
        assert_eq!(job.state, JobState::Done, "{name}: {:?}", error_of(&job));
    }
    assert_eq!(error_of(&by_name("blank.png")), ("empty".into(), "no text found".into()));

    // A sentence of each scanned page is found on its page.
    assert_eq!(found_on(&doppel, "last updated 2 October 2018", "scan.pdf"), Some(Some(1)));
    assert_eq!(found_on(&doppel, "previous systems used by GNOME", "scan.pdf"), Some(Some(2)));
    assert_eq!(found_on(&doppel, "install a single XML file", "scan.pdf"), Some(Some(3)));
    assert_eq!(found_on(&doppel, "document element is named mime-info", "page4.png"), Some(None));
    assert_eq!(found_on(&doppel, "known by another name", "rotated.png"), Some(None));
    assert_eq!(found_on(&doppel, "default handler application", "photo.jpg"), Some(None));
    let source = doppel.source(by_name("page4.png").source_id.unwrap()).unwrap();
    assert_eq!(source.media_type.as_deref(), Some("image/png"));

    // The scan reported each page as it was read.
    drop(doppel);
    watcher.join().unwrap();
    let pages = pages.lock().unwrap();
    for step in [(0, 3), (1, 3), (2, 3), (3, 3)] {
        assert!(pages.contains(&step), "{pages:?}");
    }
}

#[test]
fn a_mixed_pdf_keeps_its_text_pages_and_reads_only_its_scans() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scan = render_page(Path::new(SPEC), 2, 150, "-jpeg");
    let mixed = dir.path().join("mixed.pdf");
    let pages = [PdfPage::Text("A typed cover page about the harbour ledger"), PdfPage::Scan(scan)];
    std::fs::write(&mixed, pdf_of(&pages, 150.0)).unwrap();
    let doppel = open(data.path());
    // Without text recognition the typed page is read, and the note names the scanned one.
    let job = &ingest(&doppel, std::slice::from_ref(&mixed))[0];
    assert_eq!(job.state, JobState::Done, "{:?}", error_of(job));
    let source = doppel.source(job.source_id.unwrap()).unwrap();
    let note = source.error.clone().unwrap_or_default();
    assert!(note.contains("page 2 without a text layer"), "{note}");
    assert_eq!(found_on(&doppel, "harbour ledger", "mixed.pdf"), Some(Some(1)));
    assert_eq!(found_on(&doppel, "previous systems used by GNOME", "mixed.pdf"), None);

    // Turning it on reads the scanned page too, without reading the file by hand.
    doppel.set_setting("ocr", "true").unwrap();
    let ended = wait_for_queue(&doppel);
    assert_eq!(ended.len(), 1, "the file read with a scanned page left out is queued again");
    assert_eq!(ended[0].state, JobState::Done, "{:?}", error_of(&ended[0]));
    assert_eq!(found_on(&doppel, "harbour ledger", "mixed.pdf"), Some(Some(1)));
    assert_eq!(found_on(&doppel, "previous systems used by GNOME", "mixed.pdf"), Some(Some(2)));
    let source = doppel.source(source.id).unwrap();
    assert!(source.error.as_deref().is_none_or(|n| !n.contains("without a text layer")));
}

#[test]
fn hostile_images_and_scans_fail_alone_with_a_clear_reason() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // A PNG whose header declares 100,000 × 100,000 pixels (40 GB once decoded).
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bomb.extend(100_000u32.to_be_bytes());
    bomb.extend(100_000u32.to_be_bytes());
    bomb.extend([8, 0, 0, 0, 0, 0x90, 0x77, 0x53, 0xDE]);
    bomb.extend(b"\0\0\0\0IEND\xaeB`\x82");
    let bomb = file("bomb.png", &bomb);
    let page = render_page(Path::new(SPEC), 2, 150, "-jpeg");
    let truncated = file("truncated.jpg", &page[..page.len() / 2]);
    let png = render_page(Path::new(SPEC), 2, 72, "-png");
    let fake = file("fake.pdf", &png);
    // 20,000 pages, each the same small scan: far more than text recognition reads in a file.
    let tiny = run_tool("convert", &["-size", "64x64", "xc:white", "-quality", "50", "jpeg:-"]);
    let many = file("many.pdf", &scan_pdf(&vec![tiny; 20_000], 72.0));
    let note = file("note.txt", b"The batch goes on past hostile files.");

    let doppel = open(data.path());
    doppel.set_setting("ocr", "true").unwrap();
    let jobs = ingest(&doppel, &[bomb, truncated, fake, many, note]);
    let expected = [
        ("malformed", "the image is too large to read: 100000 × 100000 pixels"),
        ("malformed", "the image is truncated"),
        ("malformed", "named as a PDF but holds a png image"),
        ("unsupported_format", "20000 pages have no text layer, more than the 500"),
    ];
    for (job, (code, message)) in jobs.iter().zip(expected) {
        assert_eq!(job.state, JobState::Failed, "{}", job.origin);
        let (got_code, got) = error_of(job);
        assert_eq!(got_code, code, "{}: {got}", job.origin);
        assert!(got.contains(message), "{}: {got}", job.origin);
        assert_eq!(job.attempts, 1, "a bad file is not tried again");
    }
    assert_eq!(jobs[4].state, JobState::Done);
    assert_eq!(doppel.search(&keyword("hostile files")).unwrap().hits.len(), 1);
}

#[test]
fn a_long_scan_can_be_cancelled_between_pages() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jpegs: Vec<Vec<u8>> =
        (1..=8).map(|p| render_page(Path::new(SPEC), p, 150, "-jpeg")).collect();
    let scan = dir.path().join("long scan.pdf");
    std::fs::write(&scan, scan_pdf(&jpegs, 150.0)).unwrap();
    let doppel = open(data.path());
    doppel.set_setting("ocr", "true").unwrap();
    let events = doppel.subscribe();
    let report = doppel.ingest(IngestRequest::paths(vec![scan])).unwrap();
    let job = report.queued[0].job_id;
    // Cancelled once the first page is read.
    let mut read = 0;
    while let Ok(event) = events.recv() {
        if let Event::JobPages { job: j, done, .. } = event
            && j == job
            && done >= 1
        {
            read = done;
            doppel.cancel_job(job).unwrap();
            break;
        }
    }
    let ended = &doppel.wait_for(&[job], |_| {}).unwrap()[0];
    assert_eq!(ended.state, JobState::Cancelled);
    assert!(read < 8, "the cancel came before the last page");
    let sources = doppel.sources(DEFAULT_TWIN).unwrap();
    assert!(sources.iter().all(|s| s.chunk_count == 0), "nothing of a cancelled scan is kept");
}

#[test]
fn the_doctor_names_what_text_recognition_lacks() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    let status = doppel.ocr_status().unwrap();
    assert!(!status.enabled);
    assert!(status.tesseract.is_some(), "scripts/setup installs tesseract-ocr");
    assert!(status.installed.iter().any(|l| l == "eng"));
    doppel.set_setting("ocr", "on").unwrap();
    assert!(doppel.doctor().unwrap().problems.iter().all(|p| !p.contains("Tesseract")));
    let err = doppel.set_setting("ocr_languages", "xyz").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value for ocr_languages: Tesseract has no data for xyz: install it with `sudo apt install tesseract-ocr-xyz`"
    );
    assert_eq!(
        doppel.set_setting("ocr_languages", "eng; rm").unwrap_err().code(),
        "invalid_setting"
    );
    doppel.set_setting("ocr_languages", "eng+fra").unwrap();
    assert_eq!(doppel.ocr_languages().unwrap(), "eng+fra");
}
