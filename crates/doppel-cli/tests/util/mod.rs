//! Drives the built `doppel` binary in a temporary data directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub struct Cli {
    pub data: tempfile::TempDir,
    pub files: tempfile::TempDir,
}

impl Cli {
    pub fn new() -> Cli {
        Cli { data: tempfile::tempdir().unwrap(), files: tempfile::tempdir().unwrap() }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A path under the scratch folder for input files, with parent folders created.
    pub fn file(&self, name: &str) -> PathBuf {
        let path = self.files.path().canonicalize().unwrap().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_doppel"));
        cmd.arg("--data-dir")
            .arg(self.data.path())
            .env_remove("DOPPEL_DATA_DIR")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs with `--json`, asserts the exit status, and parses stdout.
    pub fn json_status(&self, args: &[&str], status: i32) -> Value {
        let out = self.command().arg("--json").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(status),
            "doppel {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    pub fn json(&self, args: &[&str]) -> Value {
        self.json_status(args, 0)
    }

    pub fn sources(&self) -> Vec<Value> {
        self.json(&["sources"]).as_array().unwrap().clone()
    }

    pub fn source_by_origin(&self, path: &Path) -> Option<Value> {
        let origin = path.to_string_lossy();
        self.sources().into_iter().find(|s| s["origin"] == *origin)
    }

    pub fn search(&self, query: &str) -> Vec<Value> {
        self.json(&["search", query, "-k", "20"]).as_array().unwrap().clone()
    }
}

/// The `{"error":{...}}` shape, returning (code, message).
pub fn error_of(value: &Value) -> (String, String) {
    let error = value.get("error").unwrap_or_else(|| panic!("no error in {value}"));
    assert_eq!(error.as_object().unwrap().len(), 2, "{value}");
    (error["code"].as_str().unwrap().to_string(), error["message"].as_str().unwrap().to_string())
}
