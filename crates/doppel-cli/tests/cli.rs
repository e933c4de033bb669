//! End-to-end tests of the `doppel` binary on real SQLite files in temporary directories.

mod util;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::process::Stdio;

use serde_json::Value;
use util::{Cli, error_of};

fn state_of(cli: &Cli, path: &std::path::Path) -> (String, Option<String>) {
    let source =
        cli.source_by_origin(path).unwrap_or_else(|| panic!("no source for {}", path.display()));
    (source["state"].as_str().unwrap().to_string(), source["error"].as_str().map(str::to_string))
}

fn top_origin(hits: &[Value]) -> String {
    hits.first().map(|h| h["origin"].as_str().unwrap_or("").to_string()).unwrap_or_default()
}

#[test]
fn text_formats_are_ingested_with_their_locations() {
    let cli = Cli::new();
    cli.write("notes/guide.md", "# Guide\nIntro words.\n\n## Setup\nThe zebracorn needs hay.\n");
    cli.write(
        "notes/page.html",
        "<html><head><title>Garden page</title><script>var quokkajs = 1;</script></head>\
         <body><h1>Plants</h1><p>The marigold&nbsp;thrives in sun.</p></body></html>",
    );
    cli.write("notes/plain.txt", "line one\nline two\n\nthe saxophonist arrives\n");
    cli.write("notes/people.csv", "name,city\nAda,Londinium\nGrace,Arlington\n");
    cli.write("notes/data.json", r#"{"title": "Inventory", "items": [{"name": "flugelhorn"}]}"#);
    cli.write("notes/talk.srt", "1\n00:00:01,000 --> 00:00:04,000\nWelcome aboard captain\n\n2\n00:01:00,000 --> 00:01:02,000\nGoodbye\n");
    cli.write("notes/talk.vtt", "WEBVTT\n\n00:02.000 --> 00:03.500\nthe narwhal speaks\n");
    cli.write("notes/code.rs", "fn main() {\n    let capybara_count = 3;\n}\n");
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend("wide ümlaut axolotl text".encode_utf16().flat_map(|u| u.to_le_bytes()));
    cli.write("notes/wide.txt", utf16);
    cli.write(
        "notes/legacy.txt",
        b"Le caf\xe9 de la gr\xe8ve, tr\xe8s calme, o\xf9 l'on d\xe9guste un rago\xfbt.".as_slice(),
    );

    let report = cli.json(&["ingest", cli.file("notes").to_str().unwrap()]);
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 10, "{report}");
    assert!(jobs.iter().all(|j| j["state"] == "done" && j["outcome"] == "ingested"), "{report}");

    let expect = [
        ("zebracorn", "guide.md", "Guide › Setup"),
        ("marigold", "page.html", "Plants"),
        ("saxophonist", "plain.txt", ""),
        ("Londinium", "people.csv", ""),
        ("flugelhorn", "data.json", "$.items"),
        ("captain", "talk.srt", "00:00:01 – 00:01:02"),
        ("narwhal", "talk.vtt", "00:00:02 – 00:00:03"),
        ("capybara_count", "code.rs", ""),
        ("axolotl", "wide.txt", ""),
        ("ragoût", "legacy.txt", ""),
    ];
    for (word, file, label) in expect {
        let hits = cli.search(word);
        assert_eq!(hits.len(), 1, "{word}: {hits:?}");
        assert!(top_origin(&hits).ends_with(file), "{word}: {hits:?}");
        assert_eq!(hits[0]["location"]["label"], label, "{word}");
        assert_eq!(hits[0]["retriever"], "keyword");
    }
    // Line ranges for formats with lines; scripts are not visible text; titles come from the file.
    let lines = |word: &str| {
        let location = &cli.search(word)[0]["location"];
        (location["line_start"].as_u64(), location["line_end"].as_u64())
    };
    assert_eq!(lines("saxophonist"), (Some(1), Some(4)));
    assert_eq!(lines("Arlington"), (Some(2), Some(3)));
    assert_eq!(lines("capybara_count"), (Some(1), Some(3)));
    assert!(cli.search("quokkajs").is_empty());
    assert_eq!(cli.source_by_origin(&cli.file("notes/page.html")).unwrap()["title"], "Garden page");
    assert_eq!(
        cli.source_by_origin(&cli.file("notes/guide.md")).unwrap()["media_type"],
        "text/markdown"
    );
}

#[test]
fn hostile_inputs_fail_alone_with_clear_reasons_and_bounded_memory() {
    let cli = Cli::new();
    cli.write("in/good.txt", "a perfectly ordinary pangolin");
    cli.write("in/zeros.txt", vec![0u8; 1024 * 1024]);
    let noise: Vec<u8> =
        (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    cli.write("in/noise.txt", noise);
    cli.write("in/empty.txt", "");
    cli.write("in/fake.pdf", "this is not a PDF at all");
    cli.write("in/photo.png", "not even a picture");
    let sparse = std::fs::File::create(cli.file("in/sparse.txt")).unwrap();
    sparse.set_len(10 * 1024 * 1024 * 1024).unwrap();
    let mut line = std::fs::File::create(cli.file("in/oneline.txt")).unwrap();
    let block = vec![b'w'; 1024 * 1024];
    for _ in 0..100 {
        line.write_all(&block).unwrap();
    }
    drop(line);
    cli.write("in/.hidden.txt", "secret");
    symlink(cli.file("in"), cli.file("in/loop")).unwrap();
    let fifo = cli.file("in/pipe.txt");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);

    let (report, status, peak_kb) = cli.json_measured(&[
        "ingest",
        cli.file("in").to_str().unwrap(),
        cli.file("in/fake.pdf").to_str().unwrap(),
    ]);
    assert_eq!(status, 2, "{report}");
    let skipped: Vec<String> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["message"].as_str().unwrap().to_string())
        .collect();
    let dir = cli.file("in");
    for expected in [
        format!("{}: hidden", dir.join(".hidden.txt").display()),
        format!("{}: symbolic link loop", dir.join("loop").display()),
        format!(
            "{}: an image: text in images is read only with text recognition on (`doppel settings set ocr true`)",
            dir.join("photo.png").display()
        ),
        format!("{}: not a regular file", dir.join("pipe.txt").display()),
    ] {
        assert!(skipped.contains(&expected), "missing {expected:?} in {skipped:#?}");
    }

    assert_eq!(state_of(&cli, &dir.join("good.txt")), ("ready".into(), None));
    let failures = [
        ("zeros.txt", "unsupported format: binary content"),
        ("noise.txt", "unsupported format: binary content"),
        ("empty.txt", "no text found"),
        ("sparse.txt", "file too large (10240 MB > limit of 50 MB)"),
        ("oneline.txt", "file too large (100 MB > limit of 50 MB)"),
    ];
    for (name, reason) in failures {
        assert_eq!(
            state_of(&cli, &dir.join(name)),
            ("failed".into(), Some(reason.to_string())),
            "{name}"
        );
    }
    let (state, reason) = state_of(&cli, &dir.join("fake.pdf"));
    assert_eq!(state, "failed");
    assert!(reason.unwrap().starts_with("file is malformed: not a readable PDF"));
    // Content errors are final: no retries were spent on them.
    let jobs = cli.json(&["jobs", "--all"]);
    assert!(jobs.as_array().unwrap().iter().all(|j| j["attempts"] == 1), "{jobs}");
    assert_eq!(cli.search("pangolin").len(), 1);

    // No input made the process hold more than a fraction of the files' sizes (10 GB, 100 MB);
    // most of what it holds is the embedding model.
    assert!(peak_kb < 450 * 1024, "peak memory of the doppel process was {peak_kb} KB");
}

#[test]
fn a_long_single_line_is_chunked_without_loss() {
    let cli = Cli::new();
    let words: String = (0..200_000).map(|i| format!("w{i} ")).collect();
    let path = cli.write("long.txt", &words);
    cli.json(&["ingest", path.to_str().unwrap()]);
    let source = cli.source_by_origin(&path).unwrap();
    assert_eq!(source["state"], "ready");
    let shown = cli.json(&["show", path.to_str().unwrap()]);
    let chunks = shown["chunks"].as_array().unwrap();
    assert!(chunks.len() > 100);
    assert!(chunks.iter().all(|c| c["token_count"].as_u64().unwrap() <= 256));
    assert_eq!(cli.search("w199999").len(), 1);
    assert_eq!(cli.search("w0")[0]["location"]["line_start"], 1);
}

#[test]
fn errors_share_one_json_shape() {
    let cli = Cli::new();
    let cases: [(&[&str], &str, &str); 5] = [
        (&["show", "999"], "not_found", "source 999 not found"),
        (&["delete", "/no/such/file.txt"], "not_found", "source /no/such/file.txt not found"),
        (&["cancel", "77"], "not_found", "job 77 not found"),
        (
            &["settings", "set", "top_k", "0"],
            "invalid_setting",
            "invalid value for top_k: 0 is outside 1..=200",
        ),
        (&["settings", "get", "colour"], "not_found", "setting colour not found"),
    ];
    for (args, code, message) in cases {
        let value = cli.json_status(args, 1);
        assert_eq!(error_of(&value), (code.to_string(), message.to_string()), "{args:?}");
    }
    let out = cli.run(&["show", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "error: source 999 not found");
}

#[test]
fn a_second_process_is_refused_with_the_holders_pid() {
    let cli = Cli::new();
    let holder = doppel_core::Doppel::open(doppel_core::Config::new(cli.data_dir())).unwrap();
    let value = cli.json_status(&["sources"], 1);
    let (code, message) = error_of(&value);
    assert_eq!(code, "already_running");
    let expected =
        format!("Doppel is already running on this data directory (pid {})", std::process::id());
    assert!(message.starts_with(&expected), "{message}");
    drop(holder);
    assert_eq!(cli.json(&["sources"]), serde_json::json!([]));
}

#[test]
fn duplicates_are_told_and_changes_replace_the_source() {
    let cli = Cli::new();
    let a = cli.write("a.txt", "the original wombat text");
    let b = cli.write("b.txt", "the original wombat text");
    cli.json(&["ingest", a.to_str().unwrap()]);
    let first = cli.source_by_origin(&a).unwrap();

    let report = cli.json(&["ingest", b.to_str().unwrap()]);
    let job = &report["jobs"][0];
    assert_eq!(job["outcome"], "already_present");
    assert_eq!(job["duplicate_of"], first["id"]);
    assert_eq!(cli.sources().len(), 1);
    let text = cli.run(&["ingest", b.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&text.stderr)
            .contains(&format!("already present (source {})", first["id"]))
    );

    let report = cli.json(&["ingest", a.to_str().unwrap()]);
    assert_eq!(report["jobs"][0]["outcome"], "unchanged");

    std::fs::write(&a, "a rewritten platypus text").unwrap();
    let report = cli.json(&["ingest", a.to_str().unwrap()]);
    assert_eq!(report["jobs"][0]["outcome"], "ingested");
    let after = cli.source_by_origin(&a).unwrap();
    assert_eq!(after["id"], first["id"]);
    assert_ne!(after["content_hash"], first["content_hash"]);
    assert!(cli.search("wombat").is_empty());
    assert_eq!(cli.search("platypus").len(), 1);
}

#[test]
fn delete_forgets_the_source_everywhere() {
    let cli = Cli::new();
    let keep = cli.write("keep.md", "# Kept\nthe ocelot stays\n");
    // Needles no stemmer changes; one in a note, one in an e-mail's subject (its title).
    let gone = cli.write("gone.md", "# Gone\nthe qtz4417 leaves, with the ocelot\n");
    let mail = cli.write(
        "plans.eml",
        "From: Ana <ana@example.org>\r\nTo: me@example.org\r\nSubject: Qsubj5530 plans\r\n\
         Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\nThe ocelot comes on Friday.\r\n",
    );
    cli.json(&["ingest", keep.to_str().unwrap(), gone.to_str().unwrap(), mail.to_str().unwrap()]);
    assert_eq!(cli.search("ocelot").len(), 3);
    assert!(
        cli.json(&["sources"]).to_string().contains("Qsubj5530 plans"),
        "the subject is the title"
    );

    let deleted = cli.json(&["delete", gone.to_str().unwrap()]);
    let id = deleted["deleted"].as_i64().unwrap();
    cli.json(&["delete", mail.to_str().unwrap()]);
    assert!(cli.search("qtz4417").is_empty());
    let hits = cli.search("ocelot");
    assert_eq!(hits.len(), 1);
    assert!(top_origin(&hits).ends_with("keep.md"));
    assert_eq!(error_of(&cli.json_status(&["show", &id.to_string()], 1)).0, "not_found");
    let jobs = cli.json(&["jobs", "--all"]);
    assert!(jobs.as_array().unwrap().iter().all(|j| j["source_id"] != id), "{jobs}");

    // The text is gone from the files themselves, not only from query results: every file
    // under the data directory, its log and index included.
    fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
        }
        out
    }
    let files = files_under(cli.data_dir());
    assert!(files.iter().any(|f| f.starts_with(cli.data_dir().join("logs"))), "{files:?}");
    for path in files {
        let bytes = std::fs::read(&path).unwrap().to_ascii_lowercase();
        for needle in [&b"qtz4417"[..], b"qsubj5530"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "found in {}",
                path.display()
            );
        }
    }
}

#[test]
fn search_text_is_never_query_syntax() {
    let cli = Cli::new();
    let path = cli.write("doc.txt", "alpha beta gamma NEAR delta");
    cli.json(&["ingest", path.to_str().unwrap()]);
    for query in [
        "\"",
        "\"alpha",
        "alpha\"beta",
        "(",
        ")",
        "alpha AND",
        "OR",
        "NOT alpha",
        "NEAR(alpha beta)",
        "alpha*",
        "*",
        "^alpha",
        "text:alpha",
        "{alpha}",
        "alpha -beta",
        "'; DROP TABLE chunks; --",
        "ǅ é 日本",
        "",
    ] {
        let hits = cli.json(&["search", query, "--mode", "keyword"]);
        assert!(hits["hits"].is_array(), "{query:?}: {hits}");
    }
    assert_eq!(cli.search("NEAR(alpha beta)").len(), 1);
    assert_eq!(cli.search("text:alpha").len(), 1);
    assert_eq!(cli.sources().len(), 1);
}

#[test]
fn queued_jobs_can_be_cancelled_and_leave_nothing() {
    let cli = Cli::new();
    let path = cli.write("later.txt", "a note about the okapi");
    let queued = cli.json(&["ingest", "--no-wait", path.to_str().unwrap()]);
    let job = queued["queued"][0]["job_id"].as_i64().unwrap();
    assert_eq!(cli.sources()[0]["state"], "queued");
    assert_eq!(cli.json(&["jobs"]).as_array().unwrap().len(), 1);

    let cancelled = cli.json(&["cancel", &job.to_string()]);
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cli.sources().is_empty());
    assert_eq!(cli.json(&["wait"])["jobs"], serde_json::json!([]));
    assert!(cli.search("okapi").is_empty());
    let again = cli.json(&["cancel", &job.to_string()]);
    assert_eq!(again["state"], "cancelled");
}

#[test]
fn queued_work_survives_until_a_later_process_does_it() {
    let cli = Cli::new();
    let path = cli.write("queued.txt", "the durable tapir");
    cli.json(&["ingest", "--no-wait", path.to_str().unwrap()]);
    assert!(cli.search("tapir").is_empty());
    let report = cli.json(&["wait"]);
    assert_eq!(report["jobs"][0]["state"], "done");
    assert_eq!(cli.search("tapir").len(), 1);
}

#[test]
fn pasted_text_is_read_from_stdin() {
    let cli = Cli::new();
    let mut child = cli
        .command()
        .args(["--json", "add-text", "--title", "Meeting notes"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"## Decisions\nWe chose the aardwolf plan.\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let hits = cli.search("aardwolf");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["source_title"], "Meeting notes");
    assert_eq!(hits[0]["origin"], Value::Null);
    assert_eq!(hits[0]["location"]["label"], "Decisions");
    // The pasted text lives in its chunks only, not in the finished job.
    let jobs = cli.json(&["jobs", "--all"]);
    assert!(!jobs.to_string().contains("aardwolf"));

    let empty = cli.json_status(&["add-text", "--title", "x"], 1);
    assert_eq!(error_of(&empty), ("invalid_input".into(), "the text is empty".into()));
}

#[test]
fn settings_round_trip_and_are_validated() {
    let cli = Cli::new();
    let all = cli.json(&["settings"]);
    for key in [
        "chunk_tokens",
        "chunk_overlap",
        "top_k",
        "max_file_mb",
        "max_attempts",
        "retry_backoff_ms",
    ] {
        assert!(all.get(key).is_some(), "{key} missing from {all}");
    }
    assert_eq!(all["max_file_mb"], 50);
    assert_eq!(cli.json(&["settings", "set", "top_k", "3"])["top_k"], 3);
    assert_eq!(cli.json(&["settings", "get", "top_k"]), serde_json::json!({"top_k": 3}));
    let (code, message) =
        error_of(&cli.json_status(&["settings", "set", "chunk_overlap", "200"], 1));
    assert_eq!(code, "invalid_setting");
    assert!(message.contains("at most half of chunk_tokens"), "{message}");

    // Settings take effect: a tiny file limit refuses a small file, and top_k bounds results.
    cli.json(&["settings", "set", "max_file_mb", "1"]);
    let big = cli.write("big.txt", "x ".repeat(600 * 1024));
    let report = cli.json_status(&["ingest", big.to_str().unwrap()], 2);
    assert_eq!(report["jobs"][0]["error"]["message"], "file too large (1.2 MB > limit of 1 MB)");
    assert_eq!(report["jobs"][0]["error"]["code"], "file_too_large");
    let many: Vec<_> = (0..5)
        .map(|i| cli.write(&format!("m{i}.txt"), format!("shared word number {i}")))
        .collect();
    let mut args = vec!["ingest"];
    args.extend(many.iter().map(|p| p.to_str().unwrap()));
    cli.json(&args);
    assert_eq!(
        cli.json(&["search", "shared", "--mode", "keyword"])["hits"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn doctor_reports_a_healthy_directory() {
    let cli = Cli::new();
    let path = cli.write("d.txt", "doctor check");
    cli.json(&["ingest", path.to_str().unwrap()]);
    let report = cli.doctor();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["schema_version"], doppel_core::SCHEMA_VERSION);
    assert_eq!(report["sources"]["ready"], 1);
    assert_eq!(report["jobs"]["done"], 1);
    assert_eq!(report["chunks"], 1);
    assert!(report["lock_holder"].as_u64().is_some());
}

#[test]
fn m6_a_damaged_keyword_index_stops_writes_until_doctor_repairs_it() {
    let cli = Cli::new();
    let note = cli.write("a.md", "# Owls\nOwls hunt mice at night in the barn.");
    cli.json(&["ingest", note.to_str().unwrap()]);
    // The keyword index's pages are damaged behind Doppel's back.
    let db = rusqlite::Connection::open(cli.data_dir().join("doppel.sqlite3")).unwrap();
    db.execute("UPDATE chunks_fts_data SET block = randomblob(40) WHERE id NOT IN (1, 10)", [])
        .unwrap();
    drop(db);

    let other = cli.write("b.md", "# Garden\nThe tomatoes went in during May.");
    let (code, message) = error_of(&cli.json_status(&["ingest", other.to_str().unwrap()], 1));
    assert_eq!(code, "database_damaged");
    assert!(message.contains("doppel doctor --repair") && message.contains("backup"), "{message}");
    assert!(message.contains("malformed inverted index"), "{message}");
    // The local API's tokens are refused with the same reason.
    let made = cli.json_status(&["api", "token", "create", "--name", "phone", "--scope", "ask"], 1);
    assert_eq!(error_of(&made).0, "database_damaged");
    let report = cli.doctor();
    assert_eq!(report["ok"], false, "{report}");

    // This CLI has no model files, which doctor reports too (exit status 2).
    cli.json_status(&["doctor", "--repair"], 2);
    assert_eq!(cli.doctor()["ok"], true);
    let report = cli.json(&["ingest", other.to_str().unwrap()]);
    assert_eq!(report["jobs"][0]["state"], "done", "{report}");
    assert_eq!(cli.search("owls").len(), 1);
    assert_eq!(cli.search("tomatoes").len(), 1);
}

#[test]
fn m6_damage_to_the_data_itself_is_refused_and_points_to_a_backup() {
    let cli = Cli::new();
    let note = cli.write("a.md", "# Owls\nOwls hunt mice at night in the barn.");
    cli.json(&["ingest", note.to_str().unwrap()]);
    let path = cli.data_dir().join("doppel.sqlite3");
    let (page_size, root): (u64, u64) = {
        let db = rusqlite::Connection::open(&path).unwrap();
        let page_size = db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let root = db
            .query_row("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'", [], |r| r.get(0))
            .unwrap();
        (page_size, root)
    };
    // The passages' table page is overwritten, as a failing disk would.
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start((root - 1) * page_size)).unwrap();
    file.write_all(&[0xAA; 64]).unwrap();
    drop(file);

    let other = cli.write("b.md", "# Garden\nThe tomatoes went in during May.");
    let (code, _) = error_of(&cli.json_status(&["ingest", other.to_str().unwrap()], 1));
    assert_eq!(code, "database_damaged");
    let (code, message) = error_of(&cli.json_status(&["doctor", "--repair"], 1));
    assert_eq!(code, "database_damaged");
    assert!(message.contains("did not help") && message.contains("restore a backup"), "{message}");
}

#[test]
fn debian_handbook_pages_are_found_by_distinctive_phrases() {
    let dir = std::path::Path::new("/usr/share/doc/debian-handbook/html/en-US");
    assert!(dir.is_dir(), "install the debian-handbook package (.ci/run does)");
    let cli = Cli::new();
    let report = cli.json(&["ingest", dir.to_str().unwrap()]);
    let jobs = report["jobs"].as_array().unwrap();
    assert!(jobs.len() >= 120, "{} files", jobs.len());
    assert!(jobs.iter().all(|j| j["state"] == "done"));
    let cases = [
        ("Xen hypervisor domains", "sect.virtualization.html"),
        ("SELinux policy modules", "sect.selinux.html"),
        (
            "anacron periodic jobs when the computer was off",
            "sect.asynchronous-task-scheduling-anacron.html",
        ),
        ("Caching Proxy for Debian Packages", "apt.html"),
        ("Configuring debconf for automatic upgrades", "sect.automatic-upgrades.html"),
        ("Securing NFS", "sect.nfs-file-server.html"),
        ("Building your First Package", "sect.building-first-package.html"),
    ];
    for (phrase, page) in cases {
        let hits = cli.json(&["search", phrase, "-k", "3", "--mode", "keyword"]);
        let origins: Vec<&str> = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["origin"].as_str().unwrap())
            .collect();
        assert!(
            origins.iter().any(|o| o.ends_with(&format!("/{page}"))),
            "{phrase:?} → {origins:?}"
        );
    }
}

#[test]
fn m2_logs_carry_job_ids_but_never_document_text() {
    let cli = Cli::new();
    let path = cli.write("private.md", "# Diary\nmy secret is the xylophonemarker\n");
    let out = cli
        .command()
        .env("DOPPEL_LOG", "debug")
        .args(["ingest", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let job = cli.json(&["jobs", "--all"])[0]["id"].as_i64().unwrap();
    let log = std::fs::read_to_string(cli.data_dir().join("logs/doppel.log")).unwrap();
    assert!(log.contains(&format!("job{{id={job} kind=\"ingest_file\" attempt=1}}")), "{log}");
    assert!(log.contains("job done"), "{log}");
    assert!(!log.contains("xylophonemarker") && !log.contains("secret"), "{log}");
}

#[test]
fn a_missing_path_is_reported_and_exits_non_zero() {
    let cli = Cli::new();
    let good = cli.write("here.txt", "present");
    let report = cli.json_status(&["ingest", "/no/such/place", good.to_str().unwrap()], 2);
    assert_eq!(report["skipped"][0]["code"], "io");
    assert!(
        report["skipped"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("/no/such/place: No such file")
    );
    assert_eq!(report["jobs"][0]["state"], "done");
}

#[test]
fn search_by_meaning_with_the_real_model() {
    let cli = Cli::with_models();
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    cli.json(&["ingest", samples.to_str().unwrap()]);
    let results = cli.json(&["search", "pastry in Portugal", "-k", "1", "--mode", "vector"]);
    assert_eq!(results["mode"], "vector");
    assert!(
        results["hits"][0]["origin"].as_str().unwrap().ends_with("lisbon-trip.txt"),
        "{results}"
    );
    let results = cli.json(&["search", "when did I plant the tomatoes", "-k", "1"]);
    assert_eq!(results["mode"], "hybrid");
    assert_eq!(results["hits"][0]["location"]["label"], "Garden journal › May");
    assert_eq!(results["hits"][0]["retriever"], "hybrid");
    let doctor = cli.doctor();
    assert_eq!(doctor["model"]["dimension"], 384);
    assert_eq!(doctor["index_entries"], doctor["chunks"]);

    // Without the model, the same search says it fell back to keywords.
    let keyword_only = Cli { models: false, ..cli };
    let out = keyword_only.run(&["search", "tomatoes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("showing keyword results only"), "{stderr}");
}

#[test]
fn a_model_server_is_chosen_and_its_key_goes_to_the_keychain_only() {
    let cli = Cli::new();
    assert_eq!(cli.json(&["embedder"])["kind"], "local");
    let (code, message) =
        error_of(&cli.json_status(&["embedder", "ollama", "--url", "ftp://x", "--model", "m"], 1));
    assert_eq!(code, "invalid_input");
    assert!(message.contains("only http and https"), "{message}");

    // Port 9 (discard) on loopback: nothing answers, and nothing is asked until it is needed.
    let url = "http://127.0.0.1:9/v1";
    let chosen = cli.json(&["embedder", "openai", "--url", url, "--model", "text-embed-small"]);
    assert_eq!(chosen["kind"], "openai");
    assert_eq!(chosen["url"], url);
    assert_eq!(chosen["model"], "text-embed-small");
    assert_eq!(chosen["api_key"], Value::Null);
    assert!(chosen["status"]["unavailable"].as_str().unwrap().contains("not been reached"));

    let key = "sk-cli-test-5d1e0b7a9f";
    let mut child = cli
        .command()
        .args(["embedder", "key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{key}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("••••7a9f") && !shown.contains(key), "{shown}");
    let stored = std::process::Command::new("secret-tool")
        .args(["lookup", "service", "doppel", "username", &format!("api-key {url}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), key);
    assert_eq!(cli.json(&["embedder"])["api_key"], "••••7a9f");

    // Nowhere on disk: not in the database, its log, or the logs.
    let mut stack = vec![cli.data_dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "{path:?}");
            }
        }
    }
    cli.json(&["embedder", "key", "--delete"]);
    assert_eq!(cli.json(&["embedder"])["api_key"], Value::Null);
    assert_eq!(cli.json(&["embedder", "local"])["kind"], "local");
}

#[test]
fn choosing_a_model_embeds_every_passage_before_the_command_returns() {
    // Passages stored while no model was available...
    let mut cli = Cli::new();
    let notes = cli.write("trip.md", "# Lisbon\nWe ate custard tarts in Belém, still warm.");
    cli.json(&["ingest", notes.to_str().unwrap()]);
    let report = cli.doctor();
    assert!(report["model"]["unavailable"].is_string(), "{report}");

    // ...are embedded by `doppel embedder local` once the model is there, then found by meaning.
    cli.models = true;
    let chosen = cli.json(&["embedder", "local"]);
    assert_eq!(chosen["status"]["dimension"], 384, "{chosen}");
    let report = cli.doctor();
    assert_eq!(report["chunks_without_vectors"], 0, "{report}");
    assert_eq!(report["index_entries"], 1);
    let results = cli.json(&["search", "Portuguese pastry", "--mode", "vector"]);
    assert_eq!(results["mode"], "vector");
    assert_eq!(results["hits"][0]["source_title"], "Lisbon");
}

#[test]
fn asking_without_a_model_cites_passages_and_the_conversation_is_kept() {
    let cli = Cli::new();
    let note =
        cli.write("garden.md", "# Garden\nI planted the tomatoes in May, after the frost.\n");
    cli.json(&["ingest", note.to_str().unwrap()]);
    let answer = cli.json(&["ask", "tomatoes frost"]);
    let message = &answer["message"];
    assert_eq!(message["grounding"], "grounded", "{answer}");
    assert_eq!(message["state"], "complete");
    assert_eq!(
        message["content"], "I planted the tomatoes in May, after the frost. [1]",
        "the passage's own sentence, cited: {answer}"
    );
    assert_eq!(message["citations"][0]["source_title"], "Garden");
    // The citation names its file.
    let origin = message["citations"][0]["origin"].as_str().unwrap();
    assert_eq!(std::path::Path::new(origin), note.canonicalize().unwrap(), "{answer}");
    assert_eq!(message["citations"][0]["location"], "Garden, lines 1–2");
    let notes = answer["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("no chat model at")), "{answer}");
    let id = answer["conversation"].as_str().unwrap();

    let follow = cli.json(&["ask", "tomatoes", "--conversation", id]);
    assert_eq!(follow["conversation"], id);
    let listed = cli.json(&["conversations"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let messages = cli.json(&["export-conversation", id]);
    assert_eq!(messages.as_array().unwrap().len(), 4, "{messages}");
    let markdown = cli.run(&["export-conversation", id]);
    let markdown = String::from_utf8(markdown.stdout).unwrap();
    assert!(markdown.starts_with("# tomatoes frost\n"), "{markdown}");
    let cited =
        format!("1. Garden, Garden, lines 1–2 ({}): \"", note.canonicalize().unwrap().display());
    assert!(markdown.contains(&cited), "{markdown}");

    let verified = cli.json(&["verify", "add", "When did I plant tomatoes?", "In May."]);
    assert!(verified["verified"].as_i64().is_some());
    let again = cli.json(&["ask", "When did I plant tomatoes?"]);
    assert_eq!(again["message"]["grounding"], "verified", "{again}");
    assert_eq!(again["message"]["content"], "In May.");

    let persona = cli.json(&["persona", "--name", "Ana", "--not-covered", "No idea."]);
    assert_eq!(persona["name"], "Ana");
    let nothing = cli.json(&["ask", "zeppelin"]);
    assert_eq!(nothing["message"]["content"], "No idea.");
    assert_eq!(nothing["message"]["grounding"], "not_covered");

    let bad = cli.json_status(&["ask", "x", "--conversation", "no/slashes"], 1);
    assert_eq!(error_of(&bad).0, "invalid_input");
    let model = cli.json(&["chat-model", "off"]);
    assert_eq!(model["kind"], "off");
}

/// Ctrl-C while an answer streams: the answer stops, the connection to the model server is
/// closed, the partial answer is stored as cancelled, and the exit status says so.
#[test]
fn ctrl_c_stops_an_answer_and_keeps_what_was_said() {
    use std::io::Read;

    let cli = Cli::new();
    let note = cli.write("garden.md", "# Garden\nI planted the tomatoes in May.\n");
    cli.json(&["ingest", note.to_str().unwrap()]);

    let (url, closed) = util::ollama_that_stalls_after("In May");
    cli.json(&["chat-model", "ollama", "--model", "tiny", "--url", &url]);

    let mut child = cli
        .command()
        .args(["ask", "When did I plant the tomatoes?"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("In May") {
        let mut buf = [0; 256];
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the answer started: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // SAFETY: signalling a child process this test started and has not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "a cancelled answer exits with 2");
    closed.recv_timeout(std::time::Duration::from_secs(20)).expect("the connection was closed");

    let conversations = cli.json(&["conversations"]);
    let id = conversations[0]["id"].as_str().unwrap();
    let messages = cli.json(&["export-conversation", id]);
    assert_eq!(messages[1]["state"], "cancelled", "{messages}");
    assert_eq!(messages[1]["content"], "In May");
}

#[test]
fn twins_are_listed_created_and_renamed() {
    let cli = Cli::new();
    let twins = cli.json(&["twins"]);
    assert_eq!(twins.as_array().unwrap().len(), 1);
    assert_eq!(twins[0]["name"], "My twin");
    let work = cli.json(&["twins", "create", " Work "]);
    assert_eq!(work["name"], "Work");
    let id = work["id"].as_i64().unwrap().to_string();
    let renamed = cli.json(&["twins", "rename", &id, "Office"]);
    assert_eq!(
        (renamed["id"].clone(), renamed["name"].clone()),
        (work["id"].clone(), "Office".into())
    );
    let names: Vec<Value> = cli
        .json(&["twins", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, ["My twin", "Office"]);
    let (code, message) = error_of(&cli.json_status(&["twins", "create", "office"], 1));
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("already_exists", "twin \"office\" already exists")
    );
    assert_eq!(error_of(&cli.json_status(&["twins", "create", "  "], 1)).0, "invalid_input");
    assert_eq!(error_of(&cli.json_status(&["twins", "rename", "9", "X"], 1)).0, "not_found");
    let text = cli.run(&["twins"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Office"));
}

#[test]
fn watched_folders_are_added_listed_and_removed_without_watching() {
    let cli = Cli::new();
    let note = cli.write("notes/a.md", "# A\nA note in a watched folder.");
    let folder_path = note.parent().unwrap();
    let folder = cli.json(&["watch", "add", folder_path.to_str().unwrap()]);
    assert_eq!(folder["path"], folder_path.to_str().unwrap());
    assert_eq!(folder["twin_id"], 1);
    // A one-shot command stores the folder but does not watch it.
    assert!(cli.sources().is_empty());
    let again = cli.json(&["watch", "add", &format!("{}/.", folder_path.display())]);
    assert_eq!(again["id"], folder["id"]);
    let list = cli.json(&["watch", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], folder["id"]);
    assert_eq!(
        error_of(&cli.json_status(&["watch", "add", note.to_str().unwrap()], 1)).0,
        "invalid_input"
    );
    assert_eq!(error_of(&cli.json_status(&["watch", "add", "/no/such/folder"], 1)).0, "io");

    let id = folder["id"].as_i64().unwrap().to_string();
    assert_eq!(cli.json(&["watch", "remove", &id])["removed"], folder["id"]);
    assert!(cli.json(&["watch", "list"]).as_array().unwrap().is_empty());
    assert_eq!(error_of(&cli.json_status(&["watch", "remove", &id], 1)).0, "not_found");
}

#[test]
fn watch_run_catches_up_follows_changes_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let cli = Cli::new();
    let first = cli.write("w/first.md", "# First\nHerons by the river.");
    let folder = first.parent().unwrap().to_path_buf();
    cli.json(&["watch", "add", folder.to_str().unwrap()]);
    /// Kills the child if the test fails before it ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            drop(self.0.kill());
            drop(self.0.wait());
        }
    }
    let mut child = Running(
        cli.command().args(["--json", "watch", "run"]).stdout(Stdio::piped()).spawn().unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    // Reads lines until the folder's change and the file's indexing were both told: the worker
    // may finish the job before the watcher tells what it queued.
    let mut change_and_job = |path: &std::path::Path| -> (Value, Value) {
        let (mut change, mut done) = (None, None);
        while change.is_none() || done.is_none() {
            let line = lines.next().expect("watch run ended early").unwrap();
            let value: Value = serde_json::from_str(&line).unwrap();
            match value["event"].as_str() {
                Some("watch_changed") => change = Some(value),
                Some("job_done") if value["origin"] == path.to_str().unwrap() => done = Some(value),
                _ => {}
            }
        }
        (change.unwrap(), done.unwrap())
    };
    let (caught_up, done) = change_and_job(&first);
    assert_eq!((caught_up["queued"].clone(), caught_up["forgotten"].clone()), (1.into(), 0.into()));
    assert_eq!(done["outcome"], "ingested");
    let second = cli.write("w/second.md", "# Second\nKingfishers in June.");
    let (change, done) = change_and_job(&second);
    assert_eq!((change["queued"].clone(), done["chunks"].clone()), (1.into(), 1.into()));
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    assert!(child.0.wait().unwrap().success());
    let titles: Vec<Value> = cli.sources().iter().map(|s| s["title"].clone()).collect();
    assert_eq!(titles, ["First", "Second"]);
}

/// Runs `doppel <args>` with an endless stream of `x` (no newline) on standard input, written
/// until the process stops reading or `cap` bytes have gone; returns the bytes it took and its
/// output. A process that read all of its input would take the whole `cap`.
fn feed_endless(cli: &Cli, args: &[&str], cap: usize) -> (usize, std::process::Output) {
    let mut child = cli
        .command()
        .arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        // A process that stopped reading closes the pipe: the write fails.
        while sent < cap && stdin.write_all(&block).is_ok() {
            sent += block.len();
        }
        sent
    });
    let out = child.wait_with_output().unwrap();
    (writer.join().unwrap(), out)
}

#[test]
fn cr3_every_read_of_standard_input_stops_at_its_limit() {
    let cli = Cli::new();
    cli.json(&["settings", "set", "max_file_mb", "1"]);
    let cap = 64 << 20;
    // Far less than was offered: the limit, the pipe's buffer and one block.
    let bounded = 4 << 20;

    let (taken, out) = feed_endless(&cli, &["add-text", "--title", "Endless"], cap);
    assert!(taken < bounded, "add-text read {taken} bytes");
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error_of(&error).0, "file_too_large", "{error}");
    assert!(cli.sources().is_empty());

    for args in [&["embedder", "key"][..], &["chat-model", "key"], &["chat"]] {
        let (taken, out) = feed_endless(&cli, args, cap);
        assert!(taken < bounded, "doppel {args:?} read {taken} bytes");
        assert_eq!(out.status.code(), Some(1), "doppel {args:?}");
        let error: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (code, message) = error_of(&error);
        assert_eq!(code, "invalid_input", "doppel {args:?}: {error}");
        assert!(message.contains("at most"), "doppel {args:?}: {message}");
    }
}

/// `doppel` with no session bus to find: no Secret Service can be reached, as on a server or
/// in a terminal over SSH.
fn without_keychain(cli: &Cli) -> std::process::Command {
    let mut command = cli.command();
    for name in ["DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "XDG_RUNTIME_DIR"] {
        command.env_remove(name);
    }
    command
}

#[test]
fn a_server_that_needs_no_key_works_without_a_keychain() {
    let cli = Cli::new();
    let notes = cli.write("trip.md", "# Lisbon\nWe ate custard tarts in Belém, still warm.");
    cli.json(&["ingest", notes.to_str().unwrap()]);
    let url = util::ollama_embedder();
    let json = |args: &[&str]| {
        let out = without_keychain(&cli).arg("--json").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "doppel {args:?}: {stdout}\n{stderr}");
        serde_json::from_str::<Value>(stdout.trim()).unwrap()
    };
    // The audit's cost guard: a server that would be sent passages is chosen only with --yes.
    let refused = without_keychain(&cli)
        .args(["--json", "embedder", "ollama", "--url", &url, "--model", "m"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let (code, message) = error_of(&serde_json::from_slice(&refused.stdout).unwrap());
    assert_eq!(code, "confirmation_needed");
    assert!(message.contains("sends 1 passage to it") && message.contains("--yes"), "{message}");
    assert_eq!(json(&["embedder"])["kind"], "local", "nothing was chosen");
    let chosen = json(&["embedder", "ollama", "--url", &url, "--model", "m", "--yes"]);
    assert_eq!((chosen["kind"].as_str(), &chosen["api_key"]), (Some("ollama"), &Value::Null));
    assert_eq!(chosen["status"]["dimension"], 4, "{chosen}");
    // Doctor reports the chat model this CLI lacks (exit 2); the vectors are all there.
    let doctor = without_keychain(&cli).args(["--json", "doctor"]).output().unwrap();
    let report: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report["chunks_without_vectors"], 0, "{report}");

    // Storing a key is what needs the keychain, and says so.
    let mut child = without_keychain(&cli)
        .args(["--json", "embedder", "key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"sk-no-keychain-1234\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error_of(&error).0, "keychain", "{error}");
}

#[test]
fn the_diagnostic_report_holds_no_word_title_or_path_of_the_documents() {
    let cli = Cli::new();
    // Marker words in the text, the titles, the file names and a folder name with spaces.
    let note = cli.write(
        "Private Notes vq7731/plan zx5521.md",
        "# Title kw8842\nThe body says mm3390 and nothing else of note.",
    );
    let mail = cli.write(
        "Private Notes vq7731/letter.eml",
        "From: Ann <ann@example.org>\nSubject: Subject hh2208\n\nThe mail says pp4471.",
    );
    cli.write("Private Notes vq7731/scan jj6674.pdf", "%PDF-1.4 torn");
    cli.write("Private Notes vq7731/book tt5519.epub", "not an e-book");
    let folder = note.parent().unwrap();
    cli.command().args(["ingest", folder.to_str().unwrap()]).output().unwrap();
    cli.command().args(["search", "mm3390"]).output().unwrap();
    cli.json_status(&["doctor"], 2);

    let report = cli.json(&["report"])["report"].as_str().unwrap().to_string();
    let markers = ["vq7731", "zx5521", "kw8842", "mm3390", "hh2208", "pp4471", "jj6674", "tt5519"];
    for needle in markers.iter().copied().chain([
        "ann@example.org",
        "Private Notes",
        cli.data_dir().to_str().unwrap(),
        folder.to_str().unwrap(),
        mail.to_str().unwrap(),
    ]) {
        assert!(!report.contains(needle), "{needle} in the report:\n{report}");
    }
    // What it is for is there: the failures by code, the metrics, the log's lines.
    assert!(report.contains("failures by code: malformed 2"), "{report}");
    assert!(report.contains("job_ms pdf 1 "), "{report}");
    assert!(report.contains("job failed code=\"malformed\" error=<malformed>"), "{report}");
    assert!(report.contains("data_dir=<path>"), "{report}");
    assert!(report.contains("sources: failed 2, ready 2"), "{report}");

    let stats = cli.json(&["stats"]);
    assert_eq!(stats["failures"], serde_json::json!({"malformed": 2}), "{stats}");
    assert_eq!(stats["health"]["queued_jobs"], 0);
    let markdown = stats["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "job_ms" && m["label"] == "markdown");
    assert_eq!(markdown.unwrap()["count"], 1, "{stats}");
}
