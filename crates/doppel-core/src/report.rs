//! The diagnostic report (`doppel report`, "Copy a diagnostic report"): what a person can attach
//! to a bug report without sending a word of their documents.
//!
//! It holds versions, the platform, the settings (numbers only: keys stay in the keychain, and
//! model servers are named by kind, never by address), counts, the metrics, `doctor`'s findings
//! and the last [`LOG_LINES`] lines of the log. Everything that comes from outside the code is
//! scrubbed ([`Scrubber`]): every path and URL becomes its extension (`<path .pdf>`), every
//! error message its code, and any field of a log line whose value is not a number or a short
//! name is left out. Paths with spaces are recognised whole when they are known (a source's
//! origin, a watched folder, the data directory, the home directory).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::metrics::{Metric, Stats};

/// Lines of the log the report ends with.
pub const LOG_LINES: usize = 200;

/// Fields of log lines whose values are paths or addresses: only their extension is kept.
const PATH_FIELDS: &[&str] =
    &["data_dir", "dir", "file", "path", "part", "database", "folder", "origin", "url", "server"];

/// Fields of log lines whose values are messages: the line's `code` stands for them.
const MESSAGE_FIELDS: &[&str] = &["error", "reason", "message", "detail"];

/// How many spaces a known path may hold and still be recognised whole.
const MAX_SPACES: usize = 12;

/// Replaces paths and URLs by their extension, and log fields that could carry words by
/// nothing.
pub(crate) struct Scrubber {
    /// Paths and URLs known to the twin, recognised whole even with spaces in them.
    known: HashSet<String>,
}

impl Scrubber {
    pub(crate) fn new(known: impl IntoIterator<Item = String>) -> Scrubber {
        Scrubber { known: known.into_iter().filter(|k| !k.is_empty()).collect() }
    }

    /// `text` with every path and URL reduced to its extension.
    pub(crate) fn words(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut previous: Option<char> = None;
        while let Some(c) = rest.chars().next() {
            let starts_token =
                previous.is_none_or(|p| p.is_whitespace() || "=\"'(<[,:".contains(p));
            if starts_token && let Some((len, shown)) = self.path_at(rest) {
                out.push_str(&shown);
                previous = rest[..len].chars().last();
                rest = &rest[len..];
                continue;
            }
            out.push(c);
            previous = Some(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    /// The length of the path or URL `text` starts with, if it does, and what stands for it.
    fn path_at(&self, text: &str) -> Option<(usize, String)> {
        let token_end = |from: usize| {
            text[from..]
                .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
                .map_or(text.len(), |i| from + i)
        };
        let first = token_end(0);
        let token = &text[..first];
        let is_url = token.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic())
        });
        let is_path = token.starts_with('/')
            || token.starts_with("~/")
            || token.contains('\\')
            || (token.contains('/') && !token.starts_with("//"));
        if !is_url && !is_path {
            return None;
        }
        // The longest known path that begins here, spaces and all.
        let mut end = first;
        let mut candidate = first;
        for _ in 0..MAX_SPACES {
            let Some(space) = text[candidate..].find(char::is_whitespace) else { break };
            let next = token_end(candidate + space + 1);
            if next == candidate + space + 1 {
                break;
            }
            candidate = next;
            let trimmed = text[..candidate].trim_end_matches([',', ';', ')', '.', ':']);
            if self.known.contains(trimmed) {
                end = trimmed.len();
            }
        }
        let whole = text[..end].trim_end_matches([',', ';', ')', ':']);
        let kind = if is_url { "url" } else { "path" };
        Some((whole.len(), format!("<{kind}{}>", extension(whole))))
    }

    /// One line of the log, scrubbed.
    pub(crate) fn log_line(&self, line: &str) -> String {
        let code = field_value(line, "code").map(|c| c.trim_matches('"').to_string());
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        loop {
            let Some((start, key_end)) = next_field(rest) else {
                out.push_str(&self.words(rest));
                break;
            };
            out.push_str(&self.words(&rest[..start]));
            let key = &rest[start..key_end];
            let value_start = key_end + 1;
            let value_end = next_field(&rest[value_start..])
                .map_or(rest.len(), |(s, _)| value_start + s)
                .min(rest[value_start..].find(['}']).map_or(rest.len(), |i| value_start + i));
            let value = rest[value_start..value_end].trim_end();
            let trailing = &rest[value_start + value.len()..value_end];
            out.push_str(key);
            out.push('=');
            out.push_str(&self.field(key, value, code.as_deref()));
            out.push_str(trailing);
            rest = &rest[value_end..];
        }
        out
    }

    fn field(&self, key: &str, value: &str, code: Option<&str>) -> String {
        let bare = value.trim_matches('"');
        if PATH_FIELDS.contains(&key) {
            let kind = if bare.contains("://") { "url" } else { "path" };
            return format!("<{kind}{}>", extension(bare));
        }
        if MESSAGE_FIELDS.contains(&key) {
            return match code {
                Some(code) if key != "code" => format!("<{code}>"),
                _ => "<message left out>".into(),
            };
        }
        if is_plain_value(bare) { value.to_string() } else { "<left out>".into() }
    }
}

/// Where the next ` key=` field of a log line starts (the key's start and end).
fn next_field(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let after_separator = i == 0 || matches!(bytes[i - 1], b' ' | b'{');
        if after_separator && (bytes[i].is_ascii_lowercase() || bytes[i] == b'_') {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'=' {
                return Some((i, j));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

fn field_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))?;
    let value = &line[at + key.len() + 2..];
    Some(value.split_whitespace().next().unwrap_or(""))
}

/// A number, a duration, a flag or a short lowercase name from the code (a state, a kind, a
/// code): nothing a person wrote could pass for one, short of a lowercase word with no digit.
fn is_plain_value(value: &str) -> bool {
    let bare = value.trim_matches('"');
    let number = bare.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == 'µ');
    if !number.is_empty() && number.parse::<f64>().is_ok() && bare.len() - number.len() <= 2 {
        return true;
    }
    !bare.is_empty()
        && bare.len() <= 40
        && bare.chars().all(|c| c.is_ascii_lowercase() || "_-".contains(c))
}

/// `.ext` of a path or URL's last part, when it has a short one.
fn extension(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit(['/', '\\']).next().unwrap_or("");
    match Path::new(last).extension().and_then(|e| e.to_str()) {
        Some(ext)
            if (1..=8).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!(" .{}", ext.to_ascii_lowercase())
        }
        _ => String::new(),
    }
}

/// The report's metrics section.
pub(crate) fn metrics_section(out: &mut String, stats: &Stats) {
    let _ = writeln!(out, "## Metrics (last {} days; kept {} days)", stats.days, stats.keep_days);
    let _ = writeln!(out, "metric label count sum p50 p95 p99 max");
    for s in &stats.summaries {
        let label = if s.label.is_empty() { "-" } else { &s.label };
        let _ = writeln!(
            out,
            "{} {label} {} {:.1} {:.1} {:.1} {:.1} {:.1}",
            s.metric.as_str(),
            s.count,
            s.sum,
            s.p50,
            s.p95,
            s.p99,
            s.max
        );
    }
    let failures: Vec<String> =
        stats.of(Metric::JobFailed).map(|s| format!("{} {}", s.label, s.count)).collect();
    let _ = writeln!(
        out,
        "failures by code: {}",
        if failures.is_empty() { "none".into() } else { failures.join(", ") }
    );
    let h = &stats.health;
    let _ = writeln!(
        out,
        "index: {} entries for {} passages, {} bytes in memory, {} bytes on disk, {} duplicate vectors, agreement {}",
        h.index_entries,
        h.passages,
        h.index_memory_bytes,
        h.index_file_bytes,
        h.duplicate_vectors,
        if h.agreement.is_ok() { "ok" } else { "FAILED" }
    );
    let _ = writeln!(out, "database: {} bytes; queued jobs: {}", h.database_bytes, h.queued_jobs);
    if let Some((now, peak)) = h.memory_mib {
        let _ = writeln!(out, "memory: {now:.1} MiB now, {peak:.1} MiB peak since the last job");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(["/home/ann/My Notes/qz4417 plan.md".to_string()])
    }

    #[test]
    fn paths_and_urls_become_their_extension() {
        let s = scrubber();
        assert_eq!(
            s.words("could not read /home/ann/My Notes/qz4417 plan.md: gone"),
            "could not read <path .md>: gone"
        );
        assert_eq!(
            s.words("fetch of https://ex.org/a/b.html?k=1 failed"),
            "fetch of <url .html> failed"
        );
        assert_eq!(
            s.words("the file ~/x/report.PDF is missing"),
            "the file <path .pdf> is missing"
        );
        assert_eq!(s.words("in /tmp/dir, then"), "in <path>, then");
        assert_eq!(s.words("3/4 done"), "<path> done");
        assert_eq!(s.words("plain words only"), "plain words only");
    }

    #[test]
    fn log_fields_keep_numbers_and_names_and_lose_the_rest() {
        let s = scrubber();
        let line = "2026-12-06T07:18:54Z  WARN job{id=1 kind=\"ingest_file\" attempt=1}: doppel_core::worker::job: job failed code=\"malformed\" error=the PDF qz4417 is broken will_retry=false";
        assert_eq!(
            s.log_line(line),
            "2026-12-06T07:18:54Z  WARN job{id=1 kind=\"ingest_file\" attempt=1}: doppel_core::worker::job: job failed code=\"malformed\" error=<malformed> will_retry=false"
        );
        let line = "2026-12-06T07:18:54Z  INFO doppel_core: data directory opened data_dir=/home/ann/My Notes/qz4417 plan.md";
        assert_eq!(
            s.log_line(line),
            "2026-12-06T07:18:54Z  INFO doppel_core: data directory opened data_dir=<path .md>"
        );
        let line = "2026-12-06T07:18:54Z ERROR doppel_core::worker: the database is damaged reason=malformed inverted index for qz4417";
        assert_eq!(
            s.log_line(line),
            "2026-12-06T07:18:54Z ERROR doppel_core::worker: the database is damaged reason=<message left out>"
        );
        let line = "2026-12-06T07:18:54Z  INFO doppel_core::x: odd title=Qhx2209 words here n=3";
        assert_eq!(
            s.log_line(line),
            "2026-12-06T07:18:54Z  INFO doppel_core::x: odd title=<left out> n=3"
        );
    }
}
