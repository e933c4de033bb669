//! Embeddings from model servers, against real HTTP servers on loopback that speak the Ollama
//! and OpenAI protocols: one that embeds, one that hangs, one that errors, one that changes its
//! dimension, one that a test holds back. The API key lives in the real OS keychain (the tests
//! run under `dbus-run-session` with GNOME Keyring, as `scripts/test` sets up).
//!
//! The servers embed by hashing words into buckets: texts that share words get close vectors,
//! which is all that search by meaning needs to be tested end to end.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Answer, Handler, Request, serve};
use doppel_core::*;
use serde_json::{Value, json};

impl Request {
    fn texts(&self) -> Vec<String> {
        self.body["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }
}

/// Words hashed into `dimension` buckets.
fn bag_of_words(text: &str, dimension: usize) -> Vec<f32> {
    let mut vector = vec![0.0; dimension];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
        vector[hash as usize % dimension] += 1.0;
    }
    vector[dimension - 1] += 0.01;
    vector
}

/// An Ollama server that embeds every text with `dimension` buckets.
fn ollama(dimension: Arc<AtomicUsize>) -> Handler {
    Arc::new(move |request| {
        assert_eq!(request.path, "/api/embed");
        let dimension = dimension.load(Ordering::SeqCst);
        let vectors: Vec<Vec<f32>> =
            request.texts().iter().map(|t| bag_of_words(t, dimension)).collect();
        Answer::Json(200, json!({ "model": request.body["model"], "embeddings": vectors }))
    })
}

fn open(data: &Path) -> Doppel {
    let doppel = Doppel::open(Config {
        // No local model: only the server can embed.
        models: Some(data.join("no-local-model")),
        ..Config::new(data)
    })
    .unwrap();
    for (key, value) in [("max_attempts", "1"), ("embed_timeout_s", "1"), ("embed_retries", "2")] {
        doppel.set_setting(key, value).unwrap();
    }
    doppel
}

fn use_server(doppel: &Doppel, kind: RemoteKind, url: &str, model: &str) {
    doppel.set_embedder(EmbedderChoice::remote(kind, url, model).unwrap()).unwrap();
}

fn add(doppel: &Doppel, title: &str, text: &str) -> Job {
    let queued = doppel
        .add_text(TextRequest { twin: DEFAULT_TWIN, title: title.into(), text: text.into() })
        .unwrap();
    doppel.wait_for(&[queued.job_id], |_| {}).unwrap().remove(0)
}

fn search(doppel: &Doppel, query: &str, mode: SearchMode) -> SearchResults {
    doppel.search(&SearchRequest { mode, ..SearchRequest::new(query) }).unwrap()
}

const GARDEN: &str = "The tomatoes went into the garden beds in May, after the last frost.";
const BREAD: &str = "Sourdough bread bakes at 250 degrees in a covered cast iron pot.";

fn keychain_lookup(url: &str) -> Option<String> {
    let out = std::process::Command::new("secret-tool")
        .args(["lookup", "service", KEYCHAIN_SERVICE, "username", &keychain_account(url)])
        .output()
        .expect("secret-tool (libsecret-tools) is installed by scripts/setup");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn an_ollama_server_embeds_passages_and_queries_with_the_key_from_the_keychain() {
    let data = tempfile::tempdir().unwrap();
    let (url, seen) = serve(ollama(Arc::new(AtomicUsize::new(64))));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &url, "words-64");
    let key = "sk-doppel-test-7f3a9c21e4b8";
    doppel.set_api_key(key).unwrap();
    assert_eq!(keychain_lookup(&url).as_deref(), Some(key), "the key is in the OS keychain");
    assert_eq!(doppel.api_key_hint().unwrap().as_deref(), Some("••••e4b8"));

    assert_eq!(add(&doppel, "Garden", GARDEN).state, JobState::Done);
    assert_eq!(add(&doppel, "Bread", BREAD).state, JobState::Done);
    let results = search(&doppel, "when did the tomatoes go in after frost", SearchMode::Vector);
    assert_eq!(results.mode, SearchMode::Vector);
    assert_eq!(results.note, None);
    assert_eq!(results.hits[0].source_title, "Garden");
    assert_eq!(results.hits[0].retriever, Retriever::Vector);

    // A question that shares one word with a passage but not its meaning finds nothing, so
    // that an answer can say the documents do not cover it; keyword mode still shows the word.
    let unrelated = "frost statistics for Mongolia: population, capital city, economy, history";
    assert!(search(&doppel, unrelated, SearchMode::Hybrid).hits.is_empty());
    assert_eq!(search(&doppel, unrelated, SearchMode::Keyword).hits.len(), 1);
    assert_eq!(search(&doppel, "garden frost", SearchMode::Hybrid).hits.len(), 1);

    let report = doppel.doctor().unwrap();
    let model = report.model.unwrap();
    assert_eq!(model.dimension, 64);
    assert!(model.name.contains("words-64"), "{}", model.name);
    assert_eq!(report.chunks_without_vectors, 0);
    let requests = seen.lock().unwrap().clone();
    assert!(requests.len() >= 3, "probe, two passages and a query: {requests:?}");
    for request in &requests {
        assert_eq!(request.authorization.as_deref(), Some(&*format!("Bearer {key}")));
        assert_eq!(request.body["model"], "words-64");
    }
    drop(doppel);

    // The key is in the keychain only: no file of the data directory holds it.
    assert_eq!(
        common::files_holding(data.path(), &[("key", key.as_bytes())]),
        Vec::<String>::new()
    );
    let doppel = open(data.path());
    assert!(doppel.delete_api_key().unwrap());
    assert_eq!(keychain_lookup(&url), None);
    assert_eq!(doppel.api_key_hint().unwrap(), None);
}

#[test]
fn a_passage_is_embedded_with_its_title_so_that_a_question_naming_the_title_finds_it() {
    let data = tempfile::tempdir().unwrap();
    let dimension = Arc::new(AtomicUsize::new(64));
    let (url, seen) = serve(ollama(dimension));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &url, "words-64");
    assert_eq!(add(&doppel, "Allotment diary", GARDEN).state, JobState::Done);
    assert_eq!(add(&doppel, "Bread", BREAD).state, JobState::Done);
    let embedded = |seen: &Mutex<Vec<Request>>| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(Request::texts)
            .filter(|t| t.contains("tomatoes"))
            .collect()
    };
    assert_eq!(embedded(&seen), [format!("Allotment diary\n{GARDEN}")]);
    // The passage never says "allotment" or "diary"; its title does, and so search by meaning
    // finds it.
    let results = search(&doppel, "my allotment diary", SearchMode::Vector);
    assert_eq!(results.mode, SearchMode::Vector);
    assert_eq!(results.hits.first().map(|h| h.source_title.as_str()), Some("Allotment diary"));

    // A new model embeds the stored passages again the same way.
    seen.lock().unwrap().clear();
    use_server(&doppel, RemoteKind::Ollama, &url, "words-64b");
    assert_eq!(doppel.wait_for_vectors(|_| {}).unwrap().waiting, 0);
    assert_eq!(embedded(&seen), [format!("Allotment diary\n{GARDEN}")]);
    let results = search(&doppel, "my allotment diary", SearchMode::Vector);
    assert_eq!(results.hits.first().map(|h| h.source_title.as_str()), Some("Allotment diary"));
}

#[test]
fn an_openai_server_may_answer_out_of_order_and_gets_no_key_when_none_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let (url, seen) = serve(Arc::new(|request: &Request| {
        assert_eq!(request.path, "/v1/embeddings");
        let mut data: Vec<Value> = request
            .texts()
            .iter()
            .enumerate()
            .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": bag_of_words(t, 32) }))
            .collect();
        data.reverse();
        Answer::Json(200, json!({ "object": "list", "data": data }))
    }));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::OpenAi, &format!("{url}/v1"), "words-32");
    // Both passages embed in one request, answered in reverse order.
    let text = format!("{GARDEN}\n\n{}", BREAD.repeat(40));
    assert_eq!(add(&doppel, "Notes", &text).state, JobState::Done);
    let results = search(&doppel, "tomatoes garden frost", SearchMode::Vector);
    assert!(results.hits[0].snippet.contains("tomatoes"), "{results:?}");
    assert!(seen.lock().unwrap().iter().all(|r| r.authorization.is_none()));
}

#[test]
fn a_server_that_hangs_fails_the_job_after_its_timeout_and_the_worker_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let (hanging, _) = serve(Arc::new(|_: &Request| Answer::Hang));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &hanging, "slow");

    let job = add(&doppel, "Garden", GARDEN);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.last_error_code.as_deref(), Some("embedding_server"));
    let message = job.last_error.unwrap();
    assert!(message.contains("no answer within 1 s"), "{message}");

    // Search does not wait for the server either: it says why and uses keywords.
    let results = search(&doppel, "tomatoes", SearchMode::Hybrid);
    assert_eq!(results.mode, SearchMode::Keyword);
    assert!(results.note.unwrap().contains("not been reached"));

    // The worker is free: another server takes over and the next job is done.
    let (working, _) = serve(ollama(Arc::new(AtomicUsize::new(16))));
    use_server(&doppel, RemoteKind::Ollama, &working, "words-16");
    assert_eq!(add(&doppel, "Bread", BREAD).state, JobState::Done);
}

#[test]
fn h2_a_server_that_trickles_its_answer_fails_the_job_after_its_timeout() {
    let data = tempfile::tempdir().unwrap();
    let (trickling, _) = serve(Arc::new(|request: &Request| {
        let vectors: Vec<Vec<f32>> = request.texts().iter().map(|t| bag_of_words(t, 8)).collect();
        Answer::Trickle(json!({ "embeddings": vectors }))
    }));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &trickling, "trickle");

    let job = add(&doppel, "Garden", GARDEN);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.last_error_code.as_deref(), Some("embedding_server"));
    let message = job.last_error.unwrap();
    assert!(message.contains("did not arrive within 1 s"), "{message}");

    // The worker is free again: another server takes over and the next job is done.
    let (working, _) = serve(ollama(Arc::new(AtomicUsize::new(16))));
    use_server(&doppel, RemoteKind::Ollama, &working, "words-16");
    assert_eq!(add(&doppel, "Bread", BREAD).state, JobState::Done);
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times_then_fail_clearly() {
    let data = tempfile::tempdir().unwrap();
    let (failing, seen) =
        serve(Arc::new(|_: &Request| Answer::Json(500, json!({ "error": "model is overloaded" }))));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &failing, "busy");
    let job = add(&doppel, "Garden", GARDEN);
    assert_eq!(job.state, JobState::Failed);
    let message = job.last_error.unwrap();
    assert!(message.contains("500") && message.contains("model is overloaded"), "{message}");
    // One try and `embed_retries` (2) more.
    assert_eq!(seen.lock().unwrap().len(), 3);

    // A refused key is not retried, and the message says what to do.
    let (refusing, seen) = serve(Arc::new(|_: &Request| {
        Answer::Json(401, json!({ "error": { "message": "invalid api key" } }))
    }));
    use_server(&doppel, RemoteKind::OpenAi, &refusing, "any");
    let job = add(&doppel, "Bread", BREAD);
    let message = job.last_error.unwrap();
    assert!(message.contains("invalid api key") && message.contains("API key"), "{message}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // Re-embedding for a server that fails stops with the reason instead of waiting forever.
    let (working, _) = serve(ollama(Arc::new(AtomicUsize::new(16))));
    use_server(&doppel, RemoteKind::Ollama, &working, "words-16");
    assert_eq!(add(&doppel, "Bread", BREAD).state, JobState::Done);
    use_server(&doppel, RemoteKind::Ollama, &failing, "busy");
    let error = doppel.wait_for_vectors(|_| {}).unwrap_err();
    assert!(error.to_string().contains("model is overloaded"), "{error}");
    assert_eq!(search(&doppel, "sourdough", SearchMode::Hybrid).mode, SearchMode::Keyword);
}

#[test]
fn m1_the_embedding_timeout_and_retries_apply_when_saved_to_a_loaded_server() {
    let data = tempfile::tempdir().unwrap();
    let (failing, seen) =
        serve(Arc::new(|_: &Request| Answer::Json(503, json!({ "error": "loading" }))));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &failing, "busy");
    // The server is in use with 2 retries; none from now on, without a restart.
    doppel.set_setting("embed_retries", "0").unwrap();
    assert_eq!(add(&doppel, "Garden", GARDEN).state, JobState::Failed);
    assert_eq!(seen.lock().unwrap().len(), 1, "a retry that the saved setting ruled out");

    let (hanging, _) = serve(Arc::new(|_: &Request| Answer::Hang));
    use_server(&doppel, RemoteKind::Ollama, &hanging, "slow");
    doppel.set_setting("embed_timeout_s", "2").unwrap();
    let message = add(&doppel, "Bread", BREAD).last_error.unwrap();
    assert!(message.contains("no answer within 2 s"), "{message}");
}

#[test]
fn a_vector_of_the_wrong_dimension_is_refused_and_nothing_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let dimension = Arc::new(AtomicUsize::new(16));
    let (url, _) = serve(ollama(Arc::clone(&dimension)));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &url, "shifty");
    assert_eq!(add(&doppel, "Garden", GARDEN).state, JobState::Done);

    // The server now runs another model under the same name.
    dimension.store(24, Ordering::SeqCst);
    let job = add(&doppel, "Bread", BREAD);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.last_error_code.as_deref(), Some("embedding_server"));
    let message = job.last_error.unwrap();
    assert!(message.contains("24 dimensions") && message.contains("makes 16"), "{message}");
    let bread = doppel.source(job.source_id.unwrap()).unwrap();
    assert_eq!(bread.chunk_count, 0);
    assert!(doppel.chunks(bread.id).unwrap().is_empty());
    assert!(search(&doppel, "sourdough", SearchMode::Keyword).hits.is_empty());
    let report = doppel.doctor().unwrap();
    assert_eq!(report.model.unwrap().dimension, 16);
    assert_eq!(report.index_entries, 1);
    // This data directory has no chat model file; doctor says so, and nothing else.
    let others: Vec<&String> =
        report.problems.iter().filter(|p| !p.contains("models install-defaults")).collect();
    assert!(others.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_new_model_re_embeds_every_passage_with_progress_and_keywords_answer_meanwhile() {
    let data = tempfile::tempdir().unwrap();
    // The server holds back the first batch for "words-48" (after its dimension probe) until
    // the test releases it.
    let (arrived, batch_arrived): (Sender<()>, Receiver<()>) = channel();
    let (release, released) = channel::<()>();
    let gate = Arc::new(Mutex::new(Some((arrived, released))));
    let (url, _) = serve(Arc::new(move |request: &Request| {
        let model = request.body["model"].as_str().unwrap().to_string();
        let texts = request.texts();
        if model == "words-48"
            && texts != ["dimension probe"]
            && let Some((arrived, released)) = gate.lock().unwrap().take()
        {
            arrived.send(()).unwrap();
            released.recv_timeout(Duration::from_secs(20)).unwrap();
        }
        let dimension = if model == "words-48" { 48 } else { 32 };
        let vectors: Vec<Vec<f32>> = texts.iter().map(|t| bag_of_words(t, dimension)).collect();
        Answer::Json(200, json!({ "embeddings": vectors }))
    }));
    let doppel = open(data.path());
    use_server(&doppel, RemoteKind::Ollama, &url, "words-32");
    let garden = add(&doppel, "Garden", GARDEN);
    assert_eq!(add(&doppel, "Bread", BREAD).state, JobState::Done);
    let events = doppel.subscribe();

    use_server(&doppel, RemoteKind::Ollama, &url, "words-48");
    batch_arrived.recv_timeout(Duration::from_secs(20)).unwrap();
    // Re-embedding is under way: searches use keywords and say why.
    let results = search(&doppel, "tomatoes frost", SearchMode::Hybrid);
    assert_eq!(results.mode, SearchMode::Keyword);
    assert!(results.note.unwrap().contains("2 still waiting"));
    let status = doppel.vector_status();
    assert_eq!(status.model.as_ref().unwrap().dimension, 48);
    assert_eq!((status.waiting, status.index_entries), (2, 0));

    release.send(()).unwrap();
    let mut progress = Vec::new();
    let status = doppel
        .wait_for_vectors(|event| {
            if let Event::Backfill { remaining, .. } = event {
                progress.push(*remaining)
            }
        })
        .unwrap();
    assert_eq!((status.waiting, status.index_entries), (0, 2));
    let announced: Vec<u64> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::Backfill { remaining, .. } => Some(remaining),
            _ => None,
        })
        .collect();
    assert_eq!(announced.last(), Some(&0), "progress ends at zero: {announced:?} {progress:?}");
    let results = search(&doppel, "tomatoes frost", SearchMode::Vector);
    assert_eq!(results.mode, SearchMode::Vector);
    assert_eq!(results.hits[0].source_title, "Garden");
    let report = doppel.doctor().unwrap();
    assert_eq!((report.index_entries, report.chunks_without_vectors), (2, 0));
    assert_eq!(report.other_models.len(), 1);
    assert!(report.other_models[0].0.name.contains("words-32"));
    assert_eq!(report.other_models[0].1, 2, "the old model's vectors are kept apart");

    // Forgetting a source also drops the index file of the earlier model, which held its vector.
    doppel.delete_source(garden.source_id.unwrap()).unwrap();
    let fingerprint = doppel.doctor().unwrap().model.unwrap().fingerprint;
    for entry in std::fs::read_dir(data.path().join(INDEX_DIR)).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with(&fingerprint), "{name} is left from another model");
    }
}

#[test]
fn h1_search_by_meaning_answers_while_the_worker_waits_on_a_slow_server() {
    let data = tempfile::tempdir().unwrap();
    // The server holds back the batch of one passage until the test lets it go, and says
    // when it has it; every other request it answers at once.
    let (arrived, batch_arrived) = channel::<()>();
    let (release, released_by_test) = channel::<()>();
    let (arrived, released_by_test) = (Mutex::new(arrived), Mutex::new(released_by_test));
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held_answered = Arc::clone(&answered);
    let (url, _) = serve(Arc::new(move |request: &Request| {
        let texts = request.texts();
        if texts.iter().any(|t| t.contains("Sourdough")) {
            arrived.lock().unwrap().send(()).unwrap();
            released_by_test.lock().unwrap().recv().unwrap();
            held_answered.store(true, Ordering::SeqCst);
        }
        let vectors: Vec<Vec<f32>> = texts.iter().map(|t| bag_of_words(t, 16)).collect();
        Answer::Json(200, json!({ "embeddings": vectors }))
    }));
    let doppel = open(data.path());
    doppel.set_setting("embed_timeout_s", "60").unwrap();
    use_server(&doppel, RemoteKind::Ollama, &url, "words-16");
    assert_eq!(add(&doppel, "Garden", GARDEN).state, JobState::Done);

    let bread = doppel
        .add_text(TextRequest { twin: DEFAULT_TWIN, title: "Bread".into(), text: BREAD.into() })
        .unwrap();
    batch_arrived.recv().unwrap();
    // The worker waits for the server's answer to its batch; a search by meaning does not.
    let results = search(&doppel, "tomatoes garden frost", SearchMode::Vector);
    assert_eq!((results.mode, results.note.clone()), (SearchMode::Vector, None));
    assert_eq!(results.hits[0].source_title, "Garden");
    // Had it waited, the batch would have been answered, or have failed by its timeout.
    assert!(!answered.load(Ordering::SeqCst), "the search waited for the worker's batch");
    assert_eq!(doppel.job(bread.job_id).unwrap().state, JobState::Running);

    release.send(()).unwrap();
    let job = doppel.wait_for(&[bread.job_id], |_| {}).unwrap().remove(0);
    assert_eq!(job.state, JobState::Done, "{:?}", job.last_error);
}
