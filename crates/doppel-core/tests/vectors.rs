//! Vector search with the real embedding model from the model cache (`scripts/models` fills
//! it; `$DOPPEL_MODEL_CACHE` points at it): search by meaning, forgetting that leaves no byte
//! behind, re-embedding only what changed, rebuilding a stale index, and falling back to
//! keywords without a model.

mod common;

use std::path::{Path, PathBuf};

use common::model_cache;
use doppel_core::*;

fn open(data: &Path) -> Doppel {
    Doppel::open(Config { models: Some(model_cache()), ..Config::new(data) }).unwrap()
}

fn ingest(doppel: &Doppel, paths: &[PathBuf]) -> Vec<Job> {
    let report = doppel.ingest(IngestRequest::paths(paths.to_vec())).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap()
}

fn search(doppel: &Doppel, query: &str, mode: SearchMode) -> SearchResults {
    doppel.search(&SearchRequest { mode, ..SearchRequest::new(query) }).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn passages_are_found_by_meaning_and_fused_with_keywords() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let paths = [
        write(
            files.path(),
            "garden.md",
            "# Garden\nI planted the tomatoes in May, after the last frost.",
        ),
        write(
            files.path(),
            "bread.md",
            "# Bread\nThe sourdough bakes at 250 degrees in a covered pot.",
        ),
        write(
            files.path(),
            "trip.md",
            "# Lisbon\nWe ate custard tarts in Belém, still warm, with cinnamon.",
        ),
    ];
    let doppel = open(data.path());
    assert!(ingest(&doppel, &paths).iter().all(|j| j.state == JobState::Done));

    // No word in common with the passage: only meaning can find it.
    let results = search(&doppel, "Portuguese pastry on holiday", SearchMode::Vector);
    assert_eq!(results.mode, SearchMode::Vector);
    assert_eq!(results.note, None);
    assert_eq!(results.hits[0].source_title, "Lisbon", "{results:?}");
    assert_eq!(results.hits[0].retriever, Retriever::Vector);
    assert!(search(&doppel, "Portuguese pastry on holiday", SearchMode::Keyword).hits.is_empty());

    // Hybrid: a passage found both ways ranks first and says so.
    let results = search(&doppel, "when were the tomatoes planted", SearchMode::Hybrid);
    assert_eq!(results.hits[0].source_title, "Garden");
    assert_eq!(results.hits[0].retriever, Retriever::Hybrid);

    let report = doppel.doctor().unwrap();
    assert_eq!(report.model.as_ref().unwrap().dimension, 384);
    assert_eq!((report.index_entries, report.chunks_without_vectors), (3, 0));
}

#[test]
fn l3_without_a_model_search_falls_back_to_keywords_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let path = write(files.path(), "note.txt", "the heron waits by the pond");
    let doppel = Doppel::open(Config {
        models: Some(empty.path().to_path_buf()),
        ..Config::new(data.path())
    })
    .unwrap();
    ingest(&doppel, &[path]);
    let results = search(&doppel, "heron", SearchMode::Hybrid);
    assert_eq!(results.mode, SearchMode::Keyword);
    assert_eq!(results.hits.len(), 1);
    let note = results.note.unwrap();
    assert!(note.starts_with("embedding model unavailable: the model file"), "{note}");
    assert!(note.ends_with("is missing; showing keyword results only"), "{note}");
    let report = doppel.doctor().unwrap();
    assert!(report.model.unwrap_err().contains("is missing"));
    drop(doppel);

    // When the model arrives, the passages stored meanwhile get their vectors.
    let doppel = open(data.path());
    let events = doppel.subscribe();
    while doppel.doctor().unwrap().chunks_without_vectors > 0 {
        let _ = events.recv_timeout(std::time::Duration::from_secs(5));
    }
    assert_eq!(search(&doppel, "a bird standing near water", SearchMode::Vector).hits.len(), 1);
}

/// The FTS5 vocabulary entries among `terms` (what the keyword index still knows, whatever its
/// bytes look like).
fn fts_terms(data: &Path, terms: &[&str]) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        data.join(DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.execute_batch("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, chunks_fts, row);")
        .unwrap();
    let mut found = Vec::new();
    for term in terms {
        let n: i64 = db
            .query_row("SELECT count(*) FROM temp.vocab WHERE term = ?1", [term], |r| r.get(0))
            .unwrap();
        if n > 0 {
            found.push(term.to_string());
        }
    }
    found
}

#[test]
fn cr4_forget_leaves_no_bytes_of_text_or_vectors() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let keep =
        write(files.path(), "keep.md", "# Keep\nThe ordinary passage about gardening stays.");
    // Needles no stemmer changes (letters then digits), starting with letters no other word of
    // the index starts with, so that its prefix compression cannot split them.
    let gone = write(
        files.path(),
        "gone.md",
        "# Qhx2209 notes\nThe qzv4417 recipe must be forgotten entirely.",
    );
    let doppel = open(data.path());
    ingest(&doppel, &[keep, gone.clone()]);
    let source = doppel.find_source(DEFAULT_TWIN, gone.to_str().unwrap()).unwrap();
    let chunk = doppel.chunks(source.id).unwrap().remove(0);
    let vector: Vec<u8> = {
        let db = rusqlite::Connection::open_with_flags(
            data.path().join(DATABASE_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row(
            "SELECT vector FROM embeddings WHERE text_hash = ?1",
            [&chunk.text_hash],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(search(&doppel, "qzv4417 recipe", SearchMode::Hybrid).hits[0].source_id, source.id);
    let terms = ["qzv4417", "qhx2209"];
    assert_eq!(fts_terms(data.path(), &terms), terms, "the needles are indexed as written");
    let needles: [(&str, &[u8]); 4] = [
        ("text", b"qzv4417"),
        ("title", b"Qhx2209"),
        ("vector head", &vector[..32]),
        ("vector tail", &vector[vector.len() - 32..]),
    ];
    assert!(
        !common::files_holding(data.path(), &needles[..2]).is_empty(),
        "the scan finds the text before"
    );

    // Another thread reads all along; the handle stays open.
    let reading = std::sync::atomic::AtomicBool::new(true);
    // A failed assertion below stops the reader too: the scope would otherwise wait for it for
    // ever instead of reporting the failure.
    struct StopReader<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopReader<'_> {
        fn drop(&mut self) {
            self.0.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopReader(&reading);
        let reader = scope.spawn(|| {
            let mut searches = 0;
            while reading.load(std::sync::atomic::Ordering::Relaxed) || searches == 0 {
                search(&doppel, "ordinary gardening recipe", SearchMode::Hybrid);
                searches += 1;
            }
            searches
        });
        doppel.delete_source(source.id).unwrap();
        // Right after `delete` returns: the database, its log and the index file, every file.
        assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
        assert_eq!(fts_terms(data.path(), &terms), Vec::<String>::new());
        for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Keyword] {
            let hits = search(&doppel, "qzv4417 recipe forgotten", mode).hits;
            assert!(hits.iter().all(|h| h.source_id != source.id), "{mode:?}");
        }
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    drop(doppel);
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());

    // The index written again at shutdown still finds the passage that stayed.
    let doppel = open(data.path());
    let results = search(&doppel, "ordinary gardening", SearchMode::Vector);
    assert_eq!(results.hits[0].source_title, "Keep", "{results:?}");
}

#[test]
fn m1_the_search_candidate_list_applies_when_saved() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    assert_eq!(doppel.vector_status().ef_search, 128);
    doppel.set_setting("hnsw_ef_search", "300").unwrap();
    // The index searching now uses it, without a restart, and the check reports it.
    assert_eq!(doppel.vector_status().ef_search, 300);
    assert_eq!(doppel.doctor().unwrap().ef_search, 300);
    drop(doppel);
    assert_eq!(open(data.path()).vector_status().ef_search, 300);
}

#[test]
fn editing_one_paragraph_reembeds_only_the_changed_passages() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let sections: Vec<String> = (0..30)
        .map(|i| {
            format!("## Part {i}\nThis is paragraph number {i} of a long document about rivers.\n")
        })
        .collect();
    let path = write(files.path(), "long.md", &format!("# Rivers\n{}", sections.join("\n")));
    let doppel = open(data.path());
    let embedded = |doppel: &Doppel, path: &PathBuf| {
        let events = doppel.subscribe();
        ingest(doppel, std::slice::from_ref(path));
        events
            .try_iter()
            .filter_map(
                |e| if let Event::JobEmbedding { total, .. } = e { Some(total) } else { None },
            )
            .last()
    };
    assert_eq!(embedded(&doppel, &path), Some(31));
    let mut edited = sections.clone();
    edited[7] = "## Part 7\nThis paragraph was rewritten to speak of lakes instead.\n".into();
    std::fs::write(&path, format!("# Rivers\n{}", edited.join("\n"))).unwrap();
    assert_eq!(embedded(&doppel, &path), Some(1));
    assert_eq!(
        search(&doppel, "lakes", SearchMode::Hybrid).hits[0].location.label,
        "Rivers › Part 7"
    );
    let report = doppel.doctor().unwrap();
    assert_eq!((report.index_entries, report.chunks_without_vectors, report.chunks), (31, 0, 31));
}

#[test]
fn an_edited_file_is_found_by_meaning_right_after_the_edit() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let trip = write(files.path(), "trip.md", "# Lisbon\nWe took the old yellow tram up the hill.");
    let doppel = open(data.path());
    ingest(&doppel, std::slice::from_ref(&trip));
    std::fs::write(&trip, "# Lisbon\nWe ate custard tarts in Belém, still warm, with cinnamon.")
        .unwrap();
    // A long file queued behind the edit keeps the worker busy, so the index is not rebuilt
    // (which would hide a lost vector) before the search below.
    let filler: Vec<String> = (0..300)
        .map(|i| format!("## Part {i}\n{}\n", "Notes on the weather and the tides. ".repeat(30)))
        .collect();
    let long = write(files.path(), "long.md", &format!("# Log\n{}", filler.join("\n")));
    let report = doppel.ingest(IngestRequest::paths(vec![trip, long])).unwrap();
    let [edit, busy] = [report.queued[0].job_id, report.queued[1].job_id];
    doppel.wait_for(&[edit], |_| {}).unwrap();

    // No word in common with the passage: only its vector can find it.
    let results = search(&doppel, "Portuguese pastry on holiday", SearchMode::Vector);
    assert_eq!(
        results.hits.first().map(|h| h.source_title.as_str()),
        Some("Lisbon"),
        "{results:?}"
    );
    assert!(results.hits[0].text.contains("custard"));
    doppel.cancel_job(busy).unwrap();
}

#[test]
fn m6_a_stale_or_corrupt_index_is_rebuilt_from_the_stored_vectors() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let paths = [
        write(files.path(), "a.md", "# Owls\nOwls hunt at night."),
        write(files.path(), "b.md", "# Bees\nBees make honey in summer."),
    ];
    ingest(&open(data.path()), &paths);
    let index_dir = data.path().join(INDEX_DIR);
    let mut spoiled = 0;
    for file in common::walk(&index_dir) {
        if file.extension().is_some_and(|e| e == "hnsw") {
            std::fs::write(&file, b"garbage").unwrap();
            spoiled += 1;
        }
    }
    assert_eq!(spoiled, 1, "the index file is {INDEX_DIR}/<model>.hnsw");
    for round in ["garbage", "removed"] {
        let doppel = open(data.path());
        let report = doppel.doctor().unwrap();
        assert!(report.problems.is_empty(), "{round}: {:?}", report.problems);
        assert_eq!(report.index_entries, 2, "{round}");
        assert_eq!(
            search(&doppel, "nocturnal birds of prey", SearchMode::Vector).hits[0].source_title,
            "Owls",
            "{round}"
        );
        drop(doppel);
        // Next, the index file is gone altogether.
        for file in common::walk(&index_dir) {
            std::fs::remove_file(file).unwrap();
        }
    }
}

#[test]
fn cancelling_while_embedding_stops_between_batches_and_keeps_nothing() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let text: String = (0..2000)
        .map(|i| format!("Paragraph {i} describes a different meadow flower.\n\n"))
        .collect();
    let path = write(files.path(), "meadow.txt", &text);
    let doppel = open(data.path());
    let events = doppel.subscribe();
    let report = doppel.ingest(IngestRequest::paths(vec![path])).unwrap();
    let job = report.queued[0].job_id;
    loop {
        if let Event::JobEmbedding { job: j, .. } = events.recv().unwrap()
            && j == job
        {
            break;
        }
    }
    assert_eq!(doppel.cancel_job(job).unwrap().state, JobState::Cancelled);
    assert!(doppel.sources(DEFAULT_TWIN).unwrap().is_empty());
    let report = doppel.doctor().unwrap();
    assert_eq!((report.chunks, report.index_entries), (0, 0));
    let db = rusqlite::Connection::open_with_flags(
        data.path().join(DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let vectors: i64 = db.query_row("SELECT count(*) FROM embeddings", [], |r| r.get(0)).unwrap();
    assert_eq!(vectors, 0);
}

#[test]
fn m6_a_job_that_fails_after_indexing_leaves_no_entry_in_the_index() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // The fault lands mid-transaction, once the file's vectors are in the index.
    faults::panic_in_jobs_of("m6provisional");
    let paths = [
        write(files.path(), "m6provisional.md", "# Comets\nComets shed dust near the sun."),
        write(files.path(), "kept.md", "# Moss\nMoss grows on the north side of trees."),
    ];
    let doppel = open(data.path());
    let ended = ingest(&doppel, &paths);
    let failed = ended.iter().find(|j| j.origin.contains("m6provisional")).unwrap();
    assert_eq!(failed.state, JobState::Failed);
    // doctor compares the index with the stored vectors both ways.
    let report = doppel.doctor().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.index_entries, report.chunks);
    let hits = search(&doppel, "icy bodies orbiting the sun", SearchMode::Vector).hits;
    assert!(hits.iter().all(|h| h.source_title != "Comets"), "{hits:?}");
}

/// Makes the saved index stale, as a kill before its save does: its generation marker no
/// longer names the database's.
fn make_index_stale(data: &Path) {
    let mut markers = 0;
    for file in common::walk(&data.join(INDEX_DIR)) {
        if file.extension().is_some_and(|e| e == "generation") {
            std::fs::write(&file, "0").unwrap();
            markers += 1;
        }
    }
    assert_eq!(markers, 1, "the marker is {INDEX_DIR}/<model>.generation");
}

#[test]
fn h1_a_stale_index_is_rebuilt_while_searches_and_writes_go_on() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gone = write(files.path(), "owls.md", "# Owls\nOwls hunt mice at night in the barn.");
    let kept = write(files.path(), "garden.md", "# Garden\nThe tomatoes went in during May.");
    ingest(&open(data.path()), &[gone.clone(), kept]);
    make_index_stale(data.path());

    let marker = data.path().to_str().unwrap().to_string();
    faults::hold_rebuilds_of(&marker);
    let doppel = open(data.path());
    // The directory is open and the rebuild waits: search says so and answers by keywords.
    let rebuilding = doppel.vector_status().rebuilding;
    assert_eq!(rebuilding, Some((0, 2)));
    let results = search(&doppel, "tomatoes", SearchMode::Hybrid);
    assert_eq!(results.mode, SearchMode::Keyword);
    assert!(results.note.as_deref().unwrap_or("").contains("being rebuilt"), "{results:?}");
    assert_eq!(results.hits[0].source_title, "Garden");
    // Writes do not wait for it: a new note goes in, a source goes out.
    let trip = write(files.path(), "trip.md", "# Lisbon\nWe ate custard tarts in Belém.");
    assert_eq!(ingest(&doppel, &[trip])[0].state, JobState::Done);
    let owls = doppel.find_source(DEFAULT_TWIN, gone.to_str().unwrap()).unwrap();
    doppel.delete_source(owls.id).unwrap();
    assert!(doppel.vector_status().rebuilding.is_some(), "still held");

    faults::release_rebuilds_of(&marker);
    let status = doppel.wait_for_index(|_| {}).unwrap();
    // What happened meanwhile is in the rebuilt index: the new note, not the deleted one.
    assert_eq!((status.rebuilding, status.index_entries), (None, 2));
    let results = search(&doppel, "Portuguese pastry on holiday", SearchMode::Vector);
    assert_eq!(results.note, None);
    assert_eq!(results.hits[0].source_title, "Lisbon");
    let hits = search(&doppel, "nocturnal birds of prey", SearchMode::Vector).hits;
    assert!(hits.iter().all(|h| h.source_id != owls.id), "{hits:?}");
    let report = doppel.doctor().unwrap();
    let problems: Vec<&String> =
        report.problems.iter().filter(|p| !p.contains("models install-defaults")).collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report.index_entries, report.chunks);
}

#[test]
fn m1_a_new_graph_shape_is_built_beside_the_index_that_goes_on_serving() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let trip = write(files.path(), "trip.md", "# Lisbon\nWe ate custard tarts in Belém.");
    let doppel = open(data.path());
    ingest(&doppel, &[trip]);

    let marker = data.path().to_str().unwrap().to_string();
    faults::hold_rebuilds_of(&marker);
    doppel.set_setting("hnsw_m", "24").unwrap();
    assert_eq!(doppel.vector_status().rebuilding, Some((0, 1)));
    // The index in use answers meanwhile.
    let results = search(&doppel, "Portuguese pastry on holiday", SearchMode::Vector);
    assert_eq!((results.mode, results.note.clone()), (SearchMode::Vector, None));
    assert_eq!(results.hits[0].source_title, "Lisbon");

    faults::release_rebuilds_of(&marker);
    let status = doppel.wait_for_index(|_| {}).unwrap();
    assert_eq!((status.rebuilding, status.index_entries), (None, 1));
    assert_eq!(
        search(&doppel, "Portuguese pastry on holiday", SearchMode::Vector).hits[0].source_title,
        "Lisbon"
    );
}

#[test]
fn m6_doctor_finds_no_damage_after_a_keyword_search_and_a_delete() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let gone = write(files.path(), "owls.md", "# Owls\nOwls hunt mice at night in the barn.");
    let kept = write(files.path(), "garden.md", "# Garden\nThe tomatoes went in during May.");
    let doppel = open(data.path());
    ingest(&doppel, &[gone.clone(), kept]);
    // A pooled reader reads the keyword index, then a delete changes it: SQLite's integrity
    // check on that reader would report the index as malformed although it is whole.
    assert_eq!(search(&doppel, "tomatoes", SearchMode::Keyword).hits.len(), 1);
    let owls = doppel.find_source(DEFAULT_TWIN, gone.to_str().unwrap()).unwrap();
    doppel.delete_source(owls.id).unwrap();
    let report = doppel.doctor().unwrap();
    let problems: Vec<&String> =
        report.problems.iter().filter(|p| !p.contains("models install-defaults")).collect();
    assert!(problems.is_empty(), "{problems:?}");
}
