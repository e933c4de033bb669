//! The HNSW vector index (usearch), persisted beside the database.
//!
//! The database is the source of truth: every vector lives in the `embeddings` table, written
//! in the same transaction as its chunk. The index is a fast copy keyed by chunk id. Each change
//! to the vectors bumps a generation number in the database; the index file is saved together
//! with the generation it holds. At open, a file whose generation differs (the process died
//! before saving) or that cannot be read is rebuilt from the stored vectors. Searches check
//! every result against live rows, so a stale entry can never surface a deleted chunk.
//!
//! Removing from an HNSW graph leaves the vector's bytes in the structure, so an index with
//! removals is rebuilt from the live vectors before it is saved: a forgotten source's vectors
//! leave the file too. Until then there is no saved file (the worker removes it with the first
//! removal), so no file holds a removed vector. The worker builds the new index beside the one that searches use and
//! swaps it in, so searches never wait for a rebuild.

use std::path::PathBuf;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};

/// HNSW parameters, named as in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching.
    pub ef_search: usize,
}

/// An HNSW index of chunk vectors, keyed by chunk id.
pub struct VectorIndex {
    index: Index,
    dimension: usize,
    params: HnswParams,
    path: PathBuf,
    /// Whether keys were removed since it was built or loaded (it is rebuilt before a save).
    removed: bool,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Index { reason: format!("{what}: {e}") }
}

impl VectorIndex {
    /// An empty index that will be saved at `path`.
    pub fn new(path: PathBuf, dimension: usize, params: HnswParams) -> Result<VectorIndex> {
        let options = IndexOptions {
            dimensions: dimension,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: params.m,
            expansion_add: params.ef_construction,
            expansion_search: params.ef_search,
            multi: false,
        };
        let index =
            Index::new(&options).map_err(|e| failed("could not create the vector index", e))?;
        index.reserve(1024).map_err(|e| failed("could not reserve index space", e))?;
        Ok(VectorIndex { index, dimension, params, path, removed: false })
    }

    /// Loads the index saved at `path`; `None` when there is no readable file that fits.
    pub fn load(path: PathBuf, dimension: usize, params: HnswParams) -> Option<VectorIndex> {
        let fresh = VectorIndex::new(path.clone(), dimension, params).ok()?;
        fresh.index.load(path.to_str()?).ok()?;
        if fresh.index.dimensions() != dimension {
            return None;
        }
        fresh.index.change_expansion_search(params.ef_search);
        Some(fresh)
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.index.size() == 0
    }

    /// Adds (or replaces) the vector of `key`.
    pub fn add(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dimension {
            return Err(failed(
                "wrong vector length",
                format!("{} instead of {}", vector.len(), self.dimension),
            ));
        }
        if self.index.contains(key) {
            self.index.remove(key).map_err(|e| failed("could not replace a vector", e))?;
        }
        if self.index.size() + 1 > self.index.capacity() {
            let capacity = (self.index.capacity() * 2).max(1024);
            self.index
                .reserve(capacity)
                .map_err(|e| failed("could not grow the vector index", e))?;
        }
        self.index.add(key, vector).map_err(|e| failed("could not add a vector", e))
    }

    /// The candidate list size searches use.
    pub fn ef_search(&self) -> usize {
        self.params.ef_search
    }

    /// Changes the candidate list size of searches on the live index (as a reload with new
    /// parameters would).
    pub fn change_ef_search(&mut self, ef_search: usize) {
        self.index.change_expansion_search(ef_search);
        self.params.ef_search = ef_search;
    }

    /// Removes `key`; the index must then be rebuilt before it is saved.
    pub fn remove(&mut self, key: u64) -> Result<()> {
        if self.index.contains(key) {
            self.index.remove(key).map_err(|e| failed("could not remove a vector", e))?;
            self.removed = true;
        }
        Ok(())
    }

    /// The nearest keys with their cosine similarity, best first.
    pub fn search(&self, query: &[f32], count: usize) -> Result<Vec<(u64, f32)>> {
        if self.index.size() == 0 || count == 0 {
            return Ok(Vec::new());
        }
        let matches =
            self.index.search(query, count).map_err(|e| failed("vector search failed", e))?;
        Ok(matches.keys.into_iter().zip(matches.distances).map(|(k, d)| (k, 1.0 - d)).collect())
    }

    /// Whether keys were removed since the last save: their vectors are still in the graph, so
    /// the index must be rebuilt (see [`VectorIndex::rebuilt`]) before it is saved.
    pub fn needs_rebuild(&self) -> bool {
        self.removed
    }

    /// A fresh index at this one's path, with these parameters, holding `vectors`; `progress`
    /// is told `(done, total)` every 1,000 vectors and at the end.
    pub fn rebuilt(
        &self,
        vectors: &[(u64, Vec<f32>)],
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VectorIndex> {
        let mut fresh = VectorIndex::new(self.path.clone(), self.dimension, self.params)?;
        let total = vectors.len() as u64;
        fresh
            .index
            .reserve(vectors.len().max(1024))
            .map_err(|e| failed("could not reserve index space", e))?;
        for (done, (key, vector)) in vectors.iter().enumerate() {
            if done % 1000 == 0 {
                progress(done as u64, total);
            }
            fresh.add(*key, vector)?;
        }
        progress(total, total);
        Ok(fresh)
    }

    /// Writes the index to its file, atomically (through a temporary file). An index with
    /// removals is refused: its file would still hold the removed vectors.
    pub fn save(&self) -> Result<()> {
        if self.removed {
            return Err(failed("not saved", "removed vectors are still in the graph"));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let temporary = self.path.with_extension("usearch.tmp");
        let name = temporary
            .to_str()
            .ok_or_else(|| failed("index path is not UTF-8", temporary.display()))?;
        self.index.save(name).map_err(|e| failed("could not save the vector index", e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{LocalEmbedder, ModelFiles};
    use crate::ingest::chunk::{ChunkConfig, chunk};
    use std::path::Path;

    /// Real MiniLM vectors of the Debian handbook's passages (the model cache must be filled:
    /// `scripts/models`, and `$DOPPEL_MODEL_CACHE` set, as `scripts/test` does).
    fn handbook_vectors(limit: usize) -> Vec<Vec<f32>> {
        let cache = std::env::var_os(crate::MODEL_CACHE_ENV)
            .expect("DOPPEL_MODEL_CACHE is set by scripts/test");
        let mut embedder = LocalEmbedder::load(&ModelFiles::in_cache(Path::new(&cache))).unwrap();
        let mut pages: Vec<PathBuf> =
            std::fs::read_dir("/usr/share/doc/debian-handbook/html/en-US")
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "html"))
                .collect();
        pages.sort();
        let mut texts = Vec::new();
        for page in pages {
            let doc = crate::ingest::parse(&std::fs::read(&page).unwrap(), None, None).unwrap();
            let chunks = chunk(&doc, ChunkConfig { target: 96, overlap: 0 }, || Ok(())).unwrap();
            texts.extend(chunks.into_iter().map(|c| c.text));
        }
        // Identical passages (repeated notes, navigation) would make ties of the exact answer.
        let mut seen = std::collections::HashSet::new();
        texts.retain(|t| seen.insert(t.clone()));
        texts.truncate(limit);
        texts.sort_by_key(String::len);
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(32) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            vectors.extend(embedder.embed(&refs).unwrap());
        }
        vectors
    }

    #[test]
    fn recall_at_10_against_exact_search_on_real_vectors() {
        let vectors = handbook_vectors(2200);
        assert!(vectors.len() >= 2000, "{} vectors", vectors.len());
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
                | 1;
        println!("seed {seed}");
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // 200 held-out queries; the rest is indexed.
        let mut queries = Vec::new();
        let mut indexed = Vec::new();
        for (i, v) in vectors.into_iter().enumerate() {
            if next() % 11 == 0 && queries.len() < 200 {
                queries.push(v)
            } else {
                indexed.push((i as u64, v))
            }
        }
        // The defaults from the settings: the recall promised is the recall a user gets.
        let params = crate::Settings::default().hnsw();
        let dir = tempfile::tempdir().unwrap();
        let mut index = VectorIndex::new(dir.path().join("i.usearch"), 384, params).unwrap();
        for (key, v) in &indexed {
            index.add(*key, v).unwrap();
        }
        let mut found = 0;
        for query in &queries {
            let mut exact: Vec<(f32, u64)> = indexed
                .iter()
                .map(|(k, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), *k))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            // A result counts when it is as close as the tenth true neighbour: equal vectors
            // are interchangeable.
            let tenth = exact[9].0;
            let approximate = index.search(query, 10).unwrap();
            found +=
                approximate.iter().filter(|(_, similarity)| *similarity >= tenth - 1e-5).count();
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        println!(
            "recall@10 = {recall:.3} over {} queries, {} vectors (seed {seed})",
            queries.len(),
            indexed.len()
        );
        assert!(recall >= 0.95, "recall@10 {recall:.3} (seed {seed})");
    }
}
