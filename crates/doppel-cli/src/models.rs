//! `doppel models catalogue`, `models get` and `models install-defaults`: argument and output
//! mapping over the core's model catalogue.

use std::path::{Path, PathBuf};

use doppel_core::catalogue::{Catalogue, DefaultsSource, InstallProgress};
use doppel_core::{Doppel, Error};
use serde_json::{Value, json};

use crate::Printer;
use crate::chat::{INTERRUPTED, transfer_progress};

fn load(file: Option<&Path>) -> Result<Catalogue, Error> {
    file.map_or_else(|| Ok(Catalogue::built_in()), Catalogue::load)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

pub(crate) fn catalogue(out: &Printer, file: Option<&Path>) -> Result<(), Error> {
    let c = load(file)?;
    let chat: Vec<Value> = c
        .chat
        .iter()
        .map(|m| {
            json!({
                "name": m.name, "title": m.title, "parameters": m.parameters,
                "quantisation": m.quantisation, "size": m.size, "memory": m.memory,
                "licence": m.licence, "url": m.url, "sha256": m.sha256,
                "good_for": m.good_for, "demo": m.demo,
            })
        })
        .collect();
    let embedding: Vec<Value> = c
        .embedding
        .iter()
        .map(|e| {
            json!({
                "name": e.name, "server": e.server, "model": e.model,
                "languages": e.languages, "good_for": e.good_for,
            })
        })
        .collect();
    out.value(json!({ "chat": chat, "embedding": embedding }), || {
        let mut text = String::from("Chat models (`doppel models get NAME` downloads one and uses it):\n");
        for m in &c.chat {
            let demo = if m.demo { " · tiny demo model, installed with Doppel" } else { "" };
            text.push_str(&format!(
                "  {:<14} {} · {} {} · {} download, needs {} memory · {}{demo}\n                 {}\n",
                m.name,
                m.title,
                m.parameters,
                m.quantisation,
                gb(m.size),
                gb(m.memory),
                m.licence,
                m.good_for
            ));
        }
        text.push_str("Embedding models:\n");
        for e in &c.embedding {
            text.push_str(&format!(
                "  {:<17} {} · {}\n                    {}\n",
                e.name, e.server, e.languages, e.good_for
            ));
        }
        text.trim_end().to_string()
    });
    Ok(())
}

pub(crate) fn get(
    doppel: &Doppel,
    out: &Printer,
    name: &str,
    file: Option<&Path>,
) -> Result<PathBuf, Error> {
    let c = load(file)?;
    let model = c.chat_model(name)?;
    if !out.json {
        eprintln!("downloading {} ({}, about {})", model.title, model.licence, gb(model.size));
    }
    doppel.get_catalogue_model(model, &INTERRUPTED, &mut transfer_progress(out))
}

pub(crate) fn install_defaults(
    doppel: &Doppel,
    out: &Printer,
    from: Option<&str>,
) -> Result<(), Error> {
    let source = DefaultsSource::parse(from)?;
    let mut bar = transfer_progress(out);
    let mut current = 0;
    let quiet = out.json;
    let mut progress = |p: &InstallProgress| {
        if p.index != current {
            current = p.index;
            if !quiet {
                eprintln!("[{}/{}] {}", p.index, p.count, p.file);
            }
        }
        bar(&p.transfer);
    };
    let installed = doppel.install_default_models(&source, &INTERRUPTED, &mut progress)?;
    let rows: Vec<Value> = installed
        .iter()
        .map(|f| json!({ "file": f.file, "path": f.path, "already_there": f.already_there }))
        .collect();
    out.value(json!({ "installed": rows }), || {
        installed
            .iter()
            .map(|f| {
                let how = if f.already_there { "already there" } else { "installed" };
                format!("{how}: {}", f.path.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
