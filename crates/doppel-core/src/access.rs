//! Who may reach a twin from outside the app: the local API's tokens, their daily use, and
//! whether and where the API listens.
//!
//! A token is `dpl_<prefix>_<secret>`: the prefix (12 hex digits) is public and finds its row;
//! the secret (64 hex digits, 256 random bits) is shown once and stored only as SHA-256 of a
//! random salt and itself. Checking a token costs the same work whatever is wrong with it
//! (malformed, unknown, wrong, revoked): a hash and a comparison that looks at every byte, and
//! every failure is the same [`Error::Unauthorized`]. Each token belongs to one twin and has
//! one [`Scope`]. There is no way to switch the check off: no setting, variable or flag here
//! reaches it.
//!
//! This module never opens a socket; the server is `crates/doppel-api`, started only when the
//! owner switched the API on.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{Millis, TwinId};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Ask the twin (`/v1/ask`, `/v1/chat/completions`, the share page); nothing else.
    Ask,
    /// Read: search, sources, conversations.
    Read,
}

crate::model::text_names!(Scope { Ask => "ask", Read => "read" });

/// A token of the local API, as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: i64,
    /// The one twin it reaches.
    pub twin: TwinId,
    /// The name the owner gave it.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// Its public prefix (the token begins `dpl_<prefix>_`).
    pub prefix: String,
    /// Requests per minute it may make.
    pub rate_per_minute: u32,
    /// Tokens it may have generated per day (UTC).
    pub daily_tokens: u64,
    /// When it was made.
    pub created_at: Millis,
    /// When it was last used (recorded every few seconds while the API runs).
    pub last_used_at: Option<Millis>,
    /// When it was revoked; a revoked token never authenticates again.
    pub revoked_at: Option<Millis>,
}

/// A token to make.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The twin it reaches.
    pub twin: TwinId,
    /// A name, 1 to 100 characters, to recognise it by.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// Requests per minute (default [`DEFAULT_RATE_PER_MINUTE`]).
    pub rate_per_minute: Option<u32>,
    /// Generated tokens per day (default [`DEFAULT_DAILY_TOKENS`]).
    pub daily_tokens: Option<u64>,
}

/// A token just made: the only moment its whole text exists outside the person's hands.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token as stored.
    pub token: ApiToken,
    /// The whole token, to show once: `dpl_<prefix>_<secret>`.
    pub secret: String,
}

/// What a token used, to be added to its day's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUse {
    /// The token.
    pub token: i64,
    /// The day (UTC), counted from the Unix epoch.
    pub day: i64,
    /// Requests made.
    pub requests: u64,
    /// Tokens generated.
    pub generated: u64,
    /// When it was last used.
    pub last_used_at: Millis,
}

/// Whether and where the local API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Whether the app starts it.
    pub enabled: bool,
    /// The address it listens on (loopback unless the owner chose otherwise and confirmed).
    pub address: SocketAddr,
}

/// The address the API listens on unless the owner chooses another.
pub const DEFAULT_API_ADDRESS: &str = "127.0.0.1:8765";
/// Requests per minute a new token may make unless told otherwise.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 60;
/// Generated tokens per day a new token may use unless told otherwise.
pub const DEFAULT_DAILY_TOKENS: u64 = 50_000;
const PREFIX_HEX: usize = 12;
const SECRET_HEX: usize = 64;
const SALT_BYTES: usize = 16;
pub(crate) const ENABLED_KEY: &str = "api.enabled";
pub(crate) const ADDRESS_KEY: &str = "api.address";

impl ApiSettings {
    pub(crate) fn from_stored(enabled: Option<&str>, address: Option<&str>) -> ApiSettings {
        let default =
            DEFAULT_API_ADDRESS.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8765)));
        ApiSettings {
            enabled: enabled == Some("1"),
            address: address.and_then(|a| a.parse().ok()).unwrap_or(default),
        }
    }
}

/// Checks an address to listen on: any port, loopback always; another address only when the
/// owner confirmed that others on the network will be able to reach it (with a token).
pub fn check_address(address: &str, confirmed: bool) -> Result<SocketAddr> {
    let parsed: SocketAddr = address.trim().parse().map_err(|_| {
        Error::InvalidInput(format!(
            "{address:?} is not an address to listen on (for example {DEFAULT_API_ADDRESS})"
        ))
    })?;
    if !parsed.ip().is_loopback() && !confirmed {
        return Err(Error::ConfirmationNeeded(format!(
            "listening on {parsed} lets other computers on the network reach the API (each \
             request still needs a token); confirm to go ahead (`--yes`)"
        )));
    }
    Ok(parsed)
}

/// Checks a request for a token and makes its secret, prefix, salt and hash.
pub(crate) struct Minted {
    pub secret: String,
    pub prefix: String,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
    pub rate_per_minute: u32,
    pub daily_tokens: u64,
    pub name: String,
}

pub(crate) fn mint(request: &TokenRequest) -> Result<Minted> {
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::InvalidInput("a token's name is 1 to 100 characters".into()));
    }
    let rate_per_minute = request.rate_per_minute.unwrap_or(DEFAULT_RATE_PER_MINUTE);
    if !(1..=100_000).contains(&rate_per_minute) {
        return Err(Error::InvalidInput("a rate limit is 1 to 100000 requests per minute".into()));
    }
    let daily_tokens = request.daily_tokens.unwrap_or(DEFAULT_DAILY_TOKENS);
    if !(1..=1_000_000_000).contains(&daily_tokens) {
        return Err(Error::InvalidInput("a daily budget is 1 to 1000000000 tokens".into()));
    }
    let prefix = hex(&random(PREFIX_HEX / 2)?);
    let secret_part = hex(&random(SECRET_HEX / 2)?);
    let salt = random(SALT_BYTES)?;
    let hash = digest(&salt, secret_part.as_bytes());
    Ok(Minted {
        secret: format!("dpl_{prefix}_{secret_part}"),
        prefix,
        salt,
        hash,
        rate_per_minute,
        daily_tokens,
        name,
    })
}

/// A stored token with its salt and the hash of its secret.
pub(crate) type StoredToken = (ApiToken, Vec<u8>, Vec<u8>);

/// The prefix and secret of a presented token, when it has a token's shape.
fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix("dpl_")?;
    let (prefix, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(prefix, PREFIX_HEX) && hex(secret, SECRET_HEX)).then_some((prefix, secret))
}

/// Checks a presented token against what is stored. `lookup` finds a row by prefix. Every
/// failure is [`Error::Unauthorized`] after the same work: a hash and a full comparison.
pub(crate) fn verify(
    presented: &str,
    lookup: impl FnOnce(&str) -> Result<Option<StoredToken>>,
) -> Result<ApiToken> {
    let (prefix, secret) = parse(presented).unwrap_or(("", presented));
    let found = if prefix.is_empty() { None } else { lookup(prefix)? };
    // Unknown prefixes are compared with a hash no secret has, so they cost the same.
    let (token, salt, hash) = match found {
        Some((token, salt, hash)) => (Some(token), salt, hash),
        None => (None, vec![0u8; SALT_BYTES], vec![0u8; 32]),
    };
    let matches = same_bytes(&digest(&salt, secret.as_bytes()), &hash);
    match token {
        Some(token) if matches && token.revoked_at.is_none() => Ok(token),
        _ => Err(Error::Unauthorized),
    }
}

/// Compares every byte whatever differs, so the time taken tells nothing of where.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn digest(salt: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret);
    hasher.finalize().to_vec()
}

fn random(n: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::InvalidInput(format!("no randomness from the system: {e}")))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Today's number (UTC days since the Unix epoch) and the seconds left until tomorrow.
pub fn day_and_seconds_left(now: Millis) -> (i64, u64) {
    const DAY_MS: i64 = 86_400_000;
    let day = now.div_euclid(DAY_MS);
    let left_ms = (day + 1) * DAY_MS - now;
    (day, (left_ms as u64).div_ceil(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(secret: &str, revoked: bool) -> StoredToken {
        let (_, secret) = parse(secret).unwrap();
        let salt = vec![7u8; SALT_BYTES];
        let token = ApiToken {
            id: 1,
            twin: 1,
            name: "t".into(),
            scope: Scope::Read,
            prefix: String::new(),
            rate_per_minute: 1,
            daily_tokens: 1,
            created_at: 0,
            last_used_at: None,
            revoked_at: revoked.then_some(5),
        };
        let hash = digest(&salt, secret.as_bytes());
        (token, salt, hash)
    }

    #[test]
    fn cr2_only_the_whole_unrevoked_token_authenticates_and_every_failure_is_the_same() {
        let minted = mint(&TokenRequest {
            twin: 1,
            name: " phone ".into(),
            scope: Scope::Ask,
            rate_per_minute: None,
            daily_tokens: None,
        })
        .unwrap();
        assert_eq!(minted.name, "phone");
        assert!(parse(&minted.secret).is_some(), "{}", minted.secret);
        let good = minted.secret.clone();
        assert!(verify(&good, |_| Ok(Some(stored(&good, false)))).is_ok());
        let mut last = good.clone();
        last.pop();
        last.push(if good.ends_with('0') { '1' } else { '0' });
        let attempts = [
            String::new(),
            " ".into(),
            "dpl_".into(),
            good[..good.len() - 1].to_string(),
            last,
            good.to_uppercase(),
            format!("{good} "),
        ];
        for attempt in &attempts {
            let err = verify(attempt, |_| Ok(Some(stored(&good, false)))).unwrap_err();
            assert_eq!(err.code(), "unauthorized", "{attempt:?}");
        }
        let err = verify(&good, |_| Ok(Some(stored(&good, true)))).unwrap_err();
        assert_eq!(err.code(), "unauthorized", "revoked");
        let err = verify(&good, |_| Ok(None)).unwrap_err();
        assert_eq!(err.to_string(), Error::Unauthorized.to_string(), "unknown");
    }

    #[test]
    fn days_end_at_midnight_utc() {
        assert_eq!(day_and_seconds_left(0), (0, 86_400));
        assert_eq!(day_and_seconds_left(86_400_000 - 1), (0, 1));
        assert_eq!(day_and_seconds_left(86_400_000 * 3 + 60_000), (3, 86_340));
    }

    #[test]
    fn only_loopback_listens_without_a_confirmation() {
        assert!(check_address("127.0.0.1:9000", false).is_ok());
        assert!(check_address("[::1]:9000", false).is_ok());
        assert_eq!(check_address("0.0.0.0:9000", false).unwrap_err().code(), "confirmation_needed");
        assert!(check_address("0.0.0.0:9000", true).is_ok());
        assert_eq!(check_address("localhost", true).unwrap_err().code(), "invalid_input");
    }
}
