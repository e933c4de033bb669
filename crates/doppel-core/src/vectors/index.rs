//! The HNSW index of one model's vectors (`doppel-hnsw`, our own), persisted beside the
//! database.
//!
//! The index is a fast copy of the stored vectors keyed by chunk id, saved in one file with
//! the database's generation number beside it (`vectors/writer.rs` decides when it is loaded,
//! saved or rebuilt). A removal is made in place: the graph is repaired around the removed nodes
//! and their bytes are zeroed, in time proportional to what is removed (plus one scan of the
//! links), so nothing is rebuilt and the next save writes a file without them.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use doppel_hnsw::{Hnsw, Params};

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

impl HnswParams {
    fn graph(&self) -> Params {
        Params { m: self.m, ef_construction: self.ef_construction }
    }
}

/// An HNSW index of chunk vectors, keyed by chunk id.
pub struct VectorIndex {
    index: Hnsw,
    params: HnswParams,
    path: PathBuf,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Index { reason: format!("{what}: {e}") }
}

/// Threads a build uses: every core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl VectorIndex {
    /// An empty index that will be saved at `path`.
    pub fn new(path: PathBuf, dimension: usize, params: HnswParams) -> Result<VectorIndex> {
        Ok(VectorIndex { index: Hnsw::new(dimension, params.graph()), params, path })
    }

    /// Loads the index saved at `path`; `None` when there is no readable file that fits.
    pub fn load(path: PathBuf, dimension: usize, params: HnswParams) -> Option<VectorIndex> {
        match Hnsw::load(&path, dimension, params.graph()) {
            Ok(index) => Some(VectorIndex { index, params, path }),
            Err(e) => {
                if !matches!(&e, doppel_hnsw::LoadError::Io(io) if io.kind() == std::io::ErrorKind::NotFound)
                {
                    tracing::warn!(error = %e, "the saved vector index is not used");
                }
                None
            }
        }
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The bytes it takes in memory.
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Whether it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether it holds `key`.
    pub fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    /// Every key it holds, in no order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.keys()
    }

    /// Adds (or replaces) the vector of `key`.
    pub fn add(&mut self, key: u64, vector: &[f32]) -> Result<()> {
        self.index.add(key, vector).map_err(|e| failed("could not add a vector", e))
    }

    /// The candidate list size searches use.
    pub fn ef_search(&self) -> usize {
        self.params.ef_search
    }

    /// Changes the candidate list size of searches on the live index (as a reload with new
    /// parameters would).
    pub fn change_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search;
    }

    /// Removes `keys` in place (the graph is repaired around them and their bytes zeroed).
    pub fn remove(&mut self, keys: &[u64]) {
        self.index.remove(keys);
    }

    /// Works out the removal of `keys` without changing the index: the costly part of a
    /// removal, which can run behind a read lock while searches go on.
    pub fn plan_removal(&self, keys: &[u64]) -> doppel_hnsw::Removal {
        self.index.plan_removal(keys)
    }

    /// Makes a planned removal (planned again if the index changed since).
    pub fn apply(&mut self, plan: doppel_hnsw::Removal) {
        self.index.apply(plan);
    }

    /// The nearest keys with their cosine similarity, best first.
    pub fn search(&self, query: &[f32], count: usize) -> Result<Vec<(u64, f32)>> {
        if query.len() != self.index.dim() {
            return Err(failed(
                "wrong query length",
                format!("{} instead of {}", query.len(), self.index.dim()),
            ));
        }
        Ok(self.index.search(query, count, self.params.ef_search))
    }

    /// An index to be saved at `path`, holding `vectors`, built on every core; `progress` is
    /// told `(done, total)` every 1,000 vectors or so and at the end. Setting `cancel` ends it
    /// with [`Error::Cancelled`].
    pub fn build(
        path: PathBuf,
        dimension: usize,
        params: HnswParams,
        vectors: &[(u64, Vec<f32>)],
        cancel: &AtomicBool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VectorIndex> {
        let mut fresh = VectorIndex::new(path, dimension, params)?;
        let items: Vec<(u64, &[f32])> = vectors.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        match fresh
            .index
            .build(&items, threads(), cancel, |done, total| progress(done as u64, total as u64))
        {
            Ok(()) => Ok(fresh),
            Err(doppel_hnsw::AddError::Cancelled) => Err(Error::Cancelled),
            Err(e) => Err(failed("could not build the vector index", e)),
        }
    }

    /// Its parameters.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Writes the index to its file, atomically (a temporary file beside it, synced, renamed).
    pub fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        self.index.save(&self.path).map_err(|e| Error::io(&self.path, e))
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
        let mut index = VectorIndex::new(dir.path().join("i.hnsw"), 384, params).unwrap();
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
