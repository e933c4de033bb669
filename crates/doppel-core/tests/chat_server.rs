//! Asking the twin through chat model servers: real HTTP servers on loopback that speak the
//! Ollama (`/api/chat`, NDJSON) and OpenAI (`/v1/chat/completions`, SSE) protocols. One streams,
//! one hangs before its first byte, one stalls in the middle of its answer, one answers 500, one
//! sends malformed chunks. Every ask ends in bounded time with a clear reason, and the stored
//! message says how it ended, with the pieces that did arrive.
//!
//! No local model is used here: the data directory has no model files, so search is by keywords.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Request, read_request};
use doppel_core::chat::remote::ChatServer;
use doppel_core::chat::{AskRequest, ChatModel, MessageState};
use doppel_core::*;
use serde_json::{Value, json};

/// What the server does with a request.
#[derive(Clone)]
enum Reply {
    /// A 200 whose body is these pieces, written one at a time, then the connection closes.
    Stream(Vec<String>),
    /// These pieces, then silence with the connection held open.
    Stall(Vec<String>),
    /// Nothing at all, with the connection held open.
    Hang,
    /// A status and a JSON body.
    Status(u16, Value),
}

/// Serves `reply` to every request on a loopback port; returns the base URL and the requests.
fn serve(reply: Reply) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (reply, log) = (reply.clone(), Arc::clone(&log));
            std::thread::spawn(move || {
                let Some(request) = read_request(&stream) else { return };
                log.lock().unwrap().push(request);
                answer(stream, reply);
            });
        }
    });
    (base, seen)
}

fn answer(mut stream: TcpStream, reply: Reply) {
    // Holds a connection open and silent well past any timeout under test; the client closes it.
    let hold = || std::thread::sleep(Duration::from_secs(30));
    match reply {
        Reply::Status(status, body) => {
            let body = body.to_string();
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
        }
        Reply::Hang => hold(),
        Reply::Stream(ref pieces) | Reply::Stall(ref pieces) => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes());
            for piece in pieces {
                let _ = stream.write_all(piece.as_bytes());
                let _ = stream.flush();
            }
            if matches!(reply, Reply::Stall(_)) {
                hold();
            }
        }
    }
}

/// Ollama's NDJSON lines for `words`, ending with `done`.
fn ollama_lines(words: &[&str], done: bool) -> Vec<String> {
    let mut lines: Vec<String> = words
        .iter()
        .map(|w| {
            let line = json!({"model": "tiny", "message": {"role": "assistant", "content": w}, "done": false});
            format!("{line}\n")
        })
        .collect();
    if done {
        lines.push(format!("{}\n", json!({"model": "tiny", "done": true, "done_reason": "stop"})));
    }
    lines
}

/// OpenAI's SSE events for `words`, ending with `[DONE]`.
fn openai_events(words: &[&str], done: bool) -> Vec<String> {
    let mut events: Vec<String> = words
        .iter()
        .map(|w| {
            format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": w}}]}))
        })
        .collect();
    if done {
        events.push(format!(
            "data: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ));
    }
    events
}

/// A data directory without local models, whose twin knows one note, answering through `url`.
fn open(data: &Path, kind: RemoteKind, url: &str) -> Doppel {
    let config = Config { models: Some(data.join("no-models")), ..Config::new(data) };
    let doppel = Doppel::open(config).unwrap();
    for (key, value) in [("chat_timeout_s", "1"), ("chat_idle_s", "1"), ("embed_retries", "1")] {
        doppel.set_setting(key, value).unwrap();
    }
    common::learn_garden_note(&doppel);
    let server = ChatServer::new(kind, url, "tiny").unwrap();
    doppel.set_chat_model(&ChatModel::Remote(server)).unwrap();
    doppel
}

fn ask(doppel: &Doppel) -> (chat::Answer, String) {
    let mut streamed = String::new();
    let answer = doppel
        .ask(
            &AskRequest::new("When did the tomatoes go in?"),
            &AtomicBool::new(false),
            &mut |piece| streamed.push_str(piece),
        )
        .unwrap();
    (answer, streamed)
}

/// The answer as stored, read back from the conversation.
fn stored(doppel: &Doppel, answer: &chat::Answer) -> chat::Message {
    let messages = doppel.messages(&answer.conversation).unwrap();
    assert_eq!(messages.len(), 2, "the question and the answer are stored");
    messages.into_iter().find(|m| m.id == answer.message.id).unwrap()
}

#[test]
fn both_protocols_stream_an_answer_that_cites_the_passage_it_was_given() {
    for (kind, path, pieces) in [
        (
            RemoteKind::Ollama,
            "/api/chat",
            ollama_lines(&["In May", ", after", " the frost [1]."], true),
        ),
        (
            RemoteKind::OpenAi,
            "/v1/chat/completions",
            openai_events(&["In May", ", after", " the frost [1]."], true),
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let (url, seen) = serve(Reply::Stream(pieces));
        let doppel = open(data.path(), kind, &url);
        let (answer, streamed) = ask(&doppel);

        assert_eq!(streamed, "In May, after the frost [1].");
        let message = stored(&doppel, &answer);
        assert_eq!(message.state, MessageState::Complete, "{kind:?}: {:?}", message.error);
        assert_eq!(message.content, streamed);
        assert_eq!(message.model, Some(format!("tiny ({url})")));
        assert_eq!(message.citations.len(), 1);
        assert_eq!(message.citations[0].source_title, "Garden notes");

        let requests = seen.lock().unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, path);
        assert_eq!(requests[0].authorization, None, "no key is stored, so none is sent");
        assert_eq!(requests[0].body["stream"], json!(true));
        let prompt = requests[0].body["messages"].to_string();
        assert!(prompt.contains("<passage n=\\\"1\\\""), "the passage is quoted: {prompt}");
        assert!(prompt.contains("When did the tomatoes go in?"));
    }
}

#[test]
fn a_server_that_never_answers_fails_the_answer_after_the_first_token_timeout() {
    for kind in [RemoteKind::Ollama, RemoteKind::OpenAi] {
        let data = tempfile::tempdir().unwrap();
        let (url, seen) = serve(Reply::Hang);
        let doppel = open(data.path(), kind, &url);
        let (answer, streamed) = ask(&doppel);

        assert_eq!(streamed, "");
        let message = stored(&doppel, &answer);
        assert_eq!(message.state, MessageState::Failed);
        let error = message.error.unwrap();
        assert!(error.contains("no answer within 1 s"), "{kind:?}: {error}");
        assert_eq!(seen.lock().unwrap().len(), 1, "a timeout is not retried");
    }
}

#[test]
fn a_server_that_stalls_mid_answer_keeps_the_pieces_that_arrived() {
    for (kind, pieces) in [
        (RemoteKind::Ollama, ollama_lines(&["In May", ", after"], false)),
        (RemoteKind::OpenAi, openai_events(&["In May", ", after"], false)),
    ] {
        let data = tempfile::tempdir().unwrap();
        let (url, _) = serve(Reply::Stall(pieces));
        let doppel = open(data.path(), kind, &url);
        let (answer, streamed) = ask(&doppel);

        assert_eq!(streamed, "In May, after");
        let message = stored(&doppel, &answer);
        assert_eq!(message.state, MessageState::Failed);
        assert_eq!(message.content, "In May, after", "the partial answer is kept");
        let error = message.error.unwrap();
        assert!(error.contains("stalled"), "{kind:?}: {error}");
    }
}

#[test]
fn server_errors_are_retried_before_the_first_token_then_fail_with_the_servers_words() {
    for kind in [RemoteKind::Ollama, RemoteKind::OpenAi] {
        let data = tempfile::tempdir().unwrap();
        let (url, seen) = serve(Reply::Status(500, json!({"error": "model crashed"})));
        let doppel = open(data.path(), kind, &url);
        let (answer, _) = ask(&doppel);

        let message = stored(&doppel, &answer);
        assert_eq!(message.state, MessageState::Failed);
        let error = message.error.unwrap();
        assert!(error.contains("500") && error.contains("model crashed"), "{kind:?}: {error}");
        assert_eq!(seen.lock().unwrap().len(), 2, "one try and embed_retries (1) more");
    }
}

#[test]
fn malformed_chunks_end_the_answer_with_a_clear_error() {
    for (kind, pieces) in [
        (
            RemoteKind::Ollama,
            vec![ollama_lines(&["In May"], false).remove(0), "{not json\n".into()],
        ),
        (
            RemoteKind::OpenAi,
            vec![openai_events(&["In May"], false).remove(0), "data: {not json\n\n".into()],
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let (url, _) = serve(Reply::Stream(pieces));
        let doppel = open(data.path(), kind, &url);
        let (answer, _) = ask(&doppel);

        let message = stored(&doppel, &answer);
        assert_eq!(message.state, MessageState::Failed);
        assert_eq!(message.content, "In May");
        let error = message.error.unwrap();
        assert!(error.contains("malformed"), "{kind:?}: {error}");

        // The next question goes on, without the server.
        doppel.set_chat_model(&ChatModel::Off).unwrap();
        let (next, streamed) = ask(&doppel);
        assert_eq!(next.message.state, MessageState::Complete);
        assert!(streamed.contains("tomatoes"), "a grounded answer: {streamed}");
    }
}

/// Asks through a server that streams `words` (Ollama's protocol).
fn ask_a_model_that_says(words: &[&str]) -> (chat::Message, chat::Answer, String) {
    let data = tempfile::tempdir().unwrap();
    let (url, _) = serve(Reply::Stream(ollama_lines(words, true)));
    let doppel = open(data.path(), RemoteKind::Ollama, &url);
    let (answer, streamed) = ask(&doppel);
    (stored(&doppel, &answer), answer, streamed)
}

/// The grounded answer to "When did the tomatoes go in?" from the garden note.
const GROUNDED: &str = "The tomatoes went in during May, after the last frost. [1]";

#[test]
fn an_answer_that_invents_a_path_and_a_date_is_replaced_by_the_passages_own_sentence() {
    let invented = "They went in on 12 March 1984, as the file /etc/garden.d/1042 says [1].";
    let (message, answer, streamed) = ask_a_model_that_says(&[invented]);
    assert_eq!(streamed, invented, "the model's words were streamed as they came");
    assert_eq!(message.content, GROUNDED, "what is stored and shown is grounded");
    assert_eq!(message.grounding, Some(chat::Grounding::Grounded));
    assert_eq!(message.draft.as_deref(), Some(invented), "the model's text is kept aside");
    let note = message.draft_note.unwrap();
    assert!(note.contains("stated facts that its passages do not"), "{note}");
    assert!(answer.notes.iter().any(|n| n == &note), "{:?}", answer.notes);
    assert_eq!(message.citations[0].source_title, "Garden notes");
}

#[test]
fn an_answer_that_refuses_although_passages_were_found_is_replaced_too() {
    let refusal =
        ["The passage is from the garden journal. ", "I'm not able to access your document."];
    let (message, _, _) = ask_a_model_that_says(&refusal);
    assert_eq!(message.content, GROUNDED);
    assert!(message.draft_note.unwrap().contains("declined"));
}

#[test]
fn prompt_markup_never_reaches_the_answer_and_a_loop_is_stopped() {
    let leaky = ["In May [1].", "</pass", "age>\n", "<passage n=\"2\">", " <|im_end|>"];
    let (message, _, streamed) = ask_a_model_that_says(&leaky);
    assert_eq!(message.content, "In May [1].");
    assert!(!streamed.contains('<'), "{streamed}");

    let looping = vec!["In May [1]. "; 12];
    let (message, _, _) = ask_a_model_that_says(&looping);
    assert_eq!(message.state, MessageState::Complete, "a stopped loop is a finished answer");
    assert!(message.content.matches("In May").count() <= 2, "{}", message.content);
}

#[test]
fn a_sentence_with_a_fact_no_passage_holds_is_marked_unsupported() {
    let words = [
        "The tomatoes went in during May [1]. ",
        "That was after the last frost [1]. ",
        "My neighbour Bob helped on 3 June [1].",
    ];
    let (message, _, _) = ask_a_model_that_says(&words);
    assert_eq!(message.content, words.concat(), "most of it is supported: it is shown");
    assert_eq!(message.draft, None);
    assert_eq!(message.unsupported.len(), 1, "{:?}", message.unsupported);
    assert_eq!(message.unsupported[0].sentence, "My neighbour Bob helped on 3 June [1].");
    assert_eq!(message.unsupported[0].facts, vec!["Bob", "3", "June"]);
}

#[test]
fn the_api_key_comes_from_the_keychain_and_goes_only_to_its_server() {
    let data = tempfile::tempdir().unwrap();
    let (url, seen) = serve(Reply::Stream(openai_events(&["In May [1]."], true)));
    let doppel = open(data.path(), RemoteKind::OpenAi, &url);
    let key = "sk-chat-test-3f9a1c";
    doppel.set_chat_api_key(key).unwrap();
    let (answer, _) = ask(&doppel);

    assert_eq!(answer.message.state, MessageState::Complete);
    assert_eq!(seen.lock().unwrap()[0].authorization.as_deref(), Some(&*format!("Bearer {key}")));
    drop(doppel);
    let needles: [(&str, &[u8]); 1] = [("key", key.as_bytes())];
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
}

#[test]
fn forgetting_a_source_takes_its_words_out_of_a_model_answer_that_repeated_them() {
    let data = tempfile::tempdir().unwrap();
    let words = ["You wrote: the tomatoes went in ", "during May, after the last frost [1]."];
    let (url, _) = serve(Reply::Stream(ollama_lines(&words, true)));
    let doppel = open(data.path(), RemoteKind::Ollama, &url);
    let (answer, _) = ask(&doppel);
    assert_eq!(answer.message.content, words.concat());

    let source = doppel.sources(DEFAULT_TWIN).unwrap()[0].id;
    doppel.delete_source(source).unwrap();
    let message = stored(&doppel, &answer);
    assert_eq!(message.content, "You wrote: […] [1].");
    assert_eq!(message.citations[0].quote, None);
    drop(doppel);
    let needles: [(&str, &[u8]); 1] = [("echo", b"during May, after the last frost")];
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
}

#[test]
fn cr4_an_answer_that_echoed_a_passage_it_did_not_cite_is_scrubbed_too() {
    let data = tempfile::tempdir().unwrap();
    let doppel = open(data.path(), RemoteKind::Ollama, "http://127.0.0.1:9");
    let seeds = doppel
        .add_text(TextRequest {
            twin: DEFAULT_TWIN,
            title: "Seed list".into(),
            text: "Tomatoes from the seed swap: two kinds, both early.".into(),
        })
        .unwrap();
    doppel.wait_for(&[seeds.job_id], |_| {}).unwrap();
    let question = "When did the tomatoes go in?";
    let hits = doppel.search(&SearchRequest::new(question)).unwrap().hits;
    assert_eq!(hits.len(), 2, "both notes are given to the model: {hits:?}");
    let garden = hits.iter().position(|h| h.source_title == "Garden notes").unwrap();
    let garden_source = hits[garden].source_id;
    // It repeats the garden note's words but cites only the seed list.
    let cite = format!("[{}]", 2 - garden);
    let words = [
        "Noted: the tomatoes went in during May, after the last frost. ",
        "Two kinds, both early ",
        &cite,
        ". They came from the swap ",
        &cite,
        ".",
    ];
    let (url, _) = serve(Reply::Stream(ollama_lines(&words, true)));
    let server = ChatServer::new(RemoteKind::Ollama, &url, "tiny").unwrap();
    doppel.set_chat_model(&ChatModel::Remote(server)).unwrap();
    let (answer, _) = ask(&doppel);
    assert_eq!(answer.message.content, words.concat());
    assert_eq!(answer.message.citations.len(), 1);
    assert_eq!(answer.message.citations[0].source_id, Some(seeds.source_id));

    doppel.delete_source(garden_source).unwrap();
    let message = stored(&doppel, &answer);
    assert_eq!(
        message.content,
        format!("Noted: […]. Two kinds, both early {cite}. They came from the swap {cite}.")
    );
    assert!(message.citations[0].quote.is_some(), "the seed list is still cited");
    drop(doppel);
    let needles: [(&str, &[u8]); 1] = [("echo", b"during May, after the last frost")];
    assert_eq!(common::files_holding(data.path(), &needles), Vec::<String>::new());
}
