//! Keyword search takes any text a person types as plain words: property-tested against a real
//! index.

use doppel_core::*;
use proptest::prelude::*;
use std::path::Path;

fn fixture() -> (tempfile::TempDir, Doppel) {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("fixture.md");
    std::fs::write(
        &file,
        "# Notes\nalpha beta gamma \"quoted\" NEAR AND OR NOT text:column (paren) star*\n",
    )
    .unwrap();
    let doppel = Doppel::open(without_models(&data.path().join("data"))).unwrap();
    let report = doppel.ingest(IngestRequest::paths(vec![file])).unwrap();
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&jobs, |_| {}).unwrap();
    (data, doppel)
}

/// Characters that mean something to FTS5 or SQL, mixed with letters and odd Unicode.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("*".to_string()),
        Just("^".to_string()),
        Just(":".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("{".to_string()),
        Just("-".to_string()),
        Just("+".to_string()),
        Just(" AND ".to_string()),
        Just(" OR ".to_string()),
        Just(" NOT ".to_string()),
        Just("NEAR(".to_string()),
        Just("text:".to_string()),
        Just(";--".to_string()),
        Just("\u{0}".to_string()),
        "[a-z]{1,8}",
        "\\PC{1,4}",
    ];
    prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn m5_any_query_is_searched_as_words(query in hostile_text()) {
        let (_dir, doppel) = FIXTURE.with(|f| f.clone());
        let hits = doppel.search(&keyword(query.clone())).map(|r| r.hits);
        prop_assert!(hits.is_ok(), "{query:?}: {hits:?}");
        // Any word of the fixture in the query finds the fixture.
        let words = ["alpha", "beta", "gamma", "quoted", "near", "column", "paren", "star"];
        if query.split(|c: char| !c.is_alphanumeric()).any(|w| words.contains(&w.to_lowercase().as_str())) {
            prop_assert_eq!(hits.unwrap().len(), 1);
        }
    }
}

thread_local! {
    static FIXTURE: (std::rc::Rc<tempfile::TempDir>, std::rc::Rc<Doppel>) = {
        let (dir, doppel) = fixture();
        (std::rc::Rc::new(dir), std::rc::Rc::new(doppel))
    };
}

#[test]
fn source_filters_limit_results() {
    let data = tempfile::tempdir().unwrap();
    let files: Vec<_> = (0..3)
        .map(|i| {
            let path = data.path().join(format!("f{i}.txt"));
            std::fs::write(&path, format!("common word and unique{i}")).unwrap();
            path
        })
        .collect();
    let doppel = Doppel::open(without_models(&data.path().join("data"))).unwrap();
    let report = doppel.ingest(IngestRequest::paths(files)).unwrap();
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&jobs, |_| {}).unwrap();
    assert_eq!(doppel.search(&keyword("common")).unwrap().hits.len(), 3);
    let only = report.queued[1].source_id;
    let hits =
        doppel.search(&SearchRequest { sources: vec![only], ..keyword("common") }).unwrap().hits;
    assert_eq!(hits.iter().map(|h| h.source_id).collect::<Vec<_>>(), [only]);
    let hits = doppel.search(&SearchRequest { limit: Some(2), ..keyword("common") }).unwrap().hits;
    assert_eq!(hits.len(), 2);
    assert!(hits[0].score >= hits[1].score);
    assert!(hits[0].snippet.contains("[common]"), "{}", hits[0].snippet);
}

#[test]
fn a_source_filter_finds_a_weak_match_behind_many_better_ones() {
    // 300 passages where a word is strong, one where it is weak: the filtered search must reach
    // past every better match of the other sources.
    let data = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = (0..300)
        .map(|i| {
            let path = data.path().join(format!("strong{i}.txt"));
            std::fs::write(&path, format!("harvest harvest note{i}")).unwrap();
            path
        })
        .collect();
    let weak = data.path().join("weak.txt");
    let filler = (0..60).map(|i| format!("filler{i}")).collect::<Vec<_>>().join(" ");
    std::fs::write(&weak, format!("{filler} harvest {filler}")).unwrap();
    files.push(weak.clone());
    let doppel = Doppel::open(without_models(&data.path().join("data"))).unwrap();
    let report = doppel.ingest(IngestRequest::paths(files)).unwrap();
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&jobs, |_| {}).unwrap();
    let all = doppel.search(&SearchRequest { limit: Some(50), ..keyword("harvest") }).unwrap();
    assert_eq!(all.hits.len(), 50);
    assert!(all.hits.iter().all(|h| h.origin != Some(weak.display().to_string())));
    let target = report.queued.last().unwrap().source_id;
    let hits =
        doppel.search(&SearchRequest { sources: vec![target], ..keyword("harvest") }).unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].source_id, target);
    assert!(hits[0].snippet.contains("[harvest]"), "{}", hits[0].snippet);
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
