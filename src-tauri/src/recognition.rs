//! The commands of the two ways Doppel reads what is not text (docs/ipc.md): text recognition
//! in images and scans (Tesseract, on this computer) and the speech-to-text server that
//! transcribes recordings. Each maps to one core call and a hand-written conversion, as in
//! `commands`.
//!
//! Text recognition is switched and given its languages through `set_setting` (`ocr`,
//! `ocr_languages`), which the core validates; only its status has a command of its own. The
//! server's API key, as every key, only goes in: what comes back is the masked hint.

use doppel_core::{Doppel, TranscriberChoice};
use serde::Serialize;
use tauri::State;

use crate::error::IpcError;
use crate::state::Shell;

type Reply<T> = Result<T, IpcError>;

/// What `ocr_status` returns: whether text recognition is on and can run here.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OcrStatus {
    pub enabled: bool,
    /// Tesseract's version, when it is installed.
    pub tesseract: Option<String>,
    /// Whether poppler's `pdftoppm` (scanned PDF pages) is installed.
    pub pdftoppm: bool,
    /// The languages asked for, Tesseract's codes joined by `+` (`eng+fra`).
    pub languages: String,
    /// The languages Tesseract has data for.
    pub installed: Vec<String>,
    /// What is missing for it to work, each a sentence ending with "Fix: <command>"; empty
    /// when nothing is, and always while it is off.
    pub problems: Vec<String>,
}

impl From<doppel_core::OcrStatus> for OcrStatus {
    fn from(s: doppel_core::OcrStatus) -> OcrStatus {
        OcrStatus {
            enabled: s.enabled,
            tesseract: s.tesseract,
            pdftoppm: s.pdftoppm,
            languages: s.languages,
            installed: s.installed,
            problems: s.problems,
        }
    }
}

/// What `transcriber` returns: the speech-to-text server, or none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcriber {
    /// `server` or `off`.
    pub kind: &'static str,
    pub url: Option<String>,
    pub model: Option<String>,
    /// The stored key's last characters; never the key.
    pub key_hint: Option<String>,
}

impl Transcriber {
    pub fn new(choice: TranscriberChoice, key_hint: Option<String>) -> Transcriber {
        match choice {
            TranscriberChoice::Server { url, model } => {
                Transcriber { kind: "server", url: Some(url), model: Some(model), key_hint }
            }
            TranscriberChoice::Off => {
                Transcriber { kind: "off", url: None, model: None, key_hint: None }
            }
        }
    }
}

#[tauri::command]
pub async fn ocr_status(shell: State<'_, Shell>) -> Reply<OcrStatus> {
    shell.run(|d| Ok(d.ocr_status()?.into())).await
}

fn transcriber_now(d: &Doppel) -> Reply<Transcriber> {
    Ok(Transcriber::new(d.transcriber()?, d.transcriber_api_key_hint()?))
}

#[tauri::command]
pub async fn transcriber(shell: State<'_, Shell>) -> Reply<Transcriber> {
    shell.run(transcriber_now).await
}

/// Chooses the speech-to-text server (`kind` `server`, with its URL and model) or none
/// (`off`). Choosing one queues again the recordings that waited for it.
#[tauri::command]
pub async fn set_transcriber(
    shell: State<'_, Shell>,
    kind: String,
    url: Option<String>,
    model: Option<String>,
) -> Reply<Transcriber> {
    let choice = match kind.as_str() {
        "off" => TranscriberChoice::Off,
        "server" => {
            let url = url
                .ok_or_else(|| IpcError::invalid_input("a speech-to-text server needs its URL"))?;
            TranscriberChoice::server(&url, model.as_deref().unwrap_or_default())?
        }
        other => {
            return Err(IpcError::invalid_input(format!(
                "unknown transcriber kind {other:?}: server or off"
            )));
        }
    };
    shell
        .run(move |d| {
            d.set_transcriber(&choice)?;
            transcriber_now(d)
        })
        .await
}

#[tauri::command]
pub async fn set_transcriber_key(shell: State<'_, Shell>, key: String) -> Reply<Transcriber> {
    shell
        .run(move |d| {
            d.set_transcriber_api_key(&key)?;
            transcriber_now(d)
        })
        .await
}

#[tauri::command]
pub async fn delete_transcriber_key(shell: State<'_, Shell>) -> Reply<Transcriber> {
    shell
        .run(|d| {
            d.delete_transcriber_api_key()?;
            transcriber_now(d)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transcriber_shows_only_a_masked_key() {
        let choice = TranscriberChoice::server("http://127.0.0.1:8080/v1", "whisper-1").unwrap();
        let hint = Some(doppel_core::masked("sk-secret-1234567890abcd"));
        assert_eq!(
            serde_json::to_value(Transcriber::new(choice, hint)).unwrap(),
            json!({
                "kind": "server", "url": "http://127.0.0.1:8080/v1", "model": "whisper-1",
                "keyHint": "••••abcd"
            })
        );
        assert_eq!(
            serde_json::to_value(Transcriber::new(TranscriberChoice::Off, None)).unwrap(),
            json!({ "kind": "off", "url": null, "model": null, "keyHint": null })
        );
    }

    #[test]
    fn ocr_status_is_camel_case_with_its_problems() {
        let status = doppel_core::OcrStatus {
            enabled: true,
            tesseract: Some("5.3.0".into()),
            pdftoppm: false,
            languages: "eng+fra".into(),
            installed: vec!["eng".into(), "osd".into()],
            problems: vec![
                "Tesseract has no data for fra. Fix: sudo apt install tesseract-ocr-fra".into(),
            ],
        };
        assert_eq!(
            serde_json::to_value(OcrStatus::from(status)).unwrap(),
            json!({
                "enabled": true, "tesseract": "5.3.0", "pdftoppm": false, "languages": "eng+fra",
                "installed": ["eng", "osd"],
                "problems": ["Tesseract has no data for fra. Fix: sudo apt install tesseract-ocr-fra"]
            })
        );
    }
}
