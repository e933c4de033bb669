//! Local text embeddings: all-MiniLM-L6-v2 as an int8 ONNX model, run by ONNX Runtime.
//!
//! ONNX Runtime is loaded at run time from the model cache (`load-dynamic`), so nothing is
//! downloaded at build time and a missing runtime is a clear error, not a failed build. Texts
//! are tokenised with the model's own WordPiece tokenizer (truncated to 256 tokens, the model's
//! window), run in batches, mean-pooled over real tokens and L2-normalised: the same vectors as
//! sentence-transformers gives for this model.

use std::sync::OnceLock;

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use super::{ModelFiles, ModelInfo};
use crate::error::{Error, Result};

/// The model's window: longer texts are truncated.
const MAX_TOKENS: usize = 256;

/// The local model, loaded and ready to embed.
pub struct LocalEmbedder {
    session: Session,
    tokenizer: Tokenizer,
    with_token_types: bool,
    /// Which model this is.
    pub info: ModelInfo,
}

/// ONNX Runtime can be loaded once per process.
static RUNTIME: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

fn unavailable(reason: String) -> Error {
    Error::ModelUnavailable { reason }
}

impl LocalEmbedder {
    /// Loads the model, its tokenizer and ONNX Runtime; a missing file is a clear error.
    pub fn load(files: &ModelFiles) -> Result<LocalEmbedder> {
        for (what, path) in [
            ("model", &files.model),
            ("tokenizer", &files.tokenizer),
            ("ONNX Runtime", &files.runtime),
        ] {
            if !path.is_file() {
                return Err(unavailable(format!("the {what} file {} is missing", path.display())));
            }
        }
        let runtime = RUNTIME.get_or_init(|| {
            ort::init_from(&files.runtime)
                .map_err(|e| e.to_string())
                .and_then(|builder| builder.with_name("doppel").build().map_err(|e| e.to_string()))
        });
        let environment = runtime
            .as_ref()
            .map_err(|e| unavailable(format!("ONNX Runtime could not be loaded: {e}")))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        let session = Session::builder(environment)
            .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(&files.model))
            .map_err(|e| unavailable(format!("the model could not be loaded: {e}")))?;
        let with_token_types = session.inputs().iter().any(|i| i.name() == "token_type_ids");
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer)
            .map_err(|e| unavailable(format!("the tokenizer could not be read: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| unavailable(format!("the tokenizer could not be set up: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        let bytes = std::fs::read(&files.model).map_err(|e| Error::io(&files.model, e))?;
        let fingerprint = crate::ingest::sha256_hex(&bytes)[..16].to_string();
        let mut embedder = LocalEmbedder {
            session,
            tokenizer,
            with_token_types,
            info: ModelInfo {
                name: "all-MiniLM-L6-v2 (int8 ONNX)".into(),
                dimension: 0,
                fingerprint,
            },
        };
        embedder.info.dimension = embedder.embed(&["dimension probe"])?.first().map_or(0, Vec::len);
        Ok(embedder)
    }

    /// One normalised vector per text.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |e: &dyn std::fmt::Display| Error::Embedding { reason: e.to_string() };
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| failed(&e))?;
        let batch = encodings.len();
        let width = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch * width);
        let mut mask = Vec::with_capacity(batch * width);
        let mut types = Vec::with_capacity(batch * width);
        for encoding in &encodings {
            ids.extend(encoding.get_ids().iter().map(|&x| i64::from(x)));
            mask.extend(encoding.get_attention_mask().iter().map(|&x| i64::from(x)));
            types.extend(encoding.get_type_ids().iter().map(|&x| i64::from(x)));
        }
        let shape = [batch, width];
        let tensor = |data: Vec<i64>| Tensor::from_array((shape, data)).map_err(|e| failed(&e));
        let mut inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask.clone())?,
        ];
        if self.with_token_types {
            inputs.push(("token_type_ids".into(), tensor(types)?.into()));
        }
        let outputs = self.session.run(inputs).map_err(|e| failed(&e))?;
        let (out_shape, hidden) = outputs[0].try_extract_tensor::<f32>().map_err(|e| failed(&e))?;
        let dimension = out_shape.last().copied().unwrap_or(0) as usize;
        if out_shape.len() != 3 || dimension == 0 || hidden.len() != batch * width * dimension {
            return Err(Error::Embedding {
                reason: format!("unexpected output shape {out_shape:?}"),
            });
        }
        let mut vectors = Vec::with_capacity(batch);
        for row in 0..batch {
            let mut sum = vec![0f32; dimension];
            let mut count = 0f32;
            for token in 0..width {
                if mask[row * width + token] == 0 {
                    continue;
                }
                count += 1.0;
                let offset = (row * width + token) * dimension;
                for (s, h) in sum.iter_mut().zip(&hidden[offset..offset + dimension]) {
                    *s += h;
                }
            }
            let norm =
                sum.iter().map(|x| (x / count.max(1.0)).powi(2)).sum::<f32>().sqrt().max(1e-12);
            vectors.push(sum.iter().map(|x| x / count.max(1.0) / norm).collect());
        }
        Ok(vectors)
    }
}
