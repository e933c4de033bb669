//! The search view's passages: each hit's whole text cut into parts, with the words of the
//! query that the keyword index matches marked, whichever retriever found the passage.
//!
//! The marks come from FTS5's own `highlight()`, so they are exactly the words keyword search
//! matches (by their stem: "planting" marks "planted"), never a second guess at tokenising.
//! Passages found by meaning alone may have no mark at all.

use rusqlite::Connection;

use crate::error::Result;
use crate::model::*;

/// A passage found by the search view, with its text cut into parts.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPassage {
    /// The hit, as [`crate::Doppel::search`] returns it.
    pub hit: Hit,
    /// The hit's whole text, in order; joined, the parts are exactly `hit.text`.
    pub parts: Vec<TextPart>,
}

/// A piece of a passage's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Whether it is a word of the query.
    pub marked: bool,
}

/// What the search view found, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The passages.
    pub passages: Vec<FoundPassage>,
    /// The mode actually used (keyword when vectors were asked for but are unavailable).
    pub mode: SearchMode,
    /// Why the mode differs from the one asked for, for the person to read.
    pub note: Option<String>,
}

/// Marks that cannot occur in stored text (control characters are not kept by the parsers);
/// should one occur anyway, the passage is shown without marks rather than cut wrongly.
const OPEN: char = '\u{2}';
const CLOSE: char = '\u{3}';

/// Cuts each hit's text into parts with the words of `query` marked.
pub(crate) fn mark(conn: &Connection, query: &str, results: crate::SearchResults) -> Result<Found> {
    let expression = crate::retrieve::fts_query(query);
    let mut passages = Vec::with_capacity(results.hits.len());
    for hit in results.hits {
        let highlighted = match &expression {
            Some(expression) => {
                crate::store::highlighted(conn, hit.chunk_id, expression, OPEN, CLOSE)?
            }
            None => None,
        };
        let parts = highlighted
            .and_then(|h| split(&h, &hit.text))
            .unwrap_or_else(|| vec![TextPart { text: hit.text.clone(), marked: false }]);
        passages.push(FoundPassage { hit, parts });
    }
    Ok(Found { passages, mode: results.mode, note: results.note })
}

/// The parts of a highlighted text, or `None` when its marks do not fit `original`.
fn split(highlighted: &str, original: &str) -> Option<Vec<TextPart>> {
    let mut parts = Vec::new();
    let mut marked = false;
    for piece in highlighted.split([OPEN, CLOSE]) {
        if !piece.is_empty() {
            parts.push(TextPart { text: piece.to_string(), marked });
        }
        marked = !marked;
    }
    let rebuilt: String = parts.iter().map(|p| p.text.as_str()).collect();
    let balanced = highlighted.matches(OPEN).count() == highlighted.matches(CLOSE).count();
    (balanced && rebuilt == original).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_cut_the_text_without_losing_a_character() {
        let parts =
            split("I \u{2}planted\u{3} the \u{2}quinces\u{3}.", "I planted the quinces.").unwrap();
        let shown: Vec<(&str, bool)> = parts.iter().map(|p| (p.text.as_str(), p.marked)).collect();
        assert_eq!(
            shown,
            [("I ", false), ("planted", true), (" the ", false), ("quinces", true), (".", false)]
        );
        assert!(split("\u{2}a\u{3}", "b").is_none());
        assert!(split("\u{2}a", "a").is_none());
    }
}
