//! Validated settings: every tunable of the core, with its default and its allowed range.
//!
//! Nothing is hard-coded elsewhere: chunk sizes, top-k, limits and retry policy are read from a
//! [`Settings`] value that the worker loads from the database. Values are stored as text under
//! their key; a value is validated before it is stored, so the database never holds one that the
//! core would refuse.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Every tunable of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Target length of a chunk, in estimated tokens.
    pub chunk_tokens: u32,
    /// How many tokens of the previous chunk are repeated at the start of the next.
    pub chunk_overlap: u32,
    /// How many results a search returns by default.
    pub top_k: u32,
    /// Largest file accepted, in MB.
    pub max_file_mb: u32,
    /// How many times a job is tried before it is marked failed.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; each further retry doubles it.
    pub retry_backoff_ms: u32,
    /// Wall-clock time allowed to the parser of one complex file, in seconds.
    pub parse_timeout_s: u32,
    /// Memory allowed to the parser of one complex file, in MB.
    pub parse_memory_mb: u32,
    /// Most bytes a zip-based document may expand to, in MB.
    pub archive_max_mb: u32,
    /// Most entries a zip-based document may have.
    pub archive_max_entries: u32,
    /// Highest compression ratio accepted for a large entry of a zip-based document.
    pub archive_max_ratio: u32,
    /// Time allowed to fetch one URL, body included, in seconds.
    pub fetch_timeout_s: u32,
    /// Most redirects followed when fetching a URL.
    pub fetch_max_redirects: u32,
    /// HNSW: links per node.
    pub hnsw_m: u32,
    /// HNSW: candidate list size while building.
    pub hnsw_ef_construction: u32,
    /// HNSW: candidate list size while searching.
    pub hnsw_ef_search: u32,
    /// Vector hits below this cosine similarity (in percent) are not returned.
    pub min_similarity_pct: u32,
    /// Time allowed to a model server for one embedding request, in seconds.
    pub embed_timeout_s: u32,
    /// Extra tries of an embedding request after a refused connection, 429 or 5xx answer.
    pub embed_retries: u32,
    /// Time a chat model server may take to send the first token of an answer, in seconds.
    pub chat_timeout_s: u32,
    /// Longest silence of a chat model server in the middle of an answer, in seconds.
    pub chat_idle_s: u32,
    /// Quiet time after a change in a watched folder before its files are queued, in
    /// milliseconds: a burst of writes to a file becomes one job.
    pub watch_debounce_ms: u32,
    /// Days of local metrics kept (`doppel stats`); 0 records none.
    pub metrics_days: u32,
    /// How many of a search's best passages a reranking server is asked to reorder.
    pub rerank_candidates: u32,
    /// Time a reranking server may take to answer one request, body included, in seconds.
    pub rerank_timeout_s: u32,
    /// Extra tries of a rerank request after a refused connection, 429 or 5xx answer.
    pub rerank_retries: u32,
    /// Whether text in images and scanned PDF pages is read by recognition (1) or not (0).
    pub ocr: u32,
    /// Recognised paragraphs below this mean confidence (percent) are marked unsure.
    pub ocr_min_confidence: u32,
    /// Resolution scanned PDF pages are rendered at for recognition.
    pub ocr_dpi: u32,
    /// Most pages of one PDF read by recognition.
    pub ocr_max_pages: u32,
    /// Time a speech-to-text server may take to transcribe one recording, in seconds.
    pub transcribe_timeout_s: u32,
    /// Extra tries of a transcription after a refused connection, 429 or 5xx answer.
    pub transcribe_retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let mut settings = Settings {
            chunk_tokens: 0,
            chunk_overlap: 0,
            top_k: 0,
            max_file_mb: 0,
            max_attempts: 0,
            retry_backoff_ms: 0,
            parse_timeout_s: 0,
            parse_memory_mb: 0,
            archive_max_mb: 0,
            archive_max_entries: 0,
            archive_max_ratio: 0,
            fetch_timeout_s: 0,
            fetch_max_redirects: 0,
            hnsw_m: 0,
            hnsw_ef_construction: 0,
            hnsw_ef_search: 0,
            min_similarity_pct: 0,
            embed_timeout_s: 0,
            embed_retries: 0,
            chat_timeout_s: 0,
            chat_idle_s: 0,
            watch_debounce_ms: 0,
            metrics_days: 0,
            rerank_candidates: 0,
            rerank_timeout_s: 0,
            rerank_retries: 0,
            ocr: 0,
            ocr_min_confidence: 0,
            ocr_dpi: 0,
            ocr_max_pages: 0,
            transcribe_timeout_s: 0,
            transcribe_retries: 0,
        };
        for spec in SPECS {
            *(spec.field)(&mut settings) = spec.default;
        }
        settings
    }
}

/// Describes one setting: its key, meaning, default and range.
#[derive(Debug)]
pub struct SettingSpec {
    /// The key used in the CLI and in storage.
    pub key: &'static str,
    /// What it means, for help texts.
    pub help: &'static str,
    /// Its default value.
    pub default: u32,
    /// Smallest allowed value.
    pub min: u32,
    /// Largest allowed value.
    pub max: u32,
    field: fn(&mut Settings) -> &mut u32,
}

/// All settings, in display order.
pub static SPECS: &[SettingSpec] = &[
    SettingSpec {
        key: "chunk_tokens",
        help: "target chunk length in tokens (suits a 384-dimension sentence embedder)",
        default: 256,
        min: 32,
        max: 2048,
        field: |s| &mut s.chunk_tokens,
    },
    SettingSpec {
        key: "chunk_overlap",
        help: "tokens repeated from the end of one chunk at the start of the next",
        default: 32,
        min: 0,
        max: 512,
        field: |s| &mut s.chunk_overlap,
    },
    SettingSpec {
        key: "top_k",
        help: "number of search results returned by default",
        default: 8,
        min: 1,
        max: 200,
        field: |s| &mut s.top_k,
    },
    SettingSpec {
        key: "max_file_mb",
        help: "largest file accepted, in MB",
        default: 50,
        min: 1,
        max: 4096,
        field: |s| &mut s.max_file_mb,
    },
    SettingSpec {
        key: "max_attempts",
        help: "times a job is tried before it is marked failed",
        default: 3,
        min: 1,
        max: 100,
        field: |s| &mut s.max_attempts,
    },
    SettingSpec {
        key: "retry_backoff_ms",
        help: "delay before the first retry in milliseconds; doubled for each further retry",
        default: 2000,
        min: 0,
        max: 3_600_000,
        field: |s| &mut s.retry_backoff_ms,
    },
    SettingSpec {
        key: "parse_timeout_s",
        help: "seconds a PDF, DOCX, EPUB or e-mail parser may run before it is stopped",
        default: 60,
        min: 1,
        max: 3600,
        field: |s| &mut s.parse_timeout_s,
    },
    SettingSpec {
        key: "parse_memory_mb",
        help: "memory a PDF, DOCX, EPUB or e-mail parser may use, in MB",
        default: 1024,
        min: 64,
        max: 65536,
        field: |s| &mut s.parse_memory_mb,
    },
    SettingSpec {
        key: "archive_max_mb",
        help: "most a DOCX, ODT or EPUB file may expand to, in MB",
        default: 200,
        min: 1,
        max: 16384,
        field: |s| &mut s.archive_max_mb,
    },
    SettingSpec {
        key: "archive_max_entries",
        help: "most entries a DOCX, ODT or EPUB file may have",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        field: |s| &mut s.archive_max_entries,
    },
    SettingSpec {
        key: "archive_max_ratio",
        help: "highest compression ratio accepted for a large entry (zip-bomb guard)",
        default: 100,
        min: 2,
        max: 100_000,
        field: |s| &mut s.archive_max_ratio,
    },
    SettingSpec {
        key: "fetch_timeout_s",
        help: "seconds allowed to fetch one URL, body included",
        default: 30,
        min: 1,
        max: 600,
        field: |s| &mut s.fetch_timeout_s,
    },
    SettingSpec {
        key: "fetch_max_redirects",
        help: "most redirects followed when fetching a URL",
        default: 5,
        min: 0,
        max: 20,
        field: |s| &mut s.fetch_max_redirects,
    },
    SettingSpec {
        key: "hnsw_m",
        help: "HNSW links per node: more finds more of the true neighbours and costs memory (the index is rebuilt in the background, the current one serving meanwhile)",
        default: 16,
        min: 4,
        max: 128,
        field: |s| &mut s.hnsw_m,
    },
    SettingSpec {
        key: "hnsw_ef_construction",
        help: "HNSW candidate list while building: higher builds a better graph, slower (the index is rebuilt in the background, the current one serving meanwhile)",
        default: 128,
        min: 16,
        max: 2048,
        field: |s| &mut s.hnsw_ef_construction,
    },
    SettingSpec {
        key: "hnsw_ef_search",
        help: "HNSW candidate list while searching: higher finds more of the true neighbours",
        default: 128,
        min: 8,
        max: 4096,
        field: |s| &mut s.hnsw_ef_search,
    },
    SettingSpec {
        key: "min_similarity_pct",
        help: "passages found by meaning below this similarity (percent) are not returned",
        default: 20,
        min: 0,
        max: 100,
        field: |s| &mut s.min_similarity_pct,
    },
    SettingSpec {
        key: "embed_timeout_s",
        help: "seconds a model server may take to answer one embedding request",
        default: 30,
        min: 1,
        max: 600,
        field: |s| &mut s.embed_timeout_s,
    },
    SettingSpec {
        key: "embed_retries",
        help: "extra tries of an embedding request after a refused connection or a 429/5xx answer",
        default: 2,
        min: 0,
        max: 10,
        field: |s| &mut s.embed_retries,
    },
    SettingSpec {
        key: "chat_timeout_s",
        help: "seconds a chat model server may take to start its answer (it may load the model)",
        default: 120,
        min: 1,
        max: 3600,
        field: |s| &mut s.chat_timeout_s,
    },
    SettingSpec {
        key: "chat_idle_s",
        help: "seconds a chat model server may stay silent in the middle of an answer",
        default: 30,
        min: 1,
        max: 600,
        field: |s| &mut s.chat_idle_s,
    },
    SettingSpec {
        key: "watch_debounce_ms",
        help: "quiet milliseconds after a change in a watched folder before its files are queued",
        default: 500,
        min: 50,
        max: 60_000,
        field: |s| &mut s.watch_debounce_ms,
    },
    SettingSpec {
        key: "metrics_days",
        help: "days of local metrics kept (job times, failures, latencies; never document text); 0 records none",
        default: 30,
        min: 0,
        max: 365,
        field: |s| &mut s.metrics_days,
    },
    SettingSpec {
        key: "rerank_candidates",
        help: "best passages of a search that a reranking server (`doppel reranker`) reorders",
        default: 30,
        min: 2,
        max: 200,
        field: |s| &mut s.rerank_candidates,
    },
    SettingSpec {
        key: "rerank_timeout_s",
        help: "seconds a reranking server may take to answer; past it, search keeps its own order",
        default: 5,
        min: 1,
        max: 120,
        field: |s| &mut s.rerank_timeout_s,
    },
    SettingSpec {
        key: "rerank_retries",
        help: "extra tries of a rerank request after a refused connection or a 429/5xx answer",
        default: 1,
        min: 0,
        max: 5,
        field: |s| &mut s.rerank_retries,
    },
    SettingSpec {
        key: "ocr",
        help: "read text in images and scanned PDF pages with Tesseract (slow; true or false)",
        default: 0,
        min: 0,
        max: 1,
        field: |s| &mut s.ocr,
    },
    SettingSpec {
        key: "ocr_min_confidence",
        help: "recognised paragraphs below this confidence (percent) are marked \"unsure text recognition\"",
        default: 60,
        min: 0,
        max: 100,
        field: |s| &mut s.ocr_min_confidence,
    },
    SettingSpec {
        key: "ocr_dpi",
        help: "resolution scanned PDF pages are rendered at for text recognition",
        default: 300,
        min: 72,
        max: 600,
        field: |s| &mut s.ocr_dpi,
    },
    SettingSpec {
        key: "ocr_max_pages",
        help: "most pages of one PDF read by text recognition",
        default: 500,
        min: 1,
        max: 100_000,
        field: |s| &mut s.ocr_max_pages,
    },
    SettingSpec {
        key: "transcribe_timeout_s",
        help: "seconds a speech-to-text server may take to transcribe one recording, upload included",
        default: 600,
        min: 5,
        max: 7200,
        field: |s| &mut s.transcribe_timeout_s,
    },
    SettingSpec {
        key: "transcribe_retries",
        help: "extra tries of a transcription after a refused connection or a 429/5xx answer",
        default: 2,
        min: 0,
        max: 10,
        field: |s| &mut s.transcribe_retries,
    },
];

/// The key of the one setting that is text: Tesseract's languages (`eng+fra`), stored as its
/// own row.
pub const OCR_LANGUAGES: &str = "ocr_languages";

/// Tesseract's languages when none were chosen.
pub const DEFAULT_OCR_LANGUAGES: &str = "eng";

impl Settings {
    /// The largest file accepted, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        u64::from(self.max_file_mb) * 1024 * 1024
    }

    /// Size limits for parsing, with text recognition in `languages` when it is on.
    pub(crate) fn limits(&self, languages: &str) -> crate::ingest::Limits {
        crate::ingest::Limits {
            max_bytes: self.max_file_bytes(),
            archive: crate::ingest::archive::ArchiveLimits {
                max_bytes: u64::from(self.archive_max_mb) * 1024 * 1024,
                max_entries: u64::from(self.archive_max_entries),
                max_ratio: u64::from(self.archive_max_ratio),
            },
            ocr: (self.ocr == 1).then(|| crate::ingest::ocr::OcrOptions {
                languages: languages.to_string(),
                min_confidence: self.ocr_min_confidence,
                dpi: self.ocr_dpi,
                max_pages: self.ocr_max_pages,
            }),
        }
    }

    /// Time and memory for the parser child.
    pub(crate) fn child_limits(&self) -> crate::sandbox::ChildLimits {
        crate::sandbox::ChildLimits {
            timeout: std::time::Duration::from_secs(u64::from(self.parse_timeout_s)),
            memory_bytes: u64::from(self.parse_memory_mb) * 1024 * 1024,
        }
    }

    /// HNSW parameters.
    pub(crate) fn hnsw(&self) -> crate::vectors::index::HnswParams {
        crate::vectors::index::HnswParams {
            m: self.hnsw_m as usize,
            ef_construction: self.hnsw_ef_construction as usize,
            ef_search: self.hnsw_ef_search as usize,
        }
    }

    /// Limits for fetching a URL.
    pub(crate) fn fetch_limits(&self) -> crate::fetch::FetchLimits {
        crate::fetch::FetchLimits {
            timeout: std::time::Duration::from_secs(u64::from(self.fetch_timeout_s)),
            max_bytes: self.max_file_bytes(),
            max_redirects: self.fetch_max_redirects as usize,
        }
    }

    /// The settings as `(key, value)` pairs, in display order.
    pub fn entries(&self) -> Vec<(&'static str, u32)> {
        let mut copy = self.clone();
        SPECS.iter().map(|spec| (spec.key, *(spec.field)(&mut copy))).collect()
    }

    /// The value of one setting.
    pub fn get(&self, key: &str) -> Result<u32> {
        let spec = spec(key)?;
        let mut copy = self.clone();
        Ok(*(spec.field)(&mut copy))
    }

    /// Builds settings from stored `(key, text)` pairs; unknown keys are ignored (they may come
    /// from a newer version) and stored values that no longer validate fall back to the default.
    pub(crate) fn from_stored(stored: &BTreeMap<String, String>) -> Settings {
        let mut settings = Settings::default();
        for (key, text) in stored {
            if let Ok(value) = settings.with(key, text) {
                settings = value;
            }
        }
        settings
    }

    /// A copy with one setting changed, after validating the new value against its range and
    /// against the other settings.
    pub fn with(&self, key: &str, text: &str) -> Result<Settings> {
        let spec = spec(key)?;
        let invalid = |reason: String| Error::InvalidSetting { key: key.to_string(), reason };
        let switch = (spec.min, spec.max) == (0, 1);
        let value: u32 = match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" if switch => 1,
            "false" | "off" | "no" if switch => 0,
            number => number.parse().map_err(|_| {
                invalid(if switch {
                    "expected true or false".to_string()
                } else {
                    format!("expected a whole number from {} to {}", spec.min, spec.max)
                })
            })?,
        };
        if !(spec.min..=spec.max).contains(&value) {
            return Err(invalid(format!("{value} is outside {}..={}", spec.min, spec.max)));
        }
        let mut next = self.clone();
        *(spec.field)(&mut next) = value;
        if next.chunk_overlap * 2 > next.chunk_tokens {
            return Err(invalid(format!(
                "chunk_overlap ({}) must be at most half of chunk_tokens ({})",
                next.chunk_overlap, next.chunk_tokens
            )));
        }
        Ok(next)
    }
}

fn spec(key: &str) -> Result<&'static SettingSpec> {
    SPECS
        .iter()
        .find(|s| s.key == key)
        .ok_or_else(|| Error::NotFound { what: "setting", id: key.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_suit_a_sentence_embedder() {
        let s = Settings::default();
        assert_eq!(s.chunk_tokens, 256);
        assert_eq!(s.max_file_bytes(), 50 * 1024 * 1024);
        assert_eq!(s.max_attempts, 3);
    }

    #[test]
    fn values_are_validated() {
        let s = Settings::default();
        assert_eq!(s.with("top_k", "12").unwrap().top_k, 12);
        assert_eq!(s.with("top_k", "0").unwrap_err().code(), "invalid_setting");
        assert_eq!(s.with("top_k", "-3").unwrap_err().code(), "invalid_setting");
        assert_eq!(s.with("top_k", "many").unwrap_err().code(), "invalid_setting");
        assert_eq!(s.with("nope", "1").unwrap_err().code(), "not_found");
        assert_eq!(s.ocr, 0, "text recognition is off until the owner turns it on");
        assert_eq!(s.with("ocr", "true").unwrap().ocr, 1);
        assert_eq!(s.with("ocr", "Off").unwrap().ocr, 0);
        assert_eq!(
            s.with("ocr", "maybe").unwrap_err().to_string(),
            "invalid value for ocr: expected true or false"
        );
        assert_eq!(s.with("top_k", "true").unwrap_err().code(), "invalid_setting");
        let err = s.with("chunk_overlap", "200").unwrap_err();
        assert!(err.to_string().contains("at most half"), "{err}");
    }

    #[test]
    fn stored_values_round_trip_and_bad_ones_fall_back() {
        let mut stored = BTreeMap::new();
        stored.insert("top_k".to_string(), "5".to_string());
        stored.insert("max_file_mb".to_string(), "0".to_string());
        stored.insert("from_the_future".to_string(), "1".to_string());
        let s = Settings::from_stored(&stored);
        assert_eq!(s.top_k, 5);
        assert_eq!(s.max_file_mb, 50);
        assert_eq!(s.get("top_k").unwrap(), 5);
    }
}
