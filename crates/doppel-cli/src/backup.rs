//! `doppel backup`, `doppel restore` and `doppel export`: taking the twin along.
//!
//! Progress is a bar on a terminal, and otherwise one line per step on stderr (`backup:
//! snapshot`, …), so that scripts and tests can follow it. Ctrl-C cancels a backup or a
//! restore, which then leaves everything as it was.

use std::path::PathBuf;

use doppel_core::backup::{self, BackupRequest, Progress, RestoreRequest, Stage};
use doppel_core::{Config, DEFAULT_TWIN, Doppel, Error, ExportRequest};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::Printer;
use crate::chat::{INTERRUPTED, catch_interrupts};

/// Shows progress as a bar (terminal) or a line per stage (otherwise).
struct Shown<'a> {
    out: &'a Printer,
    what: &'static str,
    bar: Option<ProgressBar>,
    stage: Option<Stage>,
}

impl Shown<'_> {
    fn new<'a>(out: &'a Printer, what: &'static str) -> Shown<'a> {
        let bar = out.interactive().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg:>12} {bar:30} {percent:>3}%")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Shown { out, what, bar, stage: None }
    }

    fn update(&mut self, p: Progress) {
        if self.stage != Some(p.stage) {
            self.stage = Some(p.stage);
            match &self.bar {
                Some(bar) => {
                    bar.reset();
                    bar.set_message(stage_text(p.stage));
                }
                None => self.out.note(&format!("{}: {}", self.what, p.stage)),
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_length(p.total.max(1));
            bar.set_position(p.done);
        }
    }
}

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn stage_text(stage: Stage) -> &'static str {
    match stage {
        Stage::Snapshot => "snapshot",
        Stage::Write => "writing",
        Stage::Read => "reading",
        Stage::Check => "checking",
        Stage::Index => "index",
    }
}

pub(crate) fn counts_value(counts: &backup::Counts) -> Value {
    Value::Object(counts.named().iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

fn manifest_value(m: &backup::Manifest) -> Value {
    json!({
        "app_version": m.app_version,
        "schema_version": m.schema_version,
        "created_at": m.created_at,
        "encrypted": m.encrypted,
        "database_bytes": m.database_bytes,
        "database_sha256": m.database_sha256,
        "counts": counts_value(&m.counts),
    })
}

fn counts_text(counts: &backup::Counts) -> String {
    format!(
        "{} sources, {} passages, {} conversations, {} verified answers",
        counts.sources, counts.chunks, counts.conversations, counts.verified_answers
    )
}

/// `doppel backup FILE [--encrypt]`, without opening the data directory (the app may hold it).
pub(crate) fn backup(
    data_dir: PathBuf,
    out: &Printer,
    file: PathBuf,
    encrypt: bool,
) -> Result<(), Error> {
    let passphrase = if encrypt { Some(passphrase(true)?) } else { None };
    catch_interrupts();
    let mut shown = Shown::new(out, "backup");
    let request = BackupRequest { path: file, passphrase };
    let report = Doppel::backup_dir(&data_dir, &request, &INTERRUPTED, &mut |p| shown.update(p))?;
    drop(shown);
    let value = json!({
        "path": report.path.display().to_string(),
        "bytes": report.bytes,
        "manifest": manifest_value(&report.manifest),
    });
    out.value(value, || {
        format!(
            "backed up to {} ({}{}): {}",
            report.path.display(),
            size(report.bytes),
            if report.manifest.encrypted { ", encrypted" } else { "" },
            counts_text(&report.manifest.counts)
        )
    });
    Ok(())
}

/// `doppel restore FILE [--yes]`: into the data directory, which nothing may have open.
pub(crate) fn restore(
    data_dir: PathBuf,
    out: &Printer,
    file: PathBuf,
    yes: bool,
) -> Result<(), Error> {
    let passphrase = match backup::inspect(&file, None) {
        Err(Error::PassphraseNeeded) => Some(passphrase(false)?),
        Err(e) => return Err(e),
        Ok(_) => None,
    };
    catch_interrupts();
    let mut shown = Shown::new(out, "restore");
    let request =
        RestoreRequest { backup: file, passphrase, replace: yes, config: Config::new(data_dir) };
    let report = Doppel::restore(request, &INTERRUPTED, &mut |p| shown.update(p))?;
    drop(shown);
    for note in &report.notes {
        out.note(note);
    }
    let value = json!({
        "data_dir": report.data_dir.display().to_string(),
        "replaced": report.replaced,
        "migrated_from": report.migrated_from,
        "index_entries": report.index_entries,
        "counts": counts_value(&report.counts),
        "manifest": manifest_value(&report.manifest),
        "notes": report.notes,
    });
    out.value(value, || {
        let mut line =
            format!("restored into {}: {}", report.data_dir.display(), counts_text(&report.counts));
        if let Some(from) = report.migrated_from {
            line.push_str(&format!(" (migrated from schema version {from})"));
        }
        line
    });
    Ok(())
}

/// `doppel export DIR`.
pub(crate) fn export(doppel: &Doppel, out: &Printer, dir: PathBuf) -> Result<(), Error> {
    let report = doppel.export(&ExportRequest { twin: DEFAULT_TWIN, dir })?;
    let value = json!({
        "dir": report.dir.display().to_string(),
        "conversations": report.conversations,
        "verified_answers": report.verified_answers,
        "sources": report.sources,
    });
    out.value(value, || {
        format!(
            "exported to {}: {} conversations, {} verified answers, {} sources",
            report.dir.display(),
            report.conversations,
            report.verified_answers,
            report.sources
        )
    });
    Ok(())
}

/// A passphrase from standard input (asked for, unechoed, on a terminal; twice when it is
/// being chosen).
fn passphrase(choosing: bool) -> Result<String, Error> {
    let read = |prompt: &str| {
        crate::read_secret(prompt)
            .map_err(|e| Error::InvalidInput(format!("could not read the passphrase: {e}")))
    };
    let first = read("Passphrase: ")?;
    if first.is_empty() {
        return Err(Error::InvalidInput("the passphrase is empty".into()));
    }
    if choosing && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let again = read("Passphrase again: ")?;
        if again != first {
            return Err(Error::InvalidInput("the two passphrases differ".into()));
        }
    }
    Ok(first)
}

fn size(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= MB {
        format!("{:.1} MB", bytes as f64 / MB)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}
