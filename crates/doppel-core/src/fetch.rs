//! Fetching a URL for ingestion: http and https only, with a connect timeout, a total timeout
//! that covers the body, a redirect limit and a size cap.
//!
//! A fetch never holds the worker much past its timeout: the client's timeout bounds the
//! connection and each read, a deadline bounds the whole body, and the body is read through a
//! cap, so a server that never answers, streams
//! forever, redirects in a loop or announces 10 GB ends in a clear error.

use std::io::Read;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::redirect::Policy;

use crate::error::{Error, Result};

/// Limits for one fetch, from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchLimits {
    pub timeout: Duration,
    pub max_bytes: u64,
    pub max_redirects: usize,
}

/// What a server sent back.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The URL after redirects.
    pub url: String,
    /// The `Content-Type` media type, lowercased, without parameters.
    pub media_type: Option<String>,
    /// The `charset` parameter of the content type, if any.
    pub charset: Option<String>,
    pub bytes: Vec<u8>,
}

/// Checks that `url` is an absolute http or https URL; returns it normalised.
pub(crate) fn check_url(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| Error::InvalidInput(format!("{url}: not a valid URL ({e})")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed.to_string()),
        _ => Err(Error::InvalidInput(format!("{url}: only http and https URLs can be ingested"))),
    }
}

pub(crate) fn fetch(url: &str, limits: FetchLimits) -> Result<Fetched> {
    let failed =
        |reason: String, transient: bool| Error::Fetch { url: url.to_string(), reason, transient };
    let max_redirects = limits.max_redirects;
    let policy = Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            attempt.error(format!("more than {max_redirects} redirects"))
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            attempt.error("a redirect left http and https")
        } else {
            attempt.follow()
        }
    });
    let client = Client::builder()
        .connect_timeout(limits.timeout.min(Duration::from_secs(10)))
        .timeout(limits.timeout)
        .redirect(policy)
        .user_agent(concat!("Doppel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| failed(format!("could not set up the HTTP client: {e}"), false))?;
    let describe = |e: &reqwest::Error| -> (String, bool) {
        if e.is_timeout() {
            (format!("timed out after {} s", limits.timeout.as_secs()), true)
        } else if e.is_redirect() {
            (format!("redirect refused: {}", root_cause(e)), false)
        } else if e.is_connect() {
            (format!("could not connect: {}", root_cause(e)), true)
        } else {
            (root_cause(e), true)
        }
    };
    let started = std::time::Instant::now();
    let response = client.get(url).send().map_err(|e| {
        let (reason, transient) = describe(&e);
        failed(reason, transient)
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("the server answered {status}"), status.is_server_error()));
    }
    if let Some(length) = response.content_length()
        && length > limits.max_bytes
    {
        return Err(Error::FileTooLarge { size: length, limit: limits.max_bytes });
    }
    let final_url = response.url().to_string();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let media_type =
        content_type.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    let charset = content_type.as_deref().and_then(|c| {
        c.split(';').skip(1).find_map(|p| {
            p.trim().strip_prefix("charset=").map(|v| v.trim_matches('"').to_string())
        })
    });
    // The blocking client's timeout bounds each read, not the whole body: a server that
    // trickles a byte at a time would never trip it. The deadline here bounds the total.
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut body = response.take(limits.max_bytes + 1);
    loop {
        if started.elapsed() > limits.timeout {
            return Err(failed(format!("timed out after {} s", limits.timeout.as_secs()), true));
        }
        match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(failed(
                    format!("timed out after {} s", limits.timeout.as_secs()),
                    true,
                ));
            }
            Err(e) => {
                return Err(failed(format!("the download broke off: {}", root_cause(&e)), true));
            }
        }
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(Error::FileTooLarge { size: bytes.len() as u64, limit: limits.max_bytes });
    }
    Ok(Fetched { url: final_url, media_type, charset, bytes })
}

/// Whether a body read failed because the total timeout ran out.
fn is_timeout(e: &std::io::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        let timed_out =
            error.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout)
                || error
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timed_out {
            return true;
        }
        current = error.source();
    }
    false
}

/// The innermost message of an error chain: the one that says what really happened.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_urls_are_taken() {
        assert_eq!(check_url("https://example.org/a b").unwrap(), "https://example.org/a%20b");
        for bad in [
            "file:///etc/passwd",
            "ftp://example.org/",
            "example.org",
            "http://",
            "javascript:alert(1)",
        ] {
            assert_eq!(check_url(bad).unwrap_err().code(), "invalid_input", "{bad}");
        }
    }
}
