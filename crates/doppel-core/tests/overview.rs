//! A twin as a whole, on real SQLite files: what it knows (coverage), why a word is or is not
//! found, the search view's filters and marks, the sources changed since a moment, and the
//! queue paused and resumed across a restart.

use std::path::{Path, PathBuf};

use doppel_core::coverage::{ProblemKind, SourceFilter};
use doppel_core::*;

fn without_models(dir: &Path) -> Config {
    Config { models: Some(dir.join("no-models")), ..Config::new(dir) }
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.canonicalize().unwrap()
}

fn ingest_and_wait(doppel: &Doppel, paths: Vec<PathBuf>) -> Vec<Job> {
    let report = doppel.ingest(IngestRequest::paths(paths)).unwrap();
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&jobs, |_| {}).unwrap()
}

/// A folder with notes in three formats, one in a subfolder, a file that is empty, a JSON file
/// that is broken, and a copy of a note.
fn notes(root: &Path) -> PathBuf {
    let notes = root.join("notes");
    write(
        &notes.join("orchard.md"),
        "# Orchard\n\nAunt Wilhelmina planted the quince orchard in 1987.\n",
    );
    write(
        &notes.join("second-orchard.md"),
        "# Orchard\n\nAunt Wilhelmina planted the quince orchard in 1987.\n",
    );
    write(
        &notes.join("chutney.txt"),
        "Damson chutney simmers for three hours in the copper pan.\n",
    );
    write(
        &notes.join("2024/lighthouse.html"),
        "<title>Lighthouse</title><p>The keeper wound the clockwork every four hours.</p>",
    );
    write(&notes.join("empty.txt"), "   \n");
    write(&notes.join("ledger.json"), "{\"broken\": ");
    notes.canonicalize().unwrap()
}

#[test]
fn coverage_counts_what_the_twin_knows_and_lists_each_failure_and_skip_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let notes = notes(dir.path());
    let doppel = Doppel::open(without_models(&dir.path().join("data"))).unwrap();
    ingest_and_wait(&doppel, vec![notes.clone()]);

    let coverage = doppel.coverage(DEFAULT_TWIN).unwrap();
    let s = coverage.states;
    // orchard, chutney and lighthouse are learnt; the empty file and the copy are passed over;
    // the broken JSON failed.
    assert_eq!((s.ready, s.queued, s.processing, s.failed, s.skipped), (3, 0, 0, 1, 2), "{s:?}");
    assert_eq!(coverage.passages, 3);
    // Without a model nothing is embedded, and the reason is given.
    assert_eq!(coverage.embedded, 0);
    assert!(coverage.model.is_err());
    assert!(coverage.disk_bytes > 0 && coverage.content_bytes > 0);

    let formats: Vec<(&str, u64)> =
        coverage.formats.iter().map(|g| (g.name.as_str(), g.sources)).collect();
    assert_eq!(formats, [("Plain text", 2), ("HTML", 1), ("JSON", 1), ("Markdown", 1)]);
    let folders: Vec<(String, u64, u64)> =
        coverage.folders.iter().map(|g| (g.name.clone(), g.sources, g.passages)).collect();
    let notes_folder = notes.display().to_string();
    assert_eq!(folders, [(notes_folder.clone(), 4, 2), (format!("{notes_folder}/2024"), 1, 1)]);

    let problem = |name: &str| {
        coverage
            .problems
            .iter()
            .find(|p| p.origin.as_deref().is_some_and(|o| o.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} is not among {:#?}", coverage.problems))
    };
    let broken = problem("ledger.json");
    assert_eq!(
        (broken.kind, broken.code.as_str(), broken.retryable),
        (ProblemKind::Failed, "malformed", true)
    );
    assert!(broken.reason.contains("JSON"), "{}", broken.reason);
    let empty = problem("empty.txt");
    assert_eq!(
        (empty.kind, empty.code.as_str(), empty.retryable),
        (ProblemKind::Skipped, "empty", false)
    );
    let copy = problem("second-orchard.md");
    assert_eq!(
        (copy.kind, copy.code.as_str(), copy.retryable),
        (ProblemKind::Skipped, "already_present", false)
    );
    assert!(copy.reason.contains("Orchard"), "{}", copy.reason);
    assert_eq!(coverage.problems.len(), 3);

    // Retry: once the file is mended, reading it again learns it, and the failure is gone.
    write(
        &notes.join("ledger.json"),
        "{\"ledger\": \"Bought twelve quince saplings from the nursery.\"}",
    );
    let job = doppel.reingest(broken.source).unwrap().job_id;
    doppel.wait_for(&[job], |_| {}).unwrap();
    let after = doppel.coverage(DEFAULT_TWIN).unwrap();
    assert_eq!((after.states.ready, after.states.failed, after.states.skipped), (4, 0, 2));
    assert!(after.problems.iter().all(|p| p.code != "malformed"));
}

#[test]
fn why_isnt_this_found_names_the_sources_and_the_words_the_index_holds() {
    let dir = tempfile::tempdir().unwrap();
    let notes = notes(dir.path());
    let doppel = Doppel::open(without_models(&dir.path().join("data"))).unwrap();
    ingest_and_wait(&doppel, vec![notes]);

    let found = doppel.explain(DEFAULT_TWIN, "planting quinces").unwrap();
    let words: Vec<(&str, u64, u64)> =
        found.words.iter().map(|w| (w.word.as_str(), w.passages, w.sources)).collect();
    // Words are matched by their stem, as search matches them.
    assert_eq!(words, [("planting", 1, 1), ("quinces", 1, 1)]);
    assert_eq!(found.keyword.len(), 1);
    assert!(found.keyword[0].text.contains("Wilhelmina"));
    // No model here: search by meaning says why it cannot run.
    assert!(found.meaning.as_ref().is_err_and(|reason| !reason.is_empty()), "{:?}", found.meaning);

    let missing = doppel.explain(DEFAULT_TWIN, "zeppelin").unwrap();
    assert_eq!(missing.words.len(), 1);
    assert_eq!(missing.words[0].passages, 0);
    assert!(missing.keyword.is_empty() && missing.named.is_empty());

    // A file name finds its source and says its state, failed ones too.
    let named = doppel.explain(DEFAULT_TWIN, "LEDGER.json").unwrap();
    assert_eq!(named.named.len(), 1);
    assert_eq!(named.named[0].state, SourceState::Failed);
}

#[test]
fn the_search_view_filters_by_folder_format_and_date_and_marks_the_query_words() {
    let dir = tempfile::tempdir().unwrap();
    let notes = notes(dir.path());
    let doppel = Doppel::open(without_models(&dir.path().join("data"))).unwrap();
    ingest_and_wait(&doppel, vec![notes.clone()]);
    let find = |query: &str, filter: SourceFilter| {
        doppel
            .find(&FindRequest {
                twin: DEFAULT_TWIN,
                query: query.into(),
                mode: SearchMode::Keyword,
                limit: Some(10),
                filter,
            })
            .unwrap()
    };
    let titles = |found: &doppel_core::find::Found| {
        let mut t: Vec<String> =
            found.passages.iter().map(|p| p.hit.source_title.clone()).collect();
        t.sort();
        t
    };
    let all = find("orchard clockwork chutney", SourceFilter::default());
    assert_eq!(titles(&all), ["Lighthouse", "Orchard", "chutney.txt"]);

    let below =
        SourceFilter { folder: Some(format!("{}/2024", notes.display())), ..Default::default() };
    assert_eq!(titles(&find("orchard clockwork chutney", below)), ["Lighthouse"]);
    let markdown = SourceFilter { format: Some("Markdown".into()), ..Default::default() };
    assert_eq!(titles(&find("orchard clockwork chutney", markdown)), ["Orchard"]);
    let future = SourceFilter { from: Some(i64::MAX / 2), ..Default::default() };
    assert!(find("orchard clockwork chutney", future).passages.is_empty());
    let nowhere = SourceFilter { folder: Some("/nowhere".into()), ..Default::default() };
    assert!(find("orchard", nowhere).passages.is_empty());
    let named = SourceFilter { name: Some("CHUTNEY".into()), ..Default::default() };
    assert_eq!(titles(&find("orchard clockwork chutney", named)), ["chutney.txt"]);

    // The passage comes whole, with the query's words marked by their stem.
    let found = find("planting orchards", SourceFilter::default());
    let parts = &found.passages[0].parts;
    let whole: String = parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(whole, found.passages[0].hit.text);
    let marked: Vec<String> =
        parts.iter().filter(|p| p.marked).map(|p| p.text.to_lowercase()).collect();
    assert!(
        marked.contains(&"planted".to_string()) && marked.contains(&"orchard".to_string()),
        "{parts:?}"
    );
    assert!(marked.iter().all(|m| m == "planted" || m == "orchard"), "{parts:?}");
}

#[test]
fn a_page_of_the_sources_list_is_newest_first_filtered_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let notes = notes(dir.path());
    let doppel = Doppel::open(without_models(&dir.path().join("data"))).unwrap();
    ingest_and_wait(&doppel, vec![notes]);
    let all = doppel.sources(DEFAULT_TWIN).unwrap();
    let page = |text: Option<&str>, state, offset, limit| {
        doppel
            .source_page(
                DEFAULT_TWIN,
                &SourceQuery { text: text.map(str::to_string), state, offset, limit },
            )
            .unwrap()
    };
    let first = page(None, None, 0, 2);
    assert_eq!(first.total, all.len() as u64);
    let newest: Vec<SourceId> = all.iter().rev().take(2).map(|s| s.id).collect();
    assert_eq!(first.sources.iter().map(|s| s.id).collect::<Vec<_>>(), newest);
    let rest = page(None, None, 2, 100);
    assert_eq!(rest.sources.len(), all.len() - 2);
    assert_eq!(
        (first.counts.ready, first.counts.failed, first.counts.queued, first.counts.processing),
        (3, 2, 0, 0)
    );
    // By a piece of the title or the path, without regard to case, and by state.
    let lighthouse = page(Some("LIGHTHOUSE"), None, 0, 10);
    assert_eq!((lighthouse.total, lighthouse.sources[0].title.as_str()), (1, "Lighthouse"));
    assert_eq!(page(Some("/2024/"), None, 0, 10).total, 1);
    let failed = page(None, Some(SourceState::Failed), 0, 10);
    assert_eq!(failed.total, 2);
    assert!(failed.sources.iter().all(|s| s.state == SourceState::Failed));
    assert_eq!(page(Some("ledger"), Some(SourceState::Ready), 0, 10).total, 0);
    assert_eq!(doppel.sources_changed_since(DEFAULT_TWIN, 0).unwrap().counts, first.counts);
    // The page says where to ask for changes from: after it, nothing is changed yet.
    assert_eq!(first.cursor, all.iter().map(|s| s.updated_at).max().unwrap());
    let since = doppel.sources_changed_since(DEFAULT_TWIN, first.cursor + 1).unwrap();
    assert!(since.sources.is_empty());
}

#[test]
fn only_the_sources_changed_since_a_moment_are_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let notes = notes(dir.path());
    let doppel = Doppel::open(without_models(&dir.path().join("data"))).unwrap();
    ingest_and_wait(&doppel, vec![notes.clone()]);
    let first = doppel.sources_changed_since(DEFAULT_TWIN, 0).unwrap();
    assert_eq!(first.sources.len(), doppel.sources(DEFAULT_TWIN).unwrap().len());
    let cursor = first.cursor;
    assert_eq!(cursor, first.sources.iter().map(|s| s.updated_at).max().unwrap());

    let chutney = notes.join("chutney.txt");
    write(&chutney, "Damson chutney simmers for four hours now, in the iron pan.\n");
    let source = doppel.find_source(DEFAULT_TWIN, chutney.to_str().unwrap()).unwrap();
    let job = doppel.reingest(source.id).unwrap().job_id;
    doppel.wait_for(&[job], |_| {}).unwrap();

    let changed = doppel.sources_changed_since(DEFAULT_TWIN, cursor).unwrap();
    assert!(changed.sources.iter().any(|s| s.id == source.id && s.state == SourceState::Ready));
    // Anything else is a row last seen exactly at the cursor (asked again, inclusively).
    assert!(
        changed.sources.iter().all(|s| s.id == source.id || s.updated_at == cursor),
        "{:?}",
        changed.sources
    );
    assert!(changed.cursor > cursor);
    let later = doppel.sources_changed_since(DEFAULT_TWIN, changed.cursor).unwrap();
    assert!(later.sources.iter().all(|s| s.updated_at == changed.cursor));
}

#[test]
fn a_change_of_more_sources_than_one_answer_lists_is_told_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let doppel = Doppel::open(without_models(&dir.path().join("data"))).unwrap();
    let before = doppel.sources_changed_since(DEFAULT_TWIN, 0).unwrap().cursor;
    // A queued drop of one file more than an answer lists, as the window sees it.
    doppel.pause_queue().unwrap();
    let files: Vec<PathBuf> = (0..=SourceChanges::LIMIT)
        .map(|i| write(&dir.path().join(format!("drop/{i}.txt")), &format!("note {i}")))
        .collect();
    doppel.ingest(IngestRequest::paths(files)).unwrap();
    let changed = doppel.sources_changed_since(DEFAULT_TWIN, before).unwrap();
    assert!(changed.more);
    assert!(changed.sources.is_empty(), "none is listed when more changed than one answer lists");
    assert_eq!(changed.counts.queued, SourceChanges::LIMIT as u64 + 1);
    let latest = doppel.source_page(DEFAULT_TWIN, &SourceQuery { limit: 1, ..Default::default() });
    assert_eq!(changed.cursor, latest.unwrap().cursor, "the next answer starts after them all");
    // From there on, only what changes later is listed.
    let later = doppel.sources_changed_since(DEFAULT_TWIN, changed.cursor + 1).unwrap();
    assert!(!later.more && later.sources.is_empty());
}

#[test]
fn a_paused_queue_starts_nothing_until_resumed_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write(&dir.path().join("plan.md"), "# Plan\n\nSow the broad beans in November.\n");
    let job = {
        let doppel = Doppel::open(without_models(&data)).unwrap();
        let progress = doppel.pause_queue().unwrap();
        assert!(progress.paused && doppel.queue_paused());
        let job = doppel.ingest(IngestRequest::paths(vec![file.clone()])).unwrap().queued[0].job_id;
        // Had the worker claimed the job after queueing it, this request would have waited
        // for the job's end (only chat writes are served during a job).
        doppel.create_twin("Second").unwrap();
        assert_eq!(doppel.job(job).unwrap().state, JobState::Queued);
        let progress = doppel.queue_progress().unwrap();
        assert_eq!(
            (progress.paused, progress.total, progress.ended, progress.time_left),
            (true, 1, 0, None)
        );
        // Waiting for a paused queue would never end: it says so instead.
        assert_eq!(doppel.wait_for(&[job], |_| {}).unwrap_err().code(), "queue_paused");
        job
    };

    let doppel = Doppel::open(without_models(&data)).unwrap();
    assert!(doppel.queue_paused(), "the pause is kept across a restart");
    doppel.create_twin("Third").unwrap();
    assert_eq!(doppel.job(job).unwrap().state, JobState::Queued);

    let progress = doppel.resume_queue().unwrap();
    assert!(!progress.paused);
    let ended = doppel.wait_for(&[job], |_| {}).unwrap();
    assert_eq!(ended[0].state, JobState::Done);
    assert_eq!(doppel.queue_progress().unwrap(), QueueProgress::default());
    drop(doppel);
    assert!(!Doppel::open(without_models(&data)).unwrap().queue_paused());
}
