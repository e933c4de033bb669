//! Backups and restores of a real twin: handbook pages learnt with the real embedding model,
//! conversations, verified answers and a persona. What a person would notice is compared before
//! and after: the same sources, the same search results, the same conversations. Damaged and
//! wrongly opened backups fail clearly and change nothing; older databases restore migrated,
//! newer ones are refused.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::model_cache;
use doppel_core::backup::{BackupRequest, Progress, RestoreRequest, Stage};
use doppel_core::chat::prompt::Persona;
use doppel_core::chat::{AskRequest, ChatModel, Conversation, Message};
use doppel_core::*;

const HANDBOOK: &str = "/usr/share/doc/debian-handbook/html/en-US";
const QUESTIONS: [&str; 3] = [
    "How do I install a package with apt?",
    "What is the Debian Free Software Guidelines?",
    "How are backports used?",
];

fn config(data: &Path) -> Config {
    Config { models: Some(model_cache()), process_queue: true, ..Config::new(data) }
}

/// A twin that knows a dozen handbook pages, has answered questions (grounded, without a chat
/// model), holds a verified answer and a persona.
fn learn_a_twin(data: &Path) -> Doppel {
    let dir = Path::new(HANDBOOK);
    assert!(dir.is_dir(), "install the debian-handbook package (.ci/run does)");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    pages.truncate(12);
    let doppel = Doppel::open(config(data)).unwrap();
    doppel.set_chat_model(&ChatModel::Off).unwrap();
    let report = doppel.ingest(IngestRequest::paths(pages)).unwrap();
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    let done = doppel.wait_for(&jobs, |_| {}).unwrap();
    assert!(done.iter().all(|j| j.state == JobState::Done), "{done:?}");
    let never = AtomicBool::new(false);
    for (i, question) in QUESTIONS.iter().enumerate() {
        let request = AskRequest {
            conversation: Some(format!("conversation-{i}")),
            ..AskRequest::new(*question)
        };
        let answer = doppel.ask(&request, &never, &mut |_| {}).unwrap();
        if i == 0 {
            doppel.verify_message(&answer.conversation, answer.message.id, None).unwrap();
        }
    }
    doppel.verify(DEFAULT_TWIN, "Where is the handbook?", "In /usr/share/doc.", None).unwrap();
    let persona = Persona {
        name: "Raphaël".into(),
        description: "Debian developer".into(),
        voice: "precise".into(),
        not_covered: "Not in my notes.".into(),
    };
    doppel.set_persona(DEFAULT_TWIN, &persona).unwrap();
    doppel
}

/// What a person sees of a twin.
#[derive(Debug, PartialEq)]
struct Seen {
    sources: Vec<(i64, String, String, u64)>,
    searches: Vec<Vec<(i64, String)>>,
    conversations: Vec<(Conversation, Vec<Message>)>,
    verified: Vec<(String, String)>,
    persona: Persona,
}

fn seen(doppel: &Doppel) -> Seen {
    let sources = doppel
        .sources(DEFAULT_TWIN)
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.title, s.state.to_string(), s.chunk_count))
        .collect();
    let searches = QUESTIONS
        .iter()
        .map(|q| {
            let request = SearchRequest {
                twin: DEFAULT_TWIN,
                query: q.to_string(),
                limit: Some(8),
                sources: Vec::new(),
                mode: SearchMode::Hybrid,
            };
            let results = doppel.search(&request).unwrap();
            assert_eq!(results.note, None, "search by meaning works");
            results.hits.into_iter().map(|h| (h.chunk_id, h.retriever.to_string())).collect()
        })
        .collect();
    let conversations = doppel
        .conversations(DEFAULT_TWIN)
        .unwrap()
        .into_iter()
        .map(|c| {
            let messages = doppel.messages(&c.id).unwrap();
            (c, messages)
        })
        .collect();
    let verified = doppel
        .verified_answers(DEFAULT_TWIN)
        .unwrap()
        .into_iter()
        .map(|v| (v.question, v.answer))
        .collect();
    Seen {
        sources,
        searches,
        conversations,
        verified,
        persona: doppel.persona(DEFAULT_TWIN).unwrap(),
    }
}

fn restore(
    backup: &Path,
    data: &Path,
    passphrase: Option<&str>,
    replace: bool,
) -> (Result<backup::RestoreReport>, Vec<Progress>) {
    let mut progress = Vec::new();
    let request = RestoreRequest {
        backup: backup.to_path_buf(),
        passphrase: passphrase.map(str::to_string),
        replace,
        config: config(data),
    };
    let result = Doppel::restore(request, &AtomicBool::new(false), &mut |p| progress.push(p));
    (result, progress)
}

fn back_up(doppel: &Doppel, path: &Path, passphrase: Option<&str>) -> backup::BackupReport {
    let request =
        BackupRequest { path: path.to_path_buf(), passphrase: passphrase.map(str::to_string) };
    doppel.backup(&request, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

#[test]
fn backup_and_restore_round_trip_a_real_twin_with_the_same_sources_searches_and_conversations() {
    let scratch = tempfile::tempdir().unwrap();
    let (data, elsewhere) = (scratch.path().join("data"), scratch.path().join("new-computer"));
    let doppel = learn_a_twin(&data);
    let before = seen(&doppel);
    assert_eq!(before.conversations.len(), 3);
    assert_eq!(before.verified.len(), 2);
    let plain = scratch.path().join("twin.doppel");
    let sealed = scratch.path().join("twin-encrypted.doppel");
    let mut stages = Vec::new();
    let report = doppel
        .backup(
            &BackupRequest { path: plain.clone(), passphrase: None },
            &AtomicBool::new(false),
            &mut |p| stages.push(p.stage),
        )
        .unwrap();
    assert!(stages.contains(&Stage::Snapshot) && stages.contains(&Stage::Write), "{stages:?}");
    assert_eq!(report.manifest.schema_version, SCHEMA_VERSION);
    assert_eq!(report.manifest.counts.sources, 12);
    assert_eq!(report.manifest.counts.conversations, 3);
    assert_eq!(report.bytes, std::fs::metadata(&plain).unwrap().len());
    let encrypted = back_up(&doppel, &sealed, Some("correct horse battery staple"));
    assert!(encrypted.manifest.encrypted);
    // Neither holds the index, and the encrypted one shows none of the documents' words.
    let words = std::fs::read(&sealed).unwrap();
    assert!(!words.windows(6).any(|w| w == b"Debian"), "the encrypted file is unreadable");
    drop(doppel);

    // On another computer: an empty data directory.
    let (restored, progress) =
        restore(&sealed, &elsewhere, Some("correct horse battery staple"), false);
    let restored = restored.unwrap();
    assert!(!restored.replaced);
    assert_eq!(restored.counts, report.manifest.counts);
    let vectors = restored.counts.vectors;
    assert!(vectors > 0 && restored.index_entries > 0);
    let index = progress.iter().rfind(|p| p.stage == Stage::Index).unwrap();
    assert_eq!((index.done, index.total), (index.total, restored.index_entries), "{progress:?}");
    let there = Doppel::open(config(&elsewhere)).unwrap();
    assert_eq!(seen(&there), before);
    assert!(there.doctor().unwrap().problems.is_empty(), "{:?}", there.doctor().unwrap().problems);
    assert!(!there.api_settings().unwrap().enabled);
    drop(there);

    // In place of the twin itself, once confirmed: what it was at the backup.
    let doppel = Doppel::open(config(&data)).unwrap();
    doppel.delete_source(before.sources[0].0).unwrap();
    drop(doppel);
    let (refused, _) = restore(&plain, &data, None, false);
    assert_eq!(refused.unwrap_err().code(), "confirmation_needed");
    let (replaced, _) = restore(&plain, &data, None, true);
    assert!(replaced.unwrap().replaced);
    let doppel = Doppel::open(config(&data)).unwrap();
    assert_eq!(seen(&doppel), before);
    let siblings: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(siblings.iter().all(|n| !n.starts_with('.')), "nothing left aside: {siblings:?}");
}

#[test]
fn a_backup_taken_while_the_twin_learns_is_one_consistent_moment() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let files = scratch.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..150 {
        let text =
            format!("# Note {i}\n\nPlanted row {i} of beans qk{i}x in the plot.\n\n").repeat(20);
        std::fs::write(files.join(format!("note-{i}.md")), text).unwrap();
    }
    let doppel =
        Doppel::open(Config { models: Some(data.join("no-models")), ..Config::new(&data) })
            .unwrap();
    let report = doppel.ingest(IngestRequest::paths(vec![files.clone()])).unwrap();
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    // Backups are taken while the worker writes: each restores whole, as one moment.
    let events = doppel.subscribe();
    let mut backups = Vec::new();
    for round in 0..3 {
        // Wait until more files were learnt, so each backup sees a different moment.
        while !matches!(events.recv().unwrap(), Event::JobDone { .. }) {}
        let path = scratch.path().join(format!("during-{round}.doppel"));
        backups.push(back_up(&doppel, &path, None));
    }
    doppel.wait_for(&jobs, |_| {}).unwrap();
    drop(doppel);
    for (round, backup) in backups.iter().enumerate() {
        let target = scratch.path().join(format!("restored-{round}"));
        let (restored, _) = restore(&backup.path, &target, None, false);
        let restored = restored.unwrap();
        assert_eq!(restored.counts, backup.manifest.counts);
        let there = Doppel::open(Config { process_queue: false, ..Config::new(&target) }).unwrap();
        assert!(there.doctor().unwrap().problems.iter().all(|p| !p.contains("corrupt")));
        // Every ready source has all its passages: no half-learnt file.
        for source in there.sources(DEFAULT_TWIN).unwrap() {
            if source.state == SourceState::Ready {
                assert_eq!(there.chunks(source.id).unwrap().len() as u64, source.chunk_count);
            }
        }
    }
}

#[test]
fn l2_backups_of_older_schema_versions_restore_migrated_and_a_newer_one_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    // A real schema-v1 database file, backed up as it is (a backup never migrates).
    let v1 = scratch.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v1.sqlite3");
    std::fs::copy(&fixture, v1.join(DATABASE_FILE)).unwrap();
    let request = BackupRequest { path: scratch.path().join("v1.doppel"), passphrase: None };
    let backup = Doppel::backup_dir(&v1, &request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(backup.manifest.schema_version, 1);
    let (restored, _) = restore(&backup.path, &scratch.path().join("from-v1"), None, false);
    let restored = restored.unwrap();
    assert_eq!(restored.migrated_from, Some(1));
    let there = Doppel::open(config(&scratch.path().join("from-v1"))).unwrap();
    assert_eq!(there.doctor().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(there.sources(DEFAULT_TWIN).unwrap().len() as u64, restored.counts.sources);
    assert!(restored.counts.sources > 0, "the fixture holds sources");
    drop(there);

    // An older version (7): a twin with chat data, its database taken back to version 7
    // (versions 8 and 9 only added tables: the API's two and the metrics').
    let v7 = scratch.path().join("v7");
    let doppel =
        Doppel::open(Config { models: Some(v7.join("none")), ..Config::new(&v7) }).unwrap();
    common::learn_garden_note(&doppel);
    doppel.set_chat_model(&ChatModel::Off).unwrap();
    let answer = doppel
        .ask(&AskRequest::new("When did the tomatoes go in?"), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    drop(doppel);
    {
        let conn = rusqlite::Connection::open(v7.join(DATABASE_FILE)).unwrap();
        conn.execute_batch(
            "DROP TABLE metric_samples; DROP TABLE api_usage; DROP TABLE api_tokens;
             DROP INDEX sources_changed; PRAGMA user_version = 7;",
        )
        .unwrap();
    }
    let request = BackupRequest { path: scratch.path().join("v7.doppel"), passphrase: None };
    let backup = Doppel::backup_dir(&v7, &request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(backup.manifest.schema_version, 7);
    let target = scratch.path().join("from-v7");
    let (restored, _) = restore(&backup.path, &target, None, false);
    assert_eq!(restored.unwrap().migrated_from, Some(7));
    let there =
        Doppel::open(Config { models: Some(v7.join("none")), ..Config::new(&target) }).unwrap();
    let messages = there.messages(&answer.conversation).unwrap();
    assert_eq!(messages.last().unwrap().citations, answer.message.citations);
    assert!(there.api_tokens().unwrap().is_empty(), "the API's tables exist after migration");
    drop(there);

    // A database of a newer Doppel: refused, nothing created.
    let newer = scratch.path().join("newer");
    std::fs::create_dir(&newer).unwrap();
    {
        let conn = rusqlite::Connection::open(newer.join(DATABASE_FILE)).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1)).unwrap();
    }
    let request = BackupRequest { path: scratch.path().join("newer.doppel"), passphrase: None };
    let backup =
        Doppel::backup_dir(&newer, &request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let target = scratch.path().join("from-newer");
    let (refused, _) = restore(&backup.path, &target, None, false);
    let err = refused.unwrap_err();
    assert_eq!(err.code(), "schema_too_new", "{err}");
    assert!(err.to_string().contains("please use a newer Doppel"), "{err}");
    assert!(!target.exists());
}

#[test]
fn a_wrong_passphrase_a_truncated_file_and_flipped_bytes_fail_clearly_and_change_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    let doppel =
        Doppel::open(Config { models: Some(source.join("none")), ..Config::new(&source) }).unwrap();
    common::learn_garden_note(&doppel);
    let plain = back_up(&doppel, &scratch.path().join("plain.doppel"), None);
    let sealed = back_up(&doppel, &scratch.path().join("sealed.doppel"), Some("right one"));
    drop(doppel);

    // The twin a failed restore must leave alone.
    let data = scratch.path().join("data");
    let doppel =
        Doppel::open(Config { models: Some(data.join("none")), ..Config::new(&data) }).unwrap();
    doppel
        .add_text(TextRequest {
            twin: DEFAULT_TWIN,
            title: "Mine".into(),
            text: "Kept qz7711.".into(),
        })
        .unwrap();
    let ids: Vec<JobId> = doppel
        .jobs(JobFilter { active_only: true, limit: 10 })
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    doppel.wait_for(&ids, |_| {}).unwrap();
    drop(doppel);
    let database = data.join(DATABASE_FILE);
    let before = sha(&database);

    let bytes = std::fs::read(&plain.path).unwrap();
    let sealed_bytes = std::fs::read(&sealed.path).unwrap();
    let damaged = |name: &str, content: &[u8]| {
        let path = scratch.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let flip = |content: &[u8], at: usize| {
        let mut copy = content.to_vec();
        copy[at] ^= 0x20;
        copy
    };
    let cases: Vec<(PathBuf, Option<&str>, &str)> = vec![
        (sealed.path.clone(), Some("wrong one"), "wrong_passphrase"),
        (sealed.path.clone(), None, "passphrase_needed"),
        (damaged("half.doppel", &bytes[..bytes.len() / 2]), None, "backup_damaged"),
        (damaged("short.doppel", &bytes[..bytes.len() - 3]), None, "backup_damaged"),
        (
            damaged("sealed-half.doppel", &sealed_bytes[..sealed_bytes.len() / 2]),
            Some("right one"),
            "backup_damaged",
        ),
        (damaged("flip-head.doppel", &flip(&bytes, 20)), None, "backup_damaged"),
        (damaged("flip-middle.doppel", &flip(&bytes, bytes.len() / 2)), None, "backup_damaged"),
        (damaged("flip-end.doppel", &flip(&bytes, bytes.len() - 5)), None, "backup_damaged"),
        (
            damaged("flip-sealed.doppel", &flip(&sealed_bytes, sealed_bytes.len() / 2)),
            Some("right one"),
            "backup_damaged",
        ),
        (damaged("not-a-backup.doppel", b"hello, world"), None, "backup_damaged"),
        (damaged("empty.doppel", b""), None, "backup_damaged"),
    ];
    for (path, passphrase, code) in &cases {
        for replace in [false, true] {
            let (result, _) = restore(path, &data, *passphrase, replace);
            let err = result.unwrap_err();
            let expected = if replace { *code } else { "confirmation_needed" };
            assert_eq!(err.code(), expected, "{}: {err}", path.display());
            if replace && *code == "backup_damaged" {
                assert!(err.to_string().contains("nothing was changed"), "{err}");
            }
            assert_eq!(sha(&database), before, "{} changed the twin", path.display());
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let doppel =
        Doppel::open(Config { models: Some(data.join("none")), ..Config::new(&data) }).unwrap();
    let titles: Vec<String> =
        doppel.sources(DEFAULT_TWIN).unwrap().into_iter().map(|s| s.title).collect();
    assert_eq!(titles, ["Mine"]);
}

#[test]
fn a_restore_refuses_a_folder_that_is_not_a_data_directory_and_one_in_use() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    let doppel =
        Doppel::open(Config { models: Some(source.join("none")), ..Config::new(&source) }).unwrap();
    common::learn_garden_note(&doppel);
    let backup = back_up(&doppel, &scratch.path().join("b.doppel"), None);
    // In use: the lock names the holder.
    let (busy, _) = restore(&backup.path, &source, None, true);
    assert_eq!(busy.unwrap_err().code(), "already_running");
    drop(doppel);
    let documents = scratch.path().join("Documents");
    std::fs::create_dir(&documents).unwrap();
    std::fs::write(documents.join("letter.txt"), "Dear").unwrap();
    let (refused, _) = restore(&backup.path, &documents, None, true);
    let err = refused.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert!(err.to_string().contains("not a Doppel data directory"), "{err}");
    assert_eq!(std::fs::read_to_string(documents.join("letter.txt")).unwrap(), "Dear");
    // A backup is never written inside the data directory (forgetting could not reach it).
    let request = BackupRequest { path: source.join("inside.doppel"), passphrase: None };
    let err =
        Doppel::backup_dir(&source, &request, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}
