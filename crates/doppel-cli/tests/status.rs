//! `doppel status`, `doppel pause` and `doppel resume`, and the time left that `ingest` and
//! `wait` tell, through the built binary on a real data directory.

mod util;

use util::Cli;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn status_says_what_the_twin_knows_and_why_a_word_is_or_is_not_found() {
    let cli = Cli::new();
    cli.write(
        "notes/orchard.md",
        "# Orchard\n\nAunt Wilhelmina planted the quince orchard in 1987.\n",
    );
    cli.write("notes/empty.txt", "  \n");
    let broken = cli.write("notes/ledger.json", "{\"broken\": ");
    let notes = cli.file("notes");
    let ingest = cli.run(&["ingest", notes.to_str().unwrap()]);
    assert_eq!(ingest.status.code(), Some(2), "{}", stderr(&ingest));

    let status = cli.json(&["status"]);
    let states = &status["coverage"]["states"];
    assert_eq!(
        (states["ready"].as_u64(), states["failed"].as_u64(), states["skipped"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{status}"
    );
    assert_eq!(status["coverage"]["passages"], 1);
    assert_eq!(status["queue"]["total"], 0);
    let problems = status["coverage"]["problems"].as_array().unwrap();
    let ledger = problems.iter().find(|p| p["origin"] == broken.to_str().unwrap()).unwrap();
    assert_eq!(
        (ledger["kind"].as_str(), ledger["code"].as_str(), ledger["retryable"].as_bool()),
        (Some("failed"), Some("malformed"), Some(true))
    );

    // The same facts for people: every failure and skip with its reason, and how to retry.
    let text = cli.run(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("1 ready · 0 queued · 0 being read · 1 failed · 1 skipped"), "{text}");
    assert!(text.contains(&format!("failed  {}: file is malformed", broken.display())), "{text}");
    assert!(text.contains(&format!("(retry: doppel reingest {})", ledger["source_id"])), "{text}");
    assert!(text.contains("skipped"), "{text}");

    let why = cli.json(&["status", "--why", "planting"]);
    assert_eq!(why["why"]["words"][0]["word"], "planting");
    assert_eq!(why["why"]["words"][0]["passages"], 1);
    assert!(why["why"]["meaning"]["unavailable"].is_string(), "{why}");
    let why = cli.run(&["status", "--why", "zeppelin"]);
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(why.contains("by keywords: \"zeppelin\" is in no passage"), "{why}");
    assert!(why.contains("by name: no source is named like it"), "{why}");
}

#[test]
fn a_paused_queue_stays_paused_across_runs_until_resumed() {
    let cli = Cli::new();
    let plan = cli.write("plan.md", "# Plan\n\nSow the broad beans in November.\n");
    let paused = cli.json(&["pause"]);
    assert_eq!(paused["paused"], true);

    // Files are queued, not read, and the command says why it does not wait.
    let out = cli.run(&["ingest", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the queue is paused"));
    let jobs = cli.json(&["jobs"]);
    assert_eq!(jobs[0]["state"], "queued", "{jobs}");
    let wait = cli.json_status(&["wait"], 1);
    assert_eq!(wait["error"]["code"], "queue_paused", "{wait}");
    let status = cli.json(&["status"]);
    assert_eq!(
        (status["queue"]["paused"].as_bool(), status["queue"]["total"].as_u64()),
        (Some(true), Some(1))
    );

    let resumed = cli.json(&["resume"]);
    assert_eq!(resumed["paused"], false);
    let done = cli.json(&["wait"]);
    assert_eq!(done["jobs"][0]["state"], "done", "{done}");
    assert_eq!(cli.json(&["status"])["coverage"]["states"]["ready"], 1);
}

#[test]
fn ingest_says_how_many_files_are_done_and_about_how_long_the_rest_will_take() {
    let cli = Cli::new();
    let paths: Vec<String> = (0..4)
        .map(|i| {
            let path = cli.write(
                &format!("notes/n{i}.txt"),
                format!("Note {i} about the quince harvest of year {i}.\n"),
            );
            path.to_str().unwrap().to_string()
        })
        .collect();
    let mut args = vec!["ingest"];
    args.extend(paths.iter().map(String::as_str));
    let out = cli.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<String> = stderr(&out).lines().map(str::to_string).collect();
    let progress: Vec<&str> = lines.iter().filter_map(|l| l.split(" · ").nth(1)).collect();
    assert_eq!(progress.len(), 4, "{lines:#?}");
    assert_eq!(progress[0], "1 of 4 files, estimating the time left");
    for line in &progress[1..3] {
        assert!(line.contains(" of 4 files, about ") && line.ends_with(" left"), "{line}");
    }
    assert_eq!(progress[3], "4 of 4 files, all done");
}
