//! The local API's tokens and their daily use (schema v8). Queries only; the hashing and the
//! rules are `tokens.rs`'s.

use rusqlite::{Connection, OptionalExtension, Row, Transaction};

use crate::access::{ApiToken, Scope, StoredToken, TokenUse};
use crate::error::{Error, Result};
use crate::model::*;

const COLUMNS: &str = "id, twin_id, name, scope, prefix, rate_per_minute, daily_tokens, \
     created_at, last_used_at, revoked_at";

fn token_from_row(row: &Row) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: row.get(0)?,
        twin: row.get(1)?,
        name: row.get(2)?,
        scope: super::parse_col(row, 3, "token scope", Scope::parse)?,
        prefix: row.get(4)?,
        rate_per_minute: row.get(5)?,
        daily_tokens: row.get(6)?,
        created_at: row.get(7)?,
        last_used_at: row.get(8)?,
        revoked_at: row.get(9)?,
    })
}

/// A new token's row; `salt` and `hash` are of its secret part.
pub(crate) struct NewTokenRow<'a> {
    pub twin: TwinId,
    pub name: &'a str,
    pub scope: Scope,
    pub prefix: &'a str,
    pub salt: &'a [u8],
    pub hash: &'a [u8],
    pub rate_per_minute: u32,
    pub daily_tokens: u64,
}

pub(crate) fn insert_token(tx: &Transaction, t: &NewTokenRow) -> Result<ApiToken> {
    super::twin(tx, t.twin)?;
    tx.execute(
        "INSERT INTO api_tokens (twin_id, name, scope, prefix, salt, hash, rate_per_minute, \
         daily_tokens, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        rusqlite::params![
            t.twin,
            t.name,
            t.scope.as_str(),
            t.prefix,
            t.salt,
            t.hash,
            t.rate_per_minute,
            t.daily_tokens as i64,
            super::now_ms()
        ],
    )?;
    token(tx, tx.last_insert_rowid())
}

pub(crate) fn token(conn: &Connection, id: i64) -> Result<ApiToken> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1"), [id], token_from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound { what: "token", id: id.to_string() })
}

/// Every token, revoked ones too, newest first.
pub(crate) fn tokens(conn: &Connection) -> Result<Vec<ApiToken>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id DESC"))?;
    Ok(stmt.query_map([], token_from_row)?.collect::<rusqlite::Result<_>>()?)
}

/// A token by its public prefix, with its salt and hash.
pub(crate) fn token_by_prefix(conn: &Connection, prefix: &str) -> Result<Option<StoredToken>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS}, salt, hash FROM api_tokens WHERE prefix = ?1"),
            [prefix],
            |r| Ok((token_from_row(r)?, r.get(10)?, r.get(11)?)),
        )
        .optional()?)
}

pub(crate) fn revoke_token(tx: &Transaction, id: i64) -> Result<ApiToken> {
    token(tx, id)?;
    tx.execute(
        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        (id, super::now_ms()),
    )?;
    token(tx, id)
}

/// Generated tokens counted for a token on a day.
pub(crate) fn generated_on(conn: &Connection, token: i64, day: i64) -> Result<u64> {
    let n: Option<i64> = conn
        .query_row(
            "SELECT generated FROM api_usage WHERE token_id = ?1 AND day = ?2",
            (token, day),
            |r| r.get(0),
        )
        .optional()?;
    Ok(n.unwrap_or(0) as u64)
}

/// Adds what tokens used since the last record. A token deleted meanwhile is passed over.
pub(crate) fn record_use(tx: &Transaction, uses: &[TokenUse]) -> Result<()> {
    for u in uses {
        let exists: bool =
            tx.query_row("SELECT count(*) > 0 FROM api_tokens WHERE id = ?1", [u.token], |r| {
                r.get(0)
            })?;
        if !exists {
            continue;
        }
        tx.execute(
            "INSERT INTO api_usage (token_id, day, requests, generated) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (token_id, day) DO UPDATE SET requests = requests + excluded.requests, \
             generated = generated + excluded.generated",
            (u.token, u.day, u.requests as i64, u.generated as i64),
        )?;
        tx.execute(
            "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
            (u.token, u.last_used_at),
        )?;
    }
    Ok(())
}
