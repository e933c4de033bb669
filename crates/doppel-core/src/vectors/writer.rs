//! The write side of vectors, used by the worker thread only: it loads the embedding model and
//! the index, embeds passages, gives stored passages their missing vectors, applies every
//! committed change to the index, and saves it.
//!
//! Reading a saved index and rebuilding one from the stored vectors run on a thread of their
//! own, so that opening a data directory never waits for them and neither do the worker's
//! commands; changes applied meanwhile are journaled and replayed on the result (see
//! [`super::Vectors`]). The rebuild reads the vectors in short transactions of its own
//! connection, so that it never holds the write-ahead log against a delete's checkpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tracing::{info, warn};

use super::index::{HnswParams, VectorIndex};
use super::{Phase, QUICK_REBUILD, Vectors, disagreement};
use crate::embed::{
    Embedder, EmbedderChoice, LocalEmbedder, ModelFiles, ModelInfo, RemoteEmbedder, RemotePolicy,
    to_blob,
};
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::logging::redact_urls;
use crate::metrics::{Metric, Metrics};
use crate::settings::Settings;
use crate::store;
use crate::sync::{lock, read, write};

/// How many passages are embedded in one batch.
pub(crate) const EMBED_BATCH: usize = 16;

/// How many stored vectors a rebuild reads per transaction.
const READ_BATCH: u32 = 4096;

/// Where the writer finds what it loads.
pub(crate) struct WriterConfig {
    /// The folder of index files.
    pub index_dir: PathBuf,
    /// The database, which a rebuild reads through a connection of its own.
    pub database: PathBuf,
    /// The local embedding model's files.
    pub models: ModelFiles,
}

/// The worker's handle on vectors.
pub(crate) struct VectorWriter {
    vectors: Arc<Vectors>,
    events: Arc<EventBus>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    params: HnswParams,
    policy: RemotePolicy,
    /// Reading or rebuilding an index in the background.
    background: Option<Background>,
}

struct Background {
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Index entries added ahead of their commit, taken out again unless [`Provisional::keep`]
/// says the commit succeeded (a failed commit, an error or a panic in between).
pub(crate) struct Provisional<'a> {
    vectors: &'a Vectors,
    ids: Vec<u64>,
}

impl Provisional<'_> {
    /// The commit succeeded: the entries stay.
    pub(crate) fn keep(mut self) {
        self.ids.clear();
    }
}

impl Drop for Provisional<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.vectors.apply(&self.ids, &[]);
        }
    }
}

impl VectorWriter {
    pub(crate) fn new(
        vectors: Arc<Vectors>,
        events: Arc<EventBus>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
        settings: &Settings,
    ) -> VectorWriter {
        VectorWriter {
            vectors,
            events,
            metrics,
            config,
            params: settings.hnsw(),
            policy: RemotePolicy::of(settings),
            background: None,
        }
    }

    /// Says, before the worker's thread runs, that it will load the embedder first (see
    /// [`VectorWriter::start`]): readers that need it wait for it.
    pub(crate) fn starting(&self) {
        self.vectors.set_starting(true);
    }

    /// Loads the chosen embedder and starts reading (or rebuilding) its index in the
    /// background. Without a model, Doppel works on with keyword search and says why. A model
    /// server is not contacted here: a model it served before is known by its recorded
    /// dimension, and a new one is set up by the first batch that needs it.
    pub(crate) fn start(&mut self, conn: &Connection) {
        self.load(conn);
        // Readers held while the embedder loaded go on (an index being read holds them on).
        self.vectors.set_starting(false);
    }

    fn load(&mut self, conn: &Connection) {
        let embedder = match self.load_embedder(conn) {
            Ok(embedder) => embedder,
            Err(e) => {
                warn!(error = %redact_urls(&e.for_log()), "vector search unavailable");
                lock(&self.vectors.state).unavailable = Some(unavailable_reason(e));
                return;
            }
        };
        let info = embedder.info().clone();
        *lock(&self.vectors.queries) = embedder.for_queries();
        *lock(&self.vectors.embedder) = Some(embedder);
        lock(&self.vectors.state).embedder = true;
        if info.dimension == 0 {
            lock(&self.vectors.state).unavailable =
                Some("the embedding server has not been reached yet".into());
            return;
        }
        if let Err(e) = self.open_model(conn, &info) {
            warn!(error = %e, "vector index unavailable");
            lock(&self.vectors.state).unavailable = Some(unavailable_reason(e));
        }
    }

    /// Saves the index, drops the embedder and its index, and loads the chosen ones.
    pub(crate) fn reload(&mut self, conn: &Connection) {
        self.stop_background();
        self.save(conn);
        *write(&self.vectors.slot) = Default::default();
        *lock(&self.vectors.embedder) = None;
        *lock(&self.vectors.queries) = None;
        *lock(&self.vectors.state) = Default::default();
        self.vectors.phase_changed.notify_all();
        self.start(conn);
    }

    /// Ends background work and saves what changed: the worker is stopping.
    pub(crate) fn stop(&mut self, conn: &Connection) {
        // A load or a quick rebuild (what readers wait for) is let finish, so that its index is
        // saved and the next start need not rebuild it; a long rebuild is cancelled.
        self.vectors.settled_state();
        self.stop_background();
        self.save(conn);
    }

    /// Applies a setting that was just saved: the search candidate list and a model server's
    /// timeouts at once, the graph's shape by a rebuild in the background while the current
    /// index goes on serving.
    pub(crate) fn apply_setting(&mut self, conn: &Connection, key: &str, settings: &Settings) {
        self.params = settings.hnsw();
        self.policy = RemotePolicy::of(settings);
        match key {
            "hnsw_ef_search" => {
                if let Some(index) = write(&self.vectors.slot).live.as_mut() {
                    index.change_ef_search(self.params.ef_search);
                }
            }
            "embed_timeout_s" | "embed_retries" => {
                for embedder in [&self.vectors.embedder, &self.vectors.queries] {
                    if let Some(embedder) = lock(embedder).as_mut()
                        && let Err(e) = embedder.set_policy(self.policy)
                    {
                        warn!(error = %e, "the model server's new timeouts could not be applied");
                    }
                }
            }
            "hnsw_m" | "hnsw_ef_construction" => {
                if let Some((model, info)) = self.vectors.model_now() {
                    self.begin_background(conn, model, &info, false);
                }
            }
            _ => {}
        }
    }

    /// Reaps finished background work, and rebuilds an index that a failed change left out of
    /// line with the database. Cheap; the worker calls it between commands and jobs.
    pub(crate) fn poll(&mut self, conn: &Connection) {
        if self.background.as_ref().is_some_and(|b| b.thread.is_finished())
            && let Some(done) = self.background.take()
        {
            drop(done.thread.join());
        }
        let broken = self.background.is_none() && read(&self.vectors.slot).broken;
        if broken && let Some((model, info)) = self.vectors.model_now() {
            warn!("the vector index is out of line with the stored vectors; rebuilding it");
            self.begin_background(conn, model, &info, false);
        }
    }

    /// Whether an index is being read or rebuilt in the background.
    pub(crate) fn busy(&self) -> bool {
        self.background.is_some()
    }

    /// The loaded model's row id, setting up a model server's model on first use (its first
    /// answer tells the dimension). `None` when there is no embedder at all.
    pub(crate) fn active_model(&mut self, conn: &Connection) -> Result<Option<i64>> {
        if let Some((model, _)) = self.vectors.model_now() {
            return Ok(Some(model));
        }
        let info = {
            let mut embedder = lock(&self.vectors.embedder);
            let Some(embedder) = embedder.as_mut() else { return Ok(None) };
            if embedder.info().dimension == 0 {
                embedder.embed(&["dimension probe"])?;
            }
            embedder.info().clone()
        };
        self.open_model(conn, &info).map(Some)
    }

    /// Embeds one batch of texts.
    pub(crate) fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let started = std::time::Instant::now();
        let mut embedder = lock(&self.vectors.embedder);
        let embedder = embedder
            .as_mut()
            .ok_or_else(|| Error::ModelUnavailable { reason: "unloaded".into() })?;
        let vectors = embedder.embed(texts)?;
        let label = if embedder.is_remote() { "server" } else { "local" };
        self.metrics.record_since(Metric::EmbedTime, label, started);
        self.metrics.record(Metric::EmbedPassages, label, texts.len() as f64);
        Ok(vectors)
    }

    /// Adds vectors to the index ahead of the commit that stores them, so that the moment
    /// their passages are visible they are found by meaning too (until the commit, readers
    /// cannot see the chunks they point at, and searches drop them).
    pub(crate) fn add_ahead(&self, added: &[(u64, &Vec<f32>)]) -> Provisional<'_> {
        self.vectors.apply(&[], added);
        Provisional { vectors: &self.vectors, ids: added.iter().map(|(id, _)| *id).collect() }
    }

    /// Takes removed passages out of the index after their commit. The saved index file holds
    /// their vectors: it goes at once, whatever the queue or the index size, and is written
    /// again, without them, when the worker is idle or stops. A kill before then costs a rebuild
    /// from the stored vectors at the next start, as any unsaved change does.
    pub(crate) fn remove_committed(&self, removed: &[i64]) {
        if removed.is_empty() {
            return;
        }
        let removed: Vec<u64> = removed.iter().map(|&id| id as u64).collect();
        self.vectors.apply(&removed, &[]);
        self.remove_saved_index();
        self.remove_other_index_files();
    }

    /// Recounts the passages waiting for a vector after a delete (it can only lower the count).
    pub(crate) fn recount_after_delete(&self, conn: &Connection) {
        if lock(&self.vectors.state).pending > 0 {
            self.count_pending(conn);
        }
    }

    /// Saves the index with the generation it now holds, if it changed since its last save.
    pub(crate) fn save(&self, conn: &Connection) {
        let Some((model, info)) = self.vectors.model_now() else { return };
        if !self.unsaved() {
            return;
        }
        let result = store::generation(conn, model).and_then(|generation| {
            let slot = read(&self.vectors.slot);
            let Some(index) = slot.live.as_ref() else { return Ok(()) };
            index.save()?;
            let (_, marker) = self.index_paths(&info);
            std::fs::write(&marker, generation.to_string()).map_err(|e| Error::io(&marker, e))
        });
        match result {
            Ok(()) => write(&self.vectors.slot).dirty = false,
            Err(e) => {
                warn!(error = %e, "vector index not saved; it will be rebuilt at the next start")
            }
        }
    }

    /// Whether the live index changed since it was saved (a broken one is never saved).
    pub(crate) fn unsaved(&self) -> bool {
        let slot = read(&self.vectors.slot);
        slot.dirty && !slot.broken
    }

    /// The index and the database agree both ways: every live vector is in the index, and the
    /// index holds nothing else. Only the worker changes either, so no change is half-made. A
    /// saved index being read is waited for; a rebuild is reported as such.
    pub(crate) fn check(&self, conn: &Connection) -> Result<()> {
        let state = self.vectors.settled_state();
        let Some((model, _)) = state.model else { return Ok(()) };
        if let Phase::Rebuilding { done, total, .. } = state.phase {
            return Err(Error::Index {
                reason: format!(
                    "it is being rebuilt from the stored vectors ({done} of {total}); search by \
                     meaning returns when it is done"
                ),
            });
        }
        let stored: std::collections::HashSet<u64> =
            store::live_vector_ids(conn, model)?.into_iter().collect();
        let slot = read(&self.vectors.slot);
        let Some(index) = slot.live.as_ref() else { return Ok(()) };
        let (missing, extra) = disagreement(index, &stored);
        if missing + extra == 0 {
            return Ok(());
        }
        Err(Error::Corrupt(format!(
            "the vector index lacks {missing} of the stored vectors and holds {extra} that are not \
             stored; restart to rebuild it"
        )))
    }

    /// Embeds one batch of stored passages that have no vector from the loaded model, and
    /// stores and indexes their vectors. Returns whether there was anything to do. A failure is
    /// recorded for the person (`doppel embedder`, the window) and tried again later.
    pub(crate) fn backfill(&mut self, conn: &mut Connection) -> bool {
        match self.backfill_batch(conn) {
            Ok(embedded) => embedded,
            Err(e) => {
                let reason = redact_urls(&e.to_string());
                warn!(error = %redact_urls(&e.for_log()), "embedding of older passages postponed");
                lock(&self.vectors.state).stalled = Some(reason.clone());
                self.events.publish(Event::BackfillStalled { reason });
                false
            }
        }
    }

    fn backfill_batch(&mut self, conn: &mut Connection) -> Result<bool> {
        if !self.vectors.has_embedder_now() {
            return Ok(false);
        }
        // The running count says whether there is work, so an idle worker does not scan every
        // passage after each job. Jobs store a vector with each passage, so only a change of
        // model makes the count grow, and it is recounted then.
        let (loaded, pending) = {
            let state = lock(&self.vectors.state);
            (state.model.is_some(), state.pending)
        };
        match (loaded, pending) {
            (true, 0) => return Ok(false),
            (true, _) => {}
            // A model server not asked yet: only worth asking when there are passages.
            (false, _) => {
                if store::count(conn, store::Table::Chunks)? == 0 {
                    return Ok(false);
                }
            }
        }
        let Some(model) = self.active_model(conn)? else { return Ok(false) };
        let rows = store::chunks_without_vectors(conn, model, EMBED_BATCH as u32)?;
        if rows.is_empty() {
            lock(&self.vectors.state).pending = 0;
            return Ok(false);
        }
        let texts: Vec<&str> = rows.iter().map(|(_, _, text)| text.as_str()).collect();
        let vectors = self.embed(&texts)?;
        let blobs: Vec<(String, Vec<u8>)> =
            rows.iter().zip(&vectors).map(|((_, hash, _), v)| (hash.clone(), to_blob(v))).collect();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store::insert_embeddings(&tx, model, &blobs)?;
        store::bump_generations(&tx)?;
        let added: Vec<(u64, &Vec<f32>)> =
            rows.iter().zip(&vectors).map(|((id, _, _), v)| (*id as u64, v)).collect();
        let provisional = self.add_ahead(&added);
        tx.commit()?;
        provisional.keep();
        let remaining = store::count_without_vectors(conn, model)?;
        {
            let mut state = lock(&self.vectors.state);
            state.pending = remaining;
            state.stalled = None;
        }
        self.events.publish(Event::Backfill { embedded: rows.len() as u64, remaining });
        Ok(true)
    }

    /// The embedder the stored choice names.
    fn load_embedder(&self, conn: &Connection) -> Result<Embedder> {
        match store::embedder_choice(conn)? {
            EmbedderChoice::Local => {
                Ok(Embedder::Local(Box::new(LocalEmbedder::load(&self.config.models)?)))
            }
            EmbedderChoice::Remote { kind, url, model } => {
                // A server no key was stored for is asked without one, keychain untouched.
                let key = match store::key_stored(conn, &url)? {
                    false => None,
                    true => crate::secrets::api_key(&url).unwrap_or_else(|e| {
                        warn!(error = %e, "no API key could be read; the server is asked without one");
                        None
                    }),
                };
                let mut embedder = RemoteEmbedder::new(kind, &url, &model, key, self.policy, 0)?;
                if let Some((_, dimension)) =
                    store::model_by_fingerprint(conn, &embedder.info.fingerprint)?
                {
                    embedder.info.dimension = dimension;
                }
                Ok(Embedder::Remote(Box::new(embedder)))
            }
        }
    }

    /// Records the model, makes it the one searches use and starts reading its index.
    fn open_model(&mut self, conn: &Connection, info: &ModelInfo) -> Result<i64> {
        let model = store::ensure_model(conn, info)?;
        // The index is on its way before searches see the model, so that they wait for it.
        self.begin_background(conn, model, info, true);
        {
            let mut state = lock(&self.vectors.state);
            state.model = Some((model, info.clone()));
            state.unavailable = None;
        }
        self.count_pending(conn);
        Ok(model)
    }

    /// Starts reading the saved index (when `try_saved`: it is used if it holds the
    /// database's current generation) or rebuilding one from the stored vectors, on a thread
    /// of its own. The live index, if any, goes on serving until the result replaces it.
    fn begin_background(
        &mut self,
        conn: &Connection,
        model: i64,
        info: &ModelInfo,
        try_saved: bool,
    ) {
        self.stop_background();
        let generation = match store::generation(conn, model) {
            Ok(generation) => generation,
            Err(e) => {
                warn!(error = %e, "the vector index cannot be loaded");
                return;
            }
        };
        let (file, marker) = self.index_paths(info);
        let job = Build {
            vectors: Arc::clone(&self.vectors),
            events: Arc::clone(&self.events),
            database: self.config.database.clone(),
            model,
            dimension: info.dimension,
            params: self.params,
            file,
            saved: try_saved.then_some((marker, generation)),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        self.vectors.begin_journal();
        // Until the vectors are counted, a rebuild holds readers as a load does.
        self.vectors.set_phase(if try_saved {
            Phase::Loading
        } else {
            Phase::Rebuilding { done: 0, total: 0, quick: true }
        });
        let cancel = Arc::clone(&job.cancel);
        match std::thread::Builder::new().name("doppel-index".into()).spawn(move || job.run()) {
            Ok(thread) => self.background = Some(Background { cancel, thread }),
            Err(e) => {
                warn!(error = %e, "the vector index could not be loaded: no thread");
                self.vectors.end_journal();
                self.vectors.set_phase(Phase::Idle);
            }
        }
    }

    fn stop_background(&mut self) {
        if let Some(background) = self.background.take() {
            background.cancel.store(true, Ordering::Relaxed);
            drop(background.thread.join());
        }
    }

    /// Counts the passages still waiting for a vector from the loaded model.
    fn count_pending(&self, conn: &Connection) {
        let Some((model, _)) = self.vectors.model_now() else { return };
        match store::count_without_vectors(conn, model) {
            Ok(pending) => lock(&self.vectors.state).pending = pending,
            Err(e) => warn!(error = %e, "could not count passages waiting for vectors"),
        }
    }

    fn remove_saved_index(&self) {
        let Some((_, info)) = self.vectors.model_now() else { return };
        let (file, marker) = self.index_paths(&info);
        // The marker first: an index file without it is rebuilt, never trusted.
        for path in [marker, file] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(error = %e, file = %path.display(), "a saved index file could not be removed");
            }
        }
    }

    /// Index files of models other than the loaded one may hold vectors just removed; they go
    /// (a model chosen again rebuilds its index from the database).
    fn remove_other_index_files(&self) {
        let current = self.vectors.model_now().map(|(_, info)| info.fingerprint);
        let Ok(entries) = std::fs::read_dir(&self.config.index_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            // Files of an older index format (`.usearch`) go too.
            let kept = path.extension().is_some_and(|e| e == "hnsw" || e == "generation");
            if (Some(stem) != current.as_deref() || !kept)
                && let Err(e) = std::fs::remove_file(&path)
            {
                warn!(error = %e, file = %path.display(), "an old index file could not be removed");
            }
        }
    }

    fn index_paths(&self, info: &ModelInfo) -> (PathBuf, PathBuf) {
        let file = self.config.index_dir.join(format!("{}.hnsw", info.fingerprint));
        (file.clone(), file.with_extension("generation"))
    }
}

/// Reading or rebuilding one index, on its own thread.
struct Build {
    vectors: Arc<Vectors>,
    events: Arc<EventBus>,
    database: PathBuf,
    model: i64,
    dimension: usize,
    params: HnswParams,
    file: PathBuf,
    /// The marker file and the generation a saved index must hold to be used.
    saved: Option<(PathBuf, i64)>,
    cancel: Arc<AtomicBool>,
}

impl Build {
    fn run(self) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.index()))
            .unwrap_or_else(|_| Err(Error::Internal { during: "the vector index's rebuild" }));
        match outcome {
            Ok((index, saved)) => self.vectors.install(index, saved),
            Err(e) => {
                self.vectors.end_journal();
                if !matches!(e, Error::Cancelled) {
                    warn!(error = %e, "the vector index could not be rebuilt");
                    lock(&self.vectors.state).unavailable =
                        Some(format!("the vector index could not be rebuilt: {e}"));
                }
            }
        }
        self.vectors.set_phase(Phase::Idle);
    }

    /// The saved index if it holds the expected generation, else one built from the stored
    /// vectors; with whether it matches its saved file.
    fn index(&self) -> Result<(VectorIndex, bool)> {
        if let Some((marker, generation)) = &self.saved {
            let held: Option<i64> =
                std::fs::read_to_string(marker).ok().and_then(|t| t.trim().parse().ok());
            if held == Some(*generation)
                && let Some(index) =
                    VectorIndex::load(self.file.clone(), self.dimension, self.params)
            {
                return Ok((index, true));
            }
            info!(
                ?held,
                generation,
                "vector index is stale or missing; rebuilding it from the stored vectors"
            );
        }
        self.vectors.set_phase(Phase::Rebuilding { done: 0, total: 0, quick: true });
        let stored = self.read_stored()?;
        let total = stored.len() as u64;
        let held = crate::faults::rebuild_held(&self.database);
        let quick = total <= QUICK_REBUILD && !held;
        self.vectors.set_phase(Phase::Rebuilding { done: 0, total, quick });
        if held {
            crate::faults::wait_while_rebuild_held(&self.database, &self.cancel)?;
        }
        let index = VectorIndex::build(
            self.file.clone(),
            self.dimension,
            self.params,
            &stored,
            &self.cancel,
            |done, total| {
                self.vectors.set_phase(Phase::Rebuilding { done, total, quick });
                self.events.publish(Event::IndexRebuild { done, total });
            },
        )?;
        Ok((index, false))
    }

    /// Every live vector of the model, read a batch per transaction.
    fn read_stored(&self) -> Result<Vec<(u64, Vec<f32>)>> {
        let conn = store::open_reader(&self.database)?;
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let batch = store::live_vectors_after(&conn, self.model, after, READ_BATCH)?;
            let Some(&(last, _)) = batch.last() else { return Ok(stored) };
            after = last;
            stored.extend(batch);
        }
    }
}

/// Why vectors are unavailable, without the "embedding model unavailable" prefix that the
/// search error adds back.
fn unavailable_reason(e: Error) -> String {
    match e {
        Error::ModelUnavailable { reason } => reason,
        other => other.to_string(),
    }
}
