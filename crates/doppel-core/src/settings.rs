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
];

impl Settings {
    /// The largest file accepted, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        u64::from(self.max_file_mb) * 1024 * 1024
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
        let value: u32 = text.trim().parse().map_err(|_| {
            invalid(format!("expected a whole number from {} to {}", spec.min, spec.max))
        })?;
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
