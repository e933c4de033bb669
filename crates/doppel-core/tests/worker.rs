//! The worker and its durable queue, driven through the core's public API on real SQLite files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use doppel_core::*;
use rusqlite::Connection;

mod common;

fn open(dir: &Path) -> Doppel {
    Doppel::open(without_models(dir)).unwrap()
}

fn open_idle(dir: &Path) -> Doppel {
    Doppel::open(Config { process_queue: false, ..without_models(dir) }).unwrap()
}

fn ingest(doppel: &Doppel, paths: &[PathBuf]) -> Vec<JobId> {
    let report = doppel.ingest(IngestRequest::paths(paths.to_vec())).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    report.queued.iter().map(|q| q.job_id).collect()
}

fn write_files(dir: &Path, prefix: &str, count: usize, paragraphs: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let path = dir.join(format!("{prefix}{i:04}.txt"));
            let text: String = (0..paragraphs)
                .map(|p| {
                    format!("{prefix} file {i} paragraph {p} holds the token {prefix}x{i}y{p}.\n\n")
                })
                .collect();
            std::fs::write(&path, text).unwrap();
            path.canonicalize().unwrap()
        })
        .collect()
}

fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join(DATABASE_FILE)).unwrap()
}

#[test]
fn many_threads_enqueue_each_file_once() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let shared_files = write_files(files.path(), "shared", 30, 5);
    let doppel = Arc::new(open(data.path()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let doppel = Arc::clone(&doppel);
            let mut mine =
                write_files(&files.path().join(format!("t{t}")), &format!("own{t}_"), 5, 3);
            mine.extend(shared_files.iter().cloned());
            std::thread::spawn(move || ingest(&doppel, &mine))
        })
        .collect();
    let mut jobs: Vec<JobId> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    jobs.sort();
    jobs.dedup();
    let ended = doppel.wait_for(&jobs, |_| {}).unwrap();
    assert!(ended.iter().all(|j| j.state == JobState::Done), "{ended:?}");

    let sources = doppel.sources(DEFAULT_TWIN).unwrap();
    assert_eq!(sources.len(), 30 + 8 * 5);
    let mut origins: Vec<_> = sources.iter().map(|s| s.origin.clone()).collect();
    origins.dedup();
    assert_eq!(origins.len(), sources.len());
    for source in &sources {
        assert_eq!(source.state, SourceState::Ready);
        assert_eq!(doppel.chunks(source.id).unwrap().len() as u64, source.chunk_count);
    }
}

#[test]
fn readers_during_ingestion_never_see_a_locked_database_or_half_a_source() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let paths = write_files(files.path(), "bulk", 150, 120);
    let doppel = Arc::new(open(data.path()));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (doppel, done) = (Arc::clone(&doppel), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut searches = 0u32;
                while !done.load(Ordering::Relaxed) || searches == 0 {
                    let query =
                        format!("bulkx{}y{}", (searches as usize * 7 + r) % 150, searches % 120);
                    let hits = doppel.search(&keyword(query)).unwrap().hits;
                    for hit in hits {
                        // A source is visible whole or not at all.
                        let source = doppel.source(hit.source_id).unwrap();
                        assert_eq!(source.state, SourceState::Ready);
                        assert_eq!(
                            doppel.chunks(source.id).unwrap().len() as u64,
                            source.chunk_count
                        );
                    }
                    doppel.sources(DEFAULT_TWIN).unwrap();
                    searches += 1;
                }
                searches
            })
        })
        .collect();
    let jobs = ingest(&doppel, &paths);
    let ended = doppel.wait_for(&jobs, |_| {}).unwrap();
    done.store(true, Ordering::Relaxed);
    let searches: u32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(ended.iter().all(|j| j.state == JobState::Done));
    assert!(searches >= 4);
    println!("{searches} searches ran beside the ingestion of {} files", paths.len());
}

#[test]
fn a_running_job_cancelled_at_a_chunk_boundary_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = write_files(files.path(), "huge", 1, 20_000).remove(0);
    let doppel = open(data.path());
    let events = doppel.subscribe();
    let job = ingest(&doppel, &[path])[0];
    loop {
        if let Event::JobProgress { job: j, .. } = events.recv().unwrap()
            && j == job
        {
            break;
        }
    }
    let cancelled = doppel.cancel_job(job).unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.source_id, None);
    assert!(doppel.sources(DEFAULT_TWIN).unwrap().is_empty());
    assert!(doppel.search(&keyword("hugex0y1")).unwrap().hits.is_empty());
    assert_eq!(doppel.doctor().unwrap().chunks, 0);
    let seen: Vec<Event> = events.try_iter().collect();
    assert!(seen.contains(&Event::JobCancelled { job }), "{seen:?}");
}

#[test]
fn failures_are_retried_with_backoff_then_recorded_on_job_and_source() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = write_files(files.path(), "vanishing", 1, 1).remove(0);
    let job = {
        let doppel = open_idle(data.path());
        doppel.set_setting("retry_backoff_ms", "1").unwrap();
        ingest(&doppel, std::slice::from_ref(&path))[0]
    };
    std::fs::remove_file(&path).unwrap();

    let doppel = open(data.path());
    let mut failures = Vec::new();
    let ended = doppel
        .wait_for(&[job], |event| {
            if let Event::JobFailed { retry_at, message, .. } = event {
                failures.push((retry_at.is_some(), message.clone()));
            }
        })
        .unwrap();
    let job = &ended[0];
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error_code.as_deref(), Some("io"));
    let reason = job.last_error.clone().unwrap();
    assert!(reason.contains("No such file"), "{reason}");
    assert_eq!(failures.iter().map(|f| f.0).collect::<Vec<_>>(), [true, true, false]);
    let source = doppel.source(job.source_id.unwrap()).unwrap();
    assert_eq!(source.state, SourceState::Failed);
    assert_eq!(source.error.as_deref(), Some(reason.as_str()));
}

#[test]
fn m3_a_job_whose_end_cannot_be_recorded_is_told_and_runs_again_at_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // This file fails (an old Word file), and recording its failure fails on the first try and
    // on each of its 4 retries (a full disk, say).
    faults::fail_recording_jobs_of("m3unrecordedmarker", 5);
    let stuck = vec![files.path().join("m3unrecordedmarker.doc")];
    std::fs::write(&stuck[0], b"\xd0\xcf\x11\xe0 an old Word file").unwrap();
    let fine = write_files(files.path(), "m3afterwards", 1, 3);
    let job = {
        let doppel = open(data.path());
        let events = doppel.subscribe();
        let job = ingest(&doppel, &stuck)[0];
        // The wait ends with the reason instead of lasting until the next start.
        let err = doppel.wait_for(&[job], |_| {}).unwrap_err();
        assert_eq!(err.code(), "not_recorded");
        assert!(err.to_string().contains("it runs again at the next start"), "{err}");
        let told = events.try_iter().any(|e| {
            matches!(e, Event::JobFailed { job: j, ref code, .. } if j == job && code == "not_recorded")
        });
        assert!(told, "the window is told");
        // The worker goes on.
        let other = doppel.wait_for(&ingest(&doppel, &fine), |_| {}).unwrap();
        assert_eq!(other[0].state, JobState::Done);
        job
    };
    // The next start runs it again, and this time its end is recorded.
    let doppel = open(data.path());
    let ended = doppel.wait_for(&[job], |_| {}).unwrap();
    assert_eq!(ended[0].state, JobState::Failed);
    assert_eq!(ended[0].last_error_code.as_deref(), Some("unsupported_format"));
}

#[test]
fn m3_a_job_that_panics_fails_alone_with_a_reason_and_the_worker_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // Injected faults (doppel_core::faults): one file's job panics mid-transaction, with its
    // vectors already in the index; another's end fails to be recorded twice.
    faults::panic_in_jobs_of("m3panicmarker");
    faults::fail_recording_jobs_of("m3recordmarker", 2);
    let paths = [
        write_files(files.path(), "m3panicmarker", 1, 3),
        write_files(files.path(), "m3recordmarker", 1, 3),
        write_files(files.path(), "m3fine", 2, 3),
    ]
    .concat();
    let doppel = open(data.path());
    let ended = doppel.wait_for(&ingest(&doppel, &paths), |_| {}).unwrap();
    let job_of = |marker: &str| ended.iter().find(|j| j.origin.contains(marker)).unwrap();

    let broken = job_of("m3panicmarker");
    assert_eq!(broken.state, JobState::Failed);
    assert_eq!(broken.last_error_code.as_deref(), Some("internal"));
    let reason = broken.last_error.clone().unwrap();
    assert!(
        reason.contains("internal error") && reason.contains("everything else goes on"),
        "{reason}"
    );
    let source = doppel.source(broken.source_id.unwrap()).unwrap();
    assert_eq!(source.state, SourceState::Failed);
    assert!(doppel.chunks(source.id).unwrap().is_empty(), "half a file was kept");
    assert!(doppel.search(&keyword("m3panicmarkerx0y1")).unwrap().hits.is_empty());

    // Recording that failed twice was tried again, and the others were done as usual.
    for marker in ["m3recordmarker", "m3fine"] {
        assert_eq!(job_of(marker).state, JobState::Done, "{marker}");
    }
    assert_eq!(doppel.search(&keyword("m3recordmarkerx0y1")).unwrap().hits.len(), 1);
    assert_eq!(doppel.search(&keyword("m3finex1y2")).unwrap().hits.len(), 1);

    // The worker still takes commands and jobs.
    doppel.set_setting("top_k", "5").unwrap();
    let more = write_files(&files.path().join("more"), "m3later", 1, 1);
    let ended = doppel.wait_for(&ingest(&doppel, &more), |_| {}).unwrap();
    assert_eq!(ended[0].state, JobState::Done);
}

#[test]
fn nothing_stays_running_or_processing_after_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let paths = write_files(files.path(), "crashy", 2, 3);
    let jobs = ingest(&open_idle(data.path()), &paths);
    // What a process killed in the middle of both jobs leaves behind; the second had no
    // attempts left.
    let db = raw(data.path());
    db.execute("UPDATE jobs SET state = 'running', attempts = 1 WHERE id = ?1", [jobs[0]]).unwrap();
    db.execute("UPDATE jobs SET state = 'running', attempts = 3 WHERE id = ?1", [jobs[1]]).unwrap();
    db.execute("UPDATE sources SET state = 'processing'", []).unwrap();
    drop(db);

    let doppel = open_idle(data.path());
    let first = doppel.job(jobs[0]).unwrap();
    assert_eq!((first.state, first.attempts), (JobState::Queued, 1));
    let second = doppel.job(jobs[1]).unwrap();
    assert_eq!(second.state, JobState::Failed);
    assert_eq!(
        second.last_error.as_deref(),
        Some("interrupted 3 times (the app stopped while it ran)")
    );
    let states: Vec<_> = doppel.sources(DEFAULT_TWIN).unwrap().iter().map(|s| s.state).collect();
    assert_eq!(states, [SourceState::Queued, SourceState::Failed]);
    drop(doppel);

    let doppel = open(data.path());
    let ended = doppel.wait_for(&jobs[..1], |_| {}).unwrap();
    assert_eq!((ended[0].state, ended[0].attempts), (JobState::Done, 2));
}

#[test]
fn shutdown_puts_the_running_job_back_without_counting_it() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = write_files(files.path(), "long", 1, 20_000).remove(0);
    let doppel = open(data.path());
    let events = doppel.subscribe();
    let job = ingest(&doppel, &[path])[0];
    while !matches!(events.recv().unwrap(), Event::JobProgress { .. }) {}
    drop(doppel);

    let doppel = open_idle(data.path());
    let job = doppel.job(job).unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert_eq!(doppel.sources(DEFAULT_TWIN).unwrap()[0].state, SourceState::Queued);
    assert_eq!(doppel.doctor().unwrap().chunks, 0);
}

#[test]
fn a_newer_database_is_refused_and_left_untouched() {
    let data = tempfile::tempdir().unwrap();
    drop(open(data.path()));
    let db = raw(data.path());
    db.pragma_update(None, "user_version", 99).unwrap();
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;").unwrap();
    drop(db);
    let before = std::fs::read(data.path().join(DATABASE_FILE)).unwrap();

    let err = Doppel::open(Config::new(data.path())).unwrap_err();
    assert_eq!(err.code(), "schema_too_new");
    assert!(
        err.to_string().contains("schema version 99, newer than this Doppel understands"),
        "{err}"
    );
    assert_eq!(std::fs::read(data.path().join(DATABASE_FILE)).unwrap(), before);
}

#[test]
fn a_database_is_migrated_on_first_open_and_keeps_its_data() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let paths = write_files(files.path(), "keep", 1, 2);
    {
        let doppel = open(data.path());
        let jobs = ingest(&doppel, &paths);
        doppel.wait_for(&jobs, |_| {}).unwrap();
        doppel.set_setting("top_k", "4").unwrap();
    }
    let doppel = open(data.path());
    assert_eq!(doppel.doctor().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(doppel.settings().unwrap().top_k, 4);
    assert_eq!(doppel.search(&keyword("keepx0y1")).unwrap().hits.len(), 1);
    assert_eq!(doppel.twins().unwrap()[0].name, "My twin");
}

#[test]
fn a_schema_v1_database_file_is_migrated_with_its_data() {
    let data = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v1.sqlite3");
    std::fs::copy(fixture, data.path().join(DATABASE_FILE)).unwrap();
    let version: i64 = raw(data.path()).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 1);

    let doppel = open_idle(data.path());
    let report = doppel.doctor().unwrap();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    // This data directory has no chat model file; doctor says so, and nothing else.
    let others: Vec<&String> =
        report.problems.iter().filter(|p| !p.contains("models install-defaults")).collect();
    assert!(others.is_empty(), "{:?}", report.problems);
    let sources = doppel.sources(DEFAULT_TWIN).unwrap();
    let summary: Vec<(SourceKind, SourceState, &str)> =
        sources.iter().map(|s| (s.kind, s.state, s.title.as_str())).collect();
    assert_eq!(
        summary,
        [
            (SourceKind::File, SourceState::Failed, "empty.txt"),
            (SourceKind::File, SourceState::Ready, "letter.txt"),
            (SourceKind::File, SourceState::Ready, "Old notes"),
            (SourceKind::Text, SourceState::Ready, "Orchard"),
        ]
    );
    assert_eq!(doppel.settings().unwrap().top_k, 6);
    let hit = &doppel.search(&keyword("heron")).unwrap().hits[0];
    assert_eq!(hit.location.label, "Old notes");
    assert_eq!(hit.location.page, None);
    // What version 2 adds works on the migrated file: URL sources.
    let report = doppel
        .ingest(IngestRequest {
            urls: vec!["https://example.org/page".into()],
            ..IngestRequest::paths(Vec::new())
        })
        .unwrap();
    assert_eq!(doppel.source(report.queued[0].source_id).unwrap().kind, SourceKind::Url);
    // And what version 5 adds: watched folders and twins made later.
    let folder = tempfile::tempdir().unwrap();
    let watched = doppel.watch_folder(DEFAULT_TWIN, folder.path()).unwrap();
    assert_eq!(doppel.watched_folders().unwrap(), [watched]);
    assert_eq!(doppel.create_twin("Second").unwrap().name, "Second");
}

/// A keyword-only search of the default twin (vector search is tested on its own).
#[test]
fn m3_a_command_that_panics_fails_alone_and_the_worker_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    faults::panic_in_deletes_of("m3delmarker");
    let paths = [
        write_files(files.path(), "m3delmarker", 1, 2),
        write_files(files.path(), "m3keepfine", 1, 2),
    ]
    .concat();
    let doppel = open(data.path());
    doppel.wait_for(&ingest(&doppel, &paths), |_| {}).unwrap();
    let marked = doppel.find_source(DEFAULT_TWIN, paths[0].to_str().unwrap()).unwrap();

    let error = doppel.delete_source(marked.id).unwrap_err();
    assert_eq!(error.code(), "internal", "{error}");
    assert!(error.to_string().contains("everything else goes on"), "{error}");
    // Its transaction rolled back: the source is whole and still found.
    assert_eq!(doppel.source(marked.id).unwrap().state, SourceState::Ready);
    assert_eq!(doppel.search(&keyword("m3delmarkerx0y1")).unwrap().hits.len(), 1);

    // The worker goes on with commands and jobs.
    let fine = doppel.find_source(DEFAULT_TWIN, paths[1].to_str().unwrap()).unwrap();
    doppel.delete_source(fine.id).unwrap();
    assert!(doppel.search(&keyword("m3keepfinex0y1")).unwrap().hits.is_empty());
    let more = write_files(&files.path().join("more"), "m3after", 1, 1);
    assert_eq!(doppel.wait_for(&ingest(&doppel, &more), |_| {}).unwrap()[0].state, JobState::Done);
}

#[test]
fn cr4_a_reader_outside_doppel_only_delays_the_checkpoint_until_it_lets_go() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let paths =
        [write_files(files.path(), "qbw7731", 1, 2), write_files(files.path(), "keepplain", 1, 2)]
            .concat();
    let doppel = open(data.path());
    doppel.wait_for(&ingest(&doppel, &paths), |_| {}).unwrap();
    let gone = doppel.find_source(DEFAULT_TWIN, paths[0].to_str().unwrap()).unwrap();
    let needles: [(&str, &[u8]); 1] = [("text", b"qbw7731x0y1")];

    // Another program reads the database and keeps its snapshot open.
    let other = raw(data.path());
    other.execute_batch("BEGIN; SELECT count(*) FROM chunks;").unwrap();
    let events = doppel.subscribe();
    doppel.delete_source(gone.id).unwrap();
    assert!(doppel.search(&keyword("qbw7731x0y1")).unwrap().hits.is_empty());
    assert!(
        !common::files_holding(data.path(), &needles).is_empty(),
        "the old pages stay while the other reader holds them"
    );

    // Once it lets go, the worker's next try folds the log, and the text is gone.
    other.execute_batch("COMMIT").unwrap();
    drop(other);
    loop {
        match events.recv_timeout(std::time::Duration::from_secs(30)).unwrap() {
            Event::LogCheckpointed => break,
            _ => continue,
        }
    }
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
}

fn keyword(query: impl Into<String>) -> SearchRequest {
    SearchRequest { mode: SearchMode::Keyword, ..SearchRequest::new(query) }
}

/// These tests are about the queue, parsing and keyword search: they run without the embedding
/// model (vector search has tests of its own), which keeps them fast.
fn without_models(dir: &Path) -> Config {
    Config { models: Some(dir.join("no-models")), ..Config::new(dir) }
}
