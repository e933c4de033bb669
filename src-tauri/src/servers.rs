//! The commands of the model servers chosen by a URL and a model name alone (docs/ipc.md): the
//! speech-to-text server that transcribes recordings and the reranking server that reorders the
//! best passages of each search. Both roles take the same arguments and answer with one type,
//! [`ModelServer`]; [`Role`] names each role's core calls, so that every command is one line over
//! four shared functions.
//!
//! A server's API key, as every key, only goes in: what comes back is the masked hint. Nothing
//! here decides what a choice costs; the window asks the person before it sends one that costs.

use doppel_core::{Doppel, ServerChoice};
use serde::Serialize;
use tauri::State;

use crate::error::IpcError;
use crate::state::Shell;

type Reply<T> = Result<T, IpcError>;

/// What `transcriber` and `reranker` return: the server chosen for that role, or none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelServer {
    /// `server` or `off`.
    pub kind: &'static str,
    pub url: Option<String>,
    pub model: Option<String>,
    /// The stored key's last characters; never the key.
    pub key_hint: Option<String>,
}

impl ModelServer {
    pub fn new(choice: ServerChoice, key_hint: Option<String>) -> ModelServer {
        match choice {
            ServerChoice::Server { url, model } => {
                ModelServer { kind: "server", url: Some(url), model: Some(model), key_hint }
            }
            ServerChoice::Off => {
                ModelServer { kind: "off", url: None, model: None, key_hint: None }
            }
        }
    }
}

/// What a model server chosen by URL and model is for.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// Turns recordings into text (`doppel transcriber`).
    Transcriber,
    /// Reorders the best passages of each search and answer (`doppel reranker`).
    Reranker,
}

impl Role {
    /// The server, as an error message names it.
    fn server(self) -> &'static str {
        match self {
            Role::Transcriber => "speech-to-text server",
            Role::Reranker => "reranking server",
        }
    }

    /// The choice `kind` (`server` or `off`), `url` and `model` describe, checked by the core.
    fn choice(self, kind: &str, url: Option<&str>, model: Option<&str>) -> Reply<ServerChoice> {
        match kind {
            "off" => Ok(ServerChoice::Off),
            "server" => {
                let url = url.ok_or_else(|| {
                    IpcError::invalid_input(format!("a {} needs its URL", self.server()))
                })?;
                Ok(ServerChoice::server(url, model.unwrap_or_default())?)
            }
            other => Err(IpcError::invalid_input(format!(
                "unknown {} kind {other:?}: server or off",
                self.server()
            ))),
        }
    }

    /// The server chosen now, with its key's hint.
    fn now(self, d: &Doppel) -> Reply<ModelServer> {
        let (choice, hint) = match self {
            Role::Transcriber => (d.transcriber()?, d.transcriber_api_key_hint()?),
            Role::Reranker => (d.reranker()?, d.reranker_api_key_hint()?),
        };
        Ok(ModelServer::new(choice, hint))
    }

    fn choose(self, d: &Doppel, choice: &ServerChoice) -> Reply<ModelServer> {
        match self {
            Role::Transcriber => d.set_transcriber(choice)?,
            Role::Reranker => d.set_reranker(choice)?,
        }
        self.now(d)
    }

    fn set_key(self, d: &Doppel, key: &str) -> Reply<ModelServer> {
        match self {
            Role::Transcriber => d.set_transcriber_api_key(key)?,
            Role::Reranker => d.set_reranker_api_key(key)?,
        }
        self.now(d)
    }

    fn delete_key(self, d: &Doppel) -> Reply<ModelServer> {
        match self {
            Role::Transcriber => d.delete_transcriber_api_key()?,
            Role::Reranker => d.delete_reranker_api_key()?,
        };
        self.now(d)
    }
}

async fn read(shell: &Shell, role: Role) -> Reply<ModelServer> {
    shell.run(move |d| role.now(d)).await
}

async fn choose(
    shell: &Shell,
    role: Role,
    kind: &str,
    url: Option<String>,
    model: Option<String>,
) -> Reply<ModelServer> {
    let choice = role.choice(kind, url.as_deref(), model.as_deref())?;
    shell.run(move |d| role.choose(d, &choice)).await
}

async fn set_key(shell: &Shell, role: Role, key: String) -> Reply<ModelServer> {
    shell.run(move |d| role.set_key(d, &key)).await
}

async fn delete_key(shell: &Shell, role: Role) -> Reply<ModelServer> {
    shell.run(move |d| role.delete_key(d)).await
}

#[tauri::command]
pub async fn transcriber(shell: State<'_, Shell>) -> Reply<ModelServer> {
    read(&shell, Role::Transcriber).await
}

/// Chooses the speech-to-text server (`kind` `server`, with its URL and model) or none
/// (`off`). Choosing one queues again the recordings that waited for it.
#[tauri::command]
pub async fn set_transcriber(
    shell: State<'_, Shell>,
    kind: String,
    url: Option<String>,
    model: Option<String>,
) -> Reply<ModelServer> {
    choose(&shell, Role::Transcriber, &kind, url, model).await
}

#[tauri::command]
pub async fn set_transcriber_key(shell: State<'_, Shell>, key: String) -> Reply<ModelServer> {
    set_key(&shell, Role::Transcriber, key).await
}

#[tauri::command]
pub async fn delete_transcriber_key(shell: State<'_, Shell>) -> Reply<ModelServer> {
    delete_key(&shell, Role::Transcriber).await
}

#[tauri::command]
pub async fn reranker(shell: State<'_, Shell>) -> Reply<ModelServer> {
    read(&shell, Role::Reranker).await
}

/// Chooses the reranking server (`kind` `server`, with its URL and model) or none (`off`);
/// searches use it from the next one on. The window confirms the cost before it asks.
#[tauri::command]
pub async fn set_reranker(
    shell: State<'_, Shell>,
    kind: String,
    url: Option<String>,
    model: Option<String>,
) -> Reply<ModelServer> {
    choose(&shell, Role::Reranker, &kind, url, model).await
}

#[tauri::command]
pub async fn set_reranker_key(shell: State<'_, Shell>, key: String) -> Reply<ModelServer> {
    set_key(&shell, Role::Reranker, key).await
}

#[tauri::command]
pub async fn delete_reranker_key(shell: State<'_, Shell>) -> Reply<ModelServer> {
    delete_key(&shell, Role::Reranker).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_model_server_shows_only_a_masked_key() {
        let choice = ServerChoice::server("http://127.0.0.1:8080/v1", "whisper-1").unwrap();
        let hint = Some(doppel_core::masked("sk-secret-1234567890abcd"));
        assert_eq!(
            serde_json::to_value(ModelServer::new(choice, hint)).unwrap(),
            json!({
                "kind": "server", "url": "http://127.0.0.1:8080/v1", "model": "whisper-1",
                "keyHint": "••••abcd"
            })
        );
        assert_eq!(
            serde_json::to_value(ModelServer::new(ServerChoice::Off, None)).unwrap(),
            json!({ "kind": "off", "url": null, "model": null, "keyHint": null })
        );
    }

    #[test]
    fn a_choice_is_read_from_kind_url_and_model_and_refusals_name_the_role() {
        let server = Role::Reranker
            .choice("server", Some("http://127.0.0.1:8012/"), Some(" bge-reranker-v2-m3 "))
            .unwrap();
        assert_eq!(
            server,
            ServerChoice::Server {
                url: "http://127.0.0.1:8012".into(),
                model: "bge-reranker-v2-m3".into()
            }
        );
        assert_eq!(Role::Transcriber.choice("off", None, None).unwrap(), ServerChoice::Off);

        let no_url = Role::Reranker.choice("server", None, Some("m")).unwrap_err();
        assert_eq!(no_url.code, "invalid_input");
        assert!(no_url.message.contains("a reranking server needs its URL"), "{no_url}");
        let unknown = Role::Transcriber.choice("cloud", None, None).unwrap_err();
        assert_eq!(unknown.code, "invalid_input");
        assert!(
            unknown.message.contains("unknown speech-to-text server kind \"cloud\""),
            "{unknown}"
        );
        let no_model = Role::Reranker.choice("server", Some("http://127.0.0.1:8012"), None);
        assert_eq!(no_model.unwrap_err().code, "invalid_input");
    }
}
