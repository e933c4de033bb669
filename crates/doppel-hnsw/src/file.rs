//! The index file: one little-endian file, written beside its final name and renamed, with a
//! checksum; loading checks every link and count, so a damaged file is refused.
//!
//! Layout: a header (magic, then the `u64` fields below), the keys (`u64` each), the levels
//! (bytes, padded to 8), the upper-layer offsets (`u32` slot, `u32` offset pairs), the node
//! blocks and the arena (`u32` words), and a checksum of everything before it (`u64`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{FREE, Hnsw, Line, MAX_LEVEL, NONE, Params, Shape, Top};

#[cfg(target_endian = "big")]
compile_error!("the index file is read and written as little-endian memory");

const MAGIC: &[u8; 8] = b"DPLHNSW1";

/// Why a file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be read.
    Io(std::io::Error),
    /// It is not an index file of this version, or it is damaged.
    Invalid(&'static str),
    /// It holds vectors of another dimension or graph parameters.
    Mismatch(&'static str),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "{e}"),
            LoadError::Invalid(what) => write!(f, "not a valid index file: {what}"),
            LoadError::Mismatch(what) => write!(f, "the index file holds another {what}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> LoadError {
        LoadError::Io(e)
    }
}

/// A checksum of u64 words in four lanes (fast enough not to show next to the disk).
#[derive(Clone, Copy)]
struct Checksum([u64; 4]);

impl Checksum {
    fn new() -> Checksum {
        Checksum([1, 2, 3, 4])
    }

    fn add(&mut self, bytes: &[u8]) {
        let words = bytes.chunks_exact(32);
        let tail = words.remainder();
        for group in words {
            for (lane, word) in self.0.iter_mut().zip(group.chunks_exact(8)) {
                let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                *lane = (*lane ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
            }
        }
        for &b in tail {
            self.0[0] = (self.0[0] ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn value(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |h, &lane| (h ^ lane).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(31))
    }
}

/// Writes what it is given, and checksums it.
struct Out<W: Write> {
    writer: W,
    sum: Checksum,
}

impl<W: Write> Out<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sum.add(bytes);
        self.writer.write_all(bytes)
    }
}

fn as_bytes<T: Copy>(values: &[T]) -> &[u8] {
    // SAFETY: only used for u8, u32, u64 and `Line` (plain words, no padding).
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

fn as_bytes_mut<T: Copy>(values: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; every bit pattern is a valid value of these types.
    unsafe {
        std::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(values),
        )
    }
}

impl Hnsw {
    /// Writes the index to `path` atomically: to a temporary file beside it, synced, renamed.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temporary = path.with_file_name(name);
        let result = self.write(&temporary).and_then(|()| std::fs::rename(&temporary, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let file = File::create(path)?;
        let mut out = Out { writer: BufWriter::with_capacity(1 << 20, file), sum: Checksum::new() };
        let mut upper: Vec<(u32, u32)> = self.upper.iter().map(|(&s, &o)| (s, o)).collect();
        upper.sort_unstable();
        let header = [
            self.shape.dim as u64,
            self.shape.m as u64,
            self.shape.ef_construction as u64,
            self.shape.stride as u64,
            self.keys.len() as u64,
            self.top.entry as u64,
            self.top.level as u64,
            self.arena.len() as u64,
            upper.len() as u64,
        ];
        out.put(MAGIC)?;
        out.put(as_bytes(&header))?;
        out.put(as_bytes(&self.keys))?;
        out.put(as_bytes(&self.levels))?;
        out.put(&[0u8; 8][..(8 - self.levels.len() % 8) % 8])?;
        let pairs: Vec<u32> = upper.iter().flat_map(|&(s, o)| [s, o]).collect();
        out.put(as_bytes(&pairs))?;
        out.put(as_bytes(&self.blocks))?;
        out.put(as_bytes(&self.arena))?;
        let sum = out.sum.value();
        out.writer.write_all(&sum.to_le_bytes())?;
        let file = out.writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }

    /// Loads the index saved at `path`, which must hold vectors of `dim` with `params`' `m`.
    pub fn load(path: &Path, dim: usize, params: Params) -> Result<Hnsw, LoadError> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut input = In {
            reader: BufReader::with_capacity(1 << 20, file),
            sum: Checksum::new(),
            left: size,
        };
        let mut magic = [0u8; 8];
        input.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(LoadError::Invalid("its first bytes"));
        }
        let mut header = [0u64; 9];
        input.take(as_bytes_mut(&mut header))?;
        let [dim_saved, m, ef_construction, stride, slots, entry, top, arena, upper] = header;
        let shape = Shape::new(dim, params);
        if dim_saved as usize != dim {
            return Err(LoadError::Mismatch("vector dimension"));
        }
        if m as usize != shape.m || stride as usize != shape.stride {
            return Err(LoadError::Mismatch("graph shape (links per node, or an older layout)"));
        }
        // Sizes are checked against the file's before anything is allocated.
        let need = slots
            .checked_mul(8 + 1 + stride * 4)
            .and_then(|n| n.checked_add(arena.checked_mul(4)?))
            .and_then(|n| n.checked_add(upper.checked_mul(8)?))
            .ok_or(LoadError::Invalid("its sizes"))?;
        if need > input.left || slots >= NONE as u64 {
            return Err(LoadError::Invalid("it is shorter than its header says"));
        }
        let (slots, arena_len, upper_len) = (slots as usize, arena as usize, upper as usize);
        let mut keys = vec![0u64; slots];
        input.take(as_bytes_mut(&mut keys))?;
        let mut levels = vec![0u8; slots];
        input.take(&mut levels)?;
        input.take(&mut [0u8; 8][..(8 - slots % 8) % 8])?;
        let mut pairs = vec![0u32; upper_len * 2];
        input.take(as_bytes_mut(&mut pairs))?;
        let mut blocks = vec![Line::default(); shape.lines(slots)];
        input.take(as_bytes_mut(&mut blocks))?;
        let mut arena = vec![0u32; arena_len];
        input.take(as_bytes_mut(&mut arena))?;
        let expected = input.sum.value();
        let mut sum = [0u8; 8];
        input.reader.read_exact(&mut sum)?;
        if u64::from_le_bytes(sum) != expected {
            return Err(LoadError::Invalid("its checksum"));
        }
        let mut index = Hnsw::new(dim, params);
        index.shape.ef_construction = (ef_construction as usize).max(shape.m);
        index.blocks = blocks;
        index.arena = arena;
        index.levels = levels;
        for pair in pairs.chunks_exact(2) {
            index.upper.insert(pair[0], pair[1]);
        }
        for (slot, &key) in keys.iter().enumerate() {
            if key == FREE {
                index.free.push(slot as u32);
            } else if index.slots.insert(key, slot as u32).is_some() {
                return Err(LoadError::Invalid("a key twice"));
            }
        }
        index.free.reverse();
        index.keys = keys;
        index.top = Top { entry: entry as u32, level: top as usize };
        index.validate()?;
        Ok(index)
    }

    /// Checks what a search follows: levels, upper segments inside the arena, link counts and
    /// targets (live nodes at that level), the entry point.
    fn validate(&self) -> Result<(), LoadError> {
        let invalid = LoadError::Invalid;
        let slots = self.keys.len();
        if self.top.entry == NONE {
            return if self.slots.is_empty() { Ok(()) } else { Err(invalid("no entry point")) };
        }
        let entry = self.top.entry as usize;
        if entry >= slots
            || self.keys[entry] == FREE
            || self.levels[entry] as usize != self.top.level
        {
            return Err(invalid("its entry point"));
        }
        for (slot, &level) in self.levels.iter().enumerate() {
            let level = level as usize;
            if level > MAX_LEVEL || level > self.top.level {
                return Err(invalid("a node's level"));
            }
            let live = self.keys[slot] != FREE;
            match self.upper.get(&(slot as u32)) {
                Some(&start) => {
                    let end = start as usize + self.shape.upper_words(level);
                    if !live || level == 0 || end > self.arena.len() {
                        return Err(invalid("a node's upper links"));
                    }
                }
                None if live && level > 0 => return Err(invalid("a node without its upper links")),
                None => {}
            }
        }
        let view = self.reader();
        for slot in 0..slots as u32 {
            if self.keys[slot as usize] == FREE {
                continue;
            }
            for level in 0..=self.levels[slot as usize] as usize {
                let list = view.list(slot, level);
                // SAFETY: the list is inside the block or the node's checked arena segment.
                let count = unsafe { *list } as usize;
                if count > self.shape.max_links(level) {
                    return Err(invalid("a link count"));
                }
                // SAFETY: the count is within the list's room.
                let links = unsafe { view.links(slot, level) };
                for &link in links {
                    let target = link as usize;
                    if target >= slots
                        || self.keys[target] == FREE
                        || (self.levels[target] as usize) < level
                    {
                        return Err(invalid("a link"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads exactly what is asked, checksumming it.
struct In<R: Read> {
    reader: R,
    sum: Checksum,
    left: u64,
}

impl<R: Read> In<R> {
    fn take(&mut self, into: &mut [u8]) -> Result<(), LoadError> {
        self.reader.read_exact(into).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => LoadError::Invalid("it ends early"),
            _ => LoadError::Io(e),
        })?;
        self.left = self.left.saturating_sub(into.len() as u64);
        self.sum.add(into);
        Ok(())
    }
}
