//! Watched folders, twins and re-ingestion, driven through the public API on real folders and
//! real SQLite files. Waits are on events; their time-outs only bound a test that went wrong.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::model_cache;
use doppel_core::*;

/// How long any one event may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// A data directory opened with watching on; every event from the start arrives on the
/// receiver. Without the model unless `models` names the cache.
fn open_watching(data: &Path, models: Option<PathBuf>) -> (Doppel, Receiver<Event>) {
    let (subscriber, events) = mpsc::channel();
    let models = models.or_else(|| Some(data.join("no-models")));
    let config = Config { watch: true, subscriber: Some(subscriber), models, ..Config::new(data) };
    (Doppel::open(config).unwrap(), events)
}

fn open_plain(data: &Path) -> Doppel {
    Doppel::open(Config { models: Some(data.join("no-models")), ..Config::new(data) }).unwrap()
}

/// Events until one matches `wanted`; returns them all, that one last.
fn until(events: &Receiver<Event>, wanted: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = events.recv_timeout(PATIENCE).unwrap_or_else(|e| {
            panic!("no matching event ({e}); saw {seen:#?}");
        });
        let done = wanted(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// The next `WatchChanged` event: `(folder, queued, forgotten)`, with the events before it.
fn next_change(events: &Receiver<Event>) -> ((FolderId, u64, u64), Vec<Event>) {
    let seen = until(events, |e| matches!(e, Event::WatchChanged { .. }));
    match seen.last() {
        Some(&Event::WatchChanged { folder, queued, forgotten }) => {
            ((folder, queued, forgotten), seen)
        }
        _ => unreachable!(),
    }
}

/// Waits until no job is queued or running.
fn settle(doppel: &Doppel) -> Vec<Job> {
    let active = doppel.jobs(JobFilter { active_only: true, limit: u32::MAX }).unwrap();
    let ids: Vec<JobId> = active.iter().map(|j| j.id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap()
}

fn all_jobs(doppel: &Doppel) -> Vec<Job> {
    doppel.jobs(JobFilter { active_only: false, limit: u32::MAX }).unwrap()
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn titles(doppel: &Doppel) -> Vec<String> {
    let mut titles: Vec<String> =
        doppel.sources(DEFAULT_TWIN).unwrap().into_iter().map(|s| s.title).collect();
    titles.sort();
    titles
}

fn long_text(changed: Option<usize>) -> String {
    let sections: Vec<String> = (0..30)
        .map(|i| match changed {
            Some(c) if c == i => {
                format!("## Part {i}\nThis part was rewritten to speak of lakes.\n")
            }
            _ => {
                format!("## Part {i}\nThis is paragraph number {i} of a long text about rivers.\n")
            }
        })
        .collect();
    format!("# Rivers\n{}", sections.join("\n"))
}

#[test]
fn catch_up_at_open_finds_files_added_deleted_and_edited_while_closed() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let root = files.path().canonicalize().unwrap();
    write(&root.join("keep.md"), "# Keep\nThis note stays as it is.");
    let long = write(&root.join("long.md"), &long_text(None));
    let gone = write(&root.join("gone.md"), "# Gone\nThis note will be deleted.");
    let folder = {
        let (doppel, events) = open_watching(data.path(), Some(model_cache()));
        let folder = doppel.watch_folder(DEFAULT_TWIN, files.path()).unwrap();
        assert_eq!(folder.path, root.to_str().unwrap());
        assert_eq!(next_change(&events).0, (folder.id, 3, 0));
        settle(&doppel);
        assert_eq!(titles(&doppel), ["Gone", "Keep", "Rivers"]);
        folder
    };
    let long_source = open_plain(data.path()).find_source(DEFAULT_TWIN, long.to_str().unwrap());
    let long_source = long_source.unwrap().id;

    // While nobody watches: one file added, one deleted, one paragraph of another rewritten.
    write(&root.join("added.md"), "# Added\nA note written while Doppel was closed.");
    std::fs::remove_file(&gone).unwrap();
    write(&long, &long_text(Some(7)));

    let (doppel, events) = open_watching(data.path(), Some(model_cache()));
    // The unchanged file is not even read again: two queued, one forgotten.
    let (change, mut seen) = next_change(&events);
    assert_eq!(change, (folder.id, 2, 1));
    settle(&doppel);
    seen.extend(events.try_iter());
    assert_eq!(titles(&doppel), ["Added", "Keep", "Rivers"]);
    assert_eq!(doppel.find_source(DEFAULT_TWIN, long.to_str().unwrap()).unwrap().id, long_source);
    assert!(seen.iter().any(|e| matches!(e, Event::SourceDeleted { .. })));

    // The edited file's job embedded only the rewritten passage.
    let long_job = all_jobs(&doppel)
        .into_iter()
        .find(|j| j.source_id == Some(long_source) && j.state == JobState::Done)
        .unwrap();
    assert_eq!(long_job.outcome, Some(JobOutcome::Ingested));
    let embedded: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            Event::JobEmbedding { job, total, .. } if *job == long_job.id => Some(*total),
            _ => None,
        })
        .collect();
    assert_eq!(embedded.last(), Some(&1), "{seen:#?}");
    let report = doppel.doctor().unwrap();
    assert_eq!((report.chunks, report.index_entries, report.chunks_without_vectors), (33, 33, 0));
    let hits = doppel
        .search(&SearchRequest { mode: SearchMode::Keyword, ..SearchRequest::new("lakes") })
        .unwrap()
        .hits;
    assert_eq!(hits[0].location.label, "Rivers › Part 7");
}

#[test]
fn live_creates_edits_deletes_and_renames_are_followed() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let root = files.path().canonicalize().unwrap();
    let (doppel, events) = open_watching(data.path(), None);
    let folder = doppel.watch_folder(DEFAULT_TWIN, &root).unwrap();
    assert_eq!(next_change(&events).0, (folder.id, 0, 0));

    let note = write(&root.join("note.md"), "# Note\nHerons nest by the river.");
    assert_eq!(next_change(&events).0, (folder.id, 1, 0));
    settle(&doppel);
    let source = doppel.find_source(DEFAULT_TWIN, note.to_str().unwrap()).unwrap();
    assert_eq!(source.state, SourceState::Ready);

    write(&note, "# Note\nHerons nest by the river.\n\n## Later\nKingfishers came in June.");
    assert_eq!(next_change(&events).0, (folder.id, 1, 0));
    settle(&doppel);
    let after = doppel.find_source(DEFAULT_TWIN, note.to_str().unwrap()).unwrap();
    assert_eq!((after.id, after.chunk_count), (source.id, 2));

    // Hidden and binary files follow the walk's rules; a folder that appears is walked.
    write(&root.join(".draft.md"), "# Draft\nNot yet.");
    write(&root.join("photo.png"), "not really a picture");
    std::fs::create_dir(root.join("sub")).unwrap();
    write(&root.join("sub/inner.md"), "# Inner\nOtters play in the weir.");
    assert_eq!(next_change(&events).0, (folder.id, 1, 0));
    settle(&doppel);
    assert_eq!(titles(&doppel), ["Inner", "Note"]);

    std::fs::remove_file(&note).unwrap();
    let (change, seen) = next_change(&events);
    assert_eq!(change, (folder.id, 0, 1));
    assert!(seen.contains(&Event::SourceDeleted { source: source.id }));
    assert_eq!(titles(&doppel), ["Inner"]);

    // A rename forgets the old path and ingests the new one.
    std::fs::rename(root.join("sub/inner.md"), root.join("moved.md")).unwrap();
    assert_eq!(next_change(&events).0, (folder.id, 1, 1));
    settle(&doppel);
    let sources = doppel.sources(DEFAULT_TWIN).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].origin.as_deref(), root.join("moved.md").to_str());
    assert_eq!(sources[0].state, SourceState::Ready);
}

#[test]
fn a_burst_of_writes_becomes_one_job_per_file() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let root = files.path().canonicalize().unwrap();
    let (doppel, events) = open_watching(data.path(), None);
    // A quiet time longer than the burst lasts.
    doppel.set_setting("watch_debounce_ms", "5000").unwrap();
    let folder = doppel.watch_folder(DEFAULT_TWIN, &root).unwrap();
    assert_eq!(next_change(&events).0, (folder.id, 0, 0));

    let burst = root.join("burst.md");
    for version in 0..25 {
        write(&burst, &format!("# Burst\nThis is version {version} of the note.\n"));
    }
    write(&root.join("other.md"), "# Other\nA second file of the same burst.");
    let (change, _) = next_change(&events);
    assert_eq!(change, (folder.id, 2, 0));
    settle(&doppel);
    let source = doppel.find_source(DEFAULT_TWIN, burst.to_str().unwrap()).unwrap();
    let jobs: Vec<Job> =
        all_jobs(&doppel).into_iter().filter(|j| j.source_id == Some(source.id)).collect();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert!(doppel.chunks(source.id).unwrap()[0].text.contains("version 24"));
}

#[test]
fn an_unwatched_folder_is_no_longer_followed_and_keeps_its_sources() {
    let data = tempfile::tempdir().unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write(&a.path().join("kept.md"), "# Kept\nThis stays after unwatching.");
    let (doppel, events) = open_watching(data.path(), None);
    let folder_a = doppel.watch_folder(DEFAULT_TWIN, a.path()).unwrap();
    assert_eq!(next_change(&events).0, (folder_a.id, 1, 0));
    let folder_b = doppel.watch_folder(DEFAULT_TWIN, b.path()).unwrap();
    assert_eq!(next_change(&events).0, (folder_b.id, 0, 0));
    settle(&doppel);

    doppel.unwatch_folder(folder_a.id).unwrap();
    assert_eq!(doppel.watched_folders().unwrap(), std::slice::from_ref(&folder_b));
    assert_eq!(doppel.unwatch_folder(folder_a.id).unwrap_err().code(), "not_found");
    // Written in order: had the first been noticed, it would be in this change or before it.
    write(&a.path().join("ignored.md"), "# Ignored\nNobody watches this folder now.");
    std::fs::remove_file(a.path().join("kept.md")).unwrap();
    write(&b.path().join("seen.md"), "# Seen\nThis folder is still watched.");
    let (change, seen) = next_change(&events);
    assert_eq!(change, (folder_b.id, 1, 0));
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::WatchChanged { folder, .. } if *folder == folder_a.id))
    );
    settle(&doppel);
    assert_eq!(titles(&doppel), ["Kept", "Seen"]);
}

#[test]
fn folders_to_watch_are_checked_stored_once_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let file = write(&files.path().join("a.md"), "# A\nText.");
    let doppel = open_plain(data.path());
    let err = doppel.watch_folder(DEFAULT_TWIN, &files.path().join("missing")).unwrap_err();
    assert_eq!(err.code(), "io");
    assert_eq!(doppel.watch_folder(DEFAULT_TWIN, &file).unwrap_err().code(), "invalid_input");
    assert_eq!(doppel.watch_folder(DEFAULT_TWIN, data.path()).unwrap_err().code(), "invalid_input");
    assert_eq!(doppel.watch_folder(99, files.path()).unwrap_err().code(), "not_found");

    let folder = doppel.watch_folder(DEFAULT_TWIN, files.path()).unwrap();
    // The same folder by another spelling is the same watched folder.
    let again = doppel.watch_folder(DEFAULT_TWIN, &files.path().join(".")).unwrap();
    assert_eq!(again, folder);
    // Without watching on, nothing is ingested.
    assert!(doppel.sources(DEFAULT_TWIN).unwrap().is_empty());
    drop(doppel);
    let doppel = open_plain(data.path());
    assert_eq!(doppel.watched_folders().unwrap(), [folder]);
}

#[test]
fn twins_are_created_and_renamed_with_valid_unique_names() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open_plain(data.path());
    let work = doppel.create_twin("  Work notes ").unwrap();
    assert_eq!(work.name, "Work notes");
    assert_ne!(work.id, DEFAULT_TWIN);
    let names = |d: &Doppel| d.twins().unwrap().into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(&doppel), ["My twin", "Work notes"]);

    for bad in ["", "   ", &"x".repeat(101), "two\nlines"] {
        assert_eq!(doppel.create_twin(bad).unwrap_err().code(), "invalid_input", "{bad:?}");
    }
    assert!(doppel.create_twin(&"é".repeat(100)).is_ok());
    let err = doppel.create_twin("work NOTES").unwrap_err();
    assert_eq!(err.code(), "already_exists");
    assert_eq!(err.to_string(), "twin \"work NOTES\" already exists");

    let renamed = doppel.rename_twin(work.id, "Work").unwrap();
    assert_eq!(
        (renamed.id, renamed.name.as_str(), renamed.created_at),
        (work.id, "Work", work.created_at)
    );
    // A twin may keep its own name, in another case.
    assert_eq!(doppel.rename_twin(work.id, "WORK").unwrap().name, "WORK");
    assert_eq!(doppel.rename_twin(work.id, "my twin").unwrap_err().code(), "already_exists");
    assert_eq!(doppel.rename_twin(work.id, " ").unwrap_err().code(), "invalid_input");
    assert_eq!(doppel.rename_twin(42, "Nobody").unwrap_err().code(), "not_found");
    drop(doppel);
    assert_eq!(open_plain(data.path()).twins().unwrap()[1].name, "WORK");
}

#[test]
fn reingesting_an_edited_file_updates_its_one_source() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = write(&files.path().join("diary.md"), "# Diary\nMonday: rain.");
    let doppel = open_plain(data.path());
    let report = doppel.ingest(IngestRequest::paths(vec![path.clone()])).unwrap();
    doppel.wait_for(&[report.queued[0].job_id], |_| {}).unwrap();
    let source = report.queued[0].source_id;

    let again = doppel.reingest(source).unwrap();
    assert_eq!((again.source_id, again.status), (source, EnqueueStatus::Queued));
    let done = doppel.wait_for(&[again.job_id], |_| {}).unwrap();
    assert_eq!(done[0].outcome, Some(JobOutcome::Unchanged));

    write(&path, "# Diary\nMonday: rain.\n\n## Tuesday\nSunshine over the hills.");
    let again = doppel.reingest(source).unwrap();
    let done = doppel.wait_for(&[again.job_id], |_| {}).unwrap();
    assert_eq!(done[0].outcome, Some(JobOutcome::Ingested));
    let sources = doppel.sources(DEFAULT_TWIN).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!((sources[0].id, sources[0].chunk_count), (source, 2));
    assert!(doppel.chunks(source).unwrap()[1].text.contains("Sunshine"));

    let text = doppel
        .add_text(TextRequest { twin: DEFAULT_TWIN, title: "Pasted".into(), text: "Hello".into() })
        .unwrap();
    let err = doppel.reingest(text.source_id).unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert!(err.to_string().contains("pasted text"), "{err}");
    assert_eq!(doppel.reingest(999).unwrap_err().code(), "not_found");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(doppel.reingest(source).unwrap_err().code(), "io");
}

#[test]
fn a_watched_folder_takes_its_images_once_text_recognition_is_on() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let root = files.path().canonicalize().unwrap();
    write(&root.join("note.md"), "# Note\nHerons nest by the river.");
    let spec = Path::new("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf");
    let page = std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-f", "1", "-l", "1", "-gray", "-png"])
        .arg(spec)
        .output()
        .expect("pdftoppm (scripts/setup installs poppler-utils)");
    std::fs::write(root.join("scan.png"), page.stdout).unwrap();
    let (subscriber, events) = mpsc::channel();
    let parser = ParserCommand {
        program: env!("CARGO_BIN_EXE_doppel-parse").into(),
        args: vec![PARSER_ARG.into()],
    };
    let config = Config {
        watch: true,
        subscriber: Some(subscriber),
        models: Some(data.path().join("no-models")),
        parser,
        ..Config::new(data.path())
    };
    let doppel = Doppel::open(config).unwrap();
    let folder = doppel.watch_folder(DEFAULT_TWIN, &root).unwrap();
    // Text recognition is off: the folder's picture is passed over, not made to wait.
    assert_eq!(next_change(&events).0, (folder.id, 1, 0));
    settle(&doppel);
    assert_eq!(titles(&doppel), ["Note"]);

    doppel.set_setting("ocr", "true").unwrap();
    assert_eq!(next_change(&events).0, (folder.id, 1, 0));
    settle(&doppel);
    assert_eq!(titles(&doppel), ["Note", "scan.png"]);
    let request = SearchRequest {
        mode: SearchMode::Keyword,
        ..SearchRequest::new("last updated October 2018")
    };
    assert_eq!(doppel.search(&request).unwrap().hits[0].source_title, "scan.png");
}
