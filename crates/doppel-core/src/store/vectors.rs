//! Embedding models and their vectors. Reads run anywhere; writes only on the worker.
//!
//! A passage is embedded with its document's title on the line before its text
//! ([`embedded_text`]), and its vector is stored under the hash of that text (the chunk's
//! `text_hash`). Passages stored before this was so keep the vectors of their text alone, under
//! the hash of their text, until their source is read again.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::*;
use crate::embed::{EmbedderChoice, ModelInfo, from_blob};

/// The id of a model's row, creating it on first use.
pub(crate) fn ensure_model(conn: &Connection, info: &ModelInfo) -> Result<i64> {
    conn.execute(
        "INSERT INTO embed_models (name, dimension, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (fingerprint) DO NOTHING",
        params![info.name, info.dimension as i64, info.fingerprint, now_ms()],
    )?;
    Ok(conn.query_row(
        "SELECT id FROM embed_models WHERE fingerprint = ?1",
        [&info.fingerprint],
        |r| r.get(0),
    )?)
}

/// A passage as the embedding model reads it: the title of its document (its first
/// `TITLE_CHARS` characters), then its text. A passage often does not name what it is about
/// ("edit this file, then restart the service"); its title does. On the answer benchmark's
/// questions this raised hybrid search's recall@5 from 0.97 to 0.98 and MRR@10 from 0.90 to
/// 0.91 (BENCHMARKS.md).
pub(crate) fn embedded_text(title: &str, text: &str) -> String {
    // A title is a few words; a document may claim a whole page as one, and the model reads a
    // few hundred tokens at most, so only its start is repeated before every passage.
    let title = crate::ingest::first_chars(title.trim(), TITLE_CHARS).trim_end();
    if title.is_empty() { text.to_string() } else { format!("{title}\n{text}") }
}

/// The most characters of a title that a passage is embedded with.
const TITLE_CHARS: usize = 200;

/// The key a passage's vector is stored under: the hash of [`embedded_text`].
pub(crate) fn embedding_key(title: &str, text: &str) -> String {
    crate::ingest::sha256_hex(embedded_text(title, text).as_bytes())
}

/// The row id and dimension of the model with this fingerprint, if it was used before.
pub(crate) fn model_by_fingerprint(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Option<(i64, usize)>> {
    Ok(conn
        .query_row(
            "SELECT id, dimension FROM embed_models WHERE fingerprint = ?1",
            [fingerprint],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)),
        )
        .optional()?)
}

/// Keys of the settings table that hold the embedder choice.
const CHOICE_KEYS: [&str; 3] = ["embedder.kind", "embedder.url", "embedder.model"];

/// The embedder the owner chose; the local model unless another was chosen.
pub(crate) fn embedder_choice(conn: &Connection) -> Result<EmbedderChoice> {
    let stored = super::stored_settings(conn)?;
    let [kind, url, model] =
        CHOICE_KEYS.map(|k| stored.get(k).map(String::as_str).unwrap_or_default());
    Ok(EmbedderChoice::from_stored(kind, url, model))
}

pub(crate) fn set_embedder_choice(conn: &Connection, choice: &EmbedderChoice) -> Result<()> {
    let (kind, url, model) = choice.to_stored();
    for (key, value) in CHOICE_KEYS.iter().zip([kind, url, model]) {
        super::set_setting(conn, key, &value)?;
    }
    Ok(())
}

/// Every recorded model with the number of vectors it holds.
pub(crate) fn models(conn: &Connection) -> Result<Vec<(ModelInfo, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT m.name, m.dimension, m.fingerprint,
                (SELECT count(*) FROM embeddings e WHERE e.model_id = m.id)
         FROM embed_models m ORDER BY m.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            ModelInfo {
                name: r.get(0)?,
                dimension: r.get::<_, i64>(1)? as usize,
                fingerprint: r.get(2)?,
            },
            r.get(3)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn generation(conn: &Connection, model: i64) -> Result<i64> {
    Ok(conn.query_row("SELECT generation FROM embed_models WHERE id = ?1", [model], |r| r.get(0))?)
}

/// Marks that vectors changed, so that an index saved before is known to be stale.
pub(crate) fn bump_generations(tx: &Transaction) -> Result<()> {
    tx.execute("UPDATE embed_models SET generation = generation + 1", [])?;
    Ok(())
}

/// Which of these text hashes have no vector from `model` yet.
pub(crate) fn missing(conn: &Connection, model: i64, hashes: &[&str]) -> Result<HashSet<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT 1 FROM embeddings WHERE model_id = ?1 AND text_hash = ?2")?;
    let mut out = HashSet::new();
    for hash in hashes {
        if !stmt.exists(params![model, hash])? {
            out.insert(hash.to_string());
        }
    }
    Ok(out)
}

pub(crate) fn insert_embeddings(
    tx: &Transaction,
    model: i64,
    vectors: &[(String, Vec<u8>)],
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO embeddings (model_id, text_hash, vector) VALUES (?1, ?2, ?3)
         ON CONFLICT (model_id, text_hash) DO NOTHING",
    )?;
    for (hash, blob) in vectors {
        stmt.execute(params![model, hash, blob])?;
    }
    Ok(())
}

/// The stored vectors of these text hashes.
pub(crate) fn vectors(
    conn: &Connection,
    model: i64,
    hashes: &[&str],
) -> Result<HashMap<String, Vec<f32>>> {
    let mut stmt = conn
        .prepare_cached("SELECT vector FROM embeddings WHERE model_id = ?1 AND text_hash = ?2")?;
    let mut out = HashMap::new();
    for hash in hashes {
        if let Some(blob) =
            stmt.query_row(params![model, hash], |r| r.get::<_, Vec<u8>>(0)).optional()?
        {
            out.insert(hash.to_string(), from_blob(&blob));
        }
    }
    Ok(out)
}

/// The vectors from `model` of these chunks (those that have one).
pub(crate) fn chunk_vectors(
    conn: &Connection,
    model: i64,
    chunks: &[ChunkId],
) -> Result<HashMap<ChunkId, Vec<f32>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.vector FROM chunks c
         JOIN embeddings e ON e.model_id = ?1 AND e.text_hash = c.text_hash WHERE c.id = ?2",
    )?;
    let mut out = HashMap::new();
    for &id in chunks {
        if let Some(blob) =
            stmt.query_row(params![model, id], |r| r.get::<_, Vec<u8>>(0)).optional()?
        {
            out.insert(id, from_blob(&blob));
        }
    }
    Ok(out)
}

/// Live chunks with a vector from `model` and an id above `after`, with that vector, in id
/// order, at most `limit`: what the index must hold, read a batch at a time.
pub(crate) fn live_vectors_after(
    conn: &Connection,
    model: i64,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, Vec<f32>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, e.vector FROM chunks c
         JOIN embeddings e ON e.model_id = ?1 AND e.text_hash = c.text_hash
         WHERE c.id > ?2 ORDER BY c.id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![model, after as i64, limit], |r| {
        Ok((r.get::<_, i64>(0)? as u64, from_blob(&r.get::<_, Vec<u8>>(1)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids of the live chunks that have a vector from `model`: what doctor compares the index
/// with.
pub(crate) fn live_vector_ids(conn: &Connection, model: i64) -> Result<Vec<u64>> {
    let mut stmt = conn.prepare(
        "SELECT c.id FROM chunks c
         JOIN embeddings e ON e.model_id = ?1 AND e.text_hash = c.text_hash",
    )?;
    let rows = stmt.query_map([model], |r| Ok(r.get::<_, i64>(0)? as u64))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Chunks without a vector from `model` yet: `(chunk id, text hash, text to embed)`.
pub(crate) fn chunks_without_vectors(
    conn: &Connection,
    model: i64,
    limit: u32,
) -> Result<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.text_hash, s.title, c.text FROM chunks c JOIN sources s ON s.id = c.source_id
         WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = ?1 AND e.text_hash = c.text_hash)
         ORDER BY c.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![model, limit], |r| {
        Ok((r.get(0)?, r.get(1)?, embedded_text(&r.get::<_, String>(2)?, &r.get::<_, String>(3)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn count_without_vectors(conn: &Connection, model: i64) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM chunks c
         WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = ?1 AND e.text_hash = c.text_hash)",
        [model],
        |r| r.get(0),
    )?)
}

/// The distinct passage texts without a vector from `model` (all of them for `None`, a model
/// never used), and the sum of their estimated tokens.
pub(crate) fn texts_without_vectors(conn: &Connection, model: Option<i64>) -> Result<(u64, u64)> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(tokens), 0) FROM (
           SELECT max(c.token_count) AS tokens FROM chunks c
           WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model_id = ?1 AND e.text_hash = c.text_hash)
           GROUP BY c.text_hash)",
        [model.unwrap_or(-1)],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?)
}

/// Removes the vectors of these texts that no chunk holds any more (the texts of passages just
/// deleted): the cost follows the passages deleted, not the store.
pub(crate) fn delete_orphan_embeddings(tx: &Transaction, hashes: &[String]) -> Result<usize> {
    let mut delete = tx.prepare_cached(
        "DELETE FROM embeddings
         WHERE model_id IN (SELECT id FROM embed_models) AND text_hash = ?1
           AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.text_hash = ?1)",
    )?;
    let mut deleted = 0;
    for hash in hashes {
        deleted += delete.execute([hash])?;
    }
    Ok(deleted)
}

/// The distinct text hashes of a source's passages.
pub(crate) fn text_hashes(conn: &Connection, source: SourceId) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT text_hash FROM chunks WHERE source_id = ?1")?;
    let rows = stmt.query_map([source], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn chunk_ids(conn: &Connection, source: SourceId) -> Result<Vec<ChunkId>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM chunks WHERE source_id = ?1")?;
    let rows = stmt.query_map([source], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passage_is_embedded_after_its_title_and_only_a_titles_start_is_repeated() {
        assert_eq!(
            embedded_text(" Garden journal ", "May: tomatoes."),
            "Garden journal\nMay: tomatoes."
        );
        assert_eq!(embedded_text("", "May: tomatoes."), "May: tomatoes.");
        // A hostile title (a megabyte of it, multi-byte) costs no more than a short one.
        let huge = "é".repeat(1_000_000);
        let embedded = embedded_text(&huge, "text");
        assert_eq!(embedded, format!("{}\ntext", "é".repeat(TITLE_CHARS)));
        assert_ne!(embedding_key(&huge, "text"), embedding_key("", "text"));
    }
}
