//! Retrieval: the one home of search. Keyword search over the FTS5 index (BM25), search by
//! meaning through [`crate::vectors`], and their fusion by score ([`fuse`]).
//!
//! When a reranking server is chosen ([`crate::rerank`]), it reorders the best
//! `rerank_candidates` passages of the chosen mode; when it fails, the results keep their own
//! order and the note says why.
//!
//! When search by meaning cannot run (no model, passages still being embedded, the index being
//! rebuilt), a search falls back to keywords and says why in [`SearchResults::note`]. Vector
//! hits are checked against live rows, so a stale index entry never surfaces a deleted passage.
//!
//! User text never reaches FTS5 syntax: the query is cut into words exactly where FTS5's
//! `unicode61` tokenizer would cut it, and each word is passed as a quoted string, so quotes,
//! operators (`AND`, `OR`, `NOT`, `NEAR`), `*`, `^`, column filters and parentheses are plain
//! words. Very common English words are dropped when the query has others. The remaining words
//! are OR-ed: BM25 ranks passages that hold more of them, and rarer ones, first.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::Result;
use crate::model::*;
use crate::rerank;
use crate::settings::Settings;
use crate::store::{self, ReadPool};
use crate::vectors::{Vectors, cosine};

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
    /// Keyword, vector or both (the default).
    pub mode: SearchMode,
}

/// What a search found, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// Best first.
    pub hits: Vec<Hit>,
    /// The mode actually used: keyword when vectors were asked for but are unavailable.
    pub mode: SearchMode,
    /// Why the mode differs from the one asked for, for the person to read.
    pub note: Option<String>,
}

impl SearchRequest {
    /// A search of the default twin with the default limit.
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            twin: DEFAULT_TWIN,
            query: query.into(),
            limit: None,
            sources: Vec::new(),
            mode: SearchMode::Hybrid,
        }
    }
}

/// Searches the twin's passages: keyword (BM25), vector (HNSW) or both fused. Without a usable
/// model or index it falls back to keyword search and says so.
pub(crate) fn search(
    readers: &ReadPool,
    vectors: &Vectors,
    settings: &Settings,
    request: &SearchRequest,
) -> Result<SearchResults> {
    let limit = request.limit.map_or(settings.top_k, |l| l.clamp(1, 1000)) as usize;
    // A reranking server reorders more passages than are shown, and the best of its order are.
    let reranker = rerank::configured(readers, settings)?;
    let wanted =
        if reranker.is_some() { limit.max(settings.rerank_candidates as usize) } else { limit };
    // Fusion needs more than the final count from each list; a source filter is applied after
    // the vector search, so it looks further.
    let pool =
        if request.sources.is_empty() { (wanted * 4).max(32) } else { (wanted * 20).max(200) };
    let min = settings.min_similarity_pct as f32 / 100.0;
    let mut note = None;
    let mut vector = Vec::new();
    let mut query_vector = None;
    let mut mode = request.mode;
    // The two halves of a hybrid search run side by side: BM25 on a second thread while this
    // one embeds the query and searches the index, so the search takes the longer of the two
    // rather than their sum.
    let keyword_half = || readers.with(|c| keyword(c, request, pool as u32));
    let (meaning, keyword_found) = std::thread::scope(|scope| {
        let keyword_found = (mode == SearchMode::Hybrid).then(|| scope.spawn(keyword_half));
        // The outer result is the store's (it fails the search), the inner one says whether
        // search by meaning could run (when not, keywords stand in).
        let meaning = (mode != SearchMode::Keyword).then(|| {
            match vectors.nearest(&request.query, pool, min) {
                Ok((query, matches)) => readers
                    .with(|c| vector_hits(c, request, &matches))
                    .map(|hits| Ok((query, hits))),
                Err(unavailable) => Ok(Err(unavailable)),
            }
        });
        let keyword_found = keyword_found
            .map(|half| half.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (meaning, keyword_found)
    });
    match meaning.transpose()? {
        Some(Ok((query, hits))) => {
            vector = hits;
            query_vector = Some(query);
        }
        Some(Err(e)) => {
            note = Some(format!("{e}; showing keyword results only"));
            mode = SearchMode::Keyword;
        }
        None => {}
    }
    let mut keyword = match keyword_found {
        Some(found) => found?,
        None if mode == SearchMode::Keyword => keyword_half()?,
        None => Vec::new(),
    };
    // A passage that shares a word with the question but is far from it in meaning is not
    // relevant: with vectors at hand, keyword hits meet the same minimum similarity.
    if let (Some(query), Some((model, _))) = (&query_vector, vectors.model()) {
        let found: HashSet<ChunkId> = vector.iter().map(|h| h.chunk_id).collect();
        let unchecked: Vec<ChunkId> =
            keyword.iter().map(|h| h.chunk_id).filter(|id| !found.contains(id)).collect();
        let similar = readers.with(|c| store::chunk_vectors(c, model, &unchecked))?;
        keyword.retain(|hit| {
            found.contains(&hit.chunk_id)
                || similar.get(&hit.chunk_id).is_none_or(|v| cosine(v, query) >= min)
        });
    }
    let mut hits = match mode {
        SearchMode::Keyword => keyword.into_iter().take(wanted).collect(),
        SearchMode::Vector => vector.into_iter().take(wanted).collect(),
        SearchMode::Hybrid => fuse(keyword, vector, wanted),
    };
    if let Some(reranker) = reranker {
        let documents: Vec<String> = hits.iter().map(context_and_text).collect();
        match reranker.rerank(&request.query, &documents) {
            Ok(order) => {
                let mut slots: Vec<Option<Hit>> = hits.into_iter().map(Some).collect();
                hits = order.into_iter().filter_map(|i| slots.get_mut(i)?.take()).collect();
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e.for_log(), "reranking failed");
                let said = format!("{e}; the results keep their order without reranking");
                note = Some(match note {
                    Some(earlier) => format!("{earlier}; {said}"),
                    None => said,
                });
            }
        }
    }
    hits.truncate(limit);
    if hits.iter().any(|h| h.retriever != Retriever::Vector) {
        readers.with(|c| mark_words(c, &request.query, &mut hits))?;
    }
    Ok(SearchResults { hits, mode, note })
}

/// A passage as a reranker reads it: where it is (the document's title and heading), then its
/// text, since a passage alone often does not name what it is about.
fn context_and_text(hit: &Hit) -> String {
    let label = &hit.location.label;
    let place = if label.is_empty() || label.starts_with(&hit.source_title) {
        if label.is_empty() { hit.source_title.clone() } else { label.clone() }
    } else {
        format!("{} › {label}", hit.source_title)
    };
    format!("{place}\n{}", hit.text)
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

/// The share of the keyword score in a hybrid score; the meaning score has the rest.
const KEYWORD_SHARE: f64 = 0.5;

/// Fuses the two lists by their scores (a convex combination): each list's scores are scaled to
/// 0..1 between its worst and best hit, and a passage scores `KEYWORD_SHARE` of its keyword
/// score plus the rest of its meaning score, 0 from a list that lacks it. Unlike fusion by rank,
/// this keeps how far ahead a hit is: a passage that one retriever puts well ahead of the rest
/// is not overtaken by one that both found but neither liked much. On the answer benchmark's 64
/// questions it raised MRR@10 from 0.89 (reciprocal rank fusion) to 0.90 (BENCHMARKS.md). Ties
/// keep the keyword order.
pub(crate) fn fuse(keyword: Vec<Hit>, vector: Vec<Hit>, limit: usize) -> Vec<Hit> {
    let mut fused: Vec<Hit> = Vec::with_capacity(keyword.len() + vector.len());
    for (list, retriever, share) in [
        (keyword, Retriever::Keyword, KEYWORD_SHARE),
        (vector, Retriever::Vector, 1.0 - KEYWORD_SHARE),
    ] {
        let (low, high) = list.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), h| {
            (lo.min(h.score), hi.max(h.score))
        });
        for hit in list {
            let scaled = if high > low { (hit.score - low) / (high - low) } else { 1.0 };
            let score = share * scaled;
            match fused.iter_mut().find(|h| h.chunk_id == hit.chunk_id) {
                Some(existing) => {
                    existing.score += score;
                    existing.retriever = Retriever::Hybrid;
                    if retriever == Retriever::Keyword {
                        existing.snippet = hit.snippet;
                    }
                }
                None => fused.push(Hit { score, retriever, ..hit }),
            }
        }
    }
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused.truncate(limit);
    fused
}

/// The live chunks among vector matches `(chunk id, similarity)`, in match order, restricted
/// to the request's twin and sources. Ids of deleted chunks simply find no row.
pub(crate) fn vector_hits(
    conn: &Connection,
    request: &SearchRequest,
    matches: &[(u64, f32)],
) -> Result<Vec<Hit>> {
    let sql = format!(
        "SELECT {HIT_COLUMNS}, s.twin_id FROM chunks c JOIN sources s ON s.id = c.source_id WHERE c.id = ?1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut hits = Vec::with_capacity(matches.len());
    for &(id, similarity) in matches {
        let row = stmt
            .query_row([id as i64], |r| {
                let snippet = opening(&r.get::<_, String>(8)?);
                Ok((
                    r.get::<_, TwinId>(9)?,
                    hit_from_row(r, snippet, f64::from(similarity), Retriever::Vector)?,
                ))
            })
            .optional()?;
        if let Some((twin, hit)) = row
            && twin == request.twin
            && (request.sources.is_empty() || request.sources.contains(&hit.source_id))
        {
            hits.push(hit);
        }
    }
    Ok(hits)
}

/// The columns every hit is read from, in this order (see [`hit_from_row`]).
const HIT_COLUMNS: &str =
    "c.id, c.source_id, s.title, s.origin, c.location, c.line_start, c.line_end, c.page, c.text";

/// How much of a passage a vector hit shows when there are no matched words to centre on.
const SNIPPET_CHARS: usize = 160;

/// The start of a passage, as a hit shows it when no word of the query is marked in it.
fn opening(text: &str) -> String {
    let snippet: String = text.chars().take(SNIPPET_CHARS).collect();
    if snippet.len() < text.len() { snippet + "…" } else { snippet }
}

/// Marks the query's words in the hits that keyword search found (FTS5's snippet: the best
/// window of 16 tokens, the words in brackets). Only for the hits shown: computed for every
/// match inside the ranking query, it took about 40% of a keyword search at 100k passages.
fn mark_words(conn: &Connection, query: &str, hits: &mut [Hit]) -> Result<()> {
    let Some(query) = fts_query(query) else {
        return Ok(());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT snippet(chunks_fts, 0, '[', ']', '…', 16) FROM chunks_fts
         WHERE chunks_fts MATCH ?1 AND rowid = ?2",
    )?;
    for hit in hits.iter_mut().filter(|h| h.retriever != Retriever::Vector) {
        if let Some(snippet) =
            stmt.query_row(params![query, hit.chunk_id], |r| r.get(0)).optional()?
        {
            hit.snippet = snippet;
        }
    }
    Ok(())
}

fn hit_from_row(
    r: &Row,
    snippet: String,
    score: f64,
    retriever: Retriever,
) -> rusqlite::Result<Hit> {
    Ok(Hit {
        chunk_id: r.get(0)?,
        source_id: r.get(1)?,
        source_title: r.get(2)?,
        origin: r.get(3)?,
        location: crate::store::location_at(r, 4)?,
        snippet,
        text: r.get(8)?,
        score,
        retriever,
    })
}

/// The best keyword matches, by BM25, restricted to the request's twin and sources.
///
/// FTS5 ranks its matches first and only the best rows are joined to their chunks: a common
/// word can match most of the store, and joining every match with its text before sorting cost
/// three times as much at 100k passages (BENCHMARKS.md). The ranking breaks ties by id, as the
/// result does, so the rows kept are exactly the best ones. When the twin or source filter
/// leaves fewer than `limit` of them while more matched, the search runs over every match.
pub(crate) fn keyword(conn: &Connection, request: &SearchRequest, limit: u32) -> Result<Vec<Hit>> {
    let Some(query) = fts_query(&request.query) else {
        return Ok(Vec::new());
    };
    let mut ranked = if request.sources.is_empty() { limit } else { limit.saturating_mul(4) };
    loop {
        let sql = format!(
            "WITH top AS (
               SELECT rowid AS id, bm25(chunks_fts, 1.0, 0.5) AS rank
               FROM chunks_fts WHERE chunks_fts MATCH ?1 ORDER BY rank, rowid LIMIT ?2)
             SELECT {HIT_COLUMNS}, top.rank, s.twin_id
             FROM top JOIN chunks c ON c.id = top.id JOIN sources s ON s.id = c.source_id
             ORDER BY top.rank, c.id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut matched = 0;
        let mut hits = Vec::new();
        let mut rows = stmt.query(params![query, ranked])?;
        while let Some(r) = rows.next()? {
            matched += 1;
            // The words are marked later, in the hits shown only (see `mark_words`).
            let snippet = opening(&r.get::<_, String>(8)?);
            let hit = hit_from_row(r, snippet, -r.get::<_, f64>(9)?, Retriever::Keyword)?;
            if r.get::<_, TwinId>(10)? == request.twin
                && (request.sources.is_empty() || request.sources.contains(&hit.source_id))
                && hits.len() < limit as usize
            {
                hits.push(hit);
            }
        }
        if hits.len() == limit as usize || matched < ranked || ranked == u32::MAX {
            return Ok(hits);
        }
        ranked = u32::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: ChunkId, score: f64, retriever: Retriever) -> Hit {
        Hit {
            chunk_id: id,
            source_id: 1,
            source_title: String::new(),
            origin: None,
            location: Location::default(),
            snippet: String::new(),
            text: String::new(),
            score,
            retriever,
        }
    }

    #[test]
    fn fusion_weighs_how_well_each_list_matched_not_only_the_rank() {
        use Retriever::{Keyword, Vector};
        // Passage 3 is third by keywords and second by meaning, far behind the leaders of
        // both: found twice, it must not pass them (fusion by rank put it first).
        let keyword = vec![hit(1, 10.0, Keyword), hit(2, 9.9, Keyword), hit(3, 2.0, Keyword)];
        let vector = vec![hit(4, 0.80, Vector), hit(3, 0.30, Vector), hit(5, 0.29, Vector)];
        let fused = fuse(keyword, vector, 10);
        let order: Vec<ChunkId> = fused.iter().map(|h| h.chunk_id).collect();
        assert_eq!(order, [1, 4, 2, 3, 5], "{fused:?}");
        assert_eq!(fused[3].retriever, Retriever::Hybrid);
        // A passage that leads both lists leads the fusion.
        let keyword = vec![hit(1, 5.0, Keyword), hit(2, 4.9, Keyword), hit(3, 1.0, Keyword)];
        let vector = vec![hit(2, 0.9, Vector), hit(1, 0.5, Vector), hit(6, 0.1, Vector)];
        assert_eq!(fuse(keyword, vector, 1)[0].chunk_id, 2);
        // One list alone keeps its order, and a single hit is its list's best.
        let fused = fuse(vec![hit(7, 3.0, Keyword)], Vec::new(), 10);
        assert_eq!((fused[0].chunk_id, fused[0].score), (7, KEYWORD_SHARE));
    }

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
