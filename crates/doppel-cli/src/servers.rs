//! `doppel reranker` and `doppel transcriber`: show or choose a model server for one role (the
//! reranking server that reorders search results, the speech-to-text server that transcribes
//! recordings), and its API key (into the OS keychain, read from standard input).

use clap::Subcommand;
use doppel_core::{Doppel, Error, ServerChoice};
use serde_json::json;

use crate::Printer;

#[derive(Subcommand)]
pub(crate) enum ServerAction {
    /// Use a server: for `reranker`, one that speaks `POST /v1/rerank` (llama.cpp's server with
    /// a reranking model, Jina, Cohere); for `transcriber`, one that speaks
    /// `POST /v1/audio/transcriptions` (whisper.cpp's server, OpenAI, and others).
    Server {
        /// The server's base URL (`http://127.0.0.1:8080`), a `/v1` URL, or the endpoint itself.
        #[arg(long)]
        url: String,
        /// The model name the server knows, such as `bge-reranker-v2-m3` or `whisper-1`.
        #[arg(long)]
        model: String,
    },
    /// No server (the default).
    Off,
    /// Store the server's API key in the OS keychain, read from standard input (never from the
    /// command line, where it would stay in the shell history).
    Key {
        /// Remove the stored key instead.
        #[arg(long)]
        delete: bool,
    },
}

/// The role a server plays.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Reranker,
    Transcriber,
}

impl Role {
    fn get(self, doppel: &Doppel) -> Result<ServerChoice, Error> {
        match self {
            Role::Reranker => doppel.reranker(),
            Role::Transcriber => doppel.transcriber(),
        }
    }

    fn set(self, doppel: &Doppel, choice: &ServerChoice) -> Result<(), Error> {
        match self {
            Role::Reranker => doppel.set_reranker(choice),
            Role::Transcriber => doppel.set_transcriber(choice),
        }
    }

    fn set_key(self, doppel: &Doppel, key: &str) -> Result<(), Error> {
        match self {
            Role::Reranker => doppel.set_reranker_api_key(key),
            Role::Transcriber => doppel.set_transcriber_api_key(key),
        }
    }

    fn delete_key(self, doppel: &Doppel) -> Result<bool, Error> {
        match self {
            Role::Reranker => doppel.delete_reranker_api_key(),
            Role::Transcriber => doppel.delete_transcriber_api_key(),
        }
    }

    fn key_hint(self, doppel: &Doppel) -> Result<Option<String>, Error> {
        match self {
            Role::Reranker => doppel.reranker_api_key_hint(),
            Role::Transcriber => doppel.transcriber_api_key_hint(),
        }
    }

    /// What the server does, for the text output.
    fn describe(self, doppel: &Doppel, model: &str, url: &str) -> Result<String, Error> {
        Ok(match self {
            Role::Reranker => format!(
                "reranker: {model} at {url}, reorders the best {} passages of each search",
                doppel.settings()?.rerank_candidates
            ),
            Role::Transcriber => format!(
                "transcriber: {model} at {url}, transcribes audio and video files (MP3, M4A, WAV, OGG, OPUS, FLAC, MP4, MKV, WebM)"
            ),
        })
    }

    fn off(self) -> &'static str {
        match self {
            Role::Reranker => {
                "reranker: off (results keep the order of keyword and meaning search)"
            }
            Role::Transcriber => {
                "transcriber: off (audio and video files wait until a speech-to-text server is set)"
            }
        }
    }
}

pub(crate) fn server(
    doppel: &Doppel,
    out: &Printer,
    role: Role,
    action: Option<ServerAction>,
) -> Result<(), Error> {
    match action {
        None => {}
        Some(ServerAction::Server { url, model }) => {
            role.set(doppel, &ServerChoice::server(&url, &model)?)?
        }
        Some(ServerAction::Off) => role.set(doppel, &ServerChoice::Off)?,
        Some(ServerAction::Key { delete: true }) => {
            let removed = role.delete_key(doppel)?;
            out.note(if removed { "API key removed" } else { "no API key was stored" });
        }
        Some(ServerAction::Key { delete: false }) => {
            let key = crate::input::line(&mut std::io::stdin().lock(), crate::input::KEY_BYTES)
                .map_err(|e| Error::InvalidInput(format!("could not read the key: {e}")))?;
            role.set_key(doppel, key.unwrap_or_default().trim())?;
            out.note("API key stored in the OS keychain");
        }
    }
    let choice = role.get(doppel)?;
    let key = role.key_hint(doppel)?;
    let value = match &choice {
        ServerChoice::Server { url, model } => {
            let mut value = json!({ "kind": "server", "url": url, "model": model, "api_key": key });
            if let Role::Reranker = role {
                value["candidates"] = json!(doppel.settings()?.rerank_candidates);
            }
            value
        }
        _ => json!({ "kind": "off", "url": null, "model": null, "api_key": null }),
    };
    let text = match &choice {
        ServerChoice::Server { url, model } => format!(
            "{}\nAPI key: {}",
            role.describe(doppel, model, url)?,
            key.as_deref().unwrap_or("none stored")
        ),
        _ => role.off().to_string(),
    };
    out.value(value, || text);
    Ok(())
}
