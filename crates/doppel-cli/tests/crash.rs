//! Exactly once: ingestion killed with SIGKILL at random moments, then restarted, never loses or
//! duplicates a source, a chunk or a job. An answer killed mid-stream keeps what it had said.

mod util;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use rusqlite::{Connection, OpenFlags};
use util::Cli;

/// A small deterministic generator; the seed is printed so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seeded() -> Rng {
    let seed =
        std::env::var("DOPPEL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
                | 1
        });
    println!("seed {seed} (set DOPPEL_TEST_SEED to replay)");
    Rng(seed)
}

/// Starts `doppel ingest DIR` and kills it with SIGKILL after `after` finished files.
fn ingest_and_kill(cli: &Cli, dir: &std::path::Path, after: u64) {
    let mut child = cli
        .command()
        .args(["ingest", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for _ in 0..after {
        if lines.next().is_none() {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn cr1_exactly_once_through_repeated_sigkill() {
    let mut rng = seeded();
    let cli = Cli::new();
    for i in 0..200 {
        let paragraphs: String = (0..40 + i % 60)
            .map(|p| format!("File {i} paragraph {p}: the unique token f{i}p{p} sits among ordinary words.\n\n"))
            .collect();
        cli.write(
            &format!("corpus/{:02}/doc{i:03}.md", i % 7),
            format!("# Document {i}\n\n{paragraphs}"),
        );
    }
    let corpus = cli.file("corpus");
    // Kills may hit the same job many times; the retry limit is not what this test is about.
    cli.json(&["settings", "set", "max_attempts", "100"]);

    for round in 0..20 {
        let wait_for = rng.below(14);
        ingest_and_kill(&cli, &corpus, wait_for);
        println!("round {round}: killed after {wait_for} finished files");
    }

    let report = cli.json(&["ingest", corpus.to_str().unwrap()]);
    assert_eq!(report["jobs"].as_array().unwrap().len(), 200);
    assert!(report["jobs"].as_array().unwrap().iter().all(|j| j["state"] == "done"), "{report}");

    let db = Connection::open_with_flags(
        cli.data_dir().join("doppel.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let one = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        db.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(),
        "ok"
    );
    assert_eq!(one("SELECT count(*) FROM sources"), 200);
    assert_eq!(one("SELECT count(DISTINCT origin) FROM sources"), 200);
    assert_eq!(one("SELECT count(*) FROM sources WHERE state != 'ready'"), 0);
    assert_eq!(one("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"), 0);
    assert_eq!(one("SELECT count(*) FROM jobs WHERE state = 'failed'"), 0);
    println!(
        "jobs interrupted mid-run and resumed: {}",
        one("SELECT count(*) FROM jobs WHERE attempts > 1")
    );
    // Every source holds exactly one set of chunks: counts agree and no text appears twice.
    assert_eq!(one("SELECT sum(chunk_count) FROM sources"), one("SELECT count(*) FROM chunks"));
    assert_eq!(
        one(
            "SELECT count(*) FROM (SELECT source_id, text_hash FROM chunks GROUP BY 1, 2 HAVING count(*) > 1)"
        ),
        0
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM sources s WHERE chunk_count != (SELECT count(*) FROM chunks c WHERE c.source_id = s.id)"
        ),
        0
    );
    // The keyword index agrees with the chunks, and each unique token is found exactly once.
    let doctor = cli.doctor();
    assert_eq!(doctor["ok"], true, "{doctor}");
    for (i, p) in [(0, 0), (57, 30), (199, 58), (123, 12)] {
        let hits = cli.search(&format!("f{i}p{p}"));
        assert_eq!(hits.len(), 1, "f{i}p{p}");
        assert!(hits[0]["origin"].as_str().unwrap().ends_with(&format!("doc{i:03}.md")));
    }
}

#[test]
fn cr4_database_and_vector_index_agree_after_sigkill() {
    let mut rng = seeded();
    let cli = Cli::with_models();
    for i in 0..30 {
        let text: String = (0..8)
            .map(|p| format!("Note {i}, part {p}: the unique term v{i}w{p} among plain words.\n\n"))
            .collect();
        cli.write(&format!("notes/n{i:02}.txt"), text);
    }
    let notes = cli.file("notes");
    cli.json(&["settings", "set", "max_attempts", "100"]);
    for round in 0..6 {
        let after = rng.below(6);
        ingest_and_kill(&cli, &notes, after);
        println!("round {round}: killed after {after} finished files");
    }
    // A deletion and more kills: the index must forget what the database forgot.
    cli.json(&["ingest", notes.to_str().unwrap()]);
    cli.json(&["delete", cli.file("notes/n00.txt").to_str().unwrap()]);
    ingest_and_kill(&cli, &notes, 1);

    let report = cli.json(&["ingest", notes.to_str().unwrap()]);
    assert!(report["jobs"].as_array().unwrap().iter().all(|j| j["state"] == "done"), "{report}");
    let doctor = cli.doctor();
    assert_eq!(doctor["ok"], true, "{doctor}");
    assert_eq!(doctor["chunks_without_vectors"], 0, "{doctor}");
    assert_eq!(doctor["index_entries"], doctor["chunks"], "{doctor}");
    let db = Connection::open_with_flags(
        cli.data_dir().join("doppel.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let orphans: i64 = db
        .query_row(
            "SELECT count(*) FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.text_hash = e.text_hash)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    let hits = cli.json(&["search", "v7w3", "--mode", "hybrid", "-k", "3"]);
    assert!(hits["hits"][0]["origin"].as_str().unwrap().ends_with("n07.txt"), "{hits}");
}

/// Runs `doppel ARGS` and kills it with SIGKILL after a random part of `within`.
fn run_and_kill(cli: &Cli, args: &[&str], rng: &mut Rng, within: std::time::Duration) -> u64 {
    let mut child =
        cli.command().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let after = rng.below(within.as_millis() as u64);
    // The moment of the kill is the test's random choice, not a wait for work to finish.
    std::thread::sleep(std::time::Duration::from_millis(after));
    child.kill().unwrap();
    child.wait().unwrap();
    after
}

#[test]
fn cr4_the_index_agrees_with_the_database_after_kills_in_rebuilds_saves_and_deletes() {
    let mut rng = seeded();
    let cli = Cli::with_models();
    for i in 0..30 {
        let text: String = (0..8)
            .map(|p| format!("Note {i}, part {p}: the unique term k{i}q{p} among plain words.\n\n"))
            .collect();
        cli.write(&format!("notes/n{i:02}.txt"), text);
    }
    let notes = cli.file("notes");
    cli.json(&["ingest", notes.to_str().unwrap()]);
    let index_dir = cli.data_dir().join("index");
    let stale = || {
        for entry in std::fs::read_dir(&index_dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "generation") {
                std::fs::write(entry.path(), "0").unwrap();
            }
        }
    };
    let second = std::time::Duration::from_secs(1);
    for round in 0..8 {
        // A stale index is rebuilt by the next command that reads vectors: killed during the
        // rebuild, or during the save that follows it.
        stale();
        let rebuild = run_and_kill(&cli, &["search", "k3q1"], &mut rng, second);
        // A delete killed before, during or after its transaction and the index's removal.
        let victim = cli.file(&format!("notes/n{:02}.txt", round + 1));
        let delete = run_and_kill(&cli, &["delete", victim.to_str().unwrap()], &mut rng, second);
        println!("round {round}: rebuild killed after {rebuild} ms, delete after {delete} ms");
    }
    let doctor = cli.doctor();
    assert_eq!(doctor["ok"], true, "{doctor}");
    assert_eq!(doctor["index_entries"], doctor["chunks"], "{doctor}");
    // What was not deleted is found by meaning; what was is not.
    let report = cli.json(&["ingest", notes.to_str().unwrap()]);
    assert!(report["jobs"].as_array().unwrap().iter().all(|j| j["state"] == "done"), "{report}");
    let doctor = cli.doctor();
    assert_eq!(doctor["ok"], true, "{doctor}");
    assert_eq!((doctor["index_entries"].as_u64(), doctor["chunks"].as_u64()), (Some(30), Some(30)));
    let hits = cli.json(&["search", "k9q4", "--mode", "hybrid", "-k", "3"]);
    assert!(hits["hits"][0]["origin"].as_str().unwrap().ends_with("n09.txt"), "{hits}");
}

/// Every file under `dir` (recursively) that holds one of `needles`.
fn files_holding(dir: &std::path::Path, needles: &[(&str, &[u8])]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needles));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == *needle) {
                found.push(format!("{what} in {}", path.display()));
            }
        }
    }
    found
}

#[test]
fn cr4_nothing_of_a_forgotten_file_survives_a_sigkill_right_after_its_delete() {
    let cli = Cli::with_models();
    let gone = cli.write("notes/gone.md", "# Qrk5512 plans\nThe vzw8830 recipe must not survive.");
    cli.write("notes/kept.md", "# Kept\nAn ordinary note about the garden.");
    let notes = cli.file("notes");
    cli.json(&["ingest", notes.to_str().unwrap()]);
    cli.json(&["watch", "add", notes.to_str().unwrap()]);
    let db = Connection::open_with_flags(
        cli.data_dir().join("doppel.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let vector: Vec<u8> = db
        .query_row(
            "SELECT e.vector FROM embeddings e JOIN chunks c ON c.text_hash = e.text_hash
             JOIN sources s ON s.id = c.source_id WHERE s.origin LIKE '%gone.md'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(db);
    let needles: [(&str, &[u8]); 4] = [
        ("text", b"vzw8830"),
        ("title", b"Qrk5512"),
        ("vector head", &vector[..32]),
        ("vector tail", &vector[vector.len() - 32..]),
    ];
    assert!(!files_holding(cli.data_dir(), &needles).is_empty(), "the scan finds it before");

    // The app follows the folder; the file goes, the app forgets it, and is killed at once.
    let mut child = cli
        .command()
        .args(["--json", "watch", "run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_out, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_out.send(line).is_err() {
                return;
            }
        }
    });
    let next_line = || lines.recv_timeout(std::time::Duration::from_secs(120)).unwrap();
    while !next_line().contains("watch_changed") {}
    std::fs::remove_file(&gone).unwrap();
    while !next_line().contains("source_deleted") {}
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(files_holding(cli.data_dir(), &needles), Vec::<String>::new());
}

/// A process killed while an answer streams: the next start finds the answer as far as it got,
/// marked cancelled, never left "streaming".
#[test]
fn an_answer_cut_off_by_sigkill_keeps_what_it_had_said() {
    let cli = Cli::new();
    let note = cli.write("garden.md", "# Garden\nI planted the tomatoes in May.\n");
    cli.json(&["ingest", note.to_str().unwrap()]);
    let (url, _closed) = util::ollama_that_stalls_after("In May");
    cli.json(&["chat-model", "ollama", "--model", "tiny", "--url", &url]);

    let mut child = cli.command().args(["ask", "tomatoes"]).stdout(Stdio::null()).spawn().unwrap();
    // No event crosses processes, so the test reads the database (read-only, beside the
    // writer, as WAL allows) until the first piece is stored, within a bound.
    let db = Connection::open_with_flags(
        cli.data_dir().join(doppel_core::DATABASE_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let stored = || -> Option<String> {
        db.query_row("SELECT content FROM messages WHERE role = 'assistant'", [], |r| r.get(0)).ok()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stored().as_deref() != Some("In May") {
        assert!(std::time::Instant::now() < deadline, "the first piece was stored");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(db);

    let conversations = cli.json(&["conversations"]);
    let id = conversations[0]["id"].as_str().unwrap();
    let messages = cli.json(&["export-conversation", id]);
    assert_eq!(messages[1]["state"], "cancelled", "{messages}");
    assert_eq!(messages[1]["content"], "In May");
}

/// Starts `doppel ARGS` on `cli`'s data directory and kills it with SIGKILL as soon as its
/// stderr shows `line` (a step of its progress). Returns whether the line came before it ended.
fn run_and_kill_at(cli: &Cli, args: &[&str], line: &str) -> bool {
    let mut child =
        cli.command().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let seen = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.trim() == line);
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

/// A twin of `files` notes of 40 paragraphs each, learnt without a model.
fn learn_notes(cli: &Cli, files: usize, word: &str) {
    for i in 0..files {
        let text: String = (0..40)
            .map(|p| {
                format!("Note {i} paragraph {p} keeps the word {word}{i}p{p} among others.\n\n")
            })
            .collect();
        cli.write(&format!("{word}/{word}{i:03}.md"), format!("# {word} {i}\n\n{text}"));
    }
    cli.json(&["ingest", cli.file(word).to_str().unwrap()]);
}

fn titles(cli: &Cli) -> Vec<String> {
    let mut titles: Vec<String> =
        cli.sources().iter().map(|s| s["title"].as_str().unwrap().to_string()).collect();
    titles.sort();
    titles
}

#[test]
fn a_kill_during_a_backup_leaves_the_old_file_or_none_never_a_torn_one() {
    let cli = Cli::new();
    learn_notes(&cli, 300, "bean");
    let path = cli.file("backups/twin.doppel");
    let file = path.to_str().unwrap();
    let check = |old: Option<&[u8]>| match std::fs::read(&path) {
        Err(e) => assert!(old.is_none(), "the old backup is gone: {e}"),
        Ok(bytes) if Some(bytes.as_slice()) == old => {}
        // Not the old file: then a whole new one, which restores.
        Ok(_) => {
            let target = Cli::new();
            let restored = target.json(&["restore", file]);
            assert_eq!(restored["counts"]["sources"], 300, "{restored}");
        }
    };
    // No file yet: a kill leaves none, or a whole one.
    for stage in ["backup: snapshot", "backup: write"] {
        let _ = std::fs::remove_file(&path);
        run_and_kill_at(&cli, &["backup", file], stage);
        check(None);
    }
    cli.json(&["backup", file]);
    let old = std::fs::read(&path).unwrap();
    for round in 0..3 {
        for stage in ["backup: snapshot", "backup: write"] {
            let seen = run_and_kill_at(&cli, &["backup", file], stage);
            println!("round {round}: killed at {stage:?} (seen: {seen})");
            check(Some(&old));
        }
    }
    // Leftovers of the killed tries do not stop the next backup.
    cli.json(&["backup", file]);
    check(Some(&[]));
}

#[test]
fn a_kill_during_a_restore_leaves_the_previous_data_directory_intact() {
    let source = Cli::with_models();
    learn_notes(&source, 40, "kale");
    let backup = source.file("twin.doppel");
    let backup = backup.to_str().unwrap();
    source.json(&["backup", backup]);
    let target = Cli::with_models();
    learn_notes(&target, 3, "previous");
    let previous = titles(&target);
    let restored = titles(&source);
    for round in 0..2 {
        for stage in ["restore: read", "restore: check", "restore: index"] {
            let seen = run_and_kill_at(&target, &["restore", backup, "--yes"], stage);
            let now = titles(&target);
            println!("round {round}: killed at {stage:?} (seen: {seen}): {} sources", now.len());
            assert!(now == previous || now == restored, "{now:?}");
            let doctor = target.doctor();
            let problems = doctor["problems"].as_array().unwrap();
            assert!(problems.iter().all(|p| !p.as_str().unwrap().contains("corrupt")), "{doctor}");
            if now == restored {
                // The restore had already happened: go back to the previous twin for the next
                // round.
                let again = Cli::with_models();
                learn_notes(&again, 3, "previous");
                let back = again.file("previous.doppel");
                again.json(&["backup", back.to_str().unwrap()]);
                target.json(&["restore", back.to_str().unwrap(), "--yes"]);
                assert_eq!(titles(&target), previous);
            }
        }
    }
    let report = target.json(&["restore", backup, "--yes"]);
    assert_eq!(report["replaced"], true);
    assert_eq!(titles(&target), restored);
    let parent = target.data_dir().parent().unwrap();
    let name = target.data_dir().file_name().unwrap().to_string_lossy().into_owned();
    let aside: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}")))
        .collect();
    assert!(aside.is_empty(), "{aside:?}");
}
