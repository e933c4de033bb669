//! Grounded answers on real documents: pages of the Debian Administrator's Handbook (the
//! `debian-handbook` package), the real embedding model and the default chat model from the
//! model cache (`$DOPPEL_MODEL_CACHE`). The default model is too small to be trusted, so the
//! answers are the pages' own sentences, and each must state the page's command or path.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::model_cache;
use doppel_core::chat::{AnswerMode, AskRequest, Grounding};
use doppel_core::*;

const HANDBOOK: &str = "/usr/share/doc/debian-handbook/html/en-US";

/// Pages the questions are about, and some others to make retrieval choose.
const PAGES: &[&str] = &[
    "sect.apparmor.html",
    "sect.selinux.html",
    "sect.supervision.html",
    "sect.task-scheduling-cron-atd.html",
    "sect.creating-accounts.html",
    "sect.user-group-databases.html",
    "sect.syslog.html",
    "sect.quotas.html",
];

fn ask(doppel: &Doppel, question: &str) -> chat::Answer {
    let mut streamed = String::new();
    let answer = doppel
        .ask(&AskRequest::new(question), &AtomicBool::new(false), &mut |p| streamed.push_str(p))
        .unwrap();
    assert_eq!(streamed, answer.message.content, "the grounded answer is what was streamed");
    answer
}

#[test]
fn the_default_model_answers_handbook_questions_with_the_pages_own_sentences() {
    let dir = Path::new(HANDBOOK);
    assert!(dir.is_dir(), "install the debian-handbook package (.ci/run does)");
    let data = tempfile::tempdir().unwrap();
    let doppel =
        Doppel::open(Config { models: Some(model_cache()), ..Config::new(data.path()) }).unwrap();
    let paths: Vec<PathBuf> = PAGES.iter().map(|p| dir.join(p)).collect();
    let report = doppel.ingest(IngestRequest::paths(paths)).unwrap();
    let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&ids, |_| {}).unwrap();

    let cases = [
        (
            "Where on disk are the per-program confinement rules kept?",
            "sect.apparmor.html",
            "/etc/apparmor.d",
        ),
        (
            "Which tool e-mails the administrator about unusual lines in the system logs?",
            "sect.supervision.html",
            "logcheck",
        ),
        (
            "Which directory's contents are copied into the home of a newly created user?",
            "sect.creating-accounts.html",
            "/etc/skel",
        ),
        (
            "I queued a one-off command for later; how do I list the pending ones?",
            "sect.task-scheduling-cron-atd.html",
            "atq",
        ),
    ];
    for (question, page, key) in cases {
        let answer = ask(&doppel, question);
        let m = &answer.message;
        assert_eq!(m.grounding, Some(Grounding::Grounded), "{question}: {m:?}");
        assert_eq!(m.model, None, "no model wrote it");
        assert!(m.content.contains(key), "{question} → {:?}", m.content);
        assert!(
            answer.notes.iter().any(|n| n.contains("too small to answer reliably")),
            "the note says why: {:?}",
            answer.notes
        );
        // Every sentence is cited, and the citation names the page's file.
        assert!(m.content.trim_end().ends_with(']'), "{:?}", m.content);
        let cited =
            m.citations.iter().any(|c| c.origin.as_deref().is_some_and(|o| o.ends_with(page)));
        assert!(cited, "{question}: {m:?}");
        assert!(m.unsupported.is_empty());
    }

    let lasagna = ask(&doppel, "What's a good recipe for vegetable lasagna with ricotta?");
    assert_eq!(lasagna.message.grounding, Some(Grounding::NotCovered), "{:?}", lasagna.message);
    assert_eq!(lasagna.message.content, doppel.persona(DEFAULT_TWIN).unwrap().not_covered);

    // Asked for, the small model answers itself, and its answer is checked.
    let request = AskRequest {
        mode: Some(AnswerMode::Model),
        ..AskRequest::new("Which tool e-mails the administrator about unusual log lines?")
    };
    let answer = doppel.ask(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(answer.message.model.is_some() || answer.message.draft.is_some(), "{answer:?}");
    assert!(!answer.message.content.contains("</passage>"));
}
