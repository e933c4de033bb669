//! Retrieval latency at 100k passages, and deleting a source against ingesting it, measured
//! through the public API of [`Doppel`] on a store of real text.
//!
//! `bench/latency` runs this (`cargo bench -p doppel-core --bench latency`). Embedding 100k
//! passages with the local model would take about an hour here, so the store is built through a
//! model server: a loopback server started by this process that speaks Ollama's `/api/embed`
//! and embeds by hashing words into 384 buckets (as the core's `tests/remote.rs` does). Its
//! port is fixed because a server's model is known by its URL: another port would be another
//! model, and every passage would be embedded again.
//!
//! The store (every HTML page of the Debian handbook in all its languages and of the Python
//! documentation, cut into 112-token chunks, topped up with pasted licence texts until it holds
//! 100,000 passages) is built once under `/var/tmp/doppel-bench-latency/` and checked with
//! `doctor` on every run. Then, in one run:
//!
//! - (a) hybrid search end to end (query embedded by the loopback server, FTS5 + HNSW +
//!   fusion + live-row checks), (c) keyword-only and vector-only search, over a few hundred
//!   real headings of the pages and a dozen questions, warmed up once, modes interleaved;
//! - (b) the local model's embedding of the same queries alone, and the loopback server's
//!   round trip alone, so that an estimate with the local model can be composed;
//! - (d) ingesting a ~1,000-passage text while the 100k store is open (queued until done, then
//!   the index save that the worker does when idle) against deleting it (`delete_source` until
//!   it returns, then the index save, which rebuilds the index after removals); three times,
//!   then once more with searches running meanwhile to see how long a search waits.
//!
//! The index save is observed through the generation marker that the worker writes beside the
//! index file once the file is in place (`index/<fingerprint>.generation`): the public API has
//! no call that waits for it, and any command sent meanwhile is answered before the save.
//!
//! Needs `$DOPPEL_MODEL_CACHE` (for (b)), filled by `scripts/models`.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use doppel_core::bench::{LocalEmbedder, ModelFiles};
use doppel_core::{
    Config, DEFAULT_TWIN, Doppel, EmbedderChoice, Event, IngestRequest, JobId, JobState,
    RemoteKind, SearchMode, SearchRequest, TextRequest,
};
use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Where the store and its notes are kept between runs.
const CACHE: &str = "/var/tmp/doppel-bench-latency";
/// The loopback model server's fixed address (see the module docs).
const SERVER: &str = "127.0.0.1:47384";
const MODEL: &str = "hashed-words-384";
const DIMENSION: usize = 384;
/// Passages in the store.
const TARGET_CHUNKS: u64 = 100_000;
const CHUNK_TOKENS: &str = "112";
const CHUNK_OVERLAP: &str = "16";
/// What the cached store was built from; a store built otherwise is built again.
const RECIPE: &str = "v1: handbook (all languages) + python3 HTML pages, chunk_tokens 112, \
                      overlap 16, then /usr/share/common-licenses pasted until 100000 passages; \
                      Ollama protocol, hashed-words-384 at 127.0.0.1:47384";
const HANDBOOK: &str = "/usr/share/doc/debian-handbook/html";
const PYTHON_DOCS: &str = "/usr/share/doc/python3/html";
const LICENSES: &str = "/usr/share/common-licenses";
/// Words of the text that is ingested and deleted in (d): about 1,000 passages.
const BIG_TEXT_WORDS: usize = 61_000;
/// How many headings are searched, besides the questions.
const HEADINGS: usize = 288;
const PASSES: usize = 2;
const REPEATS: usize = 3;

/// Questions worded unlike the pages (those of `bench/retrieval`).
const QUESTIONS: &[&str] = &[
    "How can my computers fetch packages through a shared cache server?",
    "run scheduled tasks even when the machine was switched off at that time",
    "mandatory access control framework that came from the NSA",
    "several operating systems sharing one physical computer through a hypervisor",
    "share directories over the network with other Unix machines",
    "combine several disks into one volume that can be resized later",
    "answer the installer's questions automatically from a prepared file",
    "making my very first Debian package from scratch",
    "confine what each program may touch with per-program profiles",
    "keep the system's packages current without doing it by hand",
    "a central directory of user accounts for the whole company",
    "what to do after an intruder broke into a server",
];

fn main() -> Result<()> {
    let cache = PathBuf::from(CACHE);
    std::fs::create_dir_all(&cache)?;
    let listener = TcpListener::bind(SERVER)
        .map_err(|e| format!("the loopback model server needs {SERVER}: {e}"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // A broken request only fails that request; the client retries or reports it.
            let _ = answer(stream);
        }
    });
    let url = format!("http://{SERVER}");
    println!("machine: {}", machine());

    let build_secs = build(&cache, &url)?;

    let started = Instant::now();
    let doppel = open(&cache)?;
    let open_secs = started.elapsed().as_secs_f64();
    let status = doppel.vector_status();
    let sources = doppel.sources(DEFAULT_TWIN)?.len();
    println!(
        "store: {} ({sources} sources, {} passages in the index); built once in {}; opened in \
         {open_secs:.2} s",
        cache.join("data").display(),
        status.index_entries,
        build_secs.map_or("(unknown)".into(), |s| format!("{s:.0} s")),
    );

    let queries = queries(&doppel)?;
    std::fs::write(cache.join("queries.txt"), queries.join("\n") + "\n")?;
    println!(
        "queries: {} ({} headings of the en-US handbook and Python pages, {} questions; in \
         queries.txt beside the store)",
        queries.len(),
        queries.len() - QUESTIONS.len(),
        QUESTIONS.len()
    );
    let hybrid = search_latency(&doppel, &queries)?;
    let (embedder, local, remote) = query_embedding(&queries, &url)?;
    println!(
        "estimate of hybrid search with the local model = (a) + (b), percentile by percentile: \
         p50 {:.1} ms, p99 {:.1} ms (an upper bound: (a) already holds the loopback round trip, \
         p50 {:.1} ms, p99 {:.1} ms, and the two halves of a hybrid search run side by side)",
        hybrid.p50 + local.p50,
        hybrid.p99 + local.p99,
        remote.p50,
        remote.p99
    );
    let mut embedder = with_local_cost(&doppel, &queries, embedder)?;
    println!();
    delete_against_ingest(&doppel, &cache, &mut embedder, &url)?;

    let started = Instant::now();
    drop(doppel);
    println!(
        "closing the store (the worker saves the index once more): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// doctor's report without the problems of missing models: the store has no local model on
/// purpose (its embedder is the loopback server), and no chat model is needed here.
fn doctor(doppel: &Doppel) -> Result<doppel_core::DoctorReport> {
    let mut report = doppel.doctor()?;
    let missing: Vec<String> = doppel.model_problems()?.iter().map(ToString::to_string).collect();
    report.problems.retain(|p| !missing.contains(p));
    Ok(report)
}

/// The data directory opened with the loopback server as its embedder; no local model.
fn open(cache: &Path) -> Result<Doppel> {
    // The store's own log (logs/doppel.log) says where a delete's time goes.
    doppel_core::init_logging(&cache.join("data"));
    Ok(Doppel::open(Config {
        models: Some(cache.join("no-local-model")),
        ..Config::new(cache.join("data"))
    })?)
}

/// Builds the store unless a complete one is cached; returns how long the build took (now or
/// when it was made).
fn build(cache: &Path, url: &str) -> Result<Option<f64>> {
    let recipe_file = cache.join("recipe");
    let seconds_file = cache.join("build-seconds");
    let data = cache.join("data");
    if std::fs::read_to_string(&recipe_file).ok().as_deref() != Some(RECIPE) {
        if data.exists() {
            println!("the cached store was built otherwise; building it again");
            std::fs::remove_dir_all(&data)?;
        }
        let _ = std::fs::remove_file(&seconds_file);
        std::fs::write(&recipe_file, RECIPE)?;
    }
    let doppel = open(cache)?;
    let started = Instant::now();
    let report = doctor(&doppel)?;
    println!(
        "doctor on the cached store: {} passages, {} without vectors, {} problems ({:.1} s)",
        report.chunks,
        report.chunks_without_vectors,
        report.problems.len(),
        started.elapsed().as_secs_f64()
    );
    for problem in &report.problems {
        println!("  problem: {problem}");
    }
    let queued =
        report.jobs.iter().any(|(state, n)| *n > 0 && (state == "queued" || state == "running"));
    if report.problems.is_empty()
        && report.chunks >= TARGET_CHUNKS
        && report.chunks_without_vectors == 0
        && report.index_entries == report.chunks
        && report.model.is_ok()
        && !queued
    {
        let seconds =
            std::fs::read_to_string(&seconds_file).ok().and_then(|s| s.trim().parse().ok());
        return Ok(seconds);
    }
    println!(
        "building the store ({} passages so far; once, kept in {})",
        report.chunks,
        cache.display()
    );
    let started = Instant::now();
    doppel.set_setting("chunk_tokens", CHUNK_TOKENS)?;
    doppel.set_setting("chunk_overlap", CHUNK_OVERLAP)?;
    let choice = EmbedderChoice::remote(RemoteKind::Ollama, url, MODEL)?;
    if doppel.embedder()? != choice {
        doppel.set_embedder(choice)?;
    }
    let mut files = html_files(Path::new(HANDBOOK))?;
    files.extend(html_files(Path::new(PYTHON_DOCS))?);
    let report = doppel.ingest(IngestRequest::paths(files))?;
    let jobs: Vec<JobId> = report.queued.iter().map(|q| q.job_id).collect();
    println!("  {} files queued, {} skipped", jobs.len(), report.skipped.len());
    wait_in_groups(&doppel, &jobs, started)?;

    let mut licenses: Vec<PathBuf> = std::fs::read_dir(LICENSES)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    licenses.sort();
    let mut licenses = licenses.into_iter();
    while doppel.vector_status().index_entries < TARGET_CHUNKS {
        let file = licenses.next().ok_or("not enough text for 100,000 passages")?;
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let title = format!("licence {}", file.display());
        let queued = doppel.add_text(TextRequest { twin: DEFAULT_TWIN, title, text })?;
        doppel.wait_for(&[queued.job_id], |_| {})?;
    }
    doppel.wait_for_vectors(|_| {})?;
    let report = doctor(&doppel)?;
    if !report.problems.is_empty() || report.chunks_without_vectors > 0 {
        return Err(format!("the built store is not complete: {:?}", report.problems).into());
    }
    // Closing saves the index, so that every run opens the store as an app start would.
    drop(doppel);
    let seconds = started.elapsed().as_secs_f64();
    std::fs::write(&seconds_file, format!("{seconds:.1}\n"))?;
    println!("  built: {} passages in {seconds:.0} s", report.chunks);
    Ok(Some(seconds))
}

/// HTML files under `root`, sorted, leaving out folders whose names start with `_` or `.`
/// (the Python documentation's sources and static files).
fn html_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with(['_', '.']) {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if name.ends_with(".html") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Waits for the jobs a few hundred at a time (`wait_for` looks at every job it waits for after
/// each event), printing progress.
fn wait_in_groups(doppel: &Doppel, jobs: &[JobId], started: Instant) -> Result<()> {
    let (mut done, mut failed, mut chunks) = (0, 0, 0);
    for group in jobs.chunks(250) {
        for job in doppel.wait_for(group, |_| {})? {
            match job.state {
                JobState::Done => done += 1,
                _ => failed += 1,
            }
            if let Some(source) = job.source_id {
                chunks += doppel.source(source).map_or(0, |s| s.chunk_count);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  {}/{} files ({failed} failed), {chunks} passages, {secs:.0} s ({:.0} passages/s)",
            done + failed,
            jobs.len(),
            chunks as f64 / secs
        );
    }
    Ok(())
}

/// Real headings of the en-US handbook and Python pages (the last part of each passage's
/// heading path, without its section number), spread over the sorted list, and the questions;
/// in a fixed shuffled order.
fn queries(doppel: &Doppel) -> Result<Vec<String>> {
    let english = Path::new(HANDBOOK).join("en-US");
    let python = Path::new(PYTHON_DOCS).canonicalize()?;
    let mut headings = BTreeSet::new();
    for source in doppel.sources(DEFAULT_TWIN)? {
        let Some(origin) = source.origin.as_deref().map(Path::new) else { continue };
        if !origin.starts_with(&english) && !origin.starts_with(&python) {
            continue;
        }
        for chunk in doppel.chunks(source.id)? {
            let last = chunk.location.label.rsplit(" › ").next().unwrap_or_default();
            let heading = last
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
                .trim_end_matches(['¶', '…', ' '])
                .to_string();
            if (2..=10).contains(&heading.split_whitespace().count()) {
                headings.insert(heading);
            }
        }
    }
    let headings: Vec<String> = headings.into_iter().collect();
    if headings.len() < HEADINGS {
        return Err(format!("only {} headings found", headings.len()).into());
    }
    let step = headings.len() as f64 / HEADINGS as f64;
    let mut queries: Vec<String> =
        (0..HEADINGS).map(|i| headings[(i as f64 * step) as usize].clone()).collect();
    queries.extend(QUESTIONS.iter().map(|q| q.to_string()));
    // A fixed Fisher-Yates shuffle (xorshift), so that pages and languages alternate.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..queries.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        queries.swap(i, (state % (i as u64 + 1)) as usize);
    }
    Ok(queries)
}

/// Milliseconds: nearest-rank percentiles and the mean.
struct Summary {
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
    count: usize,
}

fn summary(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Summary {
        p50: rank(0.50),
        p99: rank(0.99),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
    }
}

fn row(label: &str, s: &Summary, extra: &str) {
    println!(
        "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {extra} |",
        s.p50, s.p99, s.mean, s.max, s.count
    );
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// (a) and (c): every query in every mode, the modes interleaved (their order rotating), after
/// one warm-up pass; then hybrid search once more with every vector match kept.
fn search_latency(doppel: &Doppel, queries: &[String]) -> Result<Summary> {
    const MODES: [SearchMode; 3] = [SearchMode::Hybrid, SearchMode::Keyword, SearchMode::Vector];
    let search = |query: &str, mode: SearchMode| -> Result<(f64, Vec<doppel_core::Hit>)> {
        let request = SearchRequest { mode, ..SearchRequest::new(query) };
        let started = Instant::now();
        let results = doppel.search(&request)?;
        let elapsed = ms(started);
        if results.mode != mode {
            return Err(
                format!("search fell back to {:?}: {:?}", results.mode, results.note).into()
            );
        }
        Ok((elapsed, results.hits))
    };
    let started = Instant::now();
    for query in queries {
        for mode in MODES {
            search(query, mode)?;
        }
    }
    println!(
        "warm-up: {} searches in {:.1} s; load average {}",
        queries.len() * MODES.len(),
        started.elapsed().as_secs_f64(),
        load_average()
    );
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut hits = [0usize; 3];
    let mut from_vectors = 0;
    for pass in 0..PASSES {
        for (i, query) in queries.iter().enumerate() {
            for k in 0..MODES.len() {
                let m = (i + k + pass) % MODES.len();
                let (elapsed, found) = search(query, MODES[m])?;
                times[m].push(elapsed);
                hits[m] += found.len();
                if MODES[m] == SearchMode::Hybrid {
                    from_vectors += found
                        .iter()
                        .filter(|h| h.retriever != doppel_core::Retriever::Keyword)
                        .count();
                }
            }
        }
    }
    let per_query = |m: usize| hits[m] as f64 / times[m].len() as f64;
    println!();
    println!(
        "| search (ms), {PASSES} passes | p50 | p99 | mean | max | searches | hits per search |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let hybrid = summary(&times[0]);
    row(
        "(a) hybrid, query embedded by the loopback server",
        &hybrid,
        &format!(
            "{:.1} ({:.1} found by meaning)",
            per_query(0),
            from_vectors as f64 / times[0].len() as f64
        ),
    );
    row("(c) keyword only (FTS5, BM25)", &summary(&times[1]), &format!("{:.1}", per_query(1)));
    row(
        "(c) vector only (loopback embedding + HNSW)",
        &summary(&times[2]),
        &format!("{:.1}", per_query(2)),
    );

    // At the default minimum similarity some vector matches are dropped before their rows are
    // read; with 0 every match of the pool becomes a hit, the most work a search can do.
    let before = doppel.settings()?.min_similarity_pct.to_string();
    doppel.set_setting("min_similarity_pct", "0")?;
    let mut all = Vec::new();
    let mut found = 0;
    for query in queries {
        let (elapsed, hits) = search(query, SearchMode::Hybrid)?;
        all.push(elapsed);
        found += hits.len();
    }
    doppel.set_setting("min_similarity_pct", &before)?;
    row(
        "(a') hybrid with min_similarity_pct 0 (every vector match read), 1 pass",
        &summary(&all),
        &format!("{:.1}", found as f64 / all.len() as f64),
    );
    println!();
    Ok(hybrid)
}

/// While it holds the local model, the loopback server also embeds each one-text request
/// (a search's query) with it, and throws that vector away: the search then pays the local
/// model's cost, on this machine's cores, where it would with the local model as embedder.
static LOCAL_COST: std::sync::Mutex<Option<LocalEmbedder>> = std::sync::Mutex::new(None);

/// (a''): hybrid search end to end with the local model's cost paid inside it (one pass).
fn with_local_cost(
    doppel: &Doppel,
    queries: &[String],
    embedder: LocalEmbedder,
) -> Result<LocalEmbedder> {
    *LOCAL_COST.lock().map_err(|_| "poisoned")? = Some(embedder);
    let mut times = Vec::new();
    let mut failed = None;
    for query in queries {
        let started = Instant::now();
        match doppel.search(&SearchRequest::new(query.as_str())) {
            Ok(results) if results.mode == SearchMode::Hybrid => times.push(ms(started)),
            Ok(results) => failed = Some(format!("search fell back: {:?}", results.note)),
            Err(e) => failed = Some(e.to_string()),
        }
    }
    let embedder = LOCAL_COST.lock().map_err(|_| "poisoned")?.take().ok_or("no embedder")?;
    if let Some(failed) = failed {
        return Err(failed.into());
    }
    let measured = summary(&times);
    println!(
        "(a'') hybrid end to end with the local model's cost (the loopback server also embeds \
         each query with it), 1 pass of {} searches: p50 {:.1} ms, p99 {:.1} ms",
        times.len(),
        measured.p50,
        measured.p99
    );
    Ok(embedder)
}

/// (b): the local model's embedding of each query alone, next to the loopback server's round
/// trip (which (a) includes). Returns the local embedder for (d) and both summaries.
fn query_embedding(queries: &[String], url: &str) -> Result<(LocalEmbedder, Summary, Summary)> {
    let cache = std::env::var_os(doppel_core::MODEL_CACHE_ENV)
        .ok_or("set DOPPEL_MODEL_CACHE to the model cache (scripts/models fills it)")?;
    let mut embedder = LocalEmbedder::load(&ModelFiles::in_cache(Path::new(&cache)))?;
    let client = reqwest::blocking::Client::new();
    let endpoint = format!("{url}/api/embed");
    let round_trip = |query: &str| -> Result<()> {
        let body = serde_json::json!({ "model": MODEL, "input": [query] }).to_string();
        let answer = client.post(&endpoint).body(body).send()?.text()?;
        if !answer.starts_with("{\"embeddings\"") {
            return Err("the loopback server did not answer".into());
        }
        Ok(())
    };
    for query in queries.iter().take(20) {
        embedder.embed(&[query.as_str()])?;
        round_trip(query)?;
    }
    // Not interleaved: ONNX Runtime's threads keep spinning for a while after each run and
    // would slow the round trips down.
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for _ in 0..PASSES {
        for query in queries {
            let started = Instant::now();
            round_trip(query)?;
            remote.push(ms(started));
        }
    }
    for _ in 0..PASSES {
        for query in queries {
            let started = Instant::now();
            embedder.embed(&[query.as_str()])?;
            local.push(ms(started));
        }
    }
    let (local, remote) = (summary(&local), summary(&remote));
    println!("| query embedding alone (ms) | p50 | p99 | mean | max | queries | |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    row("(b) local model (all-MiniLM-L6-v2 int8, ONNX Runtime), one query", &local, "");
    row("loopback server round trip (HTTP, hashed words), one query", &remote, "");
    println!();
    Ok((embedder, local, remote))
}

/// The time the worker last finished saving the index (its generation marker is written last).
fn saved_at(marker: &Path) -> Option<SystemTime> {
    std::fs::metadata(marker).and_then(|m| m.modified()).ok()
}

/// Waits until the index has been saved after `before`; returns when that was seen.
fn wait_for_save(marker: &Path, before: Option<SystemTime>) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        if saved_at(marker) != before {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err("the index was not saved within an hour".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// About `BIG_TEXT_WORDS` words of the Python documentation's reStructuredText sources: real
/// text that the store does not hold (it holds the HTML pages).
fn big_text() -> Result<String> {
    let folder = Path::new(PYTHON_DOCS).join("_sources/library");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&folder)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    files.sort();
    let mut text = String::new();
    let mut words = 0;
    for file in files.iter().filter(|f| f.to_string_lossy().ends_with(".rst.txt")) {
        let part = std::fs::read_to_string(file)?;
        words += part.split_whitespace().count();
        text.push_str(&part);
        text.push_str("\n\n");
        if words >= BIG_TEXT_WORDS {
            return Ok(text);
        }
    }
    Err(format!("only {words} words in {}", folder.display()).into())
}

/// One ingest-then-delete cycle.
struct Cycle {
    chunks: u64,
    embedded: u64,
    ingest: f64,
    ingest_save: f64,
    delete: f64,
    delete_save: f64,
    /// The passages' texts, read while the source existed.
    texts: Vec<String>,
}

fn cycle(doppel: &Doppel, marker: &Path, text: &str) -> Result<Cycle> {
    let before = saved_at(marker);
    let mut embedded = 0;
    let started = Instant::now();
    let queued = doppel.add_text(TextRequest {
        twin: DEFAULT_TWIN,
        title: "latency bench: Python library sources".into(),
        text: text.to_string(),
    })?;
    let job = doppel
        .wait_for(&[queued.job_id], |event| {
            if let Event::JobEmbedding { total, .. } = event {
                embedded = *total;
            }
        })?
        .remove(0);
    let ingest = ms(started);
    let done = Instant::now();
    if job.state != JobState::Done {
        return Err(format!("the ingest job ended {:?}: {:?}", job.state, job.last_error).into());
    }
    let ingest_save = wait_for_save(marker, before)?.duration_since(done).as_secs_f64() * 1000.0;
    let source = job.source_id.ok_or("the job has no source")?;
    let chunks = doppel.source(source)?.chunk_count;
    let texts = doppel.chunks(source)?.into_iter().map(|c| c.text).collect();

    let before = saved_at(marker);
    let started = Instant::now();
    doppel.delete_source(source)?;
    let delete = ms(started);
    let done = Instant::now();
    let delete_save = wait_for_save(marker, before)?.duration_since(done).as_secs_f64() * 1000.0;
    Ok(Cycle { chunks, embedded, ingest, ingest_save, delete, delete_save, texts })
}

/// (d): ingesting a ~1,000-passage text into the open 100k store against deleting it.
fn delete_against_ingest(
    doppel: &Doppel,
    cache: &Path,
    embedder: &mut LocalEmbedder,
    url: &str,
) -> Result<()> {
    let fingerprint = match doppel.vector_status().model {
        Ok(info) => info.fingerprint,
        Err(reason) => return Err(format!("no vectors: {reason}").into()),
    };
    let marker =
        cache.join("data").join(doppel_core::INDEX_DIR).join(format!("{fingerprint}.generation"));
    if saved_at(&marker).is_none() {
        return Err(format!("no index marker at {}", marker.display()).into());
    }
    let text = big_text()?;
    println!(
        "| ingest vs delete (ms), {} passages in the store | ingest: queued → done | then index save | delete_source | then index save | ingest + save | delete + save |",
        doppel.vector_status().index_entries
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut cycles = Vec::new();
    for repeat in 1..=REPEATS {
        let c = cycle(doppel, &marker, &text)?;
        println!(
            "| run {repeat}: {} passages ({} embedded) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            c.chunks,
            c.embedded,
            c.ingest,
            c.ingest_save,
            c.delete,
            c.delete_save,
            c.ingest + c.ingest_save,
            c.delete + c.delete_save
        );
        cycles.push(c);
    }
    let median = |f: fn(&Cycle) -> f64| summary(&cycles.iter().map(f).collect::<Vec<_>>()).p50;
    println!(
        "| **median** | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        median(|c| c.ingest),
        median(|c| c.ingest_save),
        median(|c| c.delete),
        median(|c| c.delete_save),
        median(|c| c.ingest + c.ingest_save),
        median(|c| c.delete + c.delete_save)
    );
    println!();

    // Once more with a search every 50 ms meanwhile: how long does one wait at worst?
    let stop = AtomicBool::new(false);
    let (probed, waits) = std::thread::scope(|scope| -> Result<_> {
        let prober = scope.spawn(|| {
            let mut waits: Vec<(Instant, f64)> = Vec::new();
            let request = SearchRequest::new("configure the network interfaces");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if doppel.search(&request).is_err() {
                    break;
                }
                waits.push((started, ms(started)));
                std::thread::sleep(Duration::from_millis(50));
            }
            waits
        });
        let started = Instant::now();
        let result = cycle(doppel, &marker, &text);
        stop.store(true, Ordering::Relaxed);
        let waits = prober.join().map_err(|_| "the searching thread panicked")?;
        Ok((result.map(|c| (started, c))?, waits))
    })?;
    let (started, c) = probed;
    let ingest_end = started + Duration::from_secs_f64((c.ingest + c.ingest_save) / 1000.0);
    let worst = |from: Instant, to: Instant| {
        waits.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, w)| *w).fold(0.0, f64::max)
    };
    let end = Instant::now();
    println!(
        "with a hybrid search every 50 ms meanwhile ({} searches): ingest + save {:.0} ms, longest \
         search {:.0} ms; delete + save {:.0} ms, longest search {:.0} ms",
        waits.len(),
        c.ingest + c.ingest_save,
        worst(started, ingest_end),
        c.delete + c.delete_save,
        worst(ingest_end, end)
    );

    // Ingesting with the local model would also embed those passages: the same texts, embedded
    // as the worker does (sorted by length, batches of 16), by the local model and through the
    // loopback server, give the difference. The worker is idle now (the last save is done).
    let mut texts = c.texts;
    texts.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    texts.dedup();
    let started = Instant::now();
    for batch in texts.chunks(16) {
        let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
        embedder.embed(&batch)?;
    }
    let local = started.elapsed().as_secs_f64();
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    for batch in texts.chunks(16) {
        let body = serde_json::json!({ "model": MODEL, "input": batch }).to_string();
        client.post(format!("{url}/api/embed")).body(body).send()?.text()?;
    }
    let remote = started.elapsed().as_secs_f64();
    println!(
        "embedding those {} passages (batches of 16): local model {local:.1} s ({:.0} passages/s), \
         loopback server {remote:.2} s",
        texts.len(),
        texts.len() as f64 / local
    );
    Ok(())
}

/// Answers one Ollama `/api/embed` request: every input text's words hashed into `DIMENSION`
/// buckets (the client normalises).
fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let texts = request["input"].as_array().cloned().unwrap_or_default();
    if let [query] = texts.as_slice()
        && let Some(local) = LOCAL_COST.lock().ok().as_mut().and_then(|l| l.as_mut())
    {
        local.embed(&[query.as_str().unwrap_or_default()]).map_err(std::io::Error::other)?;
    }
    let mut out = String::with_capacity(32 + texts.len() * DIMENSION * 3);
    out.push_str("{\"embeddings\":[");
    for (i, text) in texts.iter().enumerate() {
        out.push_str(if i == 0 { "[" } else { ",[" });
        for (j, x) in bag_of_words(text.as_str().unwrap_or_default()).iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "{x}");
        }
        out.push(']');
    }
    out.push_str("]}");
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        out.len()
    );
    let mut stream = &stream;
    stream.write_all(head.as_bytes())?;
    stream.write_all(out.as_bytes())
}

/// Words (of three or more characters) hashed into `DIMENSION` buckets, as in `tests/remote.rs`:
/// texts that share words get close vectors. Never all zero.
fn bag_of_words(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0; DIMENSION];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        let hash = word
            .chars()
            .flat_map(char::to_lowercase)
            .fold(2_166_136_261_u32, |h, c| (h ^ c as u32).wrapping_mul(16_777_619));
        vector[hash as usize % DIMENSION] += 1.0;
    }
    vector[DIMENSION - 1] += 0.01;
    vector
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({model}), {memory:.0} GB; load average {}", load_average())
}
