//! Logs go to `logs/doppel.log` in the data directory, never to the terminal; both shells (the
//! CLI and the desktop window) start them here once they know the data directory.
//!
//! The level comes from `DOPPEL_LOG` (`error`, `warn`, `info`, `debug` or `trace`), default
//! `info`, and applies to Doppel's own crates only: the libraries under them (HTTP, parsers,
//! the model runtimes) are not ours to vet, and their debug output can quote what they read,
//! so they are silent at any level. Doppel logs ids, codes, states, counts, times and paths;
//! never document text, a question, an answer, a server's answer or a secret (errors that may
//! carry them are logged by code, `Error::for_log`). A log over 10 MB is moved aside to
//! `doppel.log.1` at start, so logs stay bounded.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// Starts logging to the data directory's log file; does nothing if it cannot be opened or a
/// logger is already set.
pub fn init_logging(data_dir: &Path) {
    let dir = data_dir.join(crate::LOG_DIR);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join("doppel.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        // Best effort: a log that cannot be rotated is simply appended to.
        let _ = std::fs::rename(&path, dir.join("doppel.log.1"));
    }
    let Ok(file) = OpenOptions::new().create(true).append(true).open(&path) else {
        return;
    };
    let filter = EnvFilter::new(directives(std::env::var("DOPPEL_LOG").ok().as_deref()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}

/// The filter for a `DOPPEL_LOG` value: its level for Doppel's crates, nothing from others. A
/// value that is not a level (a filter of other targets, say) is taken as `info`.
fn directives(value: Option<&str>) -> String {
    let level = value
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| ["error", "warn", "info", "debug", "trace"].contains(&v.as_str()))
        .unwrap_or_else(|| "info".into());
    format!(
        "off,doppel_core={level},doppel={level},doppel_desktop={level},doppel_parse={level},doppel_api={level}"
    )
}

/// A message fit for the log: the query strings and fragments of URLs (where tokens hide) and
/// any user name or password in them are cut away.
pub(crate) fn redact_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let Some(start) = word.find("http://").or_else(|| word.find("https://")) else {
                return word.to_string();
            };
            let (before, url) = word.split_at(start);
            let end = url.find(['?', '#']).unwrap_or(url.len());
            let trail = if url[end..].ends_with(':') { ":" } else { "" };
            let mut kept = url[..end].to_string();
            if let Some(at) = kept.find('@') {
                let scheme_end = kept.find("://").map_or(0, |i| i + 3);
                if at > scheme_end {
                    kept.replace_range(scheme_end..=at, "");
                }
            }
            let cut = if end < url.len() { "?…" } else { "" };
            format!("{before}{kept}{cut}{trail}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_doppels_crates_log_whatever_the_level_asked() {
        assert_eq!(
            directives(Some("trace")),
            "off,doppel_core=trace,doppel=trace,doppel_desktop=trace,doppel_parse=trace,doppel_api=trace"
        );
        // Turning a library's own logging on is not a choice the variable offers.
        for value in [None, Some("hyper=trace"), Some("trace,html5ever=trace"), Some("")] {
            assert!(directives(value).starts_with("off,doppel_core=info,"), "{value:?}");
        }
    }

    #[test]
    fn logged_urls_lose_their_secrets() {
        assert_eq!(
            redact_urls("https://user:pw@example.org/doc?token=s3cret: timed out after 1 s"),
            "https://example.org/doc?…: timed out after 1 s"
        );
        assert_eq!(
            redact_urls("/home/a/file.txt: no text found"),
            "/home/a/file.txt: no text found"
        );
    }
}
