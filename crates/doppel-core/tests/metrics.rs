//! Local metrics checked against known work: real handbook pages learnt with the real model,
//! three files that fail on purpose, two answers cancelled and a few searches. What `stats`
//! says must match what happened, as the events and measurements this test observes tell it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::model_cache;
use doppel_core::chat::remote::ChatServer;
use doppel_core::chat::{AnswerMode, AskRequest, ChatModel, MessageState};
use doppel_core::metrics::{Metric, percentile};
use doppel_core::*;

fn handbook_pages(dir: &Path, count: usize) {
    let source = Path::new("/usr/share/doc/debian-handbook/html/en-US");
    assert!(source.is_dir(), "install the debian-handbook package (.ci/run does)");
    let mut pages: Vec<_> = std::fs::read_dir(source)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "html") && p.is_file())
        .collect();
    pages.sort();
    for page in pages.iter().filter(|p| p.to_string_lossy().contains("sect.")).take(count) {
        std::fs::copy(page, dir.join(page.file_name().unwrap())).unwrap();
    }
}

#[test]
fn metrics_match_the_jobs_failures_answers_and_searches_that_happened() {
    let data = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    handbook_pages(docs.path(), 12);
    // Three files that fail on purpose, each with the reason "malformed".
    std::fs::write(docs.path().join("letter.pdf"), b"%PDF-1.4 torn").unwrap();
    std::fs::write(docs.path().join("report.docx"), b"PK not a zip at all").unwrap();
    std::fs::write(docs.path().join("book.epub"), b"not an e-book").unwrap();

    let doppel =
        Doppel::open(Config { models: Some(model_cache()), ..Config::new(data.path()) }).unwrap();
    let measured = doppel.measurements();
    let queued = doppel.ingest(IngestRequest::paths(vec![docs.path().to_path_buf()])).unwrap();
    let ids: Vec<JobId> = queued.queued.iter().map(|q| q.job_id).collect();
    assert_eq!(ids.len(), 15);
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut passages = 0;
    let jobs = doppel
        .wait_for(&ids, |event| match event {
            Event::JobFailed { code, .. } => *failures.entry(code.clone()).or_default() += 1,
            Event::JobDone { chunks, .. } => passages += chunks,
            _ => {}
        })
        .unwrap();
    assert_eq!(jobs.iter().filter(|j| j.state == JobState::Failed).count(), 3);
    assert_eq!(failures, BTreeMap::from([("malformed".to_string(), 3)]));

    // Two answers from a model server, each cancelled at its first piece.
    let server =
        ChatServer::new(RemoteKind::OpenAi, &common::endless_chat_server(), "tiny").unwrap();
    doppel.set_chat_model(&ChatModel::Remote(server)).unwrap();
    doppel.set_answer_mode(AnswerMode::Model).unwrap();
    for _ in 0..2 {
        let cancel = AtomicBool::new(false);
        let request = AskRequest::new("How do I install a package?");
        let answer = doppel.ask(&request, &cancel, &mut |_| cancel.store(true, Ordering::Relaxed));
        assert_eq!(answer.unwrap().message.state, MessageState::Cancelled);
    }
    for query in ["install packages", "network configuration", "mail server"] {
        doppel.search(&SearchRequest::new(query)).unwrap();
    }

    let stats = doppel.stats(1).unwrap();
    let seen: Vec<_> = measured.try_iter().collect();
    let values = |metric: Metric, label: &str| {
        let mut v: Vec<f64> = seen
            .iter()
            .filter(|m| m.metric == metric && m.label == label)
            .map(|m| m.value)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };

    // Jobs: one time per file, by format, with the percentiles of the times observed.
    let html = values(Metric::JobTime, "html");
    assert_eq!(html.len(), 12);
    let summary = stats.summary(Metric::JobTime, "html").unwrap();
    assert_eq!(summary.count, 12);
    assert_eq!(
        (summary.p50, summary.p95, summary.p99),
        (percentile(&html, 50.0), percentile(&html, 95.0), percentile(&html, 99.0))
    );
    for format in ["pdf", "docx", "epub"] {
        assert_eq!(stats.summary(Metric::JobTime, format).map(|s| s.count), Some(1), "{format}");
    }
    assert_eq!(stats.summary(Metric::JobPassages, "html").unwrap().sum, passages as f64);
    assert!(stats.per_second(Metric::JobPassages, Metric::JobTime, "html").unwrap() > 0.0);
    // Failures by code, as the events said.
    let by_code: BTreeMap<String, u64> =
        stats.of(Metric::JobFailed).map(|s| (s.label.clone(), s.count)).collect();
    assert_eq!(by_code, failures);
    // Embedding: every batch the local model ran.
    let batches = values(Metric::EmbedPassages, "local");
    assert!(!batches.is_empty());
    assert_eq!(
        stats.summary(Metric::EmbedPassages, "local").unwrap().sum,
        batches.iter().sum::<f64>()
    );
    // Answers: two cancelled, each with its first piece; none replaced.
    assert_eq!(stats.total(Metric::AnswerCancelled), 2.0);
    assert_eq!(stats.summary(Metric::FirstPiece, "model").unwrap().count, 2);
    assert_eq!(stats.total(Metric::AnswerUnsupported), 0.0);
    // Searches: the three asked, and the answers' own.
    let searches: u64 = stats.of(Metric::SearchTime).map(|s| s.count).sum();
    assert_eq!(searches as usize, seen.iter().filter(|m| m.metric == Metric::SearchTime).count());
    assert!(searches >= 3);
    // Peak memory was measured for every job.
    assert_eq!(stats.summary(Metric::JobPeakMemory, "ingest_file").unwrap().count, 15);
    // Health: the index agrees with the database, with an entry per passage.
    let health = &stats.health;
    assert_eq!(health.agreement, Ok(()));
    assert_eq!(health.index_entries, health.passages);
    assert!(health.index_memory_bytes > 0 && health.database_bytes > 0);
    assert_eq!(health.queued_jobs, 0);

    // The same figures after a restart: they were written to the database.
    drop(doppel);
    let doppel =
        Doppel::open(Config { models: Some(model_cache()), ..Config::new(data.path()) }).unwrap();
    let again = doppel.stats(1).unwrap();
    assert_eq!(again.summary(Metric::JobTime, "html"), stats.summary(Metric::JobTime, "html"));
    assert_eq!(again.total(Metric::AnswerCancelled), 2.0);
    assert_eq!(again.hours.iter().map(|h| h.jobs).sum::<u64>(), 15);
    assert_eq!(again.hours.iter().map(|h| h.failures).sum::<u64>(), 3);
}

#[test]
fn no_metric_is_recorded_when_they_are_turned_off() {
    let data = tempfile::tempdir().unwrap();
    let doppel = Doppel::open(Config::new(data.path())).unwrap();
    doppel.set_setting("metrics_days", "0").unwrap();
    common::learn_garden_note(&doppel);
    doppel.search(&SearchRequest::new("tomatoes")).unwrap();
    let stats = doppel.stats(1).unwrap();
    assert_eq!(stats.keep_days, 0);
    assert!(stats.summaries.is_empty(), "{:?}", stats.summaries);
}
