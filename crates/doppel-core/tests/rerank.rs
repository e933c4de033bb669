//! Reranking search results through a model server (`POST /v1/rerank`, as llama.cpp's server,
//! Jina and Cohere speak it), against real HTTP servers on loopback: one that reranks, one
//! that hangs, one that trickles its answer, ones that fail, and ones that answer with indexes
//! that do not fit. Whatever the server does, search answers in bounded time, keeps its own
//! order and says why. The API key lives in the real OS keychain (the tests run under
//! `dbus-run-session` with GNOME Keyring, as `scripts/test` sets up).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use common::{Answer, Handler, Request, serve};
use doppel_core::chat::{AnswerMode, AskRequest, Grounding};
use doppel_core::*;
use serde_json::{Value, json};

const NOTES: [(&str, &str); 3] = [
    ("Garden", "The tomatoes went into the garden beds in May, after the last frost."),
    ("Bread", "Sourdough bread for the garden party bakes at 250 degrees in a covered pot."),
    ("Boat", "The garden shed holds the boat's oars and the spare sail over winter."),
];

/// A data directory without a local model (keywords only, fast) holding the three notes.
fn open(data: &Path) -> Doppel {
    let doppel =
        Doppel::open(Config { models: Some(data.join("no-local-model")), ..Config::new(data) })
            .unwrap();
    for (key, value) in [("rerank_timeout_s", "1"), ("rerank_retries", "1")] {
        doppel.set_setting(key, value).unwrap();
    }
    for (title, text) in NOTES {
        let queued = doppel
            .add_text(TextRequest { twin: DEFAULT_TWIN, title: title.into(), text: text.into() })
            .unwrap();
        doppel.wait_for(&[queued.job_id], |_| {}).unwrap();
    }
    doppel
}

fn search(doppel: &Doppel) -> SearchResults {
    let request = SearchRequest { mode: SearchMode::Keyword, ..SearchRequest::new("garden") };
    doppel.search(&request).unwrap()
}

fn titles(results: &SearchResults) -> Vec<String> {
    results.hits.iter().map(|h| h.source_title.clone()).collect()
}

fn documents(request: &Request) -> Vec<String> {
    request.body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// A reranker that puts the passages mentioning `word` first, the others in reverse order.
fn prefers(word: &'static str) -> Handler {
    Arc::new(move |request| {
        assert_eq!(request.path, "/v1/rerank");
        let documents = documents(request);
        let results: Vec<Value> = documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let score = if d.contains(word) { 10.0 } else { i as f64 };
                json!({ "index": i, "relevance_score": score })
            })
            .collect();
        Answer::Json(200, json!({ "model": request.body["model"], "results": results }))
    })
}

fn keychain_lookup(url: &str) -> Option<String> {
    let out = std::process::Command::new("secret-tool")
        .args(["lookup", "service", KEYCHAIN_SERVICE, "username", &keychain_account(url)])
        .output()
        .expect("secret-tool (libsecret-tools) is installed by scripts/setup");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_reranking_server_reorders_search_results_with_the_key_from_the_keychain() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    let unranked = search(&doppel);
    assert_eq!(unranked.hits.len(), 3, "{unranked:?}");
    assert_eq!(doppel.reranker().unwrap(), RerankerChoice::Off);

    let (url, seen) = serve(prefers("oars"));
    let choice = RerankerChoice::server(&url, "bge-reranker-v2-m3").unwrap();
    doppel.set_reranker(&choice).unwrap();
    assert_eq!(doppel.reranker().unwrap(), choice);
    let reranked = search(&doppel);
    assert_eq!(reranked.note, None, "{reranked:?}");
    assert_eq!(reranked.hits[0].source_title, "Boat", "the server's best comes first");
    assert_eq!(titles(&reranked).len(), 3, "reranking only reorders");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.body["model"], "bge-reranker-v2-m3");
        assert_eq!(request.body["query"], "garden");
        assert_eq!(request.body["top_n"], 3);
        assert_eq!(request.authorization, None, "no key was stored");
        // Each passage goes with its title, as the reranker cannot tell what it is about
        // from its text alone.
        let sent = documents(request);
        let boat = sent.iter().find(|d| d.contains("oars")).unwrap();
        assert!(boat.starts_with("Boat"), "{boat:?}");
    }

    // The key goes to the keychain, and from there to this server only.
    doppel.set_reranker_api_key("sk-rerank-0123456789abcd").unwrap();
    assert_eq!(keychain_lookup(&url).as_deref(), Some("sk-rerank-0123456789abcd"));
    assert_eq!(doppel.reranker_api_key_hint().unwrap().as_deref(), Some("••••abcd"));
    search(&doppel);
    let authorization = seen.lock().unwrap().last().unwrap().authorization.clone();
    assert_eq!(authorization.as_deref(), Some("Bearer sk-rerank-0123456789abcd"));
    let files = common::files_holding(data.path(), &[("key", b"sk-rerank-0123456789abcd")]);
    assert!(files.is_empty(), "the key is in no file: {files:?}");
    assert!(doppel.delete_reranker_api_key().unwrap());
    assert_eq!(keychain_lookup(&url), None);

    // Answers are drawn from reranked passages too.
    let question = "Where in the garden are the oars of the boat kept?";
    let request = AskRequest { mode: Some(AnswerMode::Grounded), ..AskRequest::new(question) };
    let answer = doppel.ask(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(answer.message.grounding, Some(Grounding::Grounded), "{answer:?}");
    assert_eq!(seen.lock().unwrap().last().unwrap().body["query"], question);

    doppel.set_reranker(&RerankerChoice::Off).unwrap();
    let requests = seen.lock().unwrap().len();
    assert_eq!(titles(&search(&doppel)), titles(&unranked), "off is the fused order again");
    assert_eq!(seen.lock().unwrap().len(), requests, "and nothing is sent");
}

#[test]
fn a_server_that_hangs_trickles_fails_or_sends_bad_indexes_leaves_the_order_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    let unranked = titles(&search(&doppel));
    let results = |indexes: Value| json!({ "results": indexes });
    let cases: Vec<(&str, Answer, &str)> = vec![
        ("hangs", Answer::Hang, "no answer within 1 s"),
        ("trickles", Answer::Trickle(results(json!([]))), "did not arrive within 1 s"),
        ("fails", Answer::Json(500, json!({"error": "model not loaded"})), "500"),
        ("refuses", Answer::Json(401, json!({"error": "bad key"})), "doppel reranker key"),
        (
            "sends an index out of range",
            Answer::Json(200, results(json!([{"index": 7, "relevance_score": 1.0}]))),
            "index 7 is out of range for 3 passages",
        ),
        (
            "repeats an index",
            Answer::Json(
                200,
                results(json!([
                    {"index": 1, "relevance_score": 1.0},
                    {"index": 1, "relevance_score": 0.5}
                ])),
            ),
            "index 1 is repeated",
        ),
        (
            "sends no scores",
            Answer::Json(200, results(json!([{"index": 0, "relevance_score": "high"}]))),
            "without a finite score",
        ),
        ("sends something else", Answer::Json(200, json!({"ok": true})), "no \"results\" list"),
    ];
    for (what, answer, reason) in cases {
        let answer = std::sync::Mutex::new(Some(answer));
        let (url, seen) = serve(Arc::new(move |_| {
            answer.lock().unwrap().take().unwrap_or(Answer::Json(500, json!({"error": "again"})))
        }));
        doppel.set_reranker(&RerankerChoice::server(&url, "reranker").unwrap()).unwrap();
        let results = search(&doppel);
        assert_eq!(titles(&results), unranked, "a server that {what}: the order stays");
        let note = results.note.unwrap_or_default();
        assert!(
            note.contains(&format!("reranking server {url}")) && note.contains(reason),
            "a server that {what}: {note:?}"
        );
        assert!(note.ends_with("the results keep their order without reranking"), "{note}");
        // Only refused connections, 429 and 5xx are tried again, once (rerank_retries).
        let tries = if what == "fails" { 2 } else { 1 };
        assert_eq!(seen.lock().unwrap().len(), tries, "a server that {what}");
    }

    // An answer still comes, and says why its passages were not reranked.
    let (url, _) = serve(Arc::new(|_| Answer::Hang));
    doppel.set_reranker(&RerankerChoice::server(&url, "reranker").unwrap()).unwrap();
    let request = AskRequest {
        mode: Some(AnswerMode::Grounded),
        ..AskRequest::new("When did the tomatoes go into the garden?")
    };
    let answer = doppel.ask(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(answer.message.content.contains("May"), "{answer:?}");
    assert!(answer.notes.iter().any(|n| n.contains("without reranking")), "{:?}", answer.notes);
}

#[test]
fn m1_rerank_retries_apply_when_saved() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    let (url, seen) = serve(Arc::new(|_| Answer::Json(503, json!({"error": "busy"}))));
    doppel.set_reranker(&RerankerChoice::server(&url, "reranker").unwrap()).unwrap();
    doppel.set_setting("rerank_retries", "3").unwrap();
    assert!(search(&doppel).note.unwrap().contains("503"));
    assert_eq!(seen.lock().unwrap().len(), 4, "one try and three more");
    doppel.set_setting("rerank_retries", "0").unwrap();
    search(&doppel);
    assert_eq!(seen.lock().unwrap().len(), 5, "one try only");
    assert_eq!(doppel.set_setting("rerank_retries", "6").unwrap_err().code(), "invalid_setting");
}
