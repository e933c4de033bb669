//! Vector index speed: Doppel's HNSW index (`doppel-hnsw`) next to usearch (the index Doppel
//! used before) and hnswlib on the same vectors, in the same run: build time, memory, recall@10
//! and queries per second at recall 0.95, deleting 1,025 vectors until no file holds them, and
//! opening the saved file.
//!
//! `bench/index` runs this after making a Python environment with hnswlib. The data sets are
//! written once under `/var/tmp/doppel-bench-index/NAME/` and shared by all sides: rows of 384
//! little-endian f32 (`base.f32`, `queries.f32`) and the exact top 10 of every query by
//! brute force (`truth.u32` ids, `truth.f32` similarities).
//!
//! - `real`: all-MiniLM-L6-v2 vectors (the local model) of distinct passages of the Debian
//!   handbook and the Python 3.11 documentation, cut by Doppel's own chunker, shuffled: 10,000
//!   indexed and 1,000 held out as queries. Embedding runs at 10 to 50 passages per second on a
//!   small machine, which is why the real set is this size.
//! - `100k`, `1m` (any `<n>k` or `<n>m`): clustered random vectors: 1,000 Gaussian clusters,
//!   normalised, queries drawn from the same clusters.
//!
//! Each side runs in its own process (so that its memory figures are its own) and builds its
//! index with the same parameters (the settings' defaults `m` 16, `ef_construction` 128), one
//! side after the other: Doppel and hnswlib on `BUILD_THREADS` threads, usearch on one (adding
//! from several threads at once leaves some nodes unreachable in usearch 2.26, unum-cloud/USearch
//! issue 735). Then all sweep `ef_search` together, asked in turn at each value (queries on one
//! thread, the fastest of three turns counts), writing the ids they found; this process scores
//! every side's answers the same way and prints the tables. Last, each deletes the same 1,025
//! vectors and saves (Doppel repairs its graph and zeroes their bytes; hnswlib only marks them;
//! usearch keeps them in its file), then opens what it saved.
//!
//! Arguments (cargo adds `--bench`, which is ignored): the data sets (default `real 100k`).
//! `side doppel|usearch DIR OUT` is a Rust side's process. `$DOPPEL_BENCH_PYTHON` names a Python
//! with hnswlib and numpy (default `/var/tmp/doppel-bench-venv/bin/python`); the `real` set
//! needs `$DOPPEL_MODEL_CACHE`.

mod common;

use std::error::Error;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use doppel_core::Settings;
use doppel_core::bench::{LocalEmbedder, ModelFiles};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const DIM: usize = 384;
const K: usize = 10;
const QUERIES: usize = 1000;
/// Indexed vectors of the real set.
const REAL: usize = 10_000;
const CLUSTERS: usize = 1000;
/// Norm of a point's Gaussian offset from its (unit) cluster centre before normalisation: at
/// 100,000 vectors a query's tenth neighbour is then at a cosine similarity of 0.54 on average,
/// near the real set's 0.59.
const SPREAD: f32 = 1.0;
const SEED: u64 = 0x5eed_d0bb_e100_0001;
const CACHE: &str = "/var/tmp/doppel-bench-index";
const DEFAULT_PYTHON: &str = "/var/tmp/doppel-bench-venv/bin/python";
const HANDBOOK: &str = "/usr/share/doc/debian-handbook/html/en-US";
const PYTHON_DOCS: &str = "/usr/share/doc/python3.11/html";
/// The `ef_search` values both sides sweep, until their recall reaches `STOP` and they have
/// passed the default `ef_search`.
const EF_SEARCH: &[usize] = &[
    10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    448, 512, 640, 768, 896, 1024, 1280, 1536, 2048,
];
const STOP: f64 = 0.99;
const TARGET: f64 = 0.95;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["side", kind, dir, out] = args.as_slice() {
        return rust_side(kind, Path::new(dir), Path::new(out));
    }
    let mut sets = Vec::new();
    for &arg in &args {
        match arg {
            name if name == "real" || clustered_size(name).is_some() => sets.push(name),
            _ => return Err("usage: index [real | 100k | 1m | <n>k | <n>m ...]".into()),
        }
    }
    if sets.is_empty() {
        sets = vec!["real", "100k"];
    }
    let python =
        std::env::var_os("DOPPEL_BENCH_PYTHON").map_or(DEFAULT_PYTHON.into(), PathBuf::from);
    if !python.exists() {
        return Err(format!("{} is missing: bench/index makes it", python.display()).into());
    }
    println!(
        "machine: {} cores; Doppel's kernel {}; usearch {} ({})",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        doppel_hnsw::kernel(),
        usearch::version(),
        usearch::hardware_acceleration_available(),
    );
    for name in sets {
        let dir = prepare(name)?;
        compare(name, &dir, &python)?;
    }
    Ok(())
}

fn clustered_size(name: &str) -> Option<usize> {
    let (number, unit) = name.split_at(name.len().checked_sub(1)?);
    let scale = match unit {
        "k" => 1_000,
        "m" => 1_000_000,
        _ => return None,
    };
    number.parse::<usize>().ok().filter(|&n| n > 0).map(|n| n * scale)
}

// ---------------------------------------------------------------------------------------------
// The data sets.

/// Makes the data set's files unless they are there for the same description; returns its
/// folder.
fn prepare(name: &str) -> Result<PathBuf> {
    let dir = Path::new(CACHE).join(name);
    let description = match clustered_size(name) {
        Some(n) => format!(
            "clustered v1: {n} + {QUERIES} x {DIM}, {CLUSTERS} clusters, spread {SPREAD}, seed {SEED}"
        ),
        None => format!("real v1: all-MiniLM-L6-v2, {REAL} + {QUERIES} passages, seed {SEED}"),
    };
    let meta = dir.join("meta.txt");
    if std::fs::read_to_string(&meta).is_ok_and(|m| m == description) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let (base, queries) = match clustered_size(name) {
        Some(n) => clustered(n),
        None => real()?,
    };
    eprintln!(
        "{name}: {} vectors made in {:.0} s",
        base.len() / DIM,
        started.elapsed().as_secs_f64()
    );
    write_f32(&dir.join("base.f32"), &base)?;
    write_f32(&dir.join("queries.f32"), &queries)?;
    let started = Instant::now();
    let (ids, similarities) = exact_top(&base, &queries);
    eprintln!("{name}: exact top {K} in {:.0} s", started.elapsed().as_secs_f64());
    write_u32(&dir.join("truth.u32"), &ids)?;
    write_f32(&dir.join("truth.f32"), &similarities)?;
    std::fs::write(&meta, description)?;
    Ok(dir)
}

/// A small deterministic generator (xorshift64*), with Gaussian numbers by Box-Muller.
struct Random {
    state: u64,
    spare: Option<f32>,
}

impl Random {
    fn new(seed: u64) -> Random {
        Random { state: seed | 1, spare: None }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f32 {
        if let Some(x) = self.spare.take() {
            return x;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt();
        let angle = std::f64::consts::TAU * self.uniform();
        self.spare = Some((radius * angle.sin()) as f32);
        (radius * angle.cos()) as f32
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `n` base vectors and `QUERIES` queries from `CLUSTERS` Gaussian clusters on the unit sphere.
fn clustered(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut random = Random::new(SEED);
    let mut centres = vec![0.0f32; CLUSTERS * DIM];
    centres.iter_mut().for_each(|x| *x = random.gaussian());
    centres.chunks_exact_mut(DIM).for_each(normalise);
    let scale = SPREAD / (DIM as f32).sqrt();
    let point = |random: &mut Random, out: &mut [f32]| {
        let cluster = (random.next() % CLUSTERS as u64) as usize;
        let centre = &centres[cluster * DIM..(cluster + 1) * DIM];
        for (x, c) in out.iter_mut().zip(centre) {
            *x = c + scale * random.gaussian();
        }
        normalise(out);
    };
    let mut base = vec![0.0f32; n * DIM];
    base.chunks_exact_mut(DIM).for_each(|row| point(&mut random, row));
    let mut queries = vec![0.0f32; QUERIES * DIM];
    queries.chunks_exact_mut(DIM).for_each(|row| point(&mut random, row));
    (base, queries)
}

/// Real MiniLM vectors: `REAL` base vectors and `QUERIES` held-out queries, from distinct
/// passages chosen at random among all of the handbook's and the Python documentation's.
fn real() -> Result<(Vec<f32>, Vec<f32>)> {
    let cache = std::env::var_os(doppel_core::MODEL_CACHE_ENV)
        .ok_or("set DOPPEL_MODEL_CACHE to the model cache (scripts/models fills it)")?;
    let mut embedder = LocalEmbedder::load(&ModelFiles::in_cache(Path::new(&cache)))?;
    let mut texts = passages()?;
    let found = texts.len();
    let mut random = Random::new(SEED);
    for i in (1..texts.len()).rev() {
        texts.swap(i, (random.next() % (i as u64 + 1)) as usize);
    }
    texts.truncate(REAL + QUERIES);
    if texts.len() < 2 * QUERIES {
        return Err(format!("only {} distinct passages", texts.len()).into());
    }
    eprintln!("real: embedding {} of {found} distinct passages (once; slow)...", texts.len());
    // By length, as the worker batches a file's passages: less padding.
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut vectors = vec![Vec::new(); texts.len()];
    let started = Instant::now();
    for (done, batch) in order.chunks(32).enumerate() {
        let slice: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
        for (&i, vector) in batch.iter().zip(embedder.embed(&slice)?) {
            vectors[i] = vector;
        }
        if done % 32 == 31 {
            let so_far = (done + 1) * 32;
            eprintln!(
                "real: {so_far} passages, {:.1} per second",
                so_far as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if vectors.iter().any(|v| v.len() != DIM) {
        return Err(format!("the model did not give {DIM} numbers per passage").into());
    }
    let queries = vectors.split_off(vectors.len() - QUERIES);
    Ok((vectors.concat(), queries.concat()))
}

/// Every distinct passage of the handbook's and the Python documentation's HTML pages, as
/// Doppel cuts them: the pages are ingested without a model (keyword index only, seconds).
fn passages() -> Result<Vec<String>> {
    let mut pages = Vec::new();
    for root in [HANDBOOK, PYTHON_DOCS] {
        html_files(Path::new(root), &mut pages)?;
    }
    pages.sort();
    let (texts, _) = common::distinct_passages(pages)?;
    Ok(texts)
}

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            html_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "html") {
            out.push(path);
        }
    }
    Ok(())
}

/// A dot product the compiler vectorises (sixteen independent sums).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            sums[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a
        .chunks_exact(16)
        .remainder()
        .iter()
        .zip(b.chunks_exact(16).remainder())
        .map(|(x, y)| x * y)
        .sum();
    sums.iter().sum::<f32>() + tail
}

/// The exact `K` nearest base vectors of every query (cosine similarity of unit vectors, ties to
/// the lower id), by brute force on every core: ids and similarities, best first.
fn exact_top(base: &[f32], queries: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let count = queries.len() / DIM;
    let mut ids = vec![0u32; count * K];
    let mut similarities = vec![f32::NEG_INFINITY; count * K];
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        for ((queries, ids), similarities) in queries
            .chunks(per_thread * DIM)
            .zip(ids.chunks_mut(per_thread * K))
            .zip(similarities.chunks_mut(per_thread * K))
        {
            scope.spawn(move || {
                // Eight queries at a time share each pass over the base vectors.
                for ((queries, ids), similarities) in queries
                    .chunks(8 * DIM)
                    .zip(ids.chunks_mut(8 * K))
                    .zip(similarities.chunks_mut(8 * K))
                {
                    for (id, row) in base.chunks_exact(DIM).enumerate() {
                        for ((query, ids), similarities) in queries
                            .chunks_exact(DIM)
                            .zip(ids.chunks_exact_mut(K))
                            .zip(similarities.chunks_exact_mut(K))
                        {
                            let similarity = dot(query, row);
                            if similarity > similarities[K - 1] {
                                let at = similarities.partition_point(|&s| s >= similarity);
                                similarities.copy_within(at..K - 1, at + 1);
                                ids.copy_within(at..K - 1, at + 1);
                                similarities[at] = similarity;
                                ids[at] = id as u32;
                            }
                        }
                    }
                }
            });
        }
    });
    (ids, similarities)
}

// ---------------------------------------------------------------------------------------------
// Files.

/// Writes a file through a temporary name, so that a file present is complete.
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let part = path.with_extension("part");
    let mut out = BufWriter::new(File::create(&part)?);
    fill(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&part, path)?;
    Ok(())
}

fn write_f32(path: &Path, values: &[f32]) -> Result<()> {
    write_atomic(path, |out| values.iter().try_for_each(|x| out.write_all(&x.to_le_bytes())))
}

fn write_u32(path: &Path, values: &[u32]) -> Result<()> {
    write_atomic(path, |out| values.iter().try_for_each(|x| out.write_all(&x.to_le_bytes())))
}

fn write_ids(path: &Path, values: &[u64]) -> Result<()> {
    write_atomic(path, |out| values.iter().try_for_each(|x| out.write_all(&x.to_le_bytes())))
}

/// Reads a file of little-endian 4-byte numbers without holding its bytes twice.
fn read_words<T>(path: &Path, convert: fn([u8; 4]) -> T) -> Result<Vec<T>> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let length = file.metadata()?.len() as usize;
    let mut values = Vec::with_capacity(length / 4);
    let mut buffer = vec![0u8; 1 << 20];
    let mut left = length - length % 4;
    while left > 0 {
        let take = left.min(buffer.len());
        file.read_exact(&mut buffer[..take])?;
        values.extend(buffer[..take].chunks_exact(4).map(|b| convert([b[0], b[1], b[2], b[3]])));
        left -= take;
    }
    Ok(values)
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    read_words(path, f32::from_le_bytes)
}

fn read_ids(path: &Path) -> Result<Vec<u64>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0xff; 8])))
        .collect())
}

/// A memory figure of this process from `/proc/self/status`, in bytes (0 where unknown).
fn memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The share of the true top `K` ids found (ties not forgiven): only to stop a sweep.
fn id_recall(found: &[u64], truth: &[u32]) -> f64 {
    let hits: usize = found
        .chunks_exact(K)
        .zip(truth.chunks_exact(K))
        .map(|(found, truth)| {
            found.iter().filter(|&&f| truth.iter().any(|&t| u64::from(t) == f)).count()
        })
        .sum();
    hits as f64 / truth.len() as f64
}

// ---------------------------------------------------------------------------------------------
// The sides. Each is a process that builds its index, prints `version V`, `build SECONDS`,
// `memory BYTES` (resident memory grown by the build) and `ready`, then answers commands on its
// standard input: `ef N` sets `ef_search`, runs the query set on one thread (again until
// `PASS_SECONDS` have passed; the fastest pass counts), writes the ids found to
// OUT/SIDE-efN.ids (`K` u64 per query) and prints `point N QPS ID_RECALL`; `delete` removes
// `DELETED` vectors (ten clusters' worth), saves the index and prints `delete SECONDS` (both)
// and `open SECONDS` (loading the saved file); `peak` prints `peak BYTES` and ends it. All sides
// are alive during the sweep and are asked in turn, so that other work on the machine slows
// them alike.

/// Least time spent on one point in one turn.
const PASS_SECONDS: f64 = 0.3;
/// Turns per point; the fastest counts.
const ROUNDS: usize = 3;
/// Threads a build uses on the sides that build in parallel (Doppel's and hnswlib's).
const BUILD_THREADS: usize = 2;
/// Vectors removed by `delete`, as many as in the issue's measure of ingesting from a server.
const DELETED: usize = 1025;

/// The keys `delete` removes: the first `DELETED` of the rows in clusters 0, 100, 200, ...
/// (rows are dealt to clusters in turn), so that they are neighbours of each other, as a
/// source's passages are.
fn deleted_keys(rows: usize) -> Vec<u64> {
    let mut keys: Vec<u64> =
        (0..rows as u64).filter(|k| (k % CLUSTERS as u64).is_multiple_of(100)).collect();
    keys.truncate(DELETED);
    keys
}

/// One of the Rust sides: Doppel's index (`doppel-hnsw`) or usearch, the index Doppel used
/// before.
enum Built {
    Doppel(Box<doppel_hnsw::Hnsw>),
    Usearch(usearch::Index),
}

fn rust_side(kind: &str, dir: &Path, out: &Path) -> Result<()> {
    let base = read_f32(&dir.join("base.f32"))?;
    let queries = read_f32(&dir.join("queries.f32"))?;
    let truth = read_words(&dir.join("truth.u32"), u32::from_le_bytes)?;
    let settings = Settings::default();
    let (m, ef_construction) = (settings.hnsw_m as usize, settings.hnsw_ef_construction as usize);
    let rows = base.len() / DIM;
    let before = memory("VmRSS");
    let started = Instant::now();
    let mut index = match kind {
        "doppel" => {
            println!("version {}", doppel_hnsw::kernel());
            let items: Vec<(u64, &[f32])> =
                base.chunks_exact(DIM).enumerate().map(|(k, v)| (k as u64, v)).collect();
            let mut index = doppel_hnsw::Hnsw::new(DIM, doppel_hnsw::Params { m, ef_construction });
            index.build(&items, BUILD_THREADS, &Default::default(), |_, _| {})?;
            Built::Doppel(Box::new(index))
        }
        "usearch" => {
            println!("version {}", usearch::version());
            let options = usearch::IndexOptions {
                dimensions: DIM,
                metric: usearch::MetricKind::Cos,
                quantization: usearch::ScalarKind::F32,
                connectivity: m,
                expansion_add: ef_construction,
                expansion_search: settings.hnsw_ef_search as usize,
                multi: false,
            };
            let index = usearch::Index::new(&options)?;
            index.reserve(rows)?;
            // One thread: concurrent adds lose nodes in usearch 2.26 (USearch issue 735).
            for (key, vector) in base.chunks_exact(DIM).enumerate() {
                index.add(key as u64, vector)?;
            }
            Built::Usearch(index)
        }
        other => return Err(format!("no side {other}").into()),
    };
    println!("build {}", started.elapsed().as_secs_f64());
    println!("memory {}", memory("VmRSS").saturating_sub(before));
    let len = match &index {
        Built::Doppel(i) => i.len(),
        Built::Usearch(i) => i.size(),
    };
    if len != rows {
        return Err(format!("{len} vectors in the index, not {rows}").into());
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut found = vec![u64::MAX; queries.len() / DIM * K];
    for line in std::io::stdin().lines() {
        let line = line?;
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ef", ef_search] => {
                let ef_search: usize = ef_search.parse()?;
                if let Built::Usearch(i) = &index {
                    i.change_expansion_search(ef_search);
                }
                let mut fastest = f64::INFINITY;
                let mut total = 0.0;
                while total < PASS_SECONDS {
                    let started = Instant::now();
                    for (query, found) in queries.chunks_exact(DIM).zip(found.chunks_exact_mut(K)) {
                        found.fill(u64::MAX);
                        match &index {
                            Built::Doppel(i) => {
                                let hits = i.search(query, K, ef_search);
                                found.iter_mut().zip(&hits).for_each(|(f, (key, _))| *f = *key);
                            }
                            Built::Usearch(i) => {
                                let hits = i.search(query, K)?;
                                found.iter_mut().zip(&hits.keys).for_each(|(f, key)| *f = *key);
                            }
                        }
                    }
                    let secs = started.elapsed().as_secs_f64();
                    fastest = fastest.min(secs);
                    total += secs;
                }
                write_ids(&out.join(format!("{kind}-ef{ef_search}.ids")), &found)?;
                let qps = (queries.len() / DIM) as f64 / fastest;
                println!("point {ef_search} {qps} {}", id_recall(&found, &truth));
            }
            ["delete"] => {
                let keys = deleted_keys(rows);
                let file = out.join(format!("{kind}.index"));
                let started = Instant::now();
                match &mut index {
                    Built::Doppel(i) => {
                        // Searches wait only for `apply` (the write lock); the plan is made
                        // behind the read lock.
                        let plan = i.plan_removal(&keys);
                        let held = Instant::now();
                        i.apply(plan);
                        println!("hold {}", held.elapsed().as_secs_f64());
                        i.save(&file)?;
                    }
                    Built::Usearch(i) => {
                        for &key in &keys {
                            i.remove(key)?;
                        }
                        i.save(file.to_str().ok_or("path")?)?;
                    }
                }
                println!("delete {}", started.elapsed().as_secs_f64());
                let started = Instant::now();
                let opened = match &index {
                    Built::Doppel(_) => doppel_hnsw::Hnsw::load(
                        &file,
                        DIM,
                        doppel_hnsw::Params { m, ef_construction },
                    )?
                    .len(),
                    Built::Usearch(i) => {
                        let fresh = usearch::Index::new(&usearch::IndexOptions {
                            dimensions: DIM,
                            connectivity: m,
                            ..Default::default()
                        })?;
                        fresh.load(file.to_str().ok_or("path")?)?;
                        let _ = i;
                        fresh.size()
                    }
                };
                println!("open {}", started.elapsed().as_secs_f64());
                if opened != rows - keys.len() {
                    return Err(format!("{opened} vectors after the delete").into());
                }
            }
            ["peak"] => {
                println!("peak {}", memory("VmHWM"));
                return Ok(());
            }
            _ => return Err(format!("unknown command {line:?}").into()),
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// The hnswlib side, run by the Python of the bench's environment. Space "cosine" is hnswlib's
/// equivalent of Doppel's cosine metric (it normalises what it stores and searches by inner
/// product). The vectors are added in slices, so that hnswlib's normalised copy of its input
/// stays small, on `BUILD_THREADS` threads. The queries go in one call with one thread, so no
/// Python runs between queries. Its delete marks the vectors deleted (hnswlib keeps their
/// bytes) and saves.
const HNSWLIB_SIDE: &str = r#"
import sys, time
from importlib.metadata import version
import numpy as np, hnswlib
folder, out = sys.argv[1], sys.argv[2]
m, ef_construction = int(sys.argv[3]), int(sys.argv[4])
pass_seconds, threads = float(sys.argv[5]), int(sys.argv[6])
deleted = [int(k) for k in sys.argv[7].split(",")]
D, K = 384, 10
def memory(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0
base = np.fromfile(folder + "/base.f32", dtype="<f4").reshape(-1, D)
queries = np.ascontiguousarray(np.fromfile(folder + "/queries.f32", dtype="<f4").reshape(-1, D))
truth = np.fromfile(folder + "/truth.u32", dtype="<u4").reshape(-1, K).astype(np.uint64)
ids = np.arange(len(base), dtype=np.uint64)
print("version", version("hnswlib"))
before = memory("VmRSS")
started = time.perf_counter()
index = hnswlib.Index(space="cosine", dim=D)
index.init_index(max_elements=len(base), M=m, ef_construction=ef_construction)
step = 65536
for start in range(0, len(base), step):
    index.add_items(base[start:start + step], ids[start:start + step], num_threads=threads)
print("build", time.perf_counter() - started)
print("memory", max(0, memory("VmRSS") - before))
index.set_num_threads(1)
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "ef":
        ef = int(words[1])
        index.set_ef(ef)
        fastest, total = float("inf"), 0.0
        while total < pass_seconds:
            started = time.perf_counter()
            labels, _ = index.knn_query(queries, k=K, num_threads=1)
            secs = time.perf_counter() - started
            fastest, total = min(fastest, secs), total + secs
        labels.astype("<u8").tofile(f"{out}/hnswlib-ef{ef}.ids")
        hits = sum(len(set(a.tolist()) & set(t.tolist())) for a, t in zip(labels, truth))
        print("point", ef, len(queries) / fastest, hits / truth.size, flush=True)
    elif words[0] == "delete":
        started = time.perf_counter()
        for key in deleted:
            index.mark_deleted(key)
        index.save_index(f"{out}/hnswlib.index")
        print("delete", time.perf_counter() - started)
        started = time.perf_counter()
        fresh = hnswlib.Index(space="cosine", dim=D)
        fresh.load_index(f"{out}/hnswlib.index")
        print("open", time.perf_counter() - started, flush=True)
    elif words[0] == "peak":
        print("peak", memory("VmHWM"), flush=True)
        break
"#;

/// What one side reported.
#[derive(Default)]
struct Side {
    label: String,
    /// The prefix of its answer files.
    file: String,
    build: f64,
    memory: u64,
    peak: u64,
    delete: f64,
    /// How long a delete held the write lock that searches wait for (Doppel's).
    hold: Option<f64>,
    open: f64,
    /// (ef_search, queries per second, recall@10).
    points: Vec<(usize, f64, f64)>,
}

/// A side's running process.
struct Running {
    side: Side,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Running {
    /// Starts the side and waits until its index is built.
    fn start(label: &str, file: &str, command: &mut Command) -> Result<Running> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let input = child.stdin.take().ok_or("no standard input")?;
        let output = BufReader::new(child.stdout.take().ok_or("no standard output")?);
        let side = Side { label: label.to_string(), file: file.to_string(), ..Side::default() };
        let mut running = Running { side, child, input, output };
        loop {
            let words = running.line()?;
            match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["version", v] => running.side.label = format!("{label} ({v})"),
                ["build", secs] => running.side.build = secs.parse()?,
                ["memory", bytes] => running.side.memory = bytes.parse()?,
                ["ready"] => return Ok(running),
                other => return Err(format!("the {label} side said {other:?}").into()),
            }
        }
    }

    fn line(&mut self) -> Result<Vec<String>> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(format!("the {} side ended ({status})", self.side.label).into());
        }
        Ok(line.split_whitespace().map(str::to_string).collect())
    }

    /// Queries per second and the share of true ids found at `ef_search`.
    fn point(&mut self, ef_search: usize) -> Result<(f64, f64)> {
        writeln!(self.input, "ef {ef_search}")?;
        self.input.flush()?;
        match self.line()?.as_slice() {
            [point, ef, qps, recall] if point == "point" && ef.parse() == Ok(ef_search) => {
                Ok((qps.parse()?, recall.parse()?))
            }
            other => Err(format!("the {} side said {other:?}", self.side.label).into()),
        }
    }

    fn delete(&mut self) -> Result<()> {
        writeln!(self.input, "delete")?;
        self.input.flush()?;
        loop {
            match self.line()?.as_slice() {
                [word, secs] if word == "hold" => self.side.hold = Some(secs.parse()?),
                [word, secs] if word == "delete" => self.side.delete = secs.parse()?,
                [word, secs] if word == "open" => {
                    self.side.open = secs.parse()?;
                    return Ok(());
                }
                other => return Err(format!("the {} side said {other:?}", self.side.label).into()),
            }
        }
    }

    fn finish(mut self) -> Result<Side> {
        writeln!(self.input, "peak")?;
        self.input.flush()?;
        match self.line()?.as_slice() {
            [peak, bytes] if peak == "peak" => self.side.peak = bytes.parse()?,
            other => return Err(format!("the {} side said {other:?}", self.side.label).into()),
        }
        self.child.wait()?;
        Ok(self.side)
    }
}

/// recall@10 of one answer file: a found id counts when it is as close to the query as the
/// tenth true neighbour (equal vectors are interchangeable), each id once.
fn recall(file: &Path, base: &[f32], queries: &[f32], truth: &[f32]) -> Result<f64> {
    let found = read_ids(file)?;
    let rows = base.len() / DIM;
    let mut hits = 0;
    for ((found, query), truth) in
        found.chunks_exact(K).zip(queries.chunks_exact(DIM)).zip(truth.chunks_exact(K))
    {
        let mut seen = Vec::with_capacity(K);
        for &id in found {
            if id < rows as u64 && !seen.contains(&id) {
                seen.push(id);
                let row = &base[id as usize * DIM..(id as usize + 1) * DIM];
                hits += usize::from(dot(query, row) >= truth[K - 1]);
            }
        }
    }
    Ok(hits as f64 / truth.len() as f64)
}

/// Queries per second at recall `TARGET`, between the two points of the sweep around it (recall
/// linear, speed logarithmic); `None` when the sweep never got there. The flag says the first
/// point was already above it (its speed is then a lower bound).
fn at_target(points: &[(usize, f64, f64)]) -> Option<(f64, bool)> {
    let i = points.iter().position(|p| p.2 >= TARGET)?;
    if i == 0 {
        return Some((points[0].1, true));
    }
    let ((_, q0, r0), (_, q1, r1)) = (points[i - 1], points[i]);
    let t = if r1 > r0 { (TARGET - r0) / (r1 - r0) } else { 1.0 };
    Some(((q0.ln() + t * (q1.ln() - q0.ln())).exp(), false))
}

fn compare(name: &str, dir: &Path, python: &Path) -> Result<()> {
    let out = dir.join("run");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    let settings = Settings::default();
    let rows = std::fs::metadata(dir.join("base.f32"))?.len() as usize / (DIM * 4);
    let deleted: Vec<String> = deleted_keys(rows).iter().map(u64::to_string).collect();
    let mut running = Vec::new();
    // usearch builds on one thread only (about 4 times hnswlib's time): DOPPEL_BENCH_USEARCH=0
    // leaves it out, for the 1m set.
    let with_usearch = std::env::var("DOPPEL_BENCH_USEARCH").map_or(true, |v| v != "0");
    for (label, file) in [("Doppel", "doppel"), ("usearch", "usearch")] {
        if file == "usearch" && !with_usearch {
            continue;
        }
        eprintln!("{name}: building the {label} index...");
        running.push(Running::start(
            label,
            file,
            Command::new(std::env::current_exe()?).args(["side", file]).arg(dir).arg(&out),
        )?);
    }
    eprintln!("{name}: building hnswlib's index...");
    running.push(Running::start(
        "hnswlib",
        "hnswlib",
        Command::new(python)
            .arg("-c")
            .arg(HNSWLIB_SIDE)
            .arg(dir)
            .arg(&out)
            .arg(settings.hnsw_m.to_string())
            .arg(settings.hnsw_ef_construction.to_string())
            .arg(PASS_SECONDS.to_string())
            .arg(BUILD_THREADS.to_string())
            .arg(deleted.join(",")),
    )?);
    eprintln!("{name}: sweeping ef_search...");
    let sides = running.len();
    for &ef_search in EF_SEARCH {
        let mut best = vec![(0.0f64, 0.0f64); sides];
        for round in 0..ROUNDS {
            // Each side first in turn.
            for turn in 0..sides {
                let i = (round + turn) % sides;
                let (qps, found) = running[i].point(ef_search)?;
                best[i] = (best[i].0.max(qps), found);
            }
        }
        for (side, (qps, _)) in running.iter_mut().zip(&best) {
            side.side.points.push((ef_search, *qps, 0.0));
        }
        let default = settings.hnsw_ef_search as usize;
        if best.iter().all(|&(_, found)| found >= STOP) && ef_search >= default {
            break;
        }
    }
    eprintln!("{name}: deleting {DELETED} vectors...");
    for side in &mut running {
        side.delete()?;
    }
    let mut sides = Vec::new();
    for side in running {
        sides.push(side.finish()?);
    }

    let base = read_f32(&dir.join("base.f32"))?;
    let queries = read_f32(&dir.join("queries.f32"))?;
    let truth = read_f32(&dir.join("truth.f32"))?;
    for side in &mut sides {
        for point in &mut side.points {
            let file = out.join(format!("{}-ef{}.ids", side.file, point.0));
            point.2 = recall(&file, &base, &queries, &truth)?;
        }
    }
    let count = queries.len() / DIM;
    let what = if name == "real" { "real all-MiniLM-L6-v2 passages" } else { "clustered random" };
    println!();
    println!(
        "{name}: {rows} x {DIM} ({what}), {count} queries; m {}, ef_construction {}; builds on \
         {BUILD_THREADS} threads (usearch: 1), queries on 1 thread",
        settings.hnsw_m, settings.hnsw_ef_construction
    );
    println!();
    println!(
        "| index | build | memory (RSS growth) | peak RSS | qps at recall@10 {TARGET} | \
         at ef_search {}: recall, qps | delete {DELETED} + save | open |",
        settings.hnsw_ef_search
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    for side in &sides {
        let target = match at_target(&side.points) {
            Some((qps, false)) => format!("{qps:.0}"),
            Some((qps, true)) => format!("≥ {qps:.0}"),
            None => "not reached".into(),
        };
        let default = side
            .points
            .iter()
            .find(|p| p.0 == settings.hnsw_ef_search as usize)
            .map_or("-".into(), |p| format!("{:.3}, {:.0}", p.2, p.1));
        println!(
            "| {} | {:.1} s | {:.0} MB | {:.0} MB | {target} | {default} | {:.2} s | {:.2} s |",
            side.label,
            side.build,
            mb(side.memory),
            mb(side.peak),
            side.delete,
            side.open
        );
    }
    for side in &sides {
        if let Some(hold) = side.hold {
            println!();
            println!(
                "{}: the delete held the write lock (searches wait) for {:.1} ms",
                side.label,
                hold * 1000.0
            );
        }
    }
    let hnswlib = at_target(&sides[sides.len() - 1].points);
    println!();
    for side in &sides[..sides.len() - 1] {
        if let (Some((a, _)), Some((b, _))) = (at_target(&side.points), hnswlib) {
            println!(
                "{} / hnswlib queries per second at recall {TARGET}: {:.2}",
                side.label,
                a / b
            );
        }
        println!(
            "{} / hnswlib build time: {:.2}",
            side.label,
            side.build / sides[sides.len() - 1].build
        );
    }
    println!();
    let header: Vec<String> =
        sides.iter().map(|s| format!("{} recall@10 | qps", s.label)).collect();
    println!("| ef_search | {} |", header.join(" | "));
    println!("|---:|{}", "---:|---:|".repeat(sides.len()));
    let cell = |side: &Side, ef: usize| {
        side.points
            .iter()
            .find(|p| p.0 == ef)
            .map_or(" | ".into(), |p| format!("{:.3} | {:.0}", p.2, p.1))
    };
    for &ef in EF_SEARCH {
        if sides.iter().any(|s| s.points.iter().any(|p| p.0 == ef)) {
            let cells: Vec<String> = sides.iter().map(|s| cell(s, ef)).collect();
            println!("| {ef} | {} |", cells.join(" | "));
        }
    }
    println!();
    std::io::stdout().flush()?;
    Ok(())
}
