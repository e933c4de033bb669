//! Doppel's HNSW vector index (Malkov and Yashunin's hierarchical navigable small worlds): cosine
//! search over f32 vectors keyed by `u64`, deletion in place, builds on every core, one file.
//!
//! - **Layout.** Each node's base-layer links are stored right after its vector, in one block
//!   padded to 32 bytes, so a visit reads one place; the upper layers (a node reaches
//!   level `l` with probability `m^-l`) live in a separate arena. Vectors are stored normalised,
//!   so cosine similarity is a dot product ([`distance`] picks AVX-512, AVX2 or portable code at
//!   run time), and a search prefetches the next candidate's vector while it scores this one.
//! - **Deleting** ([`Hnsw::remove`]) repairs the graph around the removed nodes: every node that
//!   linked to one of them picks new links among its remaining ones and the removed nodes'
//!   (hnswlib's repair), by the same heuristic as an insert. The removed nodes' bytes are zeroed
//!   and their slots reused. Its cost is one scan of the links plus work in proportion to the
//!   removed nodes; nothing is rebuilt.
//! - **Building on several threads** ([`Hnsw::build`]) locks each node's links while they are
//!   read or changed during construction (striped locks, never two at once), as hnswlib does,
//!   so no insert is lost.
//! - **On disk** ([`Hnsw::save`], [`Hnsw::load`]): one little-endian file, written to a
//!   temporary file and renamed. Loading checks every link, so a damaged file is refused, never
//!   followed.

mod distance;
mod file;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as Atomic};

pub use distance::kernel;
pub use file::LoadError;

use distance::{Dot, prefetch};

/// A free slot's key.
const FREE: u64 = u64::MAX;
/// No node.
const NONE: u32 = u32::MAX;
/// Locks shared by the nodes during a parallel build (node `s` uses `s % STRIPES`).
const STRIPES: usize = 4096;
/// Words (u32) in a cache line.
const LINE: usize = 16;
/// Node blocks are padded to a multiple of this many words (32 bytes, one AVX2 register), not
/// to whole cache lines: at 384 dimensions and m = 16 a node's 417 words would take 432 (60
/// bytes of padding a node, 3.5% of the index), and take 424. Distances load unaligned.
const BLOCK_ALIGN: usize = 8;
/// Cache lines of the next neighbour's vector a search prefetches while it scores this one
/// (the hardware's stream prefetcher follows on from there); 4 measured best of 1, 2, 4 and
/// all 24 of a 384-dimensional vector.
const PREFETCH_LINES: usize = 4;
/// The highest level a node may get (the chance of more is below 16^-24).
const MAX_LEVEL: usize = 24;

/// One cache line of the node blocks.
#[repr(C, align(64))]
#[derive(Clone, Copy, Default)]
struct Line([u32; LINE]);

/// Graph parameters, named as in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Links per node in the upper layers; twice as many in the base layer.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
}

/// An HNSW index of f32 vectors of one dimension, keyed by `u64` (any value but `u64::MAX`).
pub struct Hnsw {
    shape: Shape,
    /// Node blocks: `stride` words each: the normalised vector, the base-layer link count,
    /// `2m` link slots, padding to 32 bytes ([`BLOCK_ALIGN`]), so every block starts 32-byte
    /// aligned in this vector of cache lines.
    blocks: Vec<Line>,
    /// Upper-layer links: `1 + m` words per level (count, links), levels 1..=level in a row.
    arena: Vec<u32>,
    /// Where each node above level 0 has its levels 1.. in `arena`.
    upper: HashMap<u32, u32>,
    levels: Vec<u8>,
    /// Each slot's key; `FREE` for a free slot.
    keys: Vec<u64>,
    slots: HashMap<u64, u32>,
    free: Vec<u32>,
    top: Top,
    rng: u64,
    visited: Mutex<Vec<Visited>>,
    /// Bumped by every change, so that a removal planned before one is planned again.
    version: u64,
}

/// A removal worked out by [`Hnsw::plan_removal`], to be made by [`Hnsw::apply`].
pub struct Removal {
    version: u64,
    keys: Vec<u64>,
    dead: Vec<u32>,
    /// New link lists: (node, level, links).
    lists: Vec<(u32, u8, Vec<u32>)>,
    /// How many base-layer lists will name each slot.
    linked_from: Vec<u32>,
}

impl Removal {
    /// How many of its keys the index holds.
    pub fn len(&self) -> usize {
        self.dead.len()
    }

    /// Whether it removes nothing.
    pub fn is_empty(&self) -> bool {
        self.dead.is_empty()
    }
}

/// What does not change once the index exists.
#[derive(Clone, Copy)]
struct Shape {
    dim: usize,
    m: usize,
    ef_construction: usize,
    /// Words per node block.
    stride: usize,
    dot: Dot,
}

impl Shape {
    fn new(dim: usize, params: Params) -> Shape {
        let m = params.m.clamp(2, 255);
        let words = dim + 1 + 2 * m;
        Shape {
            dim,
            m,
            ef_construction: params.ef_construction.max(m),
            stride: words.div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN,
            dot: distance::best(),
        }
    }

    /// Cache lines that hold the blocks of `slots` nodes.
    fn lines(&self, slots: usize) -> usize {
        (slots * self.stride).div_ceil(LINE)
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 { 2 * self.m } else { self.m }
    }

    fn upper_words(&self, level: usize) -> usize {
        level * (1 + self.m)
    }
}

/// The entry point: the node at the highest level.
#[derive(Clone, Copy)]
struct Top {
    entry: u32,
    level: usize,
}

/// A node and its distance (1 − cosine) from the query.
#[derive(Clone, Copy, PartialEq)]
struct Near {
    distance: f32,
    slot: u32,
}

impl Eq for Near {}

impl Ord for Near {
    fn cmp(&self, other: &Near) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.slot.cmp(&other.slot))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Near) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Which nodes a search has seen: a mark per slot, valid when it equals the epoch.
#[derive(Default)]
struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn start(&mut self, slots: usize) {
        if self.marks.len() < slots {
            self.marks.resize(slots, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `slot`; false when it was marked already.
    #[inline(always)]
    fn first(&mut self, slot: u32) -> bool {
        let mark = &mut self.marks[slot as usize];
        let first = *mark != self.epoch;
        *mark = self.epoch;
        first
    }
}

/// Raw access to the blocks and the arena, shared by the threads of a build or a repair.
///
/// Vectors are written before a view exists and only read through it. Links are changed only by
/// the thread that holds the node's stripe lock (a build), or by the one task that owns that
/// node's list (a repair); see [`View::links`].
#[derive(Clone, Copy)]
struct View<'a> {
    shape: Shape,
    blocks: *mut u32,
    arena: *mut u32,
    upper: &'a HashMap<u32, u32>,
    locks: Option<&'a [Mutex<()>]>,
    /// During a build: which nodes are fully inserted. The others are passed over, as hnswlib
    /// locks a node for its whole insert: a search that entered a half-inserted node would link
    /// to it, and the node's own later write of its list would drop that link.
    ready: Option<&'a [std::sync::atomic::AtomicBool]>,
}

// SAFETY: see the type's documentation: writes through the pointers are made under the node's
// lock or by the node list's single owner.
unsafe impl Send for View<'_> {}
unsafe impl Sync for View<'_> {}

impl<'a> View<'a> {
    #[inline(always)]
    fn block(&self, slot: u32) -> *mut u32 {
        // SAFETY (for callers): `slot` is below the slot count, so the block is in bounds.
        self.blocks.wrapping_add(slot as usize * self.shape.stride)
    }

    #[inline(always)]
    fn vector(&self, slot: u32) -> &'a [f32] {
        // SAFETY: the block holds `dim` floats first; vectors do not change while a view exists.
        unsafe { std::slice::from_raw_parts(self.block(slot).cast::<f32>(), self.shape.dim) }
    }

    #[inline(always)]
    fn usable(&self, slot: u32) -> bool {
        self.ready.is_none_or(|ready| ready[slot as usize].load(Atomic::Acquire))
    }

    fn set_ready(&self, slot: u32) {
        if let Some(ready) = self.ready {
            ready[slot as usize].store(true, Atomic::Release);
        }
    }

    #[inline(always)]
    fn distance(&self, query: &[f32], slot: u32) -> f32 {
        1.0 - (self.shape.dot)(query, self.vector(slot))
    }

    /// The link list of `slot` at `level`: its count word, then the links.
    #[inline(always)]
    fn list(&self, slot: u32, level: usize) -> *mut u32 {
        if level == 0 {
            self.block(slot).wrapping_add(self.shape.dim)
        } else {
            let start = self.upper[&slot] as usize + (level - 1) * (1 + self.shape.m);
            self.arena.wrapping_add(start)
        }
    }

    /// The links of `slot` at `level`, read without a lock.
    ///
    /// # Safety
    /// No other thread may change this list meanwhile (a search, or the list's owner).
    #[inline(always)]
    unsafe fn links(&self, slot: u32, level: usize) -> &'a [u32] {
        let list = self.list(slot, level);
        // SAFETY: the count word is at most the level's link slots (kept by every write and
        // checked at load), all inside the block or the node's arena segment.
        unsafe { std::slice::from_raw_parts(list.add(1), *list as usize) }
    }

    /// Copies the links of `slot` at `level` into `out`, under its lock during a build.
    fn copy_links(&self, slot: u32, level: usize, out: &mut Vec<u32>) {
        let _guard = self.locks.map(|locks| lock(&locks[slot as usize % STRIPES]));
        out.clear();
        // SAFETY: under the lock (or with no other thread) nothing changes the list.
        out.extend_from_slice(unsafe { self.links(slot, level) });
    }

    /// Replaces the links of `slot` at `level`.
    ///
    /// # Safety
    /// The caller holds the node's lock, or owns the list (no other thread reads it).
    unsafe fn set_links(&self, slot: u32, level: usize, links: &[u32]) {
        assert!(links.len() <= self.shape.max_links(level), "more links than the list holds");
        let list = self.list(slot, level);
        // SAFETY: as for `links`; the list has room for `max_links(level)` links.
        unsafe {
            *list = links.len() as u32;
            std::ptr::copy_nonoverlapping(links.as_ptr(), list.add(1), links.len());
        }
    }

    /// Greedy descent from `from` through the levels above `down_to`, one best node each.
    fn descend(
        &self,
        query: &[f32],
        mut at: Near,
        levels: std::ops::RangeInclusive<usize>,
    ) -> Near {
        let mut links = Vec::with_capacity(2 * self.shape.m);
        for level in levels.rev() {
            loop {
                let mut moved = false;
                self.copy_links(at.slot, level, &mut links);
                for &next in links.iter().filter(|&&n| self.usable(n)) {
                    let distance = self.distance(query, next);
                    if distance < at.distance {
                        at = Near { distance, slot: next };
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        at
    }

    /// The `ef` nearest nodes to `query` at `level` reachable from `entry`, nearest first
    /// (the construction search: lists are copied under their locks).
    fn search_level(
        &self,
        query: &[f32],
        entry: Near,
        ef: usize,
        level: usize,
        visited: &mut Visited,
        links: &mut Vec<u32>,
    ) -> Vec<Near> {
        let mut frontier = Frontier::new(entry, ef, visited);
        while let Some(near) = frontier.next() {
            self.copy_links(near.slot, level, links);
            // As in a query's search: the next candidate's vector is fetched while this one is
            // scored (a build is mostly these searches).
            if let Some(&first) = links.first() {
                prefetch(self.block(first), PREFETCH_LINES);
            }
            for (i, &next) in links.iter().enumerate() {
                if let Some(&after) = links.get(i + 1) {
                    prefetch(self.block(after), PREFETCH_LINES);
                }
                if self.usable(next) && visited.first(next) {
                    frontier.offer(Near { distance: self.distance(query, next), slot: next });
                }
            }
        }
        frontier.found.into_sorted_vec()
    }

    /// The paper's neighbour heuristic: from `candidates` (nearest first), keeps a candidate
    /// only when it is nearer to the base than to every one kept, up to `m`.
    fn select(&self, candidates: &[Near], m: usize, out: &mut Vec<u32>) {
        out.clear();
        if candidates.len() <= m {
            out.extend(candidates.iter().map(|n| n.slot));
            return;
        }
        for candidate in candidates {
            if out.len() >= m {
                break;
            }
            let vector = self.vector(candidate.slot);
            if out.iter().all(|&kept| self.distance(vector, kept) > candidate.distance) {
                out.push(candidate.slot);
            }
        }
    }

    /// Links `new` from `node` at `level`, pruning `node`'s list by the heuristic when full.
    fn connect(&self, node: u32, new: u32, level: usize, scratch: &mut Scratch) {
        let _guard = self.locks.map(|locks| lock(&locks[node as usize % STRIPES]));
        // SAFETY: under the node's lock (or with no other thread).
        let links = unsafe { self.links(node, level) };
        if links.contains(&new) {
            return;
        }
        let max = self.shape.max_links(level);
        if links.len() < max {
            let list = self.list(node, level);
            // SAFETY: as above; there is room for one more link.
            unsafe {
                *list.add(1 + links.len()) = new;
                *list = links.len() as u32 + 1;
            }
            return;
        }
        let base = self.vector(node);
        scratch.near.clear();
        scratch.near.extend(
            links
                .iter()
                .chain([&new])
                .map(|&slot| Near { distance: self.distance(base, slot), slot }),
        );
        scratch.near.sort_unstable();
        let mut kept = std::mem::take(&mut scratch.kept);
        self.select(&scratch.near, max, &mut kept);
        // SAFETY: under the node's lock.
        unsafe { self.set_links(node, level, &kept) };
        scratch.kept = kept;
    }

    /// Inserts `slot` (its vector written, its upper levels allocated) at `level`.
    fn insert(&self, slot: u32, level: usize, top: &Mutex<Top>, scratch: &mut Scratch) {
        let mut guard = lock(top);
        let start = *guard;
        if start.entry == NONE {
            self.set_ready(slot);
            *guard = Top { entry: slot, level };
            return;
        }
        // A node that becomes the new entry point keeps the others out of the top until it is in.
        let held = (level > start.level).then_some(guard);
        let query = self.vector(slot);
        let mut at = Near { distance: self.distance(query, start.entry), slot: start.entry };
        if start.level > level {
            at = self.descend(query, at, level + 1..=start.level);
        }
        for l in (0..=level.min(start.level)).rev() {
            let mut found = self.search_level(
                query,
                at,
                self.shape.ef_construction,
                l,
                scratch.visited.again(),
                &mut scratch.links,
            );
            found.retain(|n| n.slot != slot);
            if found.is_empty() {
                continue;
            }
            let mut chosen = std::mem::take(&mut scratch.chosen);
            self.select(&found, self.shape.m, &mut chosen);
            {
                let _guard = self.locks.map(|locks| lock(&locks[slot as usize % STRIPES]));
                // SAFETY: under the node's lock.
                unsafe { self.set_links(slot, l, &chosen) };
            }
            for &neighbour in &chosen {
                self.connect(neighbour, slot, l, scratch);
            }
            scratch.chosen = chosen;
            at = found[0];
        }
        self.set_ready(slot);
        if let Some(mut guard) = held {
            *guard = Top { entry: slot, level };
        }
    }
}

/// The state of a best-first search of one level: candidates still to visit (nearest first) and
/// the `ef` nearest found so far.
struct Frontier {
    candidates: BinaryHeap<std::cmp::Reverse<Near>>,
    found: BinaryHeap<Near>,
    ef: usize,
    /// The farthest of `found`.
    worst: f32,
}

impl Frontier {
    fn new(entry: Near, ef: usize, visited: &mut Visited) -> Frontier {
        visited.first(entry.slot);
        let mut candidates = BinaryHeap::with_capacity(ef * 4);
        candidates.push(std::cmp::Reverse(entry));
        let mut found = BinaryHeap::with_capacity(ef + 1);
        found.push(entry);
        Frontier { candidates, found, ef, worst: entry.distance }
    }

    /// The next candidate to visit; `None` when none can improve what was found.
    fn next(&mut self) -> Option<Near> {
        let std::cmp::Reverse(near) = self.candidates.pop()?;
        (near.distance <= self.worst || self.found.len() < self.ef).then_some(near)
    }

    /// Takes `near` if it is among the `ef` nearest so far.
    #[inline(always)]
    fn offer(&mut self, near: Near) {
        if self.found.len() < self.ef || near.distance < self.worst {
            self.candidates.push(std::cmp::Reverse(near));
            self.found.push(near);
            if self.found.len() > self.ef {
                self.found.pop();
            }
            self.worst = self.found.peek().map_or(f32::INFINITY, |n| n.distance);
        }
    }
}

/// Buffers reused by the inserts of one thread.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    links: Vec<u32>,
    chosen: Vec<u32>,
    kept: Vec<u32>,
    near: Vec<Near>,
}

impl Visited {
    /// Starts another search over as many slots as the last one.
    fn again(&mut self) -> &mut Visited {
        let slots = self.marks.len();
        self.start(slots);
        self
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn normalised(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        vector.iter().map(|x| x / norm).collect()
    } else {
        vector.to_vec()
    }
}

/// Why an add or a build was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AddError {
    /// The vector's length is not the index's dimension.
    Dimension { expected: usize, got: usize },
    /// `u64::MAX` is reserved.
    ReservedKey,
    /// A value is not finite.
    NotFinite,
    /// More than `u32::MAX - 1` nodes.
    Full,
    /// A build was told to stop; the index holds part of what it was given.
    Cancelled,
}

impl std::fmt::Display for AddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddError::Dimension { expected, got } => {
                write!(f, "a vector of {got} values where the index holds {expected}")
            }
            AddError::ReservedKey => write!(f, "the key u64::MAX is reserved"),
            AddError::NotFinite => write!(f, "a vector with a value that is not finite"),
            AddError::Full => write!(f, "the index is full"),
            AddError::Cancelled => write!(f, "the build was cancelled"),
        }
    }
}

impl std::error::Error for AddError {}

impl Hnsw {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize, params: Params) -> Hnsw {
        Hnsw {
            shape: Shape::new(dim, params),
            blocks: Vec::new(),
            arena: Vec::new(),
            upper: HashMap::new(),
            levels: Vec::new(),
            keys: Vec::new(),
            slots: HashMap::new(),
            free: Vec::new(),
            top: Top { entry: NONE, level: 0 },
            rng: 0x2545_f491_4f6c_dd1d,
            visited: Mutex::new(Vec::new()),
            version: 0,
        }
    }

    /// The dimension of its vectors.
    pub fn dim(&self) -> usize {
        self.shape.dim
    }

    /// Its parameters.
    pub fn params(&self) -> Params {
        Params { m: self.shape.m, ef_construction: self.shape.ef_construction }
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether it holds `key`.
    pub fn contains(&self, key: u64) -> bool {
        self.slots.contains_key(&key)
    }

    /// Every key it holds, in no order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.keys().copied()
    }

    /// The bytes its structures take in memory (the node blocks, the arena, the maps).
    pub fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<Line>()
            + self.arena.capacity() * 4
            + self.keys.capacity() * 8
            + self.levels.capacity()
            + self.free.capacity() * 4
            + self.slots.capacity() * (8 + 4 + 1)
            + self.upper.capacity() * (4 + 4 + 1)
    }

    /// A view that may change links (see `View` for the rules).
    fn view(&mut self) -> View<'_> {
        View {
            shape: self.shape,
            blocks: self.blocks.as_mut_ptr().cast::<u32>(),
            arena: self.arena.as_mut_ptr(),
            upper: &self.upper,
            locks: None,
            ready: None,
        }
    }

    /// A view that is only read (searches).
    fn reader(&self) -> View<'_> {
        View {
            shape: self.shape,
            blocks: self.blocks.as_ptr().cast::<u32>().cast_mut(),
            arena: self.arena.as_ptr().cast_mut(),
            upper: &self.upper,
            locks: None,
            ready: None,
        }
    }

    fn level_for_next(&mut self) -> usize {
        // xorshift64*: a level with probability m^-level.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        let uniform = (bits as f64 + 0.5) / (1u64 << 53) as f64;
        let level = (-uniform.ln() / (self.shape.m as f64).ln()) as usize;
        level.min(MAX_LEVEL)
    }

    fn check(&self, key: u64, vector: &[f32]) -> Result<(), AddError> {
        if key == FREE {
            return Err(AddError::ReservedKey);
        }
        if vector.len() != self.shape.dim {
            return Err(AddError::Dimension { expected: self.shape.dim, got: vector.len() });
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(AddError::NotFinite);
        }
        Ok(())
    }

    /// A slot for `key` with `vector` written and its levels allocated (not yet linked).
    fn place(&mut self, key: u64, vector: &[f32]) -> Result<(u32, usize), AddError> {
        self.version += 1;
        let level = self.level_for_next();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.keys.len();
                if slot >= NONE as usize {
                    return Err(AddError::Full);
                }
                self.keys.push(FREE);
                self.levels.push(0);
                self.blocks.resize(self.shape.lines(slot + 1), Line::default());
                slot as u32
            }
        };
        let stride = self.shape.stride;
        let words = &mut self.words_mut()[slot as usize * stride..(slot as usize + 1) * stride];
        words.fill(0);
        for (word, value) in words.iter_mut().zip(normalised(vector)) {
            *word = value.to_bits();
        }
        self.keys[slot as usize] = key;
        self.levels[slot as usize] = level as u8;
        self.slots.insert(key, slot);
        if level > 0 {
            self.upper.insert(slot, self.arena.len() as u32);
            self.arena.extend(std::iter::repeat_n(0, self.shape.upper_words(level)));
        }
        Ok((slot, level))
    }

    fn words_mut(&mut self) -> &mut [u32] {
        let len = self.blocks.len() * LINE;
        // SAFETY: a `Line` is 16 u32 words with no padding.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u32>(), len) }
    }

    #[cfg(test)]
    fn words(&self) -> &[u32] {
        // SAFETY: as in `words_mut`.
        unsafe {
            std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u32>(), self.blocks.len() * LINE)
        }
    }

    /// Adds `key` with `vector`, replacing the vector it had.
    pub fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), AddError> {
        self.check(key, vector)?;
        if self.slots.contains_key(&key) {
            self.remove(&[key]);
        }
        let (slot, level) = self.place(key, vector)?;
        let top = Mutex::new(self.top);
        let mut scratch = self.scratch();
        self.view().insert(slot, level, &top, &mut scratch);
        self.top = *lock(&top);
        lock(&self.visited).push(scratch.visited);
        Ok(())
    }

    fn scratch(&self) -> Scratch {
        let mut visited = lock(&self.visited).pop().unwrap_or_default();
        visited.start(self.keys.len());
        Scratch { visited, ..Scratch::default() }
    }

    /// Adds every `(key, vector)` on `threads` threads (replacing the vectors of keys it had),
    /// telling `progress` how many are in, now and then and at the end. When `cancel` is set,
    /// every thread stops after its current insert and the build ends with
    /// [`AddError::Cancelled`], the index holding part of the items (to be thrown away).
    pub fn build(
        &mut self,
        items: &[(u64, &[f32])],
        threads: usize,
        cancel: &AtomicBool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), AddError> {
        for (key, vector) in items {
            self.check(*key, vector)?;
        }
        // The same key twice: the last vector wins.
        let last: HashMap<u64, usize> =
            items.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
        let replaced: Vec<u64> = last.keys().copied().filter(|k| self.contains(*k)).collect();
        self.remove(&replaced);
        self.keys.reserve(last.len());
        self.blocks.reserve(self.shape.lines(last.len()));
        let mut placed = Vec::with_capacity(last.len());
        for (i, (key, vector)) in items.iter().enumerate() {
            if last[key] == i {
                placed.push(self.place(*key, vector)?);
            }
        }
        let total = placed.len();
        let top = Mutex::new(self.top);
        let locks: Vec<Mutex<()>> = (0..STRIPES).map(|_| Mutex::new(())).collect();
        let next = AtomicUsize::new(0);
        let slots = self.keys.len();
        let mut placed_set = vec![false; slots];
        for &(slot, _) in &placed {
            placed_set[slot as usize] = true;
        }
        let mut pool: Vec<Visited> = std::mem::take(&mut *lock(&self.visited));
        let ready: Vec<std::sync::atomic::AtomicBool> =
            (0..slots).map(|s| std::sync::atomic::AtomicBool::new(!placed_set[s])).collect();
        let view = View { locks: Some(&locks), ready: Some(&ready), ..self.view() };
        let work = |scratch: &mut Scratch| {
            while !cancel.load(Atomic::Relaxed) {
                let i = next.fetch_add(1, Atomic::Relaxed);
                let Some(&(slot, level)) = placed.get(i) else { break };
                view.insert(slot, level, &top, scratch);
            }
        };
        let threads = threads.clamp(1, 64);
        let mut scratches: Vec<Scratch> = (0..threads)
            .map(|_| {
                let mut visited = pool.pop().unwrap_or_default();
                visited.start(slots);
                Scratch { visited, ..Scratch::default() }
            })
            .collect();
        let work = &work;
        std::thread::scope(|scope| {
            let (mine, others) = scratches.split_first_mut().expect("at least one thread");
            for scratch in others {
                scope.spawn(move || work(scratch));
            }
            // This thread inserts too, and reports progress between its inserts: at the start,
            // then about every thousand nodes (whichever of them it takes itself).
            progress(0, total);
            let mut reported = 0;
            while !cancel.load(Atomic::Relaxed) {
                let i = next.fetch_add(1, Atomic::Relaxed);
                let Some(&(slot, level)) = placed.get(i) else { break };
                view.insert(slot, level, &top, mine);
                if i >= reported + 1000 {
                    progress(i.min(total), total);
                    reported = i;
                }
            }
        });
        self.top = *lock(&top);
        lock(&self.visited).extend(scratches.into_iter().map(|s| s.visited));
        if cancel.load(Atomic::Relaxed) {
            return Err(AddError::Cancelled);
        }
        self.adopt_orphans();
        progress(total, total);
        Ok(())
    }

    /// Links every node that no other node links to in the base layer from a near node, so that
    /// searches can reach it. The heuristic can prune a node out of every list that named it
    /// when many nodes arrive at once (a build on several threads) or its neighbours were
    /// removed; a sequential build rarely leaves one.
    fn adopt_orphans(&mut self) {
        let linked_from = self.linked_from(None, &[]);
        self.adopt(linked_from);
    }

    /// How many base-layer lists name each slot, counting `planned` lists (by slot) instead
    /// of the current ones and no list of a `dead` slot.
    fn linked_from(&self, planned: Option<&HashMap<u32, &[u32]>>, dead: &[bool]) -> Vec<u32> {
        let slots = self.keys.len();
        let mut linked_from = vec![0u32; slots];
        let view = self.reader();
        for slot in 0..slots as u32 {
            if self.keys[slot as usize] == FREE || dead.get(slot as usize) == Some(&true) {
                continue;
            }
            let links = match planned.and_then(|p| p.get(&slot)) {
                Some(links) => links,
                // SAFETY: `&self`: no writer.
                None => unsafe { view.links(slot, 0) },
            };
            for &link in links {
                linked_from[link as usize] += 1;
            }
        }
        linked_from
    }

    /// Links each live node that `linked_from` counts no list for (but the entry point) from a
    /// near node.
    fn adopt(&mut self, mut linked_from: Vec<u32>) {
        if self.top.entry == NONE {
            return;
        }
        let orphans: Vec<u32> = (0..self.keys.len() as u32)
            .filter(|&s| {
                self.keys[s as usize] != FREE && linked_from[s as usize] == 0 && s != self.top.entry
            })
            .collect();
        if orphans.is_empty() {
            return;
        }
        let mut scratch = self.scratch();
        let top = self.top;
        let view = self.view();
        for orphan in orphans {
            let query = view.vector(orphan);
            let start = Near { distance: view.distance(query, top.entry), slot: top.entry };
            let at = view.descend(query, start, 1..=top.level);
            let found = view.search_level(
                query,
                at,
                view.shape.ef_construction,
                0,
                scratch.visited.again(),
                &mut scratch.links,
            );
            for near in found.iter().filter(|n| n.slot != orphan) {
                let list = view.list(near.slot, 0);
                // SAFETY: no other thread; the list has room for `max_links(0)` links.
                let links = unsafe { view.links(near.slot, 0) };
                if links.len() < view.shape.max_links(0) {
                    unsafe {
                        *list.add(1 + links.len()) = orphan;
                        *list += 1;
                    }
                    linked_from[orphan as usize] += 1;
                    break;
                }
                // Full: the farthest link gives way, if another node still links to it.
                let base = view.vector(near.slot);
                let (at, farthest) = links
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i, Near { distance: view.distance(base, l), slot: l }))
                    .max_by(|a, b| a.1.cmp(&b.1))
                    .expect("a full list");
                if linked_from[farthest.slot as usize] > 1 && farthest.distance > near.distance {
                    unsafe { *list.add(1 + at) = orphan };
                    linked_from[farthest.slot as usize] -= 1;
                    linked_from[orphan as usize] += 1;
                    break;
                }
            }
        }
        lock(&self.visited).push(scratch.visited);
    }

    /// Removes `keys` (those it holds) in place: every node that linked to one of them is
    /// relinked among its remaining links and theirs, and their bytes are zeroed. Returns how
    /// many were removed. The same as [`Hnsw::plan_removal`] then [`Hnsw::apply`].
    pub fn remove(&mut self, keys: &[u64]) -> usize {
        let plan = self.plan_removal(keys);
        self.apply(plan)
    }

    /// Works out a removal without changing anything, so that searches can go on meanwhile
    /// (behind a read lock): which nodes go, and the new link lists of every node that linked
    /// to one of them. This is the costly part; [`Hnsw::apply`] then only writes the lists.
    pub fn plan_removal(&self, keys: &[u64]) -> Removal {
        let dead: Vec<u32> = keys.iter().filter_map(|k| self.slots.get(k).copied()).collect();
        let mut plan = Removal {
            version: self.version,
            keys: keys.to_vec(),
            dead,
            lists: Vec::new(),
            linked_from: Vec::new(),
        };
        if plan.dead.is_empty() {
            return plan;
        }
        let mut is_dead = vec![false; self.keys.len()];
        for &slot in &plan.dead {
            is_dead[slot as usize] = true;
        }
        let view = self.reader();
        // Every (node, level) whose list names a removed node.
        let mut damaged: Vec<(u32, usize)> = Vec::new();
        for slot in 0..self.keys.len() as u32 {
            if self.keys[slot as usize] == FREE || is_dead[slot as usize] {
                continue;
            }
            for level in 0..=self.levels[slot as usize] as usize {
                // SAFETY: `&self`: no writer (they take `&mut self`).
                let links = unsafe { view.links(slot, level) };
                if links.iter().any(|&l| is_dead[l as usize]) {
                    damaged.push((slot, level));
                }
            }
        }
        let threads = if damaged.len() > 256 {
            std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
        } else {
            1
        };
        // The links that survive were chosen by the heuristic already and stay. Each removed
        // one is replaced by the nearest of the removed nodes' own links that the heuristic
        // accepts beside the other replacements (or, failing that, the nearest at all). A repair
        // then reads the candidates' vectors once, not every kept link's again: the vectors are
        // scattered over the whole index, and those reads are what a repair costs.
        let repair = |(slot, level): (u32, usize), scratch: &mut Scratch| -> Vec<u32> {
            // SAFETY: `&self`: no writer.
            let links = unsafe { view.links(slot, level) };
            scratch.kept.clear();
            scratch.kept.extend(links.iter().copied().filter(|&l| !is_dead[l as usize]));
            let lost = links.len() - scratch.kept.len();
            scratch.links.clear();
            for &link in links.iter().filter(|&&l| is_dead[l as usize]) {
                // SAFETY: as above.
                let theirs = unsafe { view.links(link, level) };
                scratch.links.extend(theirs.iter().filter(|&&n| n != slot && !is_dead[n as usize]));
            }
            scratch.links.sort_unstable();
            scratch.links.dedup();
            scratch.links.retain(|n| !scratch.kept.contains(n));
            let base = view.vector(slot);
            let whole = view.shape.stride.div_ceil(LINE) + 1;
            for &n in scratch.links.iter().take(2) {
                prefetch(view.block(n), whole);
            }
            scratch.near.clear();
            for (i, &n) in scratch.links.iter().enumerate() {
                if let Some(&after) = scratch.links.get(i + 2) {
                    prefetch(view.block(after), whole);
                }
                scratch.near.push(Near { distance: view.distance(base, n), slot: n });
            }
            scratch.near.sort_unstable();
            let room = view.shape.max_links(level);
            let mut added = 0;
            let mut fallback = None;
            for candidate in &scratch.near {
                if added == lost || scratch.kept.len() == room {
                    break;
                }
                let vector = view.vector(candidate.slot);
                let fresh = &scratch.kept[scratch.kept.len() - added..];
                if fresh.iter().all(|&k| view.distance(vector, k) > candidate.distance) {
                    scratch.kept.push(candidate.slot);
                    added += 1;
                } else if fallback.is_none() {
                    fallback = Some(candidate.slot);
                }
            }
            if added == 0 && scratch.kept.is_empty() {
                scratch.kept.extend(fallback);
            }
            scratch.kept.clone()
        };
        let repair_all = |share: &[(u32, usize)]| {
            let mut scratch = Scratch::default();
            share
                .iter()
                .map(|&(slot, level)| (slot, level as u8, repair((slot, level), &mut scratch)))
                .collect::<Vec<_>>()
        };
        if threads == 1 {
            plan.lists = repair_all(&damaged);
        } else {
            let repair_all = &repair_all;
            plan.lists = std::thread::scope(|scope| {
                let shares: Vec<_> = damaged
                    .chunks(damaged.len().div_ceil(threads))
                    .map(|share| scope.spawn(move || repair_all(share)))
                    .collect();
                shares.into_iter().flat_map(|h| h.join().expect("a repair thread")).collect()
            });
        }
        // Who will link to whom once it is made: found now, so that the write lock is not
        // held for a scan of the whole graph.
        let planned: HashMap<u32, &[u32]> = plan
            .lists
            .iter()
            .filter(|(_, level, _)| *level == 0)
            .map(|(slot, _, links)| (*slot, links.as_slice()))
            .collect();
        plan.linked_from = self.linked_from(Some(&planned), &is_dead);
        plan
    }

    /// Makes a planned removal: writes the new link lists, zeroes the removed nodes' bytes and
    /// frees their slots. A plan made before another change is made again first. Returns how
    /// many were removed.
    pub fn apply(&mut self, plan: Removal) -> usize {
        if plan.version != self.version {
            let fresh = self.plan_removal(&plan.keys);
            return self.apply(fresh);
        }
        if plan.dead.is_empty() {
            return 0;
        }
        self.version += 1;
        let view = self.view();
        for (slot, level, links) in &plan.lists {
            // SAFETY: `&mut self`: no other thread.
            unsafe { view.set_links(*slot, *level as usize, links) };
        }
        let stride = self.shape.stride;
        for &slot in &plan.dead {
            let s = slot as usize;
            self.words_mut()[s * stride..(s + 1) * stride].fill(0);
            if let Some(start) = self.upper.remove(&slot) {
                let words = self.shape.upper_words(self.levels[s] as usize);
                self.arena[start as usize..start as usize + words].fill(0);
            }
            self.slots.remove(&self.keys[s]);
            self.keys[s] = FREE;
            self.levels[s] = 0;
            self.free.push(slot);
        }
        if self.top.entry != NONE && self.keys[self.top.entry as usize] == FREE {
            self.top = self.highest();
        }
        let removed = plan.dead.len();
        self.adopt(plan.linked_from);
        removed
    }

    /// The live node at the highest level, as the new entry point.
    fn highest(&self) -> Top {
        let best = self
            .upper
            .keys()
            .map(|&slot| (self.levels[slot as usize] as usize, std::cmp::Reverse(slot)))
            .max();
        match best {
            Some((level, std::cmp::Reverse(slot))) => Top { entry: slot, level },
            None => match self.keys.iter().position(|&k| k != FREE) {
                Some(slot) => Top { entry: slot as u32, level: 0 },
                None => Top { entry: NONE, level: 0 },
            },
        }
    }

    /// The `k` nearest keys to `query` with their cosine similarity, best first, searching
    /// with a candidate list of `ef` (at least `k`).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        if self.top.entry == NONE || k == 0 || query.len() != self.shape.dim {
            return Vec::new();
        }
        let query = normalised(query);
        let view = self.reader();
        let start = Near { distance: view.distance(&query, self.top.entry), slot: self.top.entry };
        let at = view.descend(&query, start, 1..=self.top.level);
        let mut visited = lock(&self.visited).pop().unwrap_or_default();
        visited.start(self.keys.len());
        let found = self.search_base(&view, &query, at, ef.max(k), &mut visited);
        lock(&self.visited).push(visited);
        found
            .into_iter()
            .take(k)
            .map(|near| (self.keys[near.slot as usize], 1.0 - near.distance))
            .collect()
    }

    /// The base-layer search of a query: links are read in place, and the next candidate's
    /// vector is prefetched while this one is scored.
    fn search_base(
        &self,
        view: &View,
        query: &[f32],
        entry: Near,
        ef: usize,
        visited: &mut Visited,
    ) -> Vec<Near> {
        let mut frontier = Frontier::new(entry, ef, visited);
        while let Some(near) = frontier.next() {
            // SAFETY: `&self` here means no writer (they take `&mut self`).
            let links = unsafe { view.links(near.slot, 0) };
            if let Some(&first) = links.first() {
                prefetch(view.block(first), PREFETCH_LINES);
            }
            for (i, &next) in links.iter().enumerate() {
                if let Some(&after) = links.get(i + 1) {
                    prefetch(view.block(after), PREFETCH_LINES);
                }
                if visited.first(next) {
                    frontier.offer(Near { distance: view.distance(query, next), slot: next });
                }
            }
        }
        frontier.found.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests;
