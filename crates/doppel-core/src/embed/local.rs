//! Local text embeddings: all-MiniLM-L6-v2 as an int8 ONNX model, run by ONNX Runtime.
//!
//! ONNX Runtime is loaded at run time from the model cache (`load-dynamic`), so nothing is
//! downloaded at build time and a missing runtime is a clear error, not a failed build. Texts
//! are tokenised with the model's own WordPiece tokenizer (truncated to 256 tokens, the model's
//! window), run in batches, mean-pooled over real tokens and L2-normalised: the same vectors as
//! sentence-transformers gives for this model.
//!
//! Where the time and memory go (measured with `bench/embed`, see BENCHMARKS.md): the file
//! stores its weights as int8, but ONNX Runtime folds them back to f32 when it loads the model,
//! so a run is f32 matrix products over every token it is given, padding included, and its
//! memory grows with rows × width² (attention). So the texts of a call are sorted by token count
//! and run in groups of at most [`TOKENS_PER_RUN`] padded tokens: padding stays near nothing and
//! memory stays small whatever batch the caller passes, at no cost in speed (the products of one
//! group are already large enough for both cores). ONNX Runtime's memory patterns are off: it
//! plans one per input shape, every group has another shape, and the plans kept arena memory
//! (0.9 GB after the handbook). Its threads do not spin while they wait: on a busy machine the
//! spinning took the cores that the work needed. None of this changes a vector: each row is
//! computed alone (padding is masked), and the pooling adds in the same order as before.

use std::sync::OnceLock;

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use super::{ModelFiles, ModelInfo};
use crate::error::{Error, Result};

/// The model's window: longer texts are truncated.
const MAX_TOKENS: usize = 256;

/// Most padded tokens in one ONNX Runtime run: 4 texts of 256 tokens, 16 of 64. Larger runs
/// were no faster and need more memory (2,048: 360 MB peak on the benchmark, 1,024: 280 MB).
const TOKENS_PER_RUN: usize = 1024;

/// all-MiniLM-L6-v2 in an ONNX Runtime session, with its tokenizer.
pub struct LocalEmbedder {
    session: Session,
    tokenizer: Tokenizer,
    with_token_types: bool,
    /// The model, with its dimension and the fingerprint of its file.
    pub info: ModelInfo,
}

/// ONNX Runtime can be loaded once per process.
static RUNTIME: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

fn unavailable(reason: String) -> Error {
    Error::ModelUnavailable { reason }
}

fn failed(e: &dyn std::fmt::Display) -> Error {
    Error::Embedding { reason: e.to_string() }
}

impl LocalEmbedder {
    /// Loads ONNX Runtime (once per process), the model and its tokenizer from `files`.
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
        let commit = |model: &[u8]| {
            Session::builder(environment)
                .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
                .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
                .and_then(|b| b.with_memory_pattern(false).map_err(Into::into))
                .and_then(|mut b| b.commit_from_memory(model))
        };
        let bytes = std::fs::read(&files.model).map_err(|e| Error::io(&files.model, e))?;
        let fingerprint = crate::ingest::sha256_hex(&bytes)[..16].to_string();
        // The file as it is if the lighter graph is not to be had (another export of the model).
        let session = match without_nan_guards(&bytes).map(|lighter| commit(&lighter)) {
            Some(Ok(session)) => Ok(session),
            _ => commit(&bytes),
        }
        .map_err(|e| unavailable(format!("the model could not be loaded: {e}")))?;
        drop(bytes);
        let with_token_types = session.inputs().iter().any(|i| i.name() == "token_type_ids");
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer)
            .map_err(|e| unavailable(format!("the tokenizer could not be read: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| unavailable(format!("the tokenizer could not be set up: {e}")))?;
        // The file asks for padding to 128 tokens; rows are padded here, per group, instead.
        tokenizer.with_padding(None);
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

    /// One normalised vector per text, in order.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // One text at a time: the batch call's thread pool only added overhead to a step that
        // takes under 1% of the time.
        let encodings = texts
            .iter()
            .map(|text| self.tokenizer.encode(*text, true))
            .collect::<std::result::Result<Vec<Encoding>, _>>()
            .map_err(|e| failed(&e))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut vectors = vec![Vec::new(); texts.len()];
        let mut rest = order.as_slice();
        while !rest.is_empty() {
            // Sorted by length, so a group's last row is its widest; one row always fits.
            let rows = (2..=rest.len())
                .take_while(|&n| n * encodings[rest[n - 1]].len() <= TOKENS_PER_RUN)
                .last()
                .unwrap_or(1);
            let (group, tail) = rest.split_at(rows);
            let ids: Vec<&[u32]> = group.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, vector) in group.iter().zip(self.run(&ids)?) {
                vectors[i] = vector;
            }
            rest = tail;
        }
        Ok(vectors)
    }

    /// Runs the model on token rows (padded here to the longest) and mean-pools each row over
    /// its real tokens.
    fn run(&mut self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = vec![0i64; rows.len() * width];
        let mut mask = vec![0i64; rows.len() * width];
        for (r, row) in rows.iter().enumerate() {
            let start = r * width;
            for (slot, &id) in ids[start..start + row.len()].iter_mut().zip(*row) {
                *slot = i64::from(id);
            }
            mask[start..start + row.len()].fill(1);
        }
        let shape = [rows.len(), width];
        let tensor = |data: Vec<i64>| Tensor::from_array((shape, data)).map_err(|e| failed(&e));
        let mut inputs = ort::inputs![
            "input_ids" => tensor(ids)?,
            "attention_mask" => tensor(mask)?,
        ];
        if self.with_token_types {
            inputs.push(("token_type_ids".into(), tensor(vec![0; rows.len() * width])?.into()));
        }
        let outputs = self.session.run(inputs).map_err(|e| failed(&e))?;
        let (out_shape, hidden) = outputs[0].try_extract_tensor::<f32>().map_err(|e| failed(&e))?;
        let dimension = out_shape.last().copied().unwrap_or(0) as usize;
        if out_shape.len() != 3 || dimension == 0 || hidden.len() != rows.len() * width * dimension
        {
            return Err(Error::Embedding {
                reason: format!("unexpected output shape {out_shape:?}"),
            });
        }
        let mut vectors = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            let start = r * width * dimension;
            let mut sum = vec![0f32; dimension];
            for token in hidden[start..start + row.len() * dimension].chunks_exact(dimension) {
                for (s, h) in sum.iter_mut().zip(token) {
                    *s += h;
                }
            }
            let count = row.len().max(1) as f32;
            let norm = sum.iter().map(|x| (x / count).powi(2)).sum::<f32>().sqrt().max(1e-12);
            vectors.push(sum.iter().map(|x| x / count / norm).collect());
        }
        Ok(vectors)
    }
}

/// The model with the guards that torch's exporter puts after each attention softmax,
/// `Where(IsNaN(p), 0, p)`, replaced by `Identity(p)`; `None` when the bytes are not an ONNX
/// model with such guards.
///
/// A guard changes only a row of NaN, which a softmax gives when every key of the row is masked.
/// Every row here has real tokens ([CLS] and [SEP] at least), so a guard is the identity, and the
/// vectors are the same to the bit (`bench/embed` compares them with onnxruntime's Python
/// session on the unchanged file). But ONNX Runtime runs `Where` slowly: the six guards took 14%
/// of a run, where an `Identity` is removed when the session is built.
///
/// The model is protobuf (`ModelProto`): its field 7 is the graph, whose field 1 repeats the
/// nodes, each with inputs (1), outputs (2), name (3) and operator (4). Only these are read, and
/// every other byte is copied as it is.
fn without_nan_guards(model: &[u8]) -> Option<Vec<u8>> {
    use std::collections::HashMap;
    const GRAPH: u64 = 7;
    const NODE: u64 = 1;
    const INPUT: u64 = 1;
    const OUTPUT: u64 = 2;
    const NAME: u64 = 3;
    const OP_TYPE: u64 = 4;

    let model_fields = proto::fields(model)?;
    let mut graphs = model_fields.iter().filter(|f| f.number == GRAPH);
    let graph = graphs.next()?.payload?;
    if graphs.next().is_some() {
        return None;
    }
    let graph_fields = proto::fields(graph)?;
    let mut nodes = Vec::new();
    for (at, field) in graph_fields.iter().enumerate().filter(|(_, f)| f.number == NODE) {
        nodes.push((at, proto::fields(field.payload?)?));
    }
    fn strings<'a>(node: &[proto::Field<'a>], number: u64) -> Vec<&'a [u8]> {
        node.iter().filter(|f| f.number == number).filter_map(|f| f.payload).collect()
    }
    fn op_type<'a>(node: &[proto::Field<'a>]) -> Option<&'a [u8]> {
        strings(node, OP_TYPE).first().copied()
    }
    // What each IsNaN node tests, by its output; and how often every value is used.
    let mut tested: HashMap<&[u8], (usize, &[u8])> = HashMap::new();
    let mut uses: HashMap<&[u8], usize> = HashMap::new();
    for (at, node) in &nodes {
        let (inputs, outputs) = (strings(node, INPUT), strings(node, OUTPUT));
        if let (Some(b"IsNaN"), [input], [output]) = (op_type(node), &inputs[..], &outputs[..]) {
            tested.insert(*output, (*at, *input));
        }
        for input in inputs {
            *uses.entry(input).or_default() += 1;
        }
    }
    // Graph field number → the Identity node that replaces it, or nothing (an IsNaN dropped).
    let mut replaced: HashMap<usize, Option<Vec<u8>>> = HashMap::new();
    for (at, node) in &nodes {
        let (inputs, outputs) = (strings(node, INPUT), strings(node, OUTPUT));
        let (Some(b"Where"), [condition, _, value], [output]) =
            (op_type(node), &inputs[..], &outputs[..])
        else {
            continue;
        };
        let Some(&(isnan_at, tested_value)) = tested.get(condition) else { continue };
        if tested_value != *value || uses.get(condition) != Some(&1) {
            continue;
        }
        let mut identity = Vec::new();
        proto::put_bytes(&mut identity, INPUT, value);
        proto::put_bytes(&mut identity, OUTPUT, output);
        for name in strings(node, NAME) {
            proto::put_bytes(&mut identity, NAME, name);
        }
        proto::put_bytes(&mut identity, OP_TYPE, b"Identity");
        replaced.insert(*at, Some(identity));
        replaced.insert(isnan_at, None);
    }
    if replaced.is_empty() {
        return None;
    }
    let mut new_graph = Vec::with_capacity(graph.len());
    for (at, field) in graph_fields.iter().enumerate() {
        match replaced.get(&at) {
            None => new_graph.extend_from_slice(field.raw),
            Some(Some(identity)) => proto::put_bytes(&mut new_graph, NODE, identity),
            Some(None) => {}
        }
    }
    let mut new_model = Vec::with_capacity(model.len());
    for field in &model_fields {
        if field.number == GRAPH {
            proto::put_bytes(&mut new_model, GRAPH, &new_graph);
        } else {
            new_model.extend_from_slice(field.raw);
        }
    }
    Some(new_model)
}

/// Just enough of protobuf's wire format to read and rewrite the fields of a message.
mod proto {
    /// One field of a message.
    pub(super) struct Field<'a> {
        pub number: u64,
        /// The whole field: key and value.
        pub raw: &'a [u8],
        /// The bytes of a length-delimited value (a string or a message).
        pub payload: Option<&'a [u8]>,
    }

    /// The fields of a message, or `None` if the bytes are not one.
    pub(super) fn fields(bytes: &[u8]) -> Option<Vec<Field<'_>>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let start = pos;
            let key = varint(bytes, &mut pos)?;
            let mut payload = None;
            match key & 7 {
                0 => {
                    varint(bytes, &mut pos)?;
                }
                1 => pos = pos.checked_add(8)?,
                2 => {
                    let len = usize::try_from(varint(bytes, &mut pos)?).ok()?;
                    let end = pos.checked_add(len)?;
                    payload = Some(bytes.get(pos..end)?);
                    pos = end;
                }
                5 => pos = pos.checked_add(4)?,
                _ => return None,
            }
            out.push(Field { number: key >> 3, raw: bytes.get(start..pos)?, payload });
        }
        Some(out)
    }

    fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*pos)?;
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// Appends a length-delimited field.
    pub(super) fn put_bytes(out: &mut Vec<u8>, number: u64, value: &[u8]) {
        put_varint(out, number << 3 | 2);
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(inputs: &[&str], output: &str, op: &str) -> Vec<u8> {
        let mut node = Vec::new();
        for input in inputs {
            proto::put_bytes(&mut node, 1, input.as_bytes());
        }
        proto::put_bytes(&mut node, 2, output.as_bytes());
        proto::put_bytes(&mut node, 3, format!("node_{output}").as_bytes());
        proto::put_bytes(&mut node, 4, op.as_bytes());
        node
    }

    /// A model of `nodes`, with an IR version (a varint field) and a graph name around them.
    fn model(nodes: &[Vec<u8>]) -> Vec<u8> {
        let mut graph = Vec::new();
        for n in nodes {
            proto::put_bytes(&mut graph, 1, n);
        }
        proto::put_bytes(&mut graph, 2, b"main");
        let mut model = vec![0x08, 0x08]; // ir_version = 8
        proto::put_bytes(&mut model, 7, &graph);
        model
    }

    #[test]
    fn nan_guards_become_identities_and_nothing_else_changes() {
        let softmax = node(&["scores"], "p", "Softmax");
        let matmul = node(&["w", "v"], "out", "MatMul");
        let before = model(&[
            softmax.clone(),
            node(&["p"], "nan", "IsNaN"),
            node(&["nan", "zero", "p"], "w", "Where"),
            matmul.clone(),
        ]);
        let after = without_nan_guards(&before).expect("a guard is found");
        assert_eq!(after, model(&[softmax, node(&["p"], "w", "Identity"), matmul]));
    }

    #[test]
    fn other_graphs_and_other_bytes_are_left_alone() {
        // A Where whose condition tests another value, or is used twice, is no guard.
        let other =
            model(&[node(&["x"], "nan", "IsNaN"), node(&["nan", "zero", "p"], "w", "Where")]);
        assert_eq!(without_nan_guards(&other), None);
        let shared = model(&[
            node(&["p"], "nan", "IsNaN"),
            node(&["nan", "zero", "p"], "w", "Where"),
            node(&["nan"], "again", "Not"),
        ]);
        assert_eq!(without_nan_guards(&shared), None);
        for bytes in [&b""[..], b"not a model", &[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
            assert_eq!(without_nan_guards(bytes), None);
        }
    }
}
