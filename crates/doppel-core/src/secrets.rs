//! API keys in the OS keychain (the Secret Service on Linux: GNOME Keyring, KWallet...).
//!
//! A key is stored under the service "doppel" with the server's base URL as its account, so a
//! key is only ever sent to the server it was stored for: choosing another URL never leaks it.
//! Keys never reach the database, the logs or any file of the data directory.

use keyring::Entry;

use crate::error::{Error, Result};

/// The keychain service name Doppel's entries are stored under.
pub const KEYCHAIN_SERVICE: &str = "doppel";

/// The keychain account for a server's key.
pub fn keychain_account(url: &str) -> String {
    format!("api-key {}", url.trim().trim_end_matches('/'))
}

/// The setting that records that a key was stored for a server (the key itself never is).
/// A server without it never touches the keychain, so a machine without a Secret Service (a
/// server, a terminal over SSH) can use a model server that needs no key; the keychain is
/// needed only when a key is stored, or read because one was stored.
pub(crate) fn stored_marker(url: &str) -> String {
    format!("keychain.{}", keychain_account(url))
}

fn entry(url: &str) -> Result<Entry> {
    Entry::new(KEYCHAIN_SERVICE, &keychain_account(url)).map_err(failed)
}

fn failed(e: keyring::Error) -> Error {
    let reason = match e {
        keyring::Error::PlatformFailure(e) | keyring::Error::NoStorageAccess(e) => format!(
            "{e} (Doppel keeps API keys only in the OS keychain: is a Secret Service such as \
             GNOME Keyring running and unlocked?)"
        ),
        other => other.to_string(),
    };
    Error::Keychain { reason }
}

/// Stores the API key for a server, replacing any earlier one.
pub fn set_api_key(url: &str, key: &str) -> Result<()> {
    let key = key.trim();
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err(Error::InvalidInput("an API key of printable characters is needed".into()));
    }
    entry(url)?.set_password(key).map_err(failed)
}

/// The API key stored for a server, if any.
pub fn api_key(url: &str) -> Result<Option<String>> {
    match entry(url)?.get_password() {
        Ok(key) => Ok(Some(key)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(failed(e)),
    }
}

/// Removes the API key stored for a server; returns whether there was one.
pub fn delete_api_key(url: &str) -> Result<bool> {
    match entry(url)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(failed(e)),
    }
}

/// A key for display: its last four characters only.
pub fn masked(key: &str) -> String {
    let tail: String =
        key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect::<String>();
    if key.chars().count() <= 8 {
        "••••".to_string()
    } else {
        format!("••••{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_shown_in_full() {
        assert_eq!(masked("sk-1234567890abcd"), "••••abcd");
        assert_eq!(masked("short"), "••••");
        assert_eq!(keychain_account("http://h:1/v1/"), "api-key http://h:1/v1");
    }
}
