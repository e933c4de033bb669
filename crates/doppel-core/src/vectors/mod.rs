//! Vectors: the one owner of the embedding model, the HNSW index and what search by meaning can
//! use right now.
//!
//! - **Read side** ([`Vectors`], any thread): the status, a query's nearest passages, the
//!   similarity of texts to a question. Readers never wait for a rebuild: while the index is
//!   rebuilt from the stored vectors, search by meaning is unavailable and says why (the caller
//!   falls back to keywords). They wait only for a saved index being read at open.
//! - **Write side** ([`VectorWriter`], the worker thread only): load the model and the index,
//!   embed passages, fill in missing vectors, apply each committed change, save, check.
//!
//! Invariants, each checked by a test named in ARCHITECTURE.md:
//! - The database is the truth. Every vector lives in the `embeddings` table, written in the
//!   transaction of its passage; the index is a copy keyed by chunk id that can always be rebuilt
//!   from it, and `doctor` compares the two both ways.
//! - Vectors of different models never mix: the index belongs to the loaded model.
//! - A change made while the index is loaded or rebuilt in the background is journaled and
//!   replayed on the result before it goes live, so nothing applied meanwhile is lost.
//! - No file holds a removed vector once its removal returns: the saved file goes at the first
//!   removal and is written again, without it, when the worker is idle.
//!
//! It never writes to the database except through the worker's connection, and never decides
//! what a passage is: that is the worker's and the store's.

pub(crate) mod index;
mod writer;

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

pub(crate) use writer::{EMBED_BATCH, VectorWriter, WriterConfig};

use crate::embed::{Embedder, ModelInfo};
use crate::error::{Error, Result};
use crate::sync::{lock, read, write};
use index::VectorIndex;

/// What search by meaning can use right now; read without waiting for the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorStatus {
    /// The embedding model in use, or why there is none.
    pub model: std::result::Result<ModelInfo, String>,
    /// Entries in the vector index.
    pub index_entries: u64,
    /// Passages still waiting for a vector from the model (after a change of model, until the
    /// re-embedding is done); searches use keywords meanwhile.
    pub waiting: u64,
    /// The candidate list searches use (setting `hnsw_ef_search`); 0 without an index.
    pub ef_search: usize,
    /// While the index is rebuilt from the stored vectors in the background: vectors added so
    /// far and in all. Search by meaning waits for nothing meanwhile: it is unavailable until the
    /// rebuild ends, unless an index is live beside it (a rebuild with new parameters).
    pub rebuilding: Option<(u64, u64)>,
    /// Why the last background embedding failed, until one succeeds.
    pub stalled: Option<String>,
}

/// A chunk id found by meaning, with its similarity to the query.
pub(crate) type Match = (u64, f32);

/// The longest a reader waits for a saved index that is being read at open (about a quarter of
/// a second per 100,000 passages), or for a quick rebuild, before it goes on without vectors.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// The state of vectors, shared by the worker (which changes it) and every reader.
#[derive(Default)]
pub(crate) struct Vectors {
    /// The embedding model: the worker embeds batches with it, searches one query.
    embedder: Mutex<Option<Embedder>>,
    /// A model server's second client, for searches' queries (see [`Embedder::for_queries`]).
    queries: Mutex<Option<Embedder>>,
    /// The live index, and the journal of changes while another is being prepared.
    slot: RwLock<Slot>,
    state: Mutex<State>,
    /// Signalled whenever `state.phase` changes.
    phase_changed: Condvar,
}

impl std::fmt::Debug for Vectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vectors").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Slot {
    live: Option<VectorIndex>,
    /// While an index is read or rebuilt in the background: every change applied since it
    /// began, in order, replayed on it before it goes live.
    journal: Option<Vec<Change>>,
    /// The live index differs from its saved file.
    dirty: bool,
    /// A change could not be applied to the live index: it serves on until a rebuild replaces
    /// it, and is never saved.
    broken: bool,
}

/// A change applied to the index.
enum Change {
    Add(u64, Vec<f32>),
    Remove(Vec<u64>),
}

/// What the worker has loaded, and how far background work has come.
#[derive(Debug, Clone, Default)]
struct State {
    /// The loaded model's row id and description.
    model: Option<(i64, ModelInfo)>,
    /// Why vectors are unavailable, when they are.
    unavailable: Option<String>,
    /// Passages that have no vector from the loaded model yet.
    pending: u64,
    /// Why the last background embedding failed, until one succeeds.
    stalled: Option<String>,
    /// An embedder is loaded (known without waiting for the worker's batch to end).
    embedder: bool,
    /// The worker is loading the embedder at open, and has not yet said what it loaded (the
    /// data directory is open meanwhile: reads that need no vectors go on).
    starting: bool,
    phase: Phase,
}

/// Background work on the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Nothing runs.
    #[default]
    Idle,
    /// The saved index is being read.
    Loading,
    /// The index is being rebuilt from the stored vectors: vectors added so far and in all (0
    /// while they are read). A `quick` one (at most [`QUICK_REBUILD`] vectors) is waited for
    /// by readers as a load is; a longer one is not.
    Rebuilding { done: u64, total: u64, quick: bool },
}

impl Phase {
    /// Whether readers wait for it to end rather than go on without vectors.
    fn holds_readers(self) -> bool {
        matches!(self, Phase::Loading | Phase::Rebuilding { quick: true, .. })
    }
}

/// The most vectors a rebuild may hold for readers to wait for it (about five seconds of work
/// on two cores); a larger one runs while searches use keywords.
const QUICK_REBUILD: u64 = 10_000;

impl Vectors {
    /// What search by meaning can use right now. Waits only for a saved index being read.
    pub(crate) fn status(&self) -> VectorStatus {
        let state = self.settled_state();
        let slot = read(&self.slot);
        VectorStatus {
            model: match state.model {
                Some((_, info)) => Ok(info),
                None => Err(state.unavailable.unwrap_or_else(|| "not loaded".into())),
            },
            index_entries: slot.live.as_ref().map_or(0, |i| i.len() as u64),
            waiting: state.pending,
            ef_search: slot.live.as_ref().map_or(0, VectorIndex::ef_search),
            rebuilding: match state.phase {
                Phase::Rebuilding { done, total, .. } => Some((done, total)),
                _ => None,
            },
            stalled: state.stalled,
        }
    }

    /// The bytes the index in use takes in memory.
    pub(crate) fn memory_bytes(&self) -> u64 {
        read(&self.slot).live.as_ref().map_or(0, |i| i.memory_bytes() as u64)
    }

    /// The loaded model's row id and description (once the embedder is loaded at open).
    pub(crate) fn model(&self) -> Option<(i64, ModelInfo)> {
        self.started().model.clone()
    }

    /// Why the chosen model could not be loaded, when it could not.
    pub(crate) fn load_failure(&self) -> Option<String> {
        self.started().unavailable.clone()
    }

    /// Whether an embedder is loaded (a model server not asked yet counts).
    pub(crate) fn has_embedder(&self) -> bool {
        self.started().embedder
    }

    /// The loaded model, as the worker knows it now (the worker never waits for itself).
    pub(super) fn model_now(&self) -> Option<(i64, ModelInfo)> {
        lock(&self.state).model.clone()
    }

    /// Whether an embedder is loaded, as the worker knows it now.
    pub(super) fn has_embedder_now(&self) -> bool {
        lock(&self.state).embedder
    }

    /// The state once the embedder is loaded at open (or [`LOAD_WAIT`] has passed); unlike
    /// [`Vectors::settled_state`], it does not wait for the index.
    fn started(&self) -> MutexGuard<'_, State> {
        let state = lock(&self.state);
        let (state, _) = self
            .phase_changed
            .wait_timeout_while(state, LOAD_WAIT, |s| s.starting)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
    }

    /// Says whether the worker is loading the embedder at open: while it is, readers that need
    /// it wait.
    pub(crate) fn set_starting(&self, starting: bool) {
        lock(&self.state).starting = starting;
        self.phase_changed.notify_all();
    }

    /// The query's embedding, and the chunk ids nearest to it with their similarity, at least
    /// `min`. Fails, with the reason for the person, when search by meaning cannot run now.
    pub(crate) fn nearest(
        &self,
        query: &str,
        count: usize,
        min: f32,
    ) -> Result<(Vec<f32>, Vec<Match>)> {
        let state = self.settled_state();
        if state.model.is_none() {
            let reason = state.unavailable.unwrap_or_else(|| "no embedding model is loaded".into());
            return Err(Error::ModelUnavailable { reason });
        }
        if state.pending > 0 {
            return Err(Error::ModelUnavailable {
                reason: format!(
                    "passages are being embedded with the current model ({} still waiting)",
                    state.pending
                ),
            });
        }
        let vector = self.embed_one(query)?;
        let slot = read(&self.slot);
        let Some(index) = slot.live.as_ref() else {
            let reason = match (state.phase, state.unavailable) {
                (Phase::Rebuilding { done, total, .. }, _) => format!(
                    "the vector index is being rebuilt from the stored vectors ({done} of {total})"
                ),
                (_, Some(reason)) => reason,
                (_, None) => "the vector index is not loaded".into(),
            };
            return Err(Error::Index { reason });
        };
        let matches =
            index.search(&vector, count)?.into_iter().filter(|(_, s)| *s >= min).collect();
        Ok((vector, matches))
    }

    /// The similarity by meaning of `question` to each text (`None` without an embedder, or
    /// when it fails: callers then compare words).
    pub(crate) fn similarities(&self, question: &str, texts: &[&str]) -> Option<Vec<f32>> {
        let mut all = Vec::with_capacity(texts.len() + 1);
        all.push(question);
        all.extend_from_slice(texts);
        let vectors = self.embed_for_reader(&all).ok()?;
        let (query, others) = vectors.split_first()?;
        Some(others.iter().map(|v| cosine(query, v)).collect())
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.embed_for_reader(&[text])?.into_iter().next().unwrap_or_default())
    }

    /// Embeds for a reader: with a model server's second client when there is one, so that
    /// the worker's batch never holds a search up.
    fn embed_for_reader(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        drop(self.started());
        if let Some(embedder) = lock(&self.queries).as_mut() {
            return embedder.embed(texts);
        }
        let mut embedder = lock(&self.embedder);
        let embedder = embedder
            .as_mut()
            .ok_or_else(|| Error::ModelUnavailable { reason: "not loaded".into() })?;
        embedder.embed(texts)
    }

    /// The state once a saved index being read (or a quick rebuild) is done, or [`LOAD_WAIT`]
    /// has passed.
    fn settled_state(&self) -> State {
        let state = lock(&self.state);
        let (state, _) = self
            .phase_changed
            .wait_timeout_while(state, LOAD_WAIT, |s| s.starting || s.phase.holds_readers())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.clone()
    }

    fn set_phase(&self, phase: Phase) {
        lock(&self.state).phase = phase;
        self.phase_changed.notify_all();
    }

    /// Applies a change to the live index, and journals it while another index is prepared.
    /// Only the worker calls it (through [`VectorWriter`] and [`Provisional`]).
    ///
    /// Searches wait for neither part for long: a removal is worked out behind the read lock
    /// (only the worker changes the index, so the plan stays true) and only written behind the
    /// write lock, and additions take the write lock a few at a time.
    fn apply(&self, removed: &[u64], added: &[(u64, &Vec<f32>)]) {
        const ADDS_PER_LOCK: usize = 16;
        if !removed.is_empty() {
            let plan = read(&self.slot).live.as_ref().map(|index| index.plan_removal(removed));
            let mut slot = write(&self.slot);
            if let (Some(plan), Some(index)) = (plan, slot.live.as_mut()) {
                index.apply(plan);
            }
            if let Some(journal) = slot.journal.as_mut() {
                journal.push(Change::Remove(removed.to_vec()));
            }
            slot.dirty = true;
        }
        for batch in added.chunks(ADDS_PER_LOCK) {
            let mut slot = write(&self.slot);
            if let Some(journal) = slot.journal.as_mut() {
                journal.extend(batch.iter().map(|(id, v)| Change::Add(*id, (*v).clone())));
            }
            slot.dirty = true;
            let Some(index) = slot.live.as_mut() else { continue };
            if let Err(e) = batch.iter().try_for_each(|(id, v)| index.add(*id, v)) {
                tracing::warn!(error = %e, "vector index update failed; it will be rebuilt");
                slot.broken = true;
            }
        }
    }

    /// Puts `fresh` live once the changes journaled since it was begun are replayed on it
    /// (`saved`: it is the saved file's content). The long part of the replay runs outside the
    /// write lock; only what arrived meanwhile is replayed behind it.
    fn install(&self, mut fresh: VectorIndex, saved: bool) {
        let early = write(&self.slot).journal.as_mut().map(std::mem::take).unwrap_or_default();
        let mut changed = !early.is_empty();
        replay(&mut fresh, early);
        let mut slot = write(&self.slot);
        let late = slot.journal.take().unwrap_or_default();
        changed |= !late.is_empty();
        replay(&mut fresh, late);
        slot.live = Some(fresh);
        slot.dirty = !saved || changed;
        slot.broken = false;
    }

    /// Starts journaling changes for an index prepared in the background.
    fn begin_journal(&self) {
        let mut slot = write(&self.slot);
        slot.journal = Some(Vec::new());
        slot.broken = false;
    }

    /// Stops journaling: the background work ended without a result.
    fn end_journal(&self) {
        write(&self.slot).journal = None;
    }
}

fn replay(index: &mut VectorIndex, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::Add(id, vector) => {
                if let Err(e) = index.add(id, &vector) {
                    tracing::warn!(error = %e, "a vector could not be added to the rebuilt index");
                }
            }
            Change::Remove(ids) => index.remove(&ids),
        }
    }
}

/// Cosine similarity of two normalised vectors.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// How many stored ids the index lacks, and how many of its entries are not stored.
fn disagreement(index: &VectorIndex, stored: &HashSet<u64>) -> (usize, usize) {
    let missing = stored.iter().filter(|&&id| !index.contains(id)).count();
    let extra = index.keys().filter(|id| !stored.contains(id)).count();
    (missing, extra)
}
