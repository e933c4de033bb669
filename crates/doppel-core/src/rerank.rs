//! Reranking through a model server: `POST /v1/rerank` as llama.cpp's server, Jina and Cohere
//! speak it (`{model, query, documents, top_n}` in, `{results: [{index, relevance_score}]}`
//! out). It owns the choice of server (settings rows `rerank.kind`, `rerank.url`,
//! `rerank.model`), the request and the checking of the answer; [`crate::retrieve`] decides
//! what to do when it fails.
//!
//! A reranker can only reorder: it never adds a passage, and a passage it leaves out of its
//! answer keeps its place after those it scored. Every request has a connect timeout and a
//! total timeout that covers the body (`rerank_timeout_s`), and refused connections, 429 and
//! 5xx answers are tried again `rerank_retries` times; a timeout is not, so a search waits at
//! most about `(rerank_retries + 1) × rerank_timeout_s`. An answer with an index out of range,
//! a repeated index or a score that is not a finite number is refused whole. The API key comes
//! from the OS keychain, stored under the server's URL, and is only ever sent to that server.
//! This module never logs the query or a passage.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::embed::remote::{ChosenServer, RemotePolicy, ServerChoice, client_for};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::store::ReadPool;

/// Whether search results are reranked, and by which server.
pub type RerankerChoice = ServerChoice;

/// Where the choice is stored.
pub(crate) const CHOICE_KEYS: [&str; 3] = ["rerank.kind", "rerank.url", "rerank.model"];

/// The policy the settings ask for: `rerank_timeout_s` per request, `rerank_retries` further
/// tries after a failure that may pass.
pub(crate) fn policy(settings: &Settings) -> RemotePolicy {
    RemotePolicy {
        timeout: Duration::from_secs(u64::from(settings.rerank_timeout_s)),
        retries: settings.rerank_retries,
        backoff: Duration::from_millis(250),
    }
}

/// The reranking server the owner chose, ready to be asked; `None` when reranking is off.
pub(crate) fn configured(readers: &ReadPool, settings: &Settings) -> Result<Option<Reranker>> {
    let server = readers.with(|c| ChosenServer::load(c, CHOICE_KEYS, policy(settings)))?;
    Ok(server.map(|server| Reranker { server }))
}

/// A reranking server ready to be asked.
#[derive(Debug)]
pub(crate) struct Reranker {
    server: ChosenServer,
}

impl Reranker {
    /// The indexes of `documents`, most relevant to `query` first, as the server ranks them;
    /// documents it left out follow in their own order.
    pub(crate) fn rerank(&self, query: &str, documents: &[String]) -> Result<Vec<usize>> {
        if documents.len() < 2 {
            return Ok((0..documents.len()).collect());
        }
        let client = client_for(self.server.policy).map_err(|e| self.failed(e.to_string()))?;
        let body = json!({
            "model": self.server.model,
            "query": query,
            "documents": documents,
            "top_n": documents.len(),
        })
        .to_string();
        let mut tries = 0;
        let answer = loop {
            match self.request(&client, &body) {
                Ok(answer) => break answer,
                Err((_, true)) if tries < self.server.policy.retries => {
                    let delay = self.server.policy.backoff.saturating_mul(1 << tries.min(16));
                    tracing::info!(server = %self.server.url, ?delay, "rerank request will be retried");
                    std::thread::sleep(delay);
                    tries += 1;
                }
                Err((reason, _)) => return Err(self.failed(reason)),
            }
        };
        order_of(&answer, documents.len())
            .map_err(|what| self.failed(format!("unexpected answer: {what}")))
    }

    fn failed(&self, reason: String) -> Error {
        Error::RerankServer { server: self.server.url.clone(), reason }
    }

    /// One request: the parsed answer, or why not and whether to try again.
    fn request(
        &self,
        client: &reqwest::blocking::Client,
        body: &str,
    ) -> std::result::Result<Value, (String, bool)> {
        let endpoint = endpoint(&self.server.url);
        let post = self.server.post(
            &endpoint,
            "application/json",
            MAX_ANSWER_BYTES,
            "doppel reranker key",
        );
        post.send(client, body.as_bytes().to_vec()).map_err(|f| (f.reason, f.retry))
    }
}

/// The longest answer read: scores of a few hundred passages take a few kilobytes.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// The URL requests go to: `/v1/rerank` below a base URL, `rerank` below a `/v1` or `/v2` URL,
/// and a URL that already names the endpoint as it is.
fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/rerank") || url.ends_with("/reranking") {
        url.to_string()
    } else if url.ends_with("/v1") || url.ends_with("/v2") {
        format!("{url}/rerank")
    } else {
        format!("{url}/v1/rerank")
    }
}

/// The order an answer gives to `count` documents, best first, or what is wrong with it.
/// llama.cpp and Jina send `results`, older Cohere servers `results` too, some servers `data`;
/// each item has an `index` and a `relevance_score` (or `score`).
fn order_of(answer: &Value, count: usize) -> std::result::Result<Vec<usize>, String> {
    let items = answer
        .get("results")
        .or_else(|| answer.get("data"))
        .and_then(Value::as_array)
        .ok_or("no \"results\" list")?;
    let mut scored: Vec<(usize, f64)> = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for item in items {
        let index = item.get("index").and_then(Value::as_u64).ok_or("an item without an index")?;
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i < count)
            .ok_or_else(|| format!("the index {index} is out of range for {count} passages"))?;
        if !seen.insert(index) {
            return Err(format!("the index {index} is repeated"));
        }
        let score = item
            .get("relevance_score")
            .or_else(|| item.get("score"))
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite())
            .ok_or("an item without a finite score")?;
        scored.push((index, score));
    }
    // A stable sort: equal scores keep the server's order.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut order: Vec<usize> = scored.into_iter().map(|(i, _)| i).collect();
    order.extend((0..count).filter(|i| !seen.contains(i)));
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_what_the_url_names() {
        assert_eq!(endpoint("http://h:8080"), "http://h:8080/v1/rerank");
        assert_eq!(endpoint("http://h:8080/v1/"), "http://h:8080/v1/rerank");
        assert_eq!(endpoint("https://api.example.com/v2"), "https://api.example.com/v2/rerank");
        assert_eq!(endpoint("http://h/rerank"), "http://h/rerank");
    }

    #[test]
    fn answers_are_ordered_by_score_and_checked() {
        let answer = json!({"results": [
            {"index": 2, "relevance_score": 0.9},
            {"index": 0, "relevance_score": -1.5},
        ]});
        assert_eq!(order_of(&answer, 4).unwrap(), vec![2, 0, 1, 3]);
        let out_of_range = json!({"results": [{"index": 4, "relevance_score": 1.0}]});
        assert!(order_of(&out_of_range, 4).unwrap_err().contains("out of range"));
        let repeated = json!({"results": [
            {"index": 1, "relevance_score": 1.0}, {"index": 1, "relevance_score": 0.5}
        ]});
        assert!(order_of(&repeated, 4).unwrap_err().contains("repeated"));
        let negative = json!({"results": [{"index": -1, "relevance_score": 1.0}]});
        assert!(order_of(&negative, 4).is_err());
        assert!(order_of(&json!({"results": [{"index": 0}]}), 4).is_err());
        assert!(order_of(&json!({"ok": true}), 4).is_err());
    }

    #[test]
    fn choices_are_checked_and_round_trip() {
        assert!(RerankerChoice::server("ftp://h", "m").is_err());
        assert!(RerankerChoice::server("http://h", "").is_err());
        let choice = RerankerChoice::server("http://h:1/v1/", "bge-reranker").unwrap();
        let stored: std::collections::BTreeMap<String, String> =
            choice.to_stored(CHOICE_KEYS).into_iter().collect();
        assert_eq!(RerankerChoice::from_stored(&stored, CHOICE_KEYS), choice);
        let off: std::collections::BTreeMap<String, String> =
            RerankerChoice::Off.to_stored(CHOICE_KEYS).into_iter().collect();
        assert_eq!(RerankerChoice::from_stored(&off, CHOICE_KEYS), RerankerChoice::Off);
        assert_eq!(
            RerankerChoice::from_stored(&std::collections::BTreeMap::new(), CHOICE_KEYS),
            RerankerChoice::Off
        );
    }
}
