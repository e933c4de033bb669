//! AUDIT.md maps each defect of the production audit to the tests that prove it absent. This
//! test keeps the map honest: every test it names exists, and every defect names at least one.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files a test named `file::function` may live in.
fn candidates(file: &str) -> Vec<PathBuf> {
    if file.contains('/') {
        return vec![root().join(file)];
    }
    ["crates/doppel-core/tests", "crates/doppel-cli/tests", "src-tauri/tests"]
        .iter()
        .map(|dir| root().join(dir).join(format!("{file}.rs")))
        .collect()
}

/// Whether `name` is a test in one of `files`: a Rust `fn name(`, or an end-to-end test's title.
fn defined(files: &[PathBuf], name: &str) -> bool {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|text| text.contains(&format!("fn {name}(")) || text.contains(&format!("\"{name}\"")))
}

/// The test names in one table cell: `file::function`, `e2e:FILE.test.mjs: "title"` and
/// `ui:FILE: "title"`.
fn names(cell: &str) -> Vec<(Vec<PathBuf>, String)> {
    let mut out = Vec::new();
    for code in cell.split('`').skip(1).step_by(2) {
        let quoted = [("e2e:", "tests/e2e"), ("ui:", "ui/test")]
            .into_iter()
            .find_map(|(prefix, dir)| Some((code.strip_prefix(prefix)?, dir)));
        if let Some((rest, dir)) = quoted {
            let (file, title) = rest.split_once(':').expect("PREFIX:FILE: \"title\"");
            let title = title.trim().trim_matches('"').to_string();
            out.push((vec![root().join(dir).join(file.trim())], title));
        } else if let Some((file, function)) = code.rsplit_once("::") {
            out.push((candidates(file), function.to_string()));
        }
    }
    out
}

#[test]
fn every_audit_defect_names_tests_that_exist() {
    let audit = std::fs::read_to_string(root().join("AUDIT.md")).expect("AUDIT.md");
    let mut rows = 0;
    let mut missing = Vec::new();
    for line in audit.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let defect = cells.get(1).copied().unwrap_or_default();
        // The header, its rule, and rows that are not a defect (no id such as CR1 or M4).
        let is_defect =
            defect.trim_matches('*').chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && defect.chars().any(|c| c.is_ascii_digit());
        if !is_defect {
            continue;
        }
        rows += 1;
        // | Defect | What went wrong | Why it cannot happen here | Tests |
        let tests = names(cells.get(4).copied().unwrap_or_default());
        assert!(!tests.is_empty(), "{defect} names no test");
        for (files, name) in tests {
            if !defined(&files, &name) {
                missing.push(format!("{defect}: {name}"));
            }
        }
    }
    assert_eq!(rows, 18, "the audit has 18 defects");
    assert!(missing.is_empty(), "AUDIT.md names tests that do not exist: {missing:#?}");
}
