//! The one error type of the core.
//!
//! Every failure a shell can see is an [`Error`]. Each variant has a stable machine code
//! ([`Error::code`]) that the shells put in their `{code, message}` shape, and a message
//! written for the person using the app. Messages name paths and ids, never document text.

use std::path::PathBuf;

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process holds the data directory's lock.
    #[error("Doppel is already running on this data directory ({}){}", holder_text(*.pid), dir_text(.dir))]
    AlreadyRunning {
        /// The data directory.
        dir: PathBuf,
        /// The process id written by the holder, when it could be read.
        pid: Option<u32>,
    },

    /// The database was written by a newer Doppel; it is left untouched.
    #[error(
        "the database at {path} has schema version {found}, newer than this Doppel understands \
         (up to {supported}); it was not touched: please use a newer Doppel"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build can read.
        supported: i64,
    },

    /// A file is larger than the configured limit.
    #[error("file too large ({} > limit of {})", human_size(*.size), human_size(*.limit))]
    FileTooLarge {
        /// Bytes seen (at least; reading stopped at the limit).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// The content is not something Doppel can read.
    #[error("unsupported format: {reason}")]
    UnsupportedFormat {
        /// Why, in a few words (for example "binary content" or "PDF files are not supported yet").
        reason: String,
    },

    /// The content claims a format but does not follow it.
    #[error("file is malformed: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },

    /// The content has no text worth indexing.
    #[error("no text found")]
    Empty,

    /// The content is text in an image (a scan, a photo): it is read only when text
    /// recognition is on. The file is read again when it is turned on.
    #[error(
        "{reason}: its text is read only with text recognition on (Settings → \"Read text in images and scans\", or `doppel settings set ocr true`); it is read again then"
    )]
    NeedsOcr {
        /// What the content is ("an image", "a scanned PDF").
        reason: String,
    },

    /// The content is speech, and no speech-to-text server is set. The file is read again when
    /// one is.
    #[error(
        "no speech-to-text server is set to transcribe this recording (Settings → Transcription, or `doppel transcriber server URL`); it is read again once one is set"
    )]
    NeedsTranscriber,

    /// A program Doppel needs for this file is not installed.
    #[error("{tool} is not installed: install it with `sudo apt install {package}`")]
    ToolMissing {
        /// The program, or the data it lacks.
        tool: String,
        /// The Debian package(s) that provide it.
        package: String,
    },

    /// A zip-based document or archive was refused before inflating it.
    #[error("archive refused: {reason}")]
    ArchiveRefused {
        /// Which limit it broke.
        reason: String,
    },

    /// The sandboxed parser did not finish within its time limit and was stopped.
    #[error("parser timed out (after {seconds} s)")]
    ParserTimedOut {
        /// The limit in seconds.
        seconds: u64,
    },

    /// The sandboxed parser hit its memory limit and was stopped.
    #[error("parser ran out of memory (limit {limit_mb} MB)")]
    ParserOutOfMemory {
        /// The limit in MB.
        limit_mb: u64,
    },

    /// A URL could not be fetched.
    #[error("{url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again later may succeed (time-outs, refused connections, 5xx).
        transient: bool,
    },

    /// A model file could not be downloaded. A `.part` file kept beside the destination lets
    /// the next try resume where this one stopped.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The URL, without credentials, query or fragment (they may carry tokens).
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A path could not be read or walked.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A path is not something Doppel ingests (a device, a socket, a hidden file in a folder...).
    #[error("{}: {reason}", .path.display())]
    Skipped {
        /// The path.
        path: PathBuf,
        /// Why it was skipped.
        reason: String,
    },

    /// Something asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// "source", "job", "twin" or "setting".
        what: &'static str,
        /// What was asked for.
        id: String,
    },

    /// Something with this name already exists where names must be unique.
    #[error("{what} {name:?} already exists")]
    AlreadyExists {
        /// "twin".
        what: &'static str,
        /// The name asked for.
        name: String,
    },

    /// A setting was given a value outside its range.
    #[error("invalid value for {key}: {reason}")]
    InvalidSetting {
        /// The setting's key.
        key: String,
        /// What is allowed.
        reason: String,
    },

    /// A request the core cannot act on (empty text, unknown option, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// The request would cost something the person has not agreed to yet (sending every
    /// passage to a model server); the message says what and how to go ahead.
    #[error("{0}")]
    ConfirmationNeeded(String),

    /// The work was cancelled by the user or by shutdown.
    #[error("cancelled")]
    Cancelled,

    /// The queue is paused, so waiting for its jobs would never end.
    #[error("the queue is paused: resume it (`doppel resume`, or Resume in the window) to go on")]
    QueuePaused,

    /// The worker thread is gone (it panicked or the handle was shut down).
    #[error("the background worker has stopped: {0}")]
    WorkerGone(String),

    /// The embedding model (or its runtime) cannot be used; search falls back to keywords.
    #[error("embedding model unavailable: {reason}")]
    ModelUnavailable {
        /// What is missing or broken.
        reason: String,
    },

    /// The embedding model failed on some input.
    #[error("embedding failed: {reason}")]
    Embedding {
        /// What went wrong.
        reason: String,
    },

    /// A model server failed or answered something unusable.
    #[error("embedding server {server}: {reason}")]
    EmbeddingServer {
        /// The server's base URL.
        server: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again later may succeed (time-outs, refused connections, 5xx).
        transient: bool,
    },

    /// The OS keychain could not be used.
    #[error("the OS keychain is unavailable: {reason}")]
    Keychain {
        /// What went wrong.
        reason: String,
    },

    /// A chat model server failed or broke off its answer.
    #[error("chat model server {server}: {reason}")]
    ChatServer {
        /// The server's base URL.
        server: String,
        /// What went wrong.
        reason: String,
    },

    /// A speech-to-text server failed or answered something unusable.
    #[error("speech-to-text server {server}: {reason}")]
    TranscriptionServer {
        /// The server's base URL.
        server: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again later may succeed (refused connection, 429, 5xx).
        transient: bool,
    },

    /// A reranking server failed or answered something unusable; search keeps its own order.
    #[error("reranking server {server}: {reason}")]
    RerankServer {
        /// The server's base URL.
        server: String,
        /// What went wrong.
        reason: String,
    },

    /// Local generation failed (the model file, the context, or llama.cpp itself).
    #[error("language model: {reason}")]
    Generation {
        /// What went wrong.
        reason: String,
    },

    /// The vector index failed.
    #[error("vector index: {reason}")]
    Index {
        /// What went wrong.
        reason: String,
    },

    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),

    /// How a job ended could not be written to the database, even after retries (a full disk):
    /// the job stays as it was and runs again at the next start.
    #[error("{message}")]
    NotRecorded {
        /// The job.
        job: i64,
        /// What happened, as [`Error::not_recorded`] says it.
        message: String,
    },

    /// A bug in Doppel stopped one piece of work (it failed alone; the rest goes on).
    #[error(
        "Doppel stopped {during} on an internal error (a bug, reported in the log); everything else goes on"
    )]
    Internal {
        /// What was being done, in a few words.
        during: &'static str,
    },

    /// The database file failed an integrity check.
    #[error("database is corrupt: {0}")]
    Corrupt(String),

    /// The check at open found the database damaged: nothing is written to it until it is
    /// repaired, so that the damage does not spread; reading goes on.
    #[error(
        "the database is damaged ({reason}), so Doppel will not write to it: run `doppel doctor \
         --repair`, or restore a backup; searching and reading still work"
    )]
    Damaged {
        /// SQLite's own words, shortened.
        reason: String,
    },

    /// A backup is encrypted and no passphrase was given.
    #[error("this backup is encrypted: its passphrase is needed")]
    PassphraseNeeded,

    /// The passphrase given does not open the backup.
    #[error("the passphrase does not open this backup; nothing was changed")]
    WrongPassphrase,

    /// A backup file is not whole: truncated, altered, or not a Doppel backup at all.
    #[error("the backup {} cannot be used: {reason}; nothing was changed", .path.display())]
    BackupDamaged {
        /// The backup file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A request to the local API carried no valid token (missing, unknown, revoked, of
    /// another twin). Every such failure reads the same, so that none tells more than another.
    #[error("a valid API token is needed: send it as `Authorization: Bearer <token>`")]
    Unauthorized,

    /// A valid token asked for something outside its scope.
    #[error("this token's scope ({scope}) does not allow {what}")]
    Forbidden {
        /// The token's scope.
        scope: &'static str,
        /// What was asked, in a few words.
        what: &'static str,
    },

    /// A token made more requests than its rate limit allows.
    #[error(
        "rate limit of {per_minute} requests per minute reached; try again in {retry_after_s} s"
    )]
    RateLimited {
        /// The token's limit.
        per_minute: u32,
        /// Seconds until a request will be accepted.
        retry_after_s: u64,
    },

    /// A token used its daily budget of generated tokens.
    #[error("daily budget of {budget} generated tokens used up; it renews in {retry_after_s} s")]
    BudgetExhausted {
        /// The token's daily budget.
        budget: u64,
        /// Seconds until the budget renews (midnight UTC).
        retry_after_s: u64,
    },

    /// A request to the local API was larger than it accepts.
    #[error("{what} too large (limit {})", human_size(*.limit))]
    TooLarge {
        /// "body" or "headers".
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },

    /// The local API is serving as many answers at once as it allows.
    #[error("{0}")]
    Busy(String),
}

const MB: u64 = 1024 * 1024;

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

fn dir_text(dir: &std::path::Path) -> String {
    format!(": {}", dir.display())
}

/// A size for people: whole MB from 10 MB up, one decimal below, KB under 1 MB.
pub(crate) fn human_size(size: u64) -> String {
    if size >= 10 * MB || (size >= MB && size.is_multiple_of(MB)) {
        format!("{} MB", size / MB)
    } else if size >= MB {
        format!("{:.1} MB", size as f64 / MB as f64)
    } else {
        format!("{} KB", size.div_ceil(1024))
    }
}

impl Error {
    /// The stable machine code of this error, the same in every shell.
    pub fn code(&self) -> &'static str {
        match self {
            Error::AlreadyRunning { .. } => "already_running",
            Error::SchemaTooNew { .. } => "schema_too_new",
            Error::FileTooLarge { .. } => "file_too_large",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::Malformed { .. } => "malformed",
            Error::Empty => "empty",
            Error::NeedsOcr { .. } => "needs_ocr",
            Error::NeedsTranscriber => "needs_transcriber",
            Error::ToolMissing { .. } => "tool_missing",
            Error::TranscriptionServer { .. } => "transcription_server",
            Error::ArchiveRefused { .. } => "archive_refused",
            Error::ParserTimedOut { .. } => "parser_timed_out",
            Error::ParserOutOfMemory { .. } => "parser_out_of_memory",
            Error::Fetch { .. } => "fetch",
            Error::Download { .. } => "download",
            Error::Io { .. } => "io",
            Error::Skipped { .. } => "skipped",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::InvalidSetting { .. } => "invalid_setting",
            Error::InvalidInput(_) => "invalid_input",
            Error::ConfirmationNeeded(_) => "confirmation_needed",
            Error::Cancelled => "cancelled",
            Error::QueuePaused => "queue_paused",
            Error::WorkerGone(_) => "worker_gone",
            Error::Database(_) => "database",
            Error::ModelUnavailable { .. } => "model_unavailable",
            Error::Embedding { .. } => "embedding",
            Error::EmbeddingServer { .. } => "embedding_server",
            Error::Keychain { .. } => "keychain",
            Error::ChatServer { .. } => "chat_server",
            Error::RerankServer { .. } => "rerank_server",
            Error::Generation { .. } => "generation",
            Error::Index { .. } => "index",
            Error::Corrupt(_) => "corrupt",
            Error::Damaged { .. } => "database_damaged",
            Error::Internal { .. } => "internal",
            Error::NotRecorded { .. } => "not_recorded",
            Error::PassphraseNeeded => "passphrase_needed",
            Error::WrongPassphrase => "wrong_passphrase",
            Error::BackupDamaged { .. } => "backup_damaged",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::RateLimited { .. } => "rate_limited",
            Error::BudgetExhausted { .. } => "budget_exhausted",
            Error::TooLarge { .. } => "too_large",
            Error::Busy(_) => "busy",
        }
    }

    /// What the log may say of this error: its message, unless the message can carry words of
    /// a document, of a server's answer or of what a person typed. Then only its code and where
    /// it came from; the whole message stays on the job or the answer, for the window.
    pub fn for_log(&self) -> String {
        match self {
            Error::UnsupportedFormat { .. }
            | Error::Malformed { .. }
            | Error::ArchiveRefused { .. }
            | Error::Skipped { .. }
            | Error::InvalidInput(_)
            | Error::AlreadyExists { .. }
            | Error::Embedding { .. }
            | Error::Generation { .. } => format!("{} (details on the job)", self.code()),
            Error::Fetch { url, .. } => format!("fetch of {url} failed"),
            Error::EmbeddingServer { server, .. } => format!("embedding server {server} failed"),
            Error::ChatServer { server, .. } => format!("chat model server {server} failed"),
            Error::RerankServer { server, .. } => format!("reranking server {server} failed"),
            Error::TranscriptionServer { server, .. } => {
                format!("speech-to-text server {server} failed")
            }
            other => other.to_string(),
        }
    }

    /// Whether trying the same job again later might succeed.
    ///
    /// Content errors (too large, unsupported, malformed, empty) will fail the same way every
    /// time, so they are not retried; I/O and database trouble may be passing.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Database(_) => true,
            Error::Fetch { transient, .. }
            | Error::EmbeddingServer { transient, .. }
            | Error::TranscriptionServer { transient, .. } => *transient,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    /// The end of `job` could not be recorded, for `reason`.
    pub(crate) fn not_recorded(job: i64, reason: &str) -> Error {
        let message = format!(
            "how job {job} ended could not be recorded ({reason}); it runs again at the next start"
        );
        Error::NotRecorded { job, message }
    }

    pub(crate) fn unsupported(reason: impl Into<String>) -> Error {
        Error::UnsupportedFormat { reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        let e = Error::AlreadyRunning { dir: "/d".into(), pid: Some(42) };
        assert_eq!(e.to_string(), "Doppel is already running on this data directory (pid 42): /d");
        assert_eq!(e.code(), "already_running");
        let e = Error::FileTooLarge { size: 100 * MB, limit: 50 * MB };
        assert_eq!(e.to_string(), "file too large (100 MB > limit of 50 MB)");
        let e = Error::FileTooLarge { size: 3 * MB / 2, limit: MB };
        assert_eq!(e.to_string(), "file too large (1.5 MB > limit of 1 MB)");
        assert_eq!(human_size(2048), "2 KB");
    }
}
