//! What several benchmarks share.

use std::error::Error;
use std::path::PathBuf;

use doppel_core::{Config, DEFAULT_TWIN, Doppel, IngestRequest};

/// Ingests `pages` without a model (keyword index only) into a throwaway data directory and
/// returns their distinct passages, in origin and passage order, with the number of sources.
pub fn distinct_passages(pages: Vec<PathBuf>) -> Result<(Vec<String>, usize), Box<dyn Error>> {
    let work = tempfile::tempdir()?;
    let no_models = work.path().join("no-models");
    std::fs::create_dir_all(&no_models)?;
    let mut config = Config::new(work.path().join("data"));
    config.models = Some(no_models);
    let doppel = Doppel::open(config)?;
    let report = doppel.ingest(IngestRequest::paths(pages))?;
    let jobs: Vec<_> = report.queued.iter().map(|q| q.job_id).collect();
    doppel.wait_for(&jobs, |_| {})?;
    let mut sources = doppel.sources(DEFAULT_TWIN)?;
    sources.sort_by(|a, b| a.origin.cmp(&b.origin));
    let mut passages = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for source in &sources {
        let mut chunks = doppel.chunks(source.id)?;
        chunks.sort_by_key(|c| c.ordinal);
        for chunk in chunks {
            if seen.insert(chunk.text_hash.clone()) {
                passages.push(chunk.text);
            }
        }
    }
    Ok((passages, sources.len()))
}
