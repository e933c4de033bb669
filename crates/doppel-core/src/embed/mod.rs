//! Text embeddings, from the local model (ONNX Runtime, see [`local`]) or from a model server
//! (Ollama or any OpenAI-compatible endpoint, see [`remote`]).
//!
//! An [`Embedder`] is used by one thread at a time: it sits behind a mutex shared by the worker
//! (batches of passages) and searches (one query each). Every vector it returns is
//! L2-normalised and has the dimension recorded for its model.

mod local;
pub(crate) mod remote;

use std::path::{Path, PathBuf};

pub use local::LocalEmbedder;
pub use remote::{EmbedderChoice, RemoteKind};
pub(crate) use remote::{RemoteEmbedder, RemotePolicy, error_detail, server_and_model};

use crate::error::Result;

/// Where the embedding model and its runtime live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The ONNX model.
    pub model: PathBuf,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: PathBuf,
    /// ONNX Runtime's shared library.
    pub runtime: PathBuf,
}

impl ModelFiles {
    /// The default model's files inside a model cache folder (as `scripts/models` fills it).
    pub fn in_cache(dir: &Path) -> ModelFiles {
        ModelFiles {
            model: dir.join(crate::models::EMBED_MODEL_FILE),
            tokenizer: dir.join(crate::models::EMBED_TOKENIZER_FILE),
            runtime: dir.join(crate::models::RUNTIME_FILE),
        }
    }
}

/// Which model made a vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// A readable name.
    pub name: String,
    /// Length of its vectors.
    pub dimension: usize,
    /// SHA-256 (hex, first 16 digits) of the model file: two files with the same name but other
    /// weights never share vectors.
    pub fingerprint: String,
}

/// The embedder in use.
pub(crate) enum Embedder {
    Local(Box<LocalEmbedder>),
    Remote(Box<RemoteEmbedder>),
}

impl Embedder {
    /// The model this embedder runs. A model server's dimension is 0 until it first answered.
    pub(crate) fn info(&self) -> &ModelInfo {
        match self {
            Embedder::Local(e) => &e.info,
            Embedder::Remote(e) => &e.info,
        }
    }

    /// Whether a model server embeds (rather than the local model).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Embedder::Remote(_))
    }

    /// One normalised vector per text, in order.
    pub(crate) fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self {
            Embedder::Local(e) => e.embed(texts),
            Embedder::Remote(e) => e.embed(texts),
        }
    }

    /// A second embedder for the queries of searches, so that a search never waits for a model
    /// server's answer to the worker's batch (a slow server may take up to its timeout): the
    /// same server through a client of its own. The local model answers a batch in a fraction
    /// of a second, and a second copy would double its memory: it has none.
    pub(crate) fn for_queries(&self) -> Option<Embedder> {
        match self {
            Embedder::Local(_) => None,
            Embedder::Remote(e) => e.with_own_client().ok().map(|e| Embedder::Remote(Box::new(e))),
        }
    }

    /// Applies new timeouts and retries to a model server's requests from now on (the local
    /// model has none).
    pub(crate) fn set_policy(&mut self, policy: remote::RemotePolicy) -> Result<()> {
        match self {
            Embedder::Local(_) => Ok(()),
            Embedder::Remote(e) => e.set_policy(policy),
        }
    }
}

/// Little-endian bytes of a vector, for storage.
pub(crate) fn to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector from its stored bytes; no alignment is assumed.
pub(crate) fn from_blob(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_without_alignment() {
        let v = vec![1.5f32, -0.25, 3.0e-8];
        let mut bytes = vec![0u8];
        bytes.extend(to_blob(&v));
        assert_eq!(from_blob(&bytes[1..]), v);
    }
}
