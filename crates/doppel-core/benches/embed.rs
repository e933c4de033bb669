//! Embedding speed of the local model (all-MiniLM-L6-v2, int8 ONNX, ONNX Runtime) on real
//! passages: the Debian handbook's HTML pages cut by Doppel's own chunker.
//!
//! `bench/embed` runs this next to sentence-transformers and onnxruntime's Python session on
//! the same texts. On its own (`cargo bench -p doppel-core --bench embed`) it writes the texts
//! if they are missing and compares batch sizes. Modes (cargo adds `--bench`, which is ignored):
//!
//! - `texts FILE`: writes 1,000 passages as a JSON array of strings (once; kept if present).
//! - `run FILE VECTORS BATCH`: embeds them as the worker does (sorted by length, in batches of
//!   `BATCH`), prints chunks per second and memory, and writes the vectors in the file's order
//!   as little-endian f32.
//! - `sweep FILE BATCH...`: one model, every batch size timed twice, interleaved.
//!
//! Needs `$DOPPEL_MODEL_CACHE` filled by `scripts/models`.

mod common;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use doppel_core::bench::{LocalEmbedder, ModelFiles};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// How many passages every side embeds.
const TEXTS: usize = 1000;
/// Where the texts are written when no file is named.
const DEFAULT_DIR: &str = "/var/tmp/doppel-bench-embed";
const HANDBOOK: &str = "/usr/share/doc/debian-handbook/html/en-US";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["texts", file] => write_texts(Path::new(file)),
        ["run", file, vectors, batch] => run(Path::new(file), Path::new(vectors), batch.parse()?),
        ["sweep", file, batches @ ..] if !batches.is_empty() => {
            let batches =
                batches.iter().map(|b| b.parse()).collect::<std::result::Result<_, _>>()?;
            sweep(Path::new(file), batches)
        }
        [] => {
            let file = Path::new(DEFAULT_DIR).join("texts.json");
            write_texts(&file)?;
            sweep(&file, vec![1, 8, 16, 32, 64])
        }
        _ => Err("usage: embed [texts FILE | run FILE VECTORS BATCH | sweep FILE BATCH...]".into()),
    }
}

/// Ingests the handbook's pages without a model (keyword index only, well under a second) and
/// keeps 1,000 distinct passages spread evenly over them, in page and passage order.
fn write_texts(file: &Path) -> Result<()> {
    if file.is_file() {
        return Ok(());
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(HANDBOOK)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    pages.retain(|p| p.extension().is_some_and(|x| x == "html"));
    pages.sort();
    let (passages, sources) = common::distinct_passages(pages)?;
    if passages.len() < TEXTS {
        return Err(format!("only {} passages in {HANDBOOK}", passages.len()).into());
    }
    let step = passages.len() as f64 / TEXTS as f64;
    let texts: Vec<&String> = (0..TEXTS).map(|i| &passages[(i as f64 * step) as usize]).collect();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let part = file.with_extension("part");
    std::fs::write(&part, serde_json::to_vec(&texts)?)?;
    std::fs::rename(&part, file)?;
    eprintln!(
        "wrote {TEXTS} of {} distinct passages from {} pages to {}",
        passages.len(),
        sources,
        file.display()
    );
    Ok(())
}

fn read_texts(file: &Path) -> Result<Vec<String>> {
    Ok(serde_json::from_slice(&std::fs::read(file)?)?)
}

fn load() -> Result<(LocalEmbedder, f64)> {
    let cache = std::env::var_os(doppel_core::MODEL_CACHE_ENV)
        .ok_or("set DOPPEL_MODEL_CACHE to the model cache (scripts/models fills it)")?;
    let started = Instant::now();
    let embedder = LocalEmbedder::load(&ModelFiles::in_cache(Path::new(&cache)))?;
    Ok((embedder, started.elapsed().as_secs_f64()))
}

/// The texts' indices sorted by length, as the worker sorts a file's passages.
fn by_length(texts: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    order
}

/// Time taken by one pass: wall-clock seconds, and CPU seconds of the whole process (all its
/// threads), which other work on the machine disturbs less.
struct Took {
    secs: f64,
    cpu_secs: f64,
}

/// Embeds every text once in batches of `batch` (in `order`); returns the vectors in the texts'
/// order and the time taken.
fn embed_all(
    embedder: &mut LocalEmbedder,
    texts: &[String],
    order: &[usize],
    batch: usize,
) -> Result<(Vec<Vec<f32>>, Took)> {
    let mut vectors = vec![Vec::new(); texts.len()];
    let cpu = cpu_secs();
    let started = Instant::now();
    for indices in order.chunks(batch) {
        let slice: Vec<&str> = indices.iter().map(|&i| texts[i].as_str()).collect();
        for (&i, vector) in indices.iter().zip(embedder.embed(&slice)?) {
            vectors[i] = vector;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((vectors, Took { secs, cpu_secs: cpu_secs() - cpu }))
}

/// The same warm-up on every side: one batch of the longest texts.
fn warm_up(
    embedder: &mut LocalEmbedder,
    texts: &[String],
    order: &[usize],
    batch: usize,
) -> Result<()> {
    let longest: Vec<&str> = order.iter().rev().take(batch).map(|&i| texts[i].as_str()).collect();
    embedder.embed(&longest)?;
    Ok(())
}

fn run(file: &Path, out: &Path, batch: usize) -> Result<()> {
    let texts = read_texts(file)?;
    let order = by_length(&texts);
    let (mut embedder, load_secs) = load()?;
    let loaded_mb = memory_mb("VmRSS");
    warm_up(&mut embedder, &texts, &order, batch)?;
    let (vectors, took) = embed_all(&mut embedder, &texts, &order, batch.max(1))?;
    let bytes: Vec<u8> = vectors.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(out, bytes)?;
    println!(
        "doppel (ort, batch {batch}): {} chunks in {:.2} s = {:.1} chunks/s, {:.0} CPU ms/chunk; \
         load {load_secs:.2} s, {loaded_mb:.0} MB after load, {:.0} MB peak",
        texts.len(),
        took.secs,
        texts.len() as f64 / took.secs,
        took.cpu_secs * 1000.0 / texts.len() as f64,
        memory_mb("VmHWM")
    );
    Ok(())
}

fn sweep(file: &Path, batches: Vec<usize>) -> Result<()> {
    let texts = read_texts(file)?;
    let order = by_length(&texts);
    let (mut embedder, load_secs) = load()?;
    println!("loaded in {load_secs:.2} s, {:.0} MB", memory_mb("VmRSS"));
    warm_up(&mut embedder, &texts, &order, 16)?;
    for round in 1..=2 {
        for &batch in &batches {
            let (_, took) = embed_all(&mut embedder, &texts, &order, batch.max(1))?;
            println!(
                "round {round} batch {batch:>3}: {:.1} chunks/s ({:.2} s), {:.0} CPU ms/chunk, \
                 {:.0} MB peak so far",
                texts.len() as f64 / took.secs,
                took.secs,
                took.cpu_secs * 1000.0 / texts.len() as f64,
                memory_mb("VmHWM")
            );
        }
    }
    Ok(())
}

/// A memory figure of this process from `/proc/self/status`, in MB (0 where unknown).
fn memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User and system CPU seconds of this process so far, from `/proc/self/stat` (in clock ticks
/// of 1/100 s, as on Linux everywhere).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses; utime and stime are the
    // 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
