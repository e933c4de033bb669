//! H4, measured: 200 answers from a chat model server, and 30 from the real local model (whose
//! first token costs seconds in a debug build), cancelled at their first piece or abandoned in
//! the middle, leave the process's threads and memory where they were. One test in a binary of
//! its own, so that no other test's threads or memory are counted; the loopback server's own
//! threads are named and left out of the count.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::model_cache;
use doppel_core::chat::remote::ChatServer;
use doppel_core::chat::{AnswerMode, AskRequest, ChatModel, MessageState};
use doppel_core::*;

/// The names of the process's threads, sorted, the loopback server's left out.
fn threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|task| std::fs::read_to_string(task.path().join("comm")).unwrap_or_default())
        .map(|name| name.trim().to_string())
        .filter(|name| name != common::LOOPBACK_CHAT_THREAD)
        .collect();
    names.sort();
    names
}

/// The process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Asks once; `stop_after` pieces arrive before the answer is cancelled (as the window does
/// when its channel is gone).
fn ask_and_leave(doppel: &Doppel, stop_after: usize) {
    let cancel = AtomicBool::new(false);
    let mut pieces = 0;
    let mut request = AskRequest::new("When did the tomatoes go in?");
    request.options.max_tokens = 200;
    let answer = doppel
        .ask(&request, &cancel, &mut |_| {
            pieces += 1;
            if pieces >= stop_after {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(answer.message.state, MessageState::Cancelled);
}

/// A data directory whose twin knows one note, answering with `model` in model mode.
fn twin(data: &std::path::Path, models: std::path::PathBuf, model: ChatModel) -> Doppel {
    let doppel = Doppel::open(Config { models: Some(models), ..Config::new(data) }).unwrap();
    common::learn_garden_note(&doppel);
    doppel.set_chat_model(&model).unwrap();
    // The small local model answers itself only when asked to.
    doppel.set_answer_mode(AnswerMode::Model).unwrap();
    doppel
}

/// Threads and RSS before and after `rounds` asks (after `warm_up` more), even rounds cancelled
/// at the first piece, odd ones abandoned after `later` pieces.
fn measure(
    doppel: &Doppel,
    warm_up: usize,
    rounds: usize,
    later: usize,
) -> ((Vec<String>, u64), (Vec<String>, u64)) {
    for round in 0..warm_up {
        ask_and_leave(doppel, 1 + round % 2 * (later - 1));
    }
    let before = (threads(), rss_kib());
    for round in 0..rounds {
        ask_and_leave(doppel, 1 + round % 2 * (later - 1));
    }
    (before, (threads(), rss_kib()))
}

#[test]
fn h4_cancelled_and_abandoned_streams_leave_threads_and_memory_flat() {
    // A model server: the HTTP client, its runtime and SQLite's caches warm up first.
    let data = tempfile::tempdir().unwrap();
    let server =
        ChatServer::new(RemoteKind::OpenAi, &common::endless_chat_server(), "tiny").unwrap();
    let remote = twin(data.path(), data.path().join("no-models"), ChatModel::Remote(server));
    let ((threads_before, rss_before), (threads_after, rss_after)) = measure(&remote, 20, 200, 20);
    println!(
        "200 remote streams: threads {} -> {}, RSS {rss_before} KiB -> {rss_after} KiB",
        threads_before.len(),
        threads_after.len()
    );
    assert_eq!(threads_after, threads_before, "no thread left behind (names before, after)");
    // 200 stored answers grow the database's cache a little; a leaked stream per answer
    // (a connection, its buffers, a runtime) would cost far more than 8 MiB in all.
    assert!(rss_after < rss_before + 8 * 1024, "{rss_before} KiB -> {rss_after} KiB");
    let first = &remote.conversations(DEFAULT_TWIN).unwrap()[0].id;
    assert_eq!(remote.messages(first).unwrap().len(), 2);
    drop(remote);

    // The local model: its one generation thread stays loaded; nothing else may stay.
    let data = tempfile::tempdir().unwrap();
    let local = twin(data.path(), model_cache(), ChatModel::Local(None));
    let ((threads_before, rss_before), (threads_after, rss_after)) = measure(&local, 2, 30, 4);
    println!(
        "30 local streams: threads {} -> {}, RSS {rss_before} KiB -> {rss_after} KiB",
        threads_before.len(),
        threads_after.len()
    );
    assert_eq!(threads_after, threads_before, "no thread left behind (names before, after)");
    assert!(rss_after < rss_before + 16 * 1024, "{rss_before} KiB -> {rss_after} KiB");
}
