//! `doppel reranker`: show or choose the reranking server that reorders search results, and
//! its API key (into the OS keychain, read from standard input).

use clap::Subcommand;
use doppel_core::{Doppel, Error, RerankerChoice};
use serde_json::json;

use crate::Printer;

#[derive(Subcommand)]
pub(crate) enum RerankerAction {
    /// Rerank with a server that speaks `POST /v1/rerank` (llama.cpp's server with a reranking
    /// model, Jina, Cohere, and others).
    Server {
        /// The server's base URL (`http://127.0.0.1:8080`), a `/v1` URL, or the endpoint itself.
        #[arg(long)]
        url: String,
        /// The model name the server knows, such as `bge-reranker-v2-m3`.
        #[arg(long)]
        model: String,
    },
    /// No reranking (the default): results keep the order of keyword and meaning search.
    Off,
    /// Store the server's API key in the OS keychain, read from standard input (never from the
    /// command line, where it would stay in the shell history).
    Key {
        /// Remove the stored key instead.
        #[arg(long)]
        delete: bool,
    },
}

pub(crate) fn reranker(
    doppel: &Doppel,
    out: &Printer,
    action: Option<RerankerAction>,
) -> Result<(), Error> {
    match action {
        None => {}
        Some(RerankerAction::Server { url, model }) => {
            doppel.set_reranker(&RerankerChoice::server(&url, &model)?)?
        }
        Some(RerankerAction::Off) => doppel.set_reranker(&RerankerChoice::Off)?,
        Some(RerankerAction::Key { delete: true }) => {
            let removed = doppel.delete_reranker_api_key()?;
            out.note(if removed { "API key removed" } else { "no API key was stored" });
        }
        Some(RerankerAction::Key { delete: false }) => {
            let key = crate::input::line(&mut std::io::stdin().lock(), crate::input::KEY_BYTES)
                .map_err(|e| Error::InvalidInput(format!("could not read the key: {e}")))?;
            doppel.set_reranker_api_key(key.unwrap_or_default().trim())?;
            out.note("API key stored in the OS keychain");
        }
    }
    let choice = doppel.reranker()?;
    let key = doppel.reranker_api_key_hint()?;
    let candidates = doppel.settings()?.rerank_candidates;
    let value = match &choice {
        RerankerChoice::Server { url, model } => json!({
            "kind": "server", "url": url, "model": model, "api_key": key, "candidates": candidates,
        }),
        _ => json!({ "kind": "off", "url": null, "model": null, "api_key": null }),
    };
    out.value(value, || match &choice {
        RerankerChoice::Server { url, model } => format!(
            "reranker: {model} at {url}, reorders the best {candidates} passages of each search\n\
             API key: {}",
            key.as_deref().unwrap_or("none stored")
        ),
        _ => "reranker: off (results keep the order of keyword and meaning search)".to_string(),
    });
    Ok(())
}
