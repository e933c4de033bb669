//! The command of text recognition in images and scans (Tesseract, on this computer; docs/ipc.md),
//! one core call and a hand-written conversion, as in `commands`. The other way Doppel reads
//! what is not text, the speech-to-text server, is chosen as every model server is (`servers`).
//!
//! Text recognition is switched and given its languages through `set_setting` (`ocr`,
//! `ocr_languages`), which the core validates; only its status has a command of its own.

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

#[tauri::command]
pub async fn ocr_status(shell: State<'_, Shell>) -> Reply<OcrStatus> {
    shell.run(|d| Ok(d.ocr_status()?.into())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
