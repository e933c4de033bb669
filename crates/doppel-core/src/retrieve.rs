//! Retrieval: keyword search over the FTS5 index, ranked by BM25.
//!
//! User text never reaches FTS5 syntax: the query is cut into words exactly where FTS5's
//! `unicode61` tokenizer would cut it, and each word is passed as a quoted string, so quotes,
//! operators (`AND`, `OR`, `NOT`, `NEAR`), `*`, `^`, column filters and parentheses are plain
//! words. Very common English words are dropped when the query has others. The remaining words
//! are OR-ed: BM25 ranks passages that hold more of them, and rarer ones, first.

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::model::*;

/// What to search for.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The twin whose sources are searched.
    pub twin: TwinId,
    /// The person's words, as typed.
    pub query: String,
    /// How many hits at most; `None` takes `top_k` from the settings.
    pub limit: Option<u32>,
    /// Only these sources, when not empty.
    pub sources: Vec<SourceId>,
}

impl SearchRequest {
    /// A search of the default twin with the default limit.
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest { twin: DEFAULT_TWIN, query: query.into(), limit: None, sources: Vec::new() }
    }
}

/// Most words of a query that are searched; the rest are ignored.
const MAX_TERMS: usize = 64;

/// English words too common to tell passages apart. They are dropped from a query that has
/// other words, so that "when did I plant the tomatoes" ranks by "plant" and "tomatoes"; a query
/// made only of them is searched as it is.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could",
    "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i", "if",
    "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "she", "should", "so",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "was",
    "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your",
];

/// The FTS5 expression for a person's query: its words, each quoted, joined by OR. `None` when
/// the query has no words at all.
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        if !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    if terms.iter().any(|t| !STOP_WORDS.contains(&t.as_str())) {
        terms.retain(|t| !STOP_WORDS.contains(&t.as_str()));
    }
    (!terms.is_empty())
        .then(|| terms.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" OR "))
}

pub(crate) fn keyword(conn: &Connection, request: &SearchRequest, limit: u32) -> Result<Vec<Hit>> {
    let Some(query) = fts_query(&request.query) else {
        return Ok(Vec::new());
    };
    let filter: Option<String> = (!request.sources.is_empty()).then(|| {
        let ids: Vec<String> = request.sources.iter().map(|id| id.to_string()).collect();
        format!("[{}]", ids.join(","))
    });
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.source_id, s.title, s.origin, c.location, c.line_start, c.line_end,
                snippet(chunks_fts, 0, '[', ']', '…', 16), c.text, bm25(chunks_fts, 1.0, 0.5) AS rank,
                c.page
         FROM chunks_fts
         JOIN chunks c ON c.id = chunks_fts.rowid
         JOIN sources s ON s.id = c.source_id
         WHERE chunks_fts MATCH ?1 AND s.twin_id = ?2
           AND (?3 IS NULL OR c.source_id IN (SELECT value FROM json_each(?3)))
         ORDER BY rank, c.id
         LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![query, request.twin, filter, limit], |r| {
        Ok(Hit {
            chunk_id: r.get(0)?,
            source_id: r.get(1)?,
            source_title: r.get(2)?,
            origin: r.get(3)?,
            location: Location {
                label: r.get(4)?,
                line_start: r.get(5)?,
                line_end: r.get(6)?,
                page: r.get(10)?,
            },
            snippet: r.get(7)?,
            text: r.get(8)?,
            score: -r.get::<_, f64>(9)?,
            retriever: Retriever::Keyword,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_quoted_words() {
        assert_eq!(fts_query("apt proxy").as_deref(), Some("\"apt\" OR \"proxy\""));
        assert_eq!(fts_query("\"NEAR(a b)\" OR c*").as_deref(), Some("\"near\" OR \"b\" OR \"c\""));
        assert_eq!(
            fts_query("text:foo ^bar -baz"),
            Some("\"text\" OR \"foo\" OR \"bar\" OR \"baz\"".into())
        );
        assert_eq!(fts_query("  ()\"*:^ "), None);
        assert_eq!(fts_query("Café café"), Some("\"café\"".into()));
        assert_eq!(
            fts_query("when did I plant the tomatoes?").as_deref(),
            Some("\"plant\" OR \"tomatoes\"")
        );
        assert_eq!(fts_query("The Who").as_deref(), Some("\"the\" OR \"who\""));
    }
}
