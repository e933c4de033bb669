//! `doppel api`: the local API's server, switch and tokens.
//!
//! `serve` runs the server in this process until Ctrl-C (a scripted, headless twin); `on` and
//! `off` record whether the desktop app runs it. Tokens are printed once, when made.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Subcommand;
use doppel_core::access::{self, ApiSettings, ApiToken, Scope, TokenRequest};
use doppel_core::{DEFAULT_TWIN, Doppel, Error};
use serde_json::{Value, json};

use crate::Printer;
use crate::chat::{INTERRUPTED, catch_interrupts};

#[derive(Subcommand)]
pub(crate) enum ApiAction {
    /// Serve the API from this process until Ctrl-C.
    Serve {
        /// The address to listen on (default: the one saved, else 127.0.0.1:8765).
        #[arg(long)]
        address: Option<String>,
        /// Confirm an address other computers can reach.
        #[arg(long)]
        yes: bool,
    },
    /// Let the desktop app serve the API (at `--address`, or the one saved).
    On {
        /// The address to listen on.
        #[arg(long)]
        address: Option<String>,
        /// Confirm an address other computers can reach.
        #[arg(long)]
        yes: bool,
    },
    /// Stop the desktop app serving the API (the default).
    Off,
    /// Whether the API is on, and where.
    Status,
    /// Make, list or revoke tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenAction {
    /// Make a token (printed once; only a salted hash of it is kept).
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// `ask` (ask the twin, and share links) or `read` (search, sources, conversations).
        #[arg(long, value_parser = ["ask", "read"])]
        scope: String,
        /// Requests per minute it may make.
        #[arg(long)]
        rate: Option<u32>,
        /// Tokens it may have generated per day.
        #[arg(long)]
        budget: Option<u64>,
        /// The twin it reaches (default: the first).
        #[arg(long, default_value_t = DEFAULT_TWIN)]
        twin: i64,
    },
    /// List the tokens, with their last use.
    List,
    /// Revoke a token: it never works again.
    Revoke {
        /// The token's id.
        id: i64,
    },
}

pub(crate) fn api(doppel: Doppel, out: &Printer, action: ApiAction) -> Result<(), Error> {
    match action {
        ApiAction::Serve { address, yes } => serve(doppel, out, address, yes),
        ApiAction::On { address, yes } => {
            let current = doppel.api_settings()?;
            let address = match address {
                Some(a) => access::check_address(&a, yes)?,
                None => access::check_address(&current.address.to_string(), yes)?,
            };
            doppel.set_api_settings(&ApiSettings { enabled: true, address })?;
            status(&doppel, out)
        }
        ApiAction::Off => {
            let current = doppel.api_settings()?;
            doppel.set_api_settings(&ApiSettings { enabled: false, ..current })?;
            status(&doppel, out)
        }
        ApiAction::Status => status(&doppel, out),
        ApiAction::Token { action } => token(&doppel, out, action),
    }
}

fn status(doppel: &Doppel, out: &Printer) -> Result<(), Error> {
    let s = doppel.api_settings()?;
    out.value(json!({ "enabled": s.enabled, "address": s.address.to_string() }), || {
        format!(
            "local API: {} (address {}; the desktop app serves it while open)",
            if s.enabled { "on" } else { "off" },
            s.address
        )
    });
    Ok(())
}

fn serve(doppel: Doppel, out: &Printer, address: Option<String>, yes: bool) -> Result<(), Error> {
    let address = match address {
        Some(a) => access::check_address(&a, yes)?,
        None => doppel.api_settings()?.address,
    };
    catch_interrupts();
    let doppel = Arc::new(doppel);
    let server = doppel_api::ApiServer::start(Arc::clone(&doppel), address, Default::default())?;
    let url = format!("http://{}/v1", server.address());
    // One line on stdout, so that a script can read where it listens.
    out.value(json!({ "address": server.address().to_string(), "url": url }), || {
        format!("local API on {url} (Ctrl-C stops it)")
    });
    while !INTERRUPTED.load(Ordering::Relaxed) {
        // Only lets Ctrl-C be noticed; the server runs on threads of its own.
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
    out.note("local API stopped");
    Ok(())
}

fn token_value(t: &ApiToken) -> Value {
    json!({
        "id": t.id,
        "twin": t.twin,
        "name": t.name,
        "scope": t.scope.as_str(),
        "prefix": t.prefix,
        "rate_per_minute": t.rate_per_minute,
        "daily_tokens": t.daily_tokens,
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
    })
}

fn token_line(t: &ApiToken) -> String {
    let state = match (t.revoked_at, t.last_used_at) {
        (Some(_), _) => "revoked".to_string(),
        (None, Some(at)) => format!("last used {}", ago(at)),
        (None, None) => "never used".to_string(),
    };
    format!(
        "{:>4}  {:<5} twin {}  {}/min  {} tokens/day  dpl_{}_…  {}  {state}",
        t.id, t.scope, t.twin, t.rate_per_minute, t.daily_tokens, t.prefix, t.name
    )
}

fn token(doppel: &Doppel, out: &Printer, action: TokenAction) -> Result<(), Error> {
    match action {
        TokenAction::Create { name, scope, rate, budget, twin } => {
            let scope = Scope::parse(&scope)
                .ok_or_else(|| Error::InvalidInput("a scope is ask or read".into()))?;
            let made = doppel.create_api_token(&TokenRequest {
                twin,
                name,
                scope,
                rate_per_minute: rate,
                daily_tokens: budget,
            })?;
            let address = doppel.api_settings()?.address;
            let share = (scope == Scope::Ask)
                .then(|| format!("http://{address}/share#token={}", made.secret));
            let mut value = token_value(&made.token);
            value["token"] = json!(made.secret);
            value["share_link"] = json!(share);
            out.value(value, || {
                let mut text = format!(
                    "token {} ({}), shown only now:\n{}",
                    made.token.id, made.token.scope, made.secret
                );
                if let Some(link) = &share {
                    text.push_str(&format!("\nshare link (a chat page for this twin):\n{link}"));
                }
                text
            });
        }
        TokenAction::List => {
            let tokens = doppel.api_tokens()?;
            out.value(Value::Array(tokens.iter().map(token_value).collect()), || {
                if tokens.is_empty() {
                    return "no tokens: make one with `doppel api token create`".into();
                }
                tokens.iter().map(token_line).collect::<Vec<_>>().join("\n")
            });
        }
        TokenAction::Revoke { id } => {
            let t = doppel.revoke_api_token(id)?;
            out.value(token_value(&t), || format!("token {} revoked", t.id));
        }
    }
    Ok(())
}

/// How long ago a time was, for people.
fn ago(at: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    match (now - at).max(0) / 1000 {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}
