//! "What does my twin know?": a twin's sources counted by state, format and folder, its
//! passages and how many of them search by meaning can find, the space it takes, and every
//! source that failed or was passed over, with the reason; and "why isn't this found?" for a
//! word or a file name.
//!
//! Everything here reads (through the pool); nothing waits for the worker. The same facts serve
//! the window's view and `doppel status`. Formats and folders are named here once, so that the
//! search view's filters ([`SourceFilter`]) mean exactly what the coverage lists.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rusqlite::Connection;

use crate::embed::ModelInfo;
use crate::error::Result;
use crate::model::*;
use crate::store::{self, SourceFact};

/// Failure codes that mean a file was passed over on purpose (what it holds cannot be read as
/// text), rather than broken: they are counted as skipped.
const SKIP_CODES: &[&str] = &[
    "unsupported_format",
    "empty",
    "file_too_large",
    "skipped",
    "needs_ocr",
    "needs_transcriber",
    "tool_missing",
];

/// Skips that reading the file again cannot change (until the file itself changes).
const NOT_RETRYABLE: &[&str] = &["unsupported_format", "empty", "skipped"];

/// Folders listed at most, largest first; the rest are counted in `Coverage::other_folders`.
pub const FOLDERS_LISTED: usize = 100;

/// What a twin knows, as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Sources by state, with failures that were skips counted apart.
    pub states: StateCounts,
    /// Sources and passages by format, most sources first.
    pub formats: Vec<Group>,
    /// Sources and passages by folder (the folder a file is in; a web site; pasted text), most
    /// sources first, at most [`FOLDERS_LISTED`].
    pub folders: Vec<Group>,
    /// Folders beyond those listed.
    pub other_folders: u64,
    /// Passages of the twin.
    pub passages: u64,
    /// Of them, those with a vector from the embedding model in use (found by meaning).
    pub embedded: u64,
    /// The embedding model in use, or why there is none.
    pub model: std::result::Result<ModelInfo, String>,
    /// Bytes of the documents the twin learnt (as they were read).
    pub content_bytes: u64,
    /// Bytes on disk of the database and the vector index (every twin's; models not counted).
    pub disk_bytes: u64,
    /// Every source that failed or was passed over, and every update that failed, newest first.
    pub problems: Vec<Problem>,
}

/// Sources by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Learnt and searchable.
    pub ready: u64,
    /// Waiting in the queue.
    pub queued: u64,
    /// Being read now.
    pub processing: u64,
    /// Could not be read.
    pub failed: u64,
    /// Passed over: content that is not text, empty, too large, or already held by another
    /// source.
    pub skipped: u64,
}

/// Sources of one format or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The format's name ("PDF", "Markdown") or the folder's path.
    pub name: String,
    /// Sources in it.
    pub sources: u64,
    /// Their passages.
    pub passages: u64,
}

/// What went wrong with a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// It could not be read; it has no passages.
    Failed,
    /// It was passed over on purpose (see [`StateCounts::skipped`]).
    Skipped,
    /// Its last update failed: it keeps the passages of the version read before.
    Stale,
}

/// A source that failed, was skipped or is stale, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// What went wrong.
    pub kind: ProblemKind,
    /// The source; for a duplicate, the source that holds its content.
    pub source: SourceId,
    /// The source's title, or the duplicate's file name.
    pub title: String,
    /// Its path or URL.
    pub origin: Option<String>,
    /// The stable error code (`malformed`, `unsupported_format`, `already_present`, ...).
    pub code: String,
    /// Why, for the person to read.
    pub reason: String,
    /// Whether reading it again may help (a Retry is offered).
    pub retryable: bool,
    /// When it happened.
    pub at: Millis,
}

/// Why a word or a file name may not be found: what the twin holds of it, by name, by word and
/// by meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Sources whose title or path holds the text (at most [`NAMED_LISTED`]).
    pub named: Vec<Source>,
    /// Each word searched for, with the passages and sources the keyword index finds it in
    /// (words are matched by their stem: "planting" finds "planted"). Very common words are
    /// left out when there are others, as search leaves them out.
    pub words: Vec<WordPresence>,
    /// The best passages by keywords.
    pub keyword: Vec<Hit>,
    /// The best passages by meaning, above the minimum similarity; or why search by meaning
    /// cannot run now.
    pub meaning: std::result::Result<Vec<Hit>, String>,
}

/// Where the keyword index finds one word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordPresence {
    /// The word, as searched (lower case).
    pub word: String,
    /// Passages that hold it.
    pub passages: u64,
    /// Sources those passages belong to.
    pub sources: u64,
}

/// Sources listed at most by [`Explanation::named`].
pub const NAMED_LISTED: u32 = 20;

/// Gathers what the twin holds of `text`; `keyword` and `meaning` are the results of searching
/// for it in each mode (`meaning` is why there is no search by meaning, when there is none).
pub(crate) fn explain(
    conn: &Connection,
    twin: TwinId,
    text: &str,
    keyword: crate::SearchResults,
    meaning: std::result::Result<crate::SearchResults, String>,
) -> Result<Explanation> {
    let trimmed = text.trim();
    let named = if trimmed.is_empty() {
        Vec::new()
    } else {
        store::sources_named(conn, twin, trimmed, NAMED_LISTED)?
    };
    let mut words = Vec::new();
    for term in crate::retrieve::fts_query(trimmed).iter().flat_map(|q| q.split(" OR ")) {
        let (passages, sources) = store::keyword_presence(conn, twin, term)?;
        words.push(WordPresence { word: term.trim_matches('"').to_string(), passages, sources });
    }
    let meaning = meaning.and_then(|found| match found.mode {
        SearchMode::Vector => Ok(found.hits),
        _ => Err(found.note.unwrap_or_else(|| "search by meaning is not available".into())),
    });
    Ok(Explanation { named, words, keyword: keyword.hits, meaning })
}

/// Which sources a search looks in, beyond those it names. Every field left empty allows all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFilter {
    /// Only these sources.
    pub sources: Vec<SourceId>,
    /// Only sources whose title or path holds this (without regard to case).
    pub name: Option<String>,
    /// Only sources in this folder or below it (a name from [`Coverage::folders`]).
    pub folder: Option<String>,
    /// Only sources of this format (a name from [`Coverage::formats`]).
    pub format: Option<String>,
    /// Only documents dated at or after this (the file's modification time, else when added).
    pub from: Option<Millis>,
    /// Only documents dated before this.
    pub until: Option<Millis>,
}

impl SourceFilter {
    /// Whether the filter allows every source.
    pub fn is_empty(&self) -> bool {
        *self == SourceFilter::default()
    }

    fn allows(&self, fact: &SourceFact) -> bool {
        (self.sources.is_empty() || self.sources.contains(&fact.id))
            && self.name.as_deref().is_none_or(|n| names(fact, n))
            && self.folder.as_deref().is_none_or(|f| in_folder(fact, f))
            && self.format.as_deref().is_none_or(|f| format_of(fact) == f)
            && self.from.is_none_or(|from| fact.dated >= from)
            && self.until.is_none_or(|until| fact.dated < until)
    }
}

/// Whether a source's title or path holds `name`, without regard to case.
fn names(fact: &SourceFact, name: &str) -> bool {
    let name = name.to_lowercase();
    fact.title.to_lowercase().contains(&name)
        || fact.origin.as_deref().is_some_and(|o| o.to_lowercase().contains(&name))
}

/// The ids of the sources of `twin` that `filter` allows.
pub(crate) fn filtered(
    conn: &Connection,
    twin: TwinId,
    filter: &SourceFilter,
) -> Result<Vec<SourceId>> {
    Ok(store::source_facts(conn, twin)?
        .into_iter()
        .filter(|f| filter.allows(f))
        .map(|f| f.id)
        .collect())
}

/// Counts a twin's sources and gathers their problems. `model` is the embedding model in use
/// with its row id; `data_dir` is measured for the space on disk.
pub(crate) fn coverage(
    conn: &Connection,
    twin: TwinId,
    model: std::result::Result<(i64, ModelInfo), String>,
    data_dir: &Path,
) -> Result<Coverage> {
    let facts = store::source_facts(conn, twin)?;
    let failed = store::failed_sources(conn, twin)?;
    let skips: HashSet<SourceId> = failed
        .iter()
        .filter(|f| f.source.state == SourceState::Failed && is_skip(f.code.as_deref()))
        .map(|f| f.source.id)
        .collect();

    let mut states = StateCounts::default();
    let mut formats: BTreeMap<String, Group> = BTreeMap::new();
    let mut folders: BTreeMap<String, Group> = BTreeMap::new();
    let mut content_bytes = 0;
    for fact in &facts {
        match fact.state {
            SourceState::Ready => states.ready += 1,
            SourceState::Queued => states.queued += 1,
            SourceState::Processing => states.processing += 1,
            SourceState::Failed if skips.contains(&fact.id) => states.skipped += 1,
            SourceState::Failed => states.failed += 1,
        }
        if fact.state == SourceState::Ready {
            content_bytes += fact.byte_size.unwrap_or(0);
        }
        for (groups, name) in [(&mut formats, format_of(fact)), (&mut folders, folder_of(fact))] {
            let group = groups.entry(name.to_string()).or_insert_with(|| Group {
                name: name.to_string(),
                sources: 0,
                passages: 0,
            });
            group.sources += 1;
            group.passages += fact.chunk_count;
        }
    }

    let mut problems: Vec<Problem> = failed.into_iter().map(problem).collect();
    for duplicate in store::duplicates(conn, twin)? {
        states.skipped += 1;
        let title = Path::new(&duplicate.origin)
            .file_name()
            .map_or_else(|| duplicate.origin.clone(), |n| n.to_string_lossy().into_owned());
        problems.push(Problem {
            kind: ProblemKind::Skipped,
            source: duplicate.holder,
            title,
            origin: Some(duplicate.origin),
            code: JobOutcome::AlreadyPresent.as_str().to_string(),
            reason: format!("same content as “{}”, which is learnt", duplicate.holder_title),
            retryable: false,
            at: duplicate.at,
        });
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.at));

    let (passages, embedded) =
        store::passages_embedded(conn, twin, model.as_ref().ok().map(|(id, _)| *id))?;
    let formats = largest_first(formats.into_values().collect());
    let mut folders = largest_first(folders.into_values().collect());
    let other_folders = folders.len().saturating_sub(FOLDERS_LISTED) as u64;
    folders.truncate(FOLDERS_LISTED);
    Ok(Coverage {
        states,
        formats,
        folders,
        other_folders,
        passages,
        embedded,
        model: model.map(|(_, info)| info),
        content_bytes,
        disk_bytes: disk_bytes(data_dir),
        problems,
    })
}

fn largest_first(mut groups: Vec<Group>) -> Vec<Group> {
    groups.sort_by(|a, b| b.sources.cmp(&a.sources).then_with(|| a.name.cmp(&b.name)));
    groups
}

fn is_skip(code: Option<&str>) -> bool {
    code.is_some_and(|c| SKIP_CODES.contains(&c))
}

fn problem(failed: store::FailedSource) -> Problem {
    let store::FailedSource { source, code } = failed;
    let kind = match source.state {
        SourceState::Failed if is_skip(code.as_deref()) => ProblemKind::Skipped,
        SourceState::Failed => ProblemKind::Failed,
        _ => ProblemKind::Stale,
    };
    let code = code.unwrap_or_else(|| "failed".to_string());
    // Pasted text has nothing to read again.
    let retryable = source.kind != SourceKind::Text && !NOT_RETRYABLE.contains(&code.as_str());
    Problem {
        kind,
        source: source.id,
        title: source.title,
        origin: source.origin,
        reason: source.error.unwrap_or_else(|| "it could not be read".to_string()),
        code,
        retryable,
        at: source.updated_at,
    }
}

/// The format a source is counted under: by the media type it was read as, else by the name of
/// its file.
fn format_of(fact: &SourceFact) -> &'static str {
    if let Some(media) = &fact.media_type {
        return format_name(media);
    }
    match (fact.kind, &fact.origin) {
        (SourceKind::Text, _) => "Pasted text",
        (SourceKind::Url, _) => "Web page",
        (SourceKind::File, Some(origin)) => {
            match crate::ingest::Format::from_path(Path::new(origin)) {
                Ok(Some(format)) => format_name(format.media_type()),
                _ => "Other",
            }
        }
        (SourceKind::File, None) => "Other",
    }
}

/// A readable name for a media type.
fn format_name(media: &str) -> &'static str {
    match media {
        "text/plain" => "Plain text",
        "text/markdown" => "Markdown",
        "text/html" => "HTML",
        "text/csv" => "CSV",
        "text/tab-separated-values" => "TSV",
        "application/json" => "JSON",
        "application/x-ndjson" => "JSON Lines",
        "application/x-subrip" => "SRT subtitles",
        "text/vtt" => "WebVTT subtitles",
        "application/pdf" => "PDF",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "Word (DOCX)",
        "application/vnd.oasis.opendocument.text" => "OpenDocument text",
        "application/epub+zip" => "EPUB",
        "message/rfc822" => "E-mail",
        "application/mbox" => "Mailbox",
        m if m.starts_with("text/") => "Source code",
        _ => "Other",
    }
}

/// The folder a source is counted under: a file's folder, a page's site, or pasted text.
fn folder_of(fact: &SourceFact) -> &str {
    match (fact.kind, fact.origin.as_deref()) {
        (SourceKind::File, Some(origin)) => match origin.rfind('/') {
            Some(0) => "/",
            Some(at) => &origin[..at],
            None => origin,
        },
        (SourceKind::Url, Some(url)) => {
            let after_scheme = url.find("://").map_or(0, |i| i + 3);
            url[after_scheme..].find('/').map_or(url, |end| &url[..after_scheme + end])
        }
        _ => "Pasted text",
    }
}

/// Whether a source lies in `folder` or below it, as [`folder_of`] names folders.
fn in_folder(fact: &SourceFact, folder: &str) -> bool {
    let own = folder_of(fact);
    own == folder
        || own.strip_prefix(folder.trim_end_matches('/')).is_some_and(|r| r.starts_with('/'))
}

/// Bytes of the database (with its write-ahead log) and the vector index.
fn disk_bytes(data_dir: &Path) -> u64 {
    let file = |name: &str| std::fs::metadata(data_dir.join(name)).map_or(0, |m| m.len());
    let database = crate::DATABASE_FILE;
    let index: u64 = std::fs::read_dir(data_dir.join(crate::INDEX_DIR))
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    file(database) + file(&format!("{database}-wal")) + file(&format!("{database}-shm")) + index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(kind: SourceKind, origin: Option<&str>, media: Option<&str>) -> SourceFact {
        SourceFact {
            id: 1,
            kind,
            title: "A note".into(),
            origin: origin.map(str::to_string),
            state: SourceState::Ready,
            media_type: media.map(str::to_string),
            byte_size: None,
            chunk_count: 0,
            dated: 0,
        }
    }

    #[test]
    fn sources_are_counted_under_their_folder_and_format() {
        let pdf = fact(SourceKind::File, Some("/home/ana/papers/a.pdf"), Some("application/pdf"));
        assert_eq!((folder_of(&pdf), format_of(&pdf)), ("/home/ana/papers", "PDF"));
        let waiting = fact(SourceKind::File, Some("/notes/plan.md"), None);
        assert_eq!((folder_of(&waiting), format_of(&waiting)), ("/notes", "Markdown"));
        let page = fact(SourceKind::Url, Some("https://example.org/a/b?c"), None);
        assert_eq!((folder_of(&page), format_of(&page)), ("https://example.org", "Web page"));
        let pasted = fact(SourceKind::Text, None, Some("text/markdown"));
        assert_eq!((folder_of(&pasted), format_of(&pasted)), ("Pasted text", "Markdown"));
        let code = fact(SourceKind::File, Some("/src/main.rs"), Some("text/x-rust"));
        assert_eq!(format_of(&code), "Source code");
    }

    #[test]
    fn a_folder_filter_takes_the_folder_and_those_below_it_only() {
        let deep = fact(SourceKind::File, Some("/home/ana/papers/2024/a.pdf"), None);
        let beside = fact(SourceKind::File, Some("/home/ana/papers-old/b.pdf"), None);
        let filter =
            |folder: &str| SourceFilter { folder: Some(folder.into()), ..Default::default() };
        assert!(filter("/home/ana/papers").allows(&deep));
        assert!(filter("/home/ana/papers/").allows(&deep));
        assert!(!filter("/home/ana/papers").allows(&beside));
        assert!(filter("/").allows(&beside));
        let dated = SourceFact { dated: 1_000, ..deep };
        let between = |from, until| SourceFilter { from, until, ..Default::default() };
        assert!(between(Some(1_000), Some(2_000)).allows(&dated));
        assert!(!between(Some(1_001), None).allows(&dated));
        assert!(!between(None, Some(1_000)).allows(&dated));
        let named = |name: &str| SourceFilter { name: Some(name.into()), ..Default::default() };
        assert!(named("a NOTE").allows(&dated) && named("papers/2024").allows(&dated));
        assert!(!named("letter").allows(&dated));
    }
}
