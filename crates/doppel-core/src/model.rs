//! The plain types of the core's API: twins, sources, chunks, jobs and search hits.
//!
//! They have public fields and no behaviour beyond naming their states. Shells convert them by
//! hand into whatever they serialise; the core never decides how they look on a wire.

use std::fmt;

/// Identifies a twin.
pub type TwinId = i64;
/// Identifies a source.
pub type SourceId = i64;
/// Identifies a chunk.
pub type ChunkId = i64;
/// Identifies a job.
pub type JobId = i64;
/// Identifies a watched folder.
pub type FolderId = i64;

/// The twin created with every new database.
pub const DEFAULT_TWIN: TwinId = 1;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A personal twin: a named set of sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// Its id.
    pub id: TwinId,
    /// The name shown to the owner.
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
}

/// A folder kept in sync with a twin: files that appear or change in it are ingested, files
/// that disappear are forgotten (while a `Doppel` opened with `Config::watch` runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFolder {
    /// Its id.
    pub id: FolderId,
    /// The twin that learns its files.
    pub twin_id: TwinId,
    /// The folder's canonical absolute path.
    pub path: String,
    /// When it was first watched.
    pub created_at: Millis,
}

/// Where a source's content came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A file on disk; its origin is the absolute path.
    File,
    /// Text pasted or piped in; it has no origin.
    Text,
    /// A web page or document fetched from an `http` or `https` URL; its origin is the URL.
    Url,
}

/// The life of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceState {
    /// Waiting for the worker.
    Queued,
    /// Being parsed and indexed.
    Processing,
    /// Indexed and searchable.
    Ready,
    /// Could not be indexed; `Source::error` says why.
    Failed,
}

/// A document of a twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Its id.
    pub id: SourceId,
    /// The twin it belongs to.
    pub twin_id: TwinId,
    /// File or pasted text.
    pub kind: SourceKind,
    /// The absolute path (or later the URL) it came from; `None` for pasted text.
    pub origin: Option<String>,
    /// A title: the document's own (HTML title, first Markdown heading) or the file name.
    pub title: String,
    /// The detected media type, once parsed (for example `text/markdown`).
    pub media_type: Option<String>,
    /// Size of the raw content in bytes, once read.
    pub byte_size: Option<u64>,
    /// SHA-256 of the raw content (hex), once read.
    pub content_hash: Option<String>,
    /// Where it is in its life.
    pub state: SourceState,
    /// Why it failed, or why the last attempt failed while a retry waits.
    pub error: Option<String>,
    /// How many chunks it has in the index.
    pub chunk_count: u64,
    /// When it was first added.
    pub created_at: Millis,
    /// When its state last changed.
    pub updated_at: Millis,
}

/// Where a chunk sits inside its source, for citations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// A readable place: a heading path (`Setup › Proxies`), a time range of subtitles, a row
    /// range of a table. May be empty for plain text without structure.
    pub label: String,
    /// First line of the source covered by the chunk (1-based), when the format has lines.
    pub line_start: Option<u32>,
    /// Last line covered (inclusive).
    pub line_end: Option<u32>,
    /// The page (1-based) of a paged document such as a PDF.
    pub page: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = match (self.line_start, self.line_end) {
            (Some(a), Some(b)) if a == b => Some(format!("line {a}")),
            (Some(a), Some(b)) => Some(format!("lines {a}–{b}")),
            _ => None,
        };
        let page = self.page.map(|p| format!("page {p}"));
        let label = (!self.label.is_empty()).then(|| self.label.clone());
        let parts: Vec<String> = [label, page, lines].into_iter().flatten().collect();
        f.write_str(&parts.join(", "))
    }
}

/// A passage of a source: the unit that is indexed, retrieved and cited.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Its id.
    pub id: ChunkId,
    /// The source it belongs to.
    pub source_id: SourceId,
    /// Its position in the source, from 0.
    pub ordinal: u32,
    /// The passage's text.
    pub text: String,
    /// Where it sits in the source.
    pub location: Location,
    /// An estimate of its length in model tokens.
    pub token_count: u32,
    /// SHA-256 of `text` (hex): equal texts have equal hashes, so unchanged chunks are recognised.
    pub text_hash: String,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Read, parse and index a file.
    IngestFile,
    /// Parse and index pasted text.
    IngestText,
    /// Fetch a URL, then parse and index what it returns.
    IngestUrl,
}

/// The life of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to be claimed (possibly until `next_attempt_at`).
    Queued,
    /// Claimed by the worker.
    Running,
    /// Finished; `outcome` says how.
    Done,
    /// Gave up; `last_error` says why.
    Failed,
    /// Cancelled by the owner.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Cancelled)
    }
}

/// How a finished job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// The content was parsed and indexed.
    Ingested,
    /// The content had not changed since it was last indexed.
    Unchanged,
    /// The same content is already a source of this twin (`Job::duplicate_of`).
    AlreadyPresent,
}

/// A unit of background work in the durable queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// The twin it works for.
    pub twin_id: TwinId,
    /// The source it fills; `None` once that source was deleted or never came to be.
    pub source_id: Option<SourceId>,
    /// What it reads: a path, or the title of pasted text.
    pub origin: String,
    /// Where it is in its life.
    pub state: JobState,
    /// How many times it has been claimed.
    pub attempts: u32,
    /// When it may be claimed next.
    pub next_attempt_at: Millis,
    /// The reason of the last failure.
    pub last_error: Option<String>,
    /// The stable code of the last failure (see `Error::code`).
    pub last_error_code: Option<String>,
    /// How it ended, once done.
    pub outcome: Option<JobOutcome>,
    /// For `AlreadyPresent`: the source that already holds this content.
    pub duplicate_of: Option<SourceId>,
    /// When it was queued.
    pub created_at: Millis,
    /// When its state last changed.
    pub updated_at: Millis,
}

/// What became of a request to ingest something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueStatus {
    /// A new job was queued.
    Queued,
    /// A job for this source was already waiting; nothing new was queued.
    AlreadyQueued,
}

/// Which retriever found a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retriever {
    /// Full-text search (FTS5, BM25).
    Keyword,
    /// Nearest neighbours of the query's embedding (HNSW).
    Vector,
    /// Both.
    Hybrid,
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SearchMode {
    /// Keyword and vector results fused by their scores, each list scaled to 0..1.
    #[default]
    Hybrid,
    /// Vector search only.
    Vector,
    /// Keyword search only.
    Keyword,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The chunk found.
    pub chunk_id: ChunkId,
    /// Its source.
    pub source_id: SourceId,
    /// The source's title.
    pub source_title: String,
    /// The source's path or URL, if it has one.
    pub origin: Option<String>,
    /// Where the chunk sits in its source.
    pub location: Location,
    /// A short excerpt around the matching words, the matches marked with `[` and `]`.
    pub snippet: String,
    /// The whole chunk text.
    pub text: String,
    /// Higher is better; comparable only within one result list.
    pub score: f64,
    /// Which retriever found it.
    pub retriever: Retriever,
}

macro_rules! text_names {
    ($ty:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The stable lowercase name used in storage and in the shells.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            /// Parses a name written by [`Self::as_str`].
            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)* _ => None }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_names;

text_names!(SourceKind { File => "file", Text => "text", Url => "url" });
text_names!(SourceState {
    Queued => "queued",
    Processing => "processing",
    Ready => "ready",
    Failed => "failed",
});
text_names!(JobKind {
    IngestFile => "ingest_file",
    IngestText => "ingest_text",
    IngestUrl => "ingest_url",
});
text_names!(JobState {
    Queued => "queued",
    Running => "running",
    Done => "done",
    Failed => "failed",
    Cancelled => "cancelled",
});
text_names!(JobOutcome {
    Ingested => "ingested",
    Unchanged => "unchanged",
    AlreadyPresent => "already_present",
});
text_names!(Retriever { Keyword => "keyword", Vector => "vector", Hybrid => "hybrid" });
text_names!(SearchMode { Hybrid => "hybrid", Vector => "vector", Keyword => "keyword" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in
            [SourceState::Queued, SourceState::Processing, SourceState::Ready, SourceState::Failed]
        {
            assert_eq!(SourceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("bogus"), None);
    }

    #[test]
    fn locations_read_well() {
        let loc = |label: &str, a, b| Location {
            label: label.into(),
            line_start: a,
            line_end: b,
            page: None,
        };
        assert_eq!(loc("Intro", Some(3), Some(9)).to_string(), "Intro, lines 3–9");
        assert_eq!(loc("", Some(4), Some(4)).to_string(), "line 4");
        assert_eq!(loc("00:00:01 – 00:00:04", None, None).to_string(), "00:00:01 – 00:00:04");
        let paged = Location { page: Some(7), ..loc("Results", None, None) };
        assert_eq!(paged.to_string(), "Results, page 7");
    }
}
