//! `doppel backup`, `restore`, `export` and `api` as a person or a script runs them: real data
//! directories, real files, a real server on loopback.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::Value;
use util::Cli;

/// A twin with two notes, an answered question and a verified answer.
fn a_twin() -> Cli {
    let cli = Cli::new();
    cli.write(
        "notes/garden.md",
        "# Garden\n\nThe tomatoes went in during May, after the last frost.\n",
    );
    cli.write("notes/bread.md", "# Bread\n\nThe sourdough starter is fed every morning, qz5512.\n");
    cli.json(&["ingest", cli.file("notes").to_str().unwrap()]);
    cli.json(&["chat-model", "off"]);
    let answer = cli.json(&["ask", "When did the tomatoes go in?", "--conversation", "garden-1"]);
    let message = answer["message"]["id"].as_i64().unwrap().to_string();
    cli.json(&["verify", "answer", "garden-1", &message]);
    cli.json(&["persona", "--name", "Ana", "--voice", "dry, brief"]);
    cli
}

fn with_stdin(cli: &Cli, args: &[&str], input: &str) -> (Value, i32) {
    let mut child = cli
        .command()
        .arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (value, out.status.code().unwrap())
}

#[test]
fn backup_restore_and_export_from_the_command_line() {
    let cli = a_twin();
    let file = cli.file("out/twin.doppel");
    let backup = cli.json(&["backup", file.to_str().unwrap()]);
    assert_eq!(backup["manifest"]["counts"]["sources"], 2);
    assert_eq!(backup["manifest"]["counts"]["verified_answers"], 1);
    assert_eq!(backup["manifest"]["encrypted"], false);

    let elsewhere = Cli::new();
    let restored = elsewhere.json(&["restore", file.to_str().unwrap()]);
    assert_eq!(restored["counts"], backup["manifest"]["counts"]);
    assert_eq!(restored["replaced"], false);
    assert_eq!(elsewhere.sources().len(), 2);
    let conversations = elsewhere.json(&["conversations"]);
    assert_eq!(conversations[0]["id"], "garden-1");
    // A twin is replaced only with --yes.
    let refused = elsewhere.json_status(&["restore", file.to_str().unwrap()], 1);
    assert_eq!(refused["error"]["code"], "confirmation_needed");
    assert_eq!(elsewhere.json(&["restore", file.to_str().unwrap(), "--yes"])["replaced"], true);

    // Export: plain files a person reads without Doppel.
    let dir = cli.file("export");
    let report = cli.json(&["export", dir.to_str().unwrap()]);
    assert_eq!((report["conversations"].as_u64(), report["sources"].as_u64()), (Some(1), Some(2)));
    let csv = std::fs::read_to_string(dir.join("sources.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("origin,title,state,passages,added"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r.contains("notes/garden.md,Garden,ready,1,")), "{csv}");
    let conversation =
        std::fs::read_dir(dir.join("conversations")).unwrap().next().unwrap().unwrap().path();
    let markdown = std::fs::read_to_string(&conversation).unwrap();
    assert!(markdown.contains("## You\n\nWhen did the tomatoes go in?"), "{markdown}");
    assert!(markdown.contains("1. Garden"), "citations are listed: {markdown}");
    let verified = std::fs::read_to_string(dir.join("verified-answers.md")).unwrap();
    assert!(verified.contains("## When did the tomatoes go in?"), "{verified}");
    let persona = std::fs::read_to_string(dir.join("persona.md")).unwrap();
    assert!(persona.contains("Ana") && persona.contains("dry, brief"), "{persona}");
    // Never into a folder that holds something, nor into the data directory.
    let again = cli.json_status(&["export", dir.to_str().unwrap()], 1);
    assert_eq!(again["error"]["code"], "already_exists");
    let inside = cli.data_dir().join("export");
    let inside = cli.json_status(&["export", inside.to_str().unwrap()], 1);
    assert_eq!(inside["error"]["code"], "invalid_input");
}

#[test]
fn an_encrypted_backup_opens_only_with_its_passphrase() {
    let cli = a_twin();
    let file = cli.file("sealed.doppel");
    let path = file.to_str().unwrap();
    let (backup, status) = with_stdin(&cli, &["backup", path, "--encrypt"], "tomato soup\n");
    assert_eq!(status, 0, "{backup}");
    assert_eq!(backup["manifest"]["encrypted"], true);
    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"qz5512"), "the text is not readable in the file");
    let elsewhere = Cli::new();
    let (wrong, status) = with_stdin(&elsewhere, &["restore", path], "tomato salad\n");
    assert_eq!((status, wrong["error"]["code"].as_str()), (1, Some("wrong_passphrase")));
    let (empty, status) = with_stdin(&elsewhere, &["restore", path], "");
    assert_eq!((status, empty["error"]["code"].as_str()), (1, Some("invalid_input")));
    assert!(elsewhere.sources().is_empty(), "nothing was restored");
    let (restored, status) = with_stdin(&elsewhere, &["restore", path], "tomato soup\n");
    assert_eq!(status, 0, "{restored}");
    assert_eq!(elsewhere.sources().len(), 2);
}

/// Starts `doppel api serve` and returns it with the address it printed.
fn serve(cli: &Cli, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut command = cli.command();
    command.args(["--json", "api", "serve", "--address", "127.0.0.1:0"]).stdout(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let started: Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    (child, started["url"].as_str().unwrap().to_string())
}

fn stop(mut child: std::process::Child) {
    // SAFETY: sends SIGINT to our own child, which stops the server cleanly.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn cr2_m2_no_environment_variable_turns_the_token_check_off_and_the_log_keeps_no_text() {
    let cli = a_twin();
    let read = cli.json(&["api", "token", "create", "--name", "scripts", "--scope", "read"]);
    let ask = cli.json(&["api", "token", "create", "--name", "phone", "--scope", "ask"]);
    assert!(read["share_link"].is_null());
    assert!(ask["share_link"].as_str().unwrap().contains("/share#token=dpl_"));
    let (read, ask) =
        (read["token"].as_str().unwrap().to_string(), ask["token"].as_str().unwrap().to_string());
    let switches = [
        ("DOPPEL_API_AUTH", "off"),
        ("DOPPEL_AUTH", "0"),
        ("DOPPEL_DEV_MODE", "1"),
        ("DOPPEL_INSECURE", "1"),
        ("DOPPEL_NO_AUTH", "true"),
        ("DEV_MODE", "1"),
        ("DEBUG", "1"),
        ("DOPPEL_LOG", "trace"),
    ];
    let (server, url) = serve(&cli, &switches);
    let client = reqwest::blocking::Client::new();
    let anonymous = client.get(format!("{url}/sources")).header("X-Dev-Mode", "1").send().unwrap();
    assert_eq!(anonymous.status(), 401);
    let needle = "qzneedle7781";
    let found = client
        .get(format!("{url}/search?q=sourdough%20{needle}"))
        .bearer_auth(&read)
        .send()
        .unwrap();
    assert_eq!(found.status(), 200);
    let answer = client
        .post(format!("{url}/ask"))
        .bearer_auth(&ask)
        .json(&serde_json::json!({ "question": format!("When is the starter fed? {needle}"), "stream": false }))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let request_id = answer.headers()["x-request-id"].to_str().unwrap().to_string();
    stop(server);
    let log = std::fs::read_to_string(cli.data_dir().join("logs/doppel.log")).unwrap();
    assert!(log.contains(&request_id), "every line of a request carries its id");
    assert!(
        log.lines().any(|l| l.contains(&request_id) && l.contains("answer finished")),
        "the core's lines too"
    );
    for text in [needle, "sourdough starter is fed", "qz5512", &read[17..], &ask[17..]] {
        assert!(!log.contains(text), "the log holds {text:?}");
    }
    // Tokens list with their last use; revoked, a token is refused at once.
    let tokens = cli.json(&["api", "token", "list"]);
    assert!(tokens.as_array().unwrap().iter().all(|t| t["last_used_at"].is_i64()), "{tokens}");
    let id = tokens[0]["id"].as_i64().unwrap().to_string();
    cli.json(&["api", "token", "revoke", &id]);
    let (server, url) = serve(&cli, &[]);
    let revoked = client.get(format!("{url}/models")).bearer_auth(&ask).send().unwrap();
    assert_eq!(revoked.status(), 401);
    stop(server);
    // The switch for the desktop app, and its address checks.
    assert_eq!(cli.json(&["api", "on"])["enabled"], true);
    let wide = cli.json_status(&["api", "on", "--address", "0.0.0.0:8765"], 1);
    assert_eq!(wide["error"]["code"], "confirmation_needed");
    assert_eq!(
        cli.json(&["api", "on", "--address", "0.0.0.0:8765", "--yes"])["address"],
        "0.0.0.0:8765"
    );
    assert_eq!(cli.json(&["api", "off"])["enabled"], false);
}
