//! Models found without environment variables, honest status when one is missing, and the
//! catalogue's downloads, through the real `doppel` binary and real loopback servers.

mod util;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use util::{Cli, Serving, error_of, file_server};

/// The default model files, as `scripts/models` fills the cache (`$DOPPEL_MODEL_CACHE`).
const DEFAULT_FILES: [&str; 4] = [
    "minilm-int8/model.onnx",
    "minilm-int8/tokenizer.json",
    "onnxruntime/libonnxruntime.so",
    "smollm2/model.gguf",
];

fn model_cache() -> PathBuf {
    PathBuf::from(std::env::var_os("DOPPEL_MODEL_CACHE").expect("set by scripts/test"))
}

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    doppel_core::download::file_sha256(&path).unwrap()
}

/// A small file that passes for a GGUF model (the download code checks the magic).
fn tiny_gguf() -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    bytes
}

/// A catalogue file with one chat model, served from `url`.
fn catalogue_with(cli: &Cli, url: &str, sha256: &str, size: usize) -> PathBuf {
    let catalogue = json!({
        "format": 1,
        "defaults": [],
        "chat": [{
            "name": "tiny", "title": "Tiny test model", "parameters": "1M",
            "quantisation": "Q4_0", "size": size, "memory": size, "licence": "MIT",
            "url": format!("{url}/tiny-model.gguf"), "sha256": sha256,
            "good_for": "tests", "demo": false
        }],
        "embedding": []
    });
    cli.write("catalogue.json", catalogue.to_string())
}

fn problems(doctor: &Value) -> Vec<String> {
    doctor["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
}

#[test]
fn without_models_doctor_names_each_missing_one_with_its_fix_and_fails() {
    // No $DOPPEL_MODEL_CACHE, nothing in the data directory, nothing beside the test binary.
    let cli = Cli::new();
    let doctor = cli.json_status(&["doctor"], 2);
    let problems = problems(&doctor);
    for (what, expected) in [
        ("embedding model", "The embedding model (all-MiniLM-L6-v2) is not installed"),
        ("runtime", "ONNX Runtime's library (libonnxruntime.so) is not installed"),
        ("chat model", "The default chat model (SmolLM2-135M) is not installed"),
    ] {
        let found = problems.iter().find(|p| p.starts_with(expected));
        let found = found.unwrap_or_else(|| panic!("no problem for the {what}: {problems:?}"));
        assert!(found.contains("Fix: run `doppel models install-defaults`"), "{found}");
    }
    let text = cli.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(!stdout.contains("all checks passed"), "{stdout}");
    assert_eq!(text.status.code(), Some(2));
}

#[test]
fn install_defaults_from_a_folder_then_models_are_found_without_any_variable() {
    let cli = Cli::new();
    let out = cli.json(&["models", "install-defaults", "--from", model_cache().to_str().unwrap()]);
    let installed = out["installed"].as_array().unwrap();
    assert_eq!(installed.len(), 4, "{out}");
    for (row, file) in installed.iter().zip(DEFAULT_FILES) {
        assert_eq!(row["file"], file);
        assert_eq!(row["already_there"], false);
        let path = cli.data_dir().join("models").join(file);
        assert_eq!(row["path"], path.to_str().unwrap());
        let cached = std::fs::read(model_cache().join(file)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cached.len() as u64, "{file}");
    }
    // A second run checks and fetches nothing.
    let again =
        cli.json(&["models", "install-defaults", "--from", model_cache().to_str().unwrap()]);
    assert!(again["installed"].as_array().unwrap().iter().all(|r| r["already_there"] == true));

    // Now, with no variable at all, search by meaning works and doctor passes.
    let note = cli.write(
        "lisbon.txt",
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/lisbon-trip.txt"))
            .unwrap(),
    );
    cli.json(&["ingest", note.to_str().unwrap()]);
    let hits = cli.json(&["search", "pastry in Portugal", "--mode", "vector", "-k", "1"]);
    assert_eq!(hits["hits"][0]["origin"], note.to_str().unwrap(), "{hits}");
    let doctor = cli.json(&["doctor"]);
    assert_eq!(problems(&doctor), Vec::<String>::new());
}

#[test]
fn install_defaults_from_a_server_checks_every_file_and_refuses_a_wrong_one() {
    let files: Vec<(String, Vec<u8>)> = DEFAULT_FILES
        .iter()
        .map(|f| (f.to_string(), std::fs::read(model_cache().join(f)).unwrap()))
        .collect();
    // The tokenizer is served damaged: one byte flipped.
    let mut damaged = files.clone();
    damaged[1].1[10] ^= 0x20;
    let (url, _) = file_server(damaged, Serving::Whole);
    let cli = Cli::new();
    let e = cli.json_status(&["models", "install-defaults", "--from", &url], 1);
    let (code, message) = error_of(&e);
    assert_eq!(code, "download");
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(message.contains("minilm-int8/tokenizer.json"), "{message}");
    // The file before it is installed; the damaged one is not, nor any part of it.
    let models = cli.data_dir().join("models");
    assert!(models.join(DEFAULT_FILES[0]).is_file());
    assert!(!models.join(DEFAULT_FILES[1]).exists());
    assert!(!models.join("minilm-int8/tokenizer.json.part").exists());

    // From a good server the rest arrives, and what was installed is not fetched again.
    let (url, seen) = file_server(files, Serving::Whole);
    let out = cli.json(&["models", "install-defaults", "--from", &url]);
    let rows = out["installed"].as_array().unwrap();
    assert_eq!(rows[0]["already_there"], true);
    assert!(rows[1..].iter().all(|r| r["already_there"] == false), "{out}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(problems(&cli.json(&["doctor"])), Vec::<String>::new());
}

#[test]
fn a_catalogue_model_downloads_resumes_a_cut_off_transfer_and_becomes_the_chat_model() {
    let model = tiny_gguf();
    // Each answer stops after 100 kB: the download must resume with Range until it is whole.
    let (url, seen) =
        file_server(vec![("tiny-model.gguf".into(), model.clone())], Serving::CutAfter(100_000));
    let cli = Cli::new();
    let catalogue = catalogue_with(&cli, &url, &sha256(&model), model.len());
    let listed = cli.json(&["models", "catalogue", "--catalogue", catalogue.to_str().unwrap()]);
    assert_eq!(listed["chat"][0]["name"], "tiny");

    let out = cli.json(&["models", "get", "tiny", "--catalogue", catalogue.to_str().unwrap()]);
    let path = cli.data_dir().join("models/chat/tiny-model.gguf");
    assert_eq!(out, json!({ "kind": "local", "model": path.to_str().unwrap() }));
    assert_eq!(std::fs::read(&path).unwrap(), model);
    let starts = seen.lock().unwrap().clone();
    assert_eq!(starts, [0, 100_000, 200_000, 300_000], "the transfer resumed where it stopped");
    // The chosen model is what `models` shows from now on.
    assert_eq!(cli.json(&["models"]), out);
}

#[test]
fn a_catalogue_model_with_the_wrong_checksum_is_refused_and_nothing_changes() {
    let model = tiny_gguf();
    let (url, _) = file_server(vec![("tiny-model.gguf".into(), model.clone())], Serving::Whole);
    let cli = Cli::new();
    let before = cli.json(&["models"]);
    let catalogue = catalogue_with(&cli, &url, &"ab".repeat(32), model.len());
    let e =
        cli.json_status(&["models", "get", "tiny", "--catalogue", catalogue.to_str().unwrap()], 1);
    let (code, message) = error_of(&e);
    assert_eq!(code, "download");
    assert!(message.contains("checksum mismatch"), "{message}");
    assert_eq!(std::fs::read_dir(cli.data_dir().join("models/chat")).unwrap().count(), 0);
    assert_eq!(cli.json(&["models"]), before);
    // An unknown name lists the ones there are.
    let e =
        cli.json_status(&["models", "get", "nope", "--catalogue", catalogue.to_str().unwrap()], 1);
    assert!(error_of(&e).1.contains("tiny"), "{e}");
}

#[test]
fn the_built_in_catalogue_leads_to_better_models_and_says_the_default_is_a_demo() {
    let cli = Cli::new();
    let listed = cli.json(&["models", "catalogue"]);
    let chat = listed["chat"].as_array().unwrap();
    assert!(chat.len() >= 5, "{listed}");
    let demo: Vec<&Value> = chat.iter().filter(|m| m["demo"] == true).collect();
    assert_eq!(demo.len(), 1);
    assert_eq!(demo[0]["name"], "smollm2-135m");
    assert!(chat.iter().any(|m| m["name"] == "qwen2.5-1.5b"));
    let text = String::from_utf8(cli.run(&["models", "catalogue"]).stdout).unwrap();
    assert!(text.contains("tiny demo model"), "{text}");
    assert!(text.contains("English only"), "{text}");
    assert!(text.contains("bge-m3"), "{text}");
}

/// An installed layout, `<prefix>/bin/doppel` beside `<prefix>/lib/Doppel/models`, as the
/// package lays it out; the binary is a hard link (or a copy) of the one under test.
fn installed_layout(prefix: &Path) -> PathBuf {
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("doppel");
    let built = Path::new(env!("CARGO_BIN_EXE_doppel"));
    if std::fs::hard_link(built, &exe).is_err() {
        std::fs::copy(built, &exe).unwrap();
    }
    let models = prefix.join("lib/Doppel/models");
    for file in DEFAULT_FILES {
        let dest = models.join(file);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(model_cache().join(file), dest).unwrap();
    }
    exe
}

#[test]
fn models_installed_beside_the_binary_are_found_without_any_variable() {
    let cli = Cli::new();
    let exe = installed_layout(&cli.file("usr"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&exe)
            .arg("--data-dir")
            .arg(cli.data_dir())
            .arg("--json")
            .args(args)
            .env_remove("DOPPEL_MODEL_CACHE")
            .env_remove("DOPPEL_DATA_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(stdout.trim()).unwrap()
    };
    assert_eq!(problems(&run(&["doctor"])), Vec::<String>::new());
    let note = cli.write(
        "lisbon.txt",
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/lisbon-trip.txt"))
            .unwrap(),
    );
    run(&["ingest", note.to_str().unwrap()]);
    let hits = run(&["search", "pastry in Portugal", "--mode", "vector", "-k", "1"]);
    assert_eq!(hits["hits"][0]["origin"], note.to_str().unwrap(), "{hits}");
    // The default chat model is the bundled one; nothing was copied into the data directory.
    let model = run(&["models"]);
    assert!(
        model["model"].as_str().unwrap().ends_with("lib/Doppel/models/smollm2/model.gguf"),
        "{model}"
    );
    assert!(!cli.data_dir().join("models").exists());
}
