//! Asking the twin with the real local model (SmolLM2-135M-Instruct from the model cache) and
//! without one: streaming, stopping, citations, cancel, abandoned streams, idempotent
//! conversations, verified answers, and forgetting a cited source. The wording of answers is
//! never asserted, only what a person would notice: text arrives, it stops, it cites.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::model_cache;
use doppel_core::chat::{AnswerMode, AskRequest, ChatModel, Grounding, MessageState, Role};
use doppel_core::*;

/// A data directory with the real models, whose answers come from the default local model
/// itself (too small to be trusted, it answers only when asked to: `AnswerMode::Model`).
fn open(data: &Path) -> Doppel {
    let doppel = Doppel::open(Config { models: Some(model_cache()), ..Config::new(data) }).unwrap();
    doppel.set_answer_mode(AnswerMode::Model).unwrap();
    doppel
}

/// A data directory without any model: keyword search, extractive answers.
fn open_without_models(data: &Path) -> Doppel {
    let doppel =
        Doppel::open(Config { models: Some(data.join("no-models")), ..Config::new(data) }).unwrap();
    doppel.set_chat_model(&ChatModel::Off).unwrap();
    doppel
}

fn ingest_text(doppel: &Doppel, title: &str, text: &str) -> SourceId {
    let queued = doppel
        .add_text(TextRequest { twin: DEFAULT_TWIN, title: title.into(), text: text.into() })
        .unwrap();
    doppel.wait_for(&[queued.job_id], |_| {}).unwrap();
    queued.source_id
}

const GARDEN: &str = "# Garden\nI planted the tomatoes in May, after the last frost. The \
    basil went in beside them in June, and the peppers in a pot by the south wall.";

fn ask(doppel: &Doppel, question: &str, max_tokens: u32) -> (chat::Answer, Vec<String>) {
    let mut pieces = Vec::new();
    let mut request = AskRequest::new(question);
    request.options.max_tokens = max_tokens;
    let answer = doppel
        .ask(&request, &AtomicBool::new(false), &mut |piece| pieces.push(piece.to_string()))
        .unwrap();
    (answer, pieces)
}

#[test]
fn a_real_model_streams_an_answer_that_cites_its_passages() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    let garden = ingest_text(&doppel, "Garden notes", GARDEN);
    let (answer, pieces) = ask(&doppel, "When did I plant the tomatoes?", 48);
    let message = &answer.message;
    assert!(pieces.len() > 1, "streamed in pieces: {pieces:?}");
    assert_eq!(message.content, pieces.concat());
    assert!(!message.content.trim().is_empty());
    assert!(matches!(message.state, MessageState::Complete), "{message:?}");
    assert_eq!(message.grounding, Some(Grounding::Passages));
    assert!(message.model.as_deref().is_some_and(|m| m.ends_with(".gguf")), "{message:?}");
    assert!(!message.citations.is_empty());
    assert!(message.citations.iter().all(|c| c.source_id == Some(garden)));
    assert!(message.citations[0].quote.as_deref().is_some_and(|q| q.contains("tomatoes")));
    // Stored as streamed, after the question, in the conversation.
    let stored = doppel.messages(&answer.conversation).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (stored[0].role, stored[0].content.as_str()),
        (Role::User, "When did I plant the tomatoes?")
    );
    assert_eq!(&stored[1], message);
    // A follow-up continues the same conversation.
    let mut follow = AskRequest::new("And the basil?");
    follow.conversation = Some(answer.conversation.clone());
    follow.options.max_tokens = 16;
    let next = doppel.ask(&follow, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(next.conversation, answer.conversation);
    assert_eq!(doppel.messages(&answer.conversation).unwrap().len(), 4);
    assert_eq!(doppel.conversations(DEFAULT_TWIN).unwrap().len(), 1);
}

#[test]
fn cancel_stops_the_answer_and_keeps_what_arrived() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path());
    ingest_text(&doppel, "Garden notes", GARDEN);
    let cancel = AtomicBool::new(false);
    let mut pieces = Vec::new();
    let mut request = AskRequest::new("Tell me everything about my garden, in detail.");
    request.options.max_tokens = 400;
    let answer = doppel
        .ask(&request, &cancel, &mut |piece| {
            pieces.push(piece.to_string());
            if pieces.len() == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(answer.message.state, MessageState::Cancelled);
    assert_eq!(pieces.len(), 3, "no piece after the cancel: {pieces:?}");
    assert_eq!(answer.message.content, pieces.concat());
    // The model is free at once for the next question.
    let (next, _) = ask(&doppel, "When did I plant the tomatoes?", 8);
    assert_ne!(next.message.state, MessageState::Failed, "{:?}", next.message);
}

#[test]
fn h5_concurrent_first_messages_create_one_conversation() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open_without_models(data.path());
    ingest_text(&doppel, "Garden notes", GARDEN);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let request = AskRequest {
                    conversation: Some("kitchen-window-42".into()),
                    ..AskRequest::new("tomatoes")
                };
                doppel.ask(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
            });
        }
    });
    let conversations = doppel.conversations(DEFAULT_TWIN).unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].id, "kitchen-window-42");
    assert_eq!(doppel.messages("kitchen-window-42").unwrap().len(), 8);
    let bad = AskRequest { conversation: Some("../etc".into()), ..AskRequest::new("tomatoes") };
    let error = doppel.ask(&bad, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert_eq!(error.code(), "invalid_input");
}

#[test]
fn without_a_model_the_answer_is_the_passages_own_sentences_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open_without_models(data.path());
    let garden = ingest_text(&doppel, "Garden notes", GARDEN);
    let (answer, pieces) = ask(&doppel, "tomatoes frost", 64);
    assert_eq!(answer.message.grounding, Some(Grounding::Grounded));
    assert_eq!(answer.message.state, MessageState::Complete);
    assert!(answer.message.content.contains("last frost"));
    // Sentences, each cited: not a dump of passages.
    assert!(answer.message.content.ends_with("[1]"), "{}", answer.message.content);
    assert!(!answer.message.content.contains("passages are the closest"));
    assert_eq!(pieces.concat(), answer.message.content);
    assert!(answer.notes.iter().any(|n| n.contains("no language model")), "{:?}", answer.notes);
    assert_eq!(answer.message.citations[0].source_id, Some(garden));
    // Nothing matches: the persona's own words, without a model.
    let (none, _) = ask(&doppel, "zeppelin", 64);
    assert_eq!(none.message.grounding, Some(Grounding::NotCovered));
    assert_eq!(none.message.content, doppel.persona(DEFAULT_TWIN).unwrap().not_covered);
}

#[test]
fn a_verified_answer_is_the_primary_context_for_its_question() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open_without_models(data.path());
    ingest_text(&doppel, "Garden notes", GARDEN);
    let (first, _) = ask(&doppel, "When were the tomatoes planted?", 64);
    let id = doppel
        .verify_message(&first.conversation, first.message.id, Some("In May, after the frost."))
        .unwrap();
    assert!(doppel.messages(&first.conversation).unwrap()[1].verified);
    assert_eq!(doppel.verified_answers(DEFAULT_TWIN).unwrap()[0].id, id);
    let (again, _) = ask(&doppel, "when were the tomatoes planted", 64);
    assert_eq!(again.message.grounding, Some(Grounding::Verified));
    assert!(again.message.verified);
    assert_eq!(again.message.content, "In May, after the frost.");
    doppel.delete_verified(id).unwrap();
    assert!(doppel.verified_answers(DEFAULT_TWIN).unwrap().is_empty());
}

#[test]
fn forgetting_a_cited_source_leaves_its_citation_as_source_deleted() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open_without_models(data.path());
    let secret = ingest_text(&doppel, "Secret", "The quokkamarker recipe must be forgotten.");
    ingest_text(&doppel, "Garden notes", GARDEN);
    let (answer, _) = ask(&doppel, "quokkamarker recipe", 64);
    assert_eq!(answer.message.citations[0].source_id, Some(secret));
    assert_eq!(answer.message.citations[0].source_title, "Secret");
    doppel.delete_source(secret).unwrap();
    let stored = doppel.messages(&answer.conversation).unwrap();
    let citation = &stored[1].citations[0];
    assert_eq!((citation.quote.as_deref(), citation.chunk_id), (None, None));
    // Nothing from the document stays: not its title, not where the passage was.
    assert_eq!((citation.source_title.as_str(), citation.location.as_str()), ("", ""));
    let markdown = doppel.export_conversation(&answer.conversation).unwrap();
    assert!(markdown.contains("1. source deleted"), "{markdown}");
    assert!(!markdown.contains("Secret"), "{markdown}");
    drop(doppel);
    // Only the question keeps the word; the passage's own words are gone from every file.
    let needles: [(&str, &[u8]); 1] = [("passage text", b"must be forgotten")];
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
}

const SECRET: &str = "The vault code qz41 sits under the blue tile qz42 by the kitchen sink.";

#[test]
fn cr4_forgetting_a_source_reaches_the_verified_answers_drawn_from_it() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open_without_models(data.path());
    let secret = ingest_text(&doppel, "Vault", SECRET);
    ingest_text(&doppel, "Garden notes", GARDEN);
    // Approved as it was: drawn from the source's passage.
    let (first, _) = ask(&doppel, "where is the vault code qz41", 64);
    assert!(first.message.content.contains("blue tile qz42"), "{:?}", first.message);
    let drawn = doppel.verify_message(&first.conversation, first.message.id, None).unwrap();
    // Typed by the owner, repeating the passage's words, and one of the owner's own.
    let typed = doppel
        .verify(
            DEFAULT_TWIN,
            "my favourite hiding place",
            "Remember: the blue tile qz42 by the kitchen sink, as I said.",
            None,
        )
        .unwrap();
    let own = doppel.verify(DEFAULT_TWIN, "favourite colour", "Blue, always blue.", None).unwrap();
    // An answer given the typed verified answer (and no passage) repeats it.
    let (given, _) = ask(&doppel, "my favourite hiding place", 64);
    assert_eq!(given.message.grounding, Some(Grounding::Verified));
    assert!(given.message.content.contains("qz42"));

    doppel.delete_source(secret).unwrap();

    let verified = doppel.verified_answers(DEFAULT_TWIN).unwrap();
    let ids: Vec<i64> = verified.iter().map(|v| v.id).collect();
    assert!(!ids.contains(&drawn), "a verified answer drawn from the source is gone: {verified:?}");
    let scrubbed = verified.iter().find(|v| v.id == typed).unwrap();
    assert_eq!(scrubbed.answer, "Remember: […], as I said.");
    assert_eq!(verified.iter().find(|v| v.id == own).unwrap().answer, "Blue, always blue.");
    let given = doppel.messages(&given.conversation).unwrap().pop().unwrap();
    assert_eq!(given.content, "Remember: […], as I said.");
    // The forgotten answer is neither offered nor repeated.
    let (again, _) = ask(&doppel, "where is the vault code qz41", 64);
    assert_ne!(again.message.grounding, Some(Grounding::Verified), "{:?}", again.message);
    assert!(!again.message.content.contains("qz42"), "{:?}", again.message);
    drop(doppel);
    let needles: [(&str, &[u8]); 1] = [("secret", b"blue tile qz42")];
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
}

#[test]
fn an_imported_gguf_becomes_the_chat_model_and_other_files_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let doppel = Doppel::open(Config {
        models: Some(cache.path().to_path_buf()),
        ..Config::new(data.path())
    })
    .unwrap();
    assert!(doppel.chat_models().unwrap().is_empty());
    let mut seen = 0;
    let source = model_cache().join(doppel_core::bench::DEFAULT_CHAT_MODEL);
    let imported =
        doppel.import_chat_model(&source, &AtomicBool::new(false), &mut |p| seen = p.done).unwrap();
    assert_eq!(seen, std::fs::metadata(&source).unwrap().len());
    assert_eq!(doppel.chat_models().unwrap(), std::slice::from_ref(&imported));
    doppel.set_chat_model(&ChatModel::Local(Some(imported.clone()))).unwrap();
    assert_eq!(doppel.chat_model().unwrap(), ChatModel::Local(Some(imported)));
    let text = data.path().join("notes.gguf");
    std::fs::write(&text, "not a model").unwrap();
    let refused =
        doppel.import_chat_model(&text, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert_eq!(refused.code(), "unsupported_format");
    let missing = doppel.set_chat_model(&ChatModel::Local(Some(data.path().join("none.gguf"))));
    assert_eq!(missing.unwrap_err().code(), "invalid_input");
    let remote_key = doppel.set_chat_api_key("sk-1234");
    assert_eq!(remote_key.unwrap_err().code(), "invalid_input", "a local model needs no key");
}

#[test]
fn cr4_editing_a_paragraph_out_of_a_file_forgets_it_as_deleting_the_file_would() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let doppel = open_without_models(data.path());
    let note = files.path().join("house.md");
    let ingest = |text: &str| {
        std::fs::write(&note, text).unwrap();
        let report = doppel.ingest(IngestRequest::paths(vec![note.clone()])).unwrap();
        let ids: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
        doppel.wait_for(&ids, |_| {}).unwrap();
    };
    let kept = "The garden gate is painted green and squeaks when the wind blows from the west.";
    let secret = "The old vault opens with the code vk4417 written behind the kitchen map.";
    ingest(&format!("# House\n\n{kept}\n\n{secret}\n"));
    let (vault, _) = ask(&doppel, "vault code", 64);
    assert!(vault.message.content.contains("vk4417"), "{:?}", vault.message.content);
    let (gate, _) = ask(&doppel, "garden gate colour", 64);
    assert!(gate.message.content.contains("painted green"), "{:?}", gate.message.content);

    ingest(&format!("# House\n\n{kept}\n"));
    let vault = doppel.messages(&vault.conversation).unwrap().remove(1);
    assert!(
        !vault.content.contains("vk4417"),
        "the edited-out words are gone: {:?}",
        vault.content
    );
    let citation = &vault.citations[0];
    assert_eq!(citation.quote, None, "the removed passage is not quoted");
    assert_eq!(citation.source_title, "House", "the source is still there");
    // Words the file still holds stay in the answers that quoted them.
    let gate = doppel.messages(&gate.conversation).unwrap().remove(1);
    assert!(gate.content.contains("painted green and squeaks"), "{:?}", gate.content);
    // Right after the edit, with the handle open: no file holds the removed words, and keyword
    // search no longer knows them.
    let needles: [(&str, &[u8]); 1] = [("answer", b"vk4417")];
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
    let hits = doppel.search(&SearchRequest::new("vk4417")).unwrap().hits;
    assert!(hits.is_empty(), "{hits:?}");
}
