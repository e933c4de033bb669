//! Model files for the model manager: downloading a GGUF chat model from a URL, and importing
//! one from a local path.
//!
//! A download writes `<dest>.part` beside the destination and renames it to `dest` only once the
//! whole file is there, its SHA-256 matches (when one was given) and, for a `.gguf` name, it
//! begins with the GGUF magic; so `dest` is either absent or complete. A `.part` left by a
//! cancel, a crash or a broken connection is resumed with a `Range` request. Free space is
//! checked before the first byte is written. There is a connect timeout and an idle timeout (the
//! longest silence) but no total one: a large model on a slow line may take hours.
//!
//! This module never holds a model in memory, never writes `dest` in place, and never puts a
//! URL's credentials, query or fragment in a message or a log (signed links carry tokens there).
//! Its only `unsafe` code asks the file system for its free space (`statvfs`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, HeaderMap, RANGE};
use reqwest::redirect::Policy;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, human_size};
use crate::fetch::root_cause;

/// What to download.
#[derive(Clone, PartialEq, Eq)]
pub struct DownloadRequest {
    /// An http or https URL. Redirects (as to a CDN) are followed.
    pub url: String,
    /// The expected SHA-256 (64 hexadecimal digits), checked at the end when given.
    pub sha256: Option<String>,
    /// The final file path. Its folder is created if missing; a file already there is replaced
    /// only by a complete, checked download.
    pub dest: PathBuf,
}

impl std::fmt::Debug for DownloadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's query and credentials are left out on purpose: they may carry tokens.
        f.debug_struct("DownloadRequest")
            .field("url", &shown(&self.url))
            .field("sha256", &self.sha256)
            .field("dest", &self.dest)
            .finish()
    }
}

/// How patient to be with the server. There is no total timeout: big files take long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadTimeouts {
    /// Time to open the connection.
    pub connect: Duration,
    /// Longest silence: waiting for the answer, or between two pieces of the body.
    pub idle: Duration,
}

impl Default for DownloadTimeouts {
    fn default() -> DownloadTimeouts {
        DownloadTimeouts { connect: Duration::from_secs(10), idle: Duration::from_secs(60) }
    }
}

/// Progress of a download or an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes of the file now on disk, those of an earlier run included.
    pub done: u64,
    /// The file's size, when the server said it.
    pub total: Option<u64>,
    /// Bytes that were already on disk when the current answer began (0 when starting from
    /// scratch), so that a shell can tell resumed bytes from new ones.
    pub resumed_from: u64,
}

const MB: u64 = 1024 * 1024;
/// Progress is reported at most once per this many bytes, and at the end.
const PROGRESS_STEP: u64 = 256 * 1024;
/// Room left free beyond the file itself, for the database, the logs and the file system.
const SPACE_MARGIN: u64 = 64 * MB;
/// Extra tries after a failure that may pass (refused or broken connections, 429, 5xx).
const RETRIES: u32 = 3;
const MAX_REDIRECTS: usize = 10;
/// What every GGUF file begins with.
const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// What the public functions take from the machine, so that tests can stand in for it.
#[derive(Clone, Copy)]
struct Machine {
    /// Free bytes for an unprivileged user on the file system that holds a folder.
    free_space: fn(&Path) -> std::io::Result<u64>,
    /// Delay before the first retry; doubled for each further one.
    backoff: Duration,
}

const MACHINE: Machine = Machine { free_space: free_bytes, backoff: Duration::from_millis(500) };

/// Downloads `request.url` to `request.dest` with progress, resume and checksum; returns the
/// final path.
///
/// Bytes go to `<dest>.part`, resumed with a `Range` request when it exists. `cancel` is checked
/// between reads: a cancelled download returns [`Error::Cancelled`] and keeps the `.part` for a
/// later call to resume, as does a server that stays silent longer than `timeouts.idle`. Refused
/// or broken connections and 429 or 5xx answers are retried a few times with doubling delays;
/// other 4xx answers are not. A checksum mismatch deletes the `.part`. `progress` is called at
/// most once per 256 KiB, and once at the end.
pub fn download(
    request: &DownloadRequest,
    timeouts: DownloadTimeouts,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<PathBuf> {
    download_with(request, timeouts, cancel, progress, MACHINE)
}

fn download_with(
    request: &DownloadRequest,
    timeouts: DownloadTimeouts,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
    machine: Machine,
) -> Result<PathBuf> {
    let shown = shown(&request.url);
    let url = crate::fetch::check_url(&request.url).map_err(|_| {
        Error::InvalidInput(format!("{shown}: only absolute http and https URLs can be downloaded"))
    })?;
    let expected = request.sha256.as_deref().map(checksum).transpose()?;
    let dir = folder_of(&request.dest)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let client = client(timeouts).map_err(|e| Error::Download {
        url: shown.clone(),
        reason: format!("could not set up the HTTP client: {}", root_cause(&e)),
    })?;
    let part = with_suffix(&request.dest, ".part");
    tracing::info!(url = %shown, dest = %request.dest.display(), "model download starts");
    let mut transfer = Transfer {
        client,
        url,
        shown,
        dir,
        part,
        timeouts,
        cancel,
        progress,
        machine,
        hasher: expected.as_ref().map(|_| Sha256::new()),
        hashed: 0,
        total: None,
        resumed_from: 0,
    };
    let mut tries = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let before = part_len(&transfer.part)?;
        match transfer.attempt() {
            Ok(()) => break,
            Err(Failure { error, retry: true }) if tries < RETRIES => {
                // An attempt that moved the download forward gives its tries back, so a long
                // download over a line that breaks now and then still finishes; each retry
                // resumes from what was written.
                if part_len(&transfer.part)? > before {
                    tries = 0;
                }
                let delay = machine.backoff.saturating_mul(1 << tries);
                tracing::info!(url = %transfer.shown, reason = %error, ?delay,
                    "model download will be retried");
                std::thread::sleep(delay);
                tries += 1;
            }
            Err(failure) => {
                if !matches!(failure.error, Error::Cancelled) {
                    tracing::warn!(url = %transfer.shown, error = %failure.error,
                        "model download stopped");
                }
                return Err(failure.error);
            }
        }
    }
    transfer.finish(expected.as_deref(), &request.dest)
}

/// One call of [`download`], and what it knows of the `.part` file between attempts.
struct Transfer<'a> {
    client: Client,
    url: String,
    /// The URL for messages and logs.
    shown: String,
    /// The destination's folder.
    dir: PathBuf,
    part: PathBuf,
    timeouts: DownloadTimeouts,
    cancel: &'a AtomicBool,
    progress: &'a mut dyn FnMut(&DownloadProgress),
    machine: Machine,
    /// SHA-256 of the first `hashed` bytes of the `.part`, when a checksum is to be checked.
    hasher: Option<Sha256>,
    hashed: u64,
    /// The whole file's size, once a server said it.
    total: Option<u64>,
    resumed_from: u64,
}

/// A failed attempt, and whether another one may do better.
struct Failure {
    error: Error,
    retry: bool,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure { error, retry: false }
    }
}

impl Transfer<'_> {
    fn failed(&self, reason: impl Into<String>) -> Error {
        Error::Download { url: self.shown.clone(), reason: reason.into() }
    }

    fn retryable(&self, reason: impl Into<String>) -> Failure {
        Failure { error: self.failed(reason), retry: true }
    }

    /// One request, and its body appended to the `.part`. `Ok` means the `.part` holds the
    /// whole file.
    fn attempt(&mut self) -> Result<(), Failure> {
        let have = part_len(&self.part)?;
        let mut request = self.client.get(&self.url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().map_err(|e| self.send_failure(&e))?;
        let status = response.status();
        let start = match status {
            StatusCode::PARTIAL_CONTENT => match content_range(response.headers()) {
                Some(ContentRange { first: Some(first), total }) if first == have => {
                    self.total = total;
                    have
                }
                _ => {
                    self.start_over()?;
                    return Err(self.retryable(
                        "the server sent another part of the file than the one asked for",
                    ));
                }
            },
            StatusCode::OK => {
                // The server ignores `Range` (or none was sent): the body is the whole file.
                self.total = response.content_length();
                0
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                return match content_range(response.headers()) {
                    Some(ContentRange { total: Some(total), .. }) if total == have => {
                        self.total = Some(total);
                        Ok(())
                    }
                    _ => {
                        self.start_over()?;
                        Err(self.retryable("the kept partial file does not fit the server's file"))
                    }
                };
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(self.failed(format!("not found: check the URL ({status})")).into());
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self
                    .failed(format!(
                        "the server refused access ({status}): the link may need a token or may \
                         have expired"
                    ))
                    .into());
            }
            _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                return Err(self.retryable(format!("the server answered {status}")));
            }
            _ => return Err(self.failed(format!("the server answered {status}")).into()),
        };
        // Starting over truncates the `.part` first, which frees what it held: either way the
        // disk must take the rest of the file beyond what the `.part` holds now.
        self.check_space(self.total.map_or(0, |total| total.saturating_sub(have)))?;
        let file = if start == 0 {
            self.reset_hash();
            File::create(&self.part)
        } else {
            if self.hasher.is_some() && self.hashed != start {
                self.rehash(start)?;
            }
            OpenOptions::new().append(true).open(&self.part)
        };
        let mut file = BufWriter::with_capacity(MB as usize, file.map_err(|e| self.io(e))?);
        self.resumed_from = start;
        let received = self.receive(&mut response, &mut file, start);
        // What was received is kept even when the attempt failed, for the next one to resume.
        let flushed = file.flush().map_err(|e| self.io(e));
        let done = received?;
        flushed?;
        match self.total {
            Some(total) if done < total => Err(self.retryable(format!(
                "the connection closed after {} of {}",
                human_size(done),
                human_size(total)
            ))),
            Some(_) => Ok(()),
            None => {
                self.total = Some(done);
                Ok(())
            }
        }
    }

    /// Reads the body into `file` until its end; returns the `.part`'s length.
    fn receive(
        &mut self,
        body: &mut Response,
        file: &mut impl Write,
        start: u64,
    ) -> Result<u64, Failure> {
        let mut done = start;
        let mut reported = done;
        (self.progress)(&DownloadProgress { done, total: self.total, resumed_from: start });
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled.into());
            }
            let n = match body.read(&mut buffer) {
                Ok(0) => return Ok(done),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    return Err(self
                        .failed(format!(
                            "the server sent nothing for {} s; download again to resume",
                            self.timeouts.idle.as_secs_f64()
                        ))
                        .into());
                }
                Err(e) => {
                    return Err(
                        self.retryable(format!("the connection broke off: {}", root_cause(&e)))
                    );
                }
            };
            if let Some(total) = self.total
                && done + n as u64 > total
            {
                return Err(self
                    .failed(format!("the server sent more than the {total} bytes it announced"))
                    .into());
            }
            file.write_all(&buffer[..n]).map_err(|e| self.io(e))?;
            if let Some(hasher) = &mut self.hasher {
                hasher.update(&buffer[..n]);
                self.hashed += n as u64;
            }
            done += n as u64;
            if done - reported >= PROGRESS_STEP {
                (self.progress)(&DownloadProgress { done, total: self.total, resumed_from: start });
                reported = done;
            }
        }
    }

    /// Checks the whole `.part` and moves it to `dest`.
    fn finish(mut self, expected: Option<&str>, dest: &Path) -> Result<PathBuf> {
        let len = part_len(&self.part)?;
        if let Some(expected) = expected {
            if self.hashed != len {
                self.rehash(len)?;
            }
            let got = hex(&self.hasher.take().unwrap_or_default().finalize());
            if got != expected {
                remove_part(&self.part);
                return Err(self.failed(format!(
                    "checksum mismatch: expected {expected}, got {got}; the downloaded file was \
                     deleted"
                )));
            }
        }
        if is_gguf_name(dest) && !begins_with_magic(&self.part)? {
            remove_part(&self.part);
            return Err(self.failed(
                "the file is not a GGUF model (it does not begin with \"GGUF\"): check that the \
                 URL points at the model file itself, not at a web page",
            ));
        }
        install(&self.part, dest, &self.dir)?;
        tracing::info!(url = %self.shown, dest = %dest.display(), bytes = len,
            "model download done");
        (self.progress)(&DownloadProgress {
            done: len,
            total: Some(len),
            resumed_from: self.resumed_from,
        });
        Ok(dest.to_path_buf())
    }

    fn send_failure(&self, e: &reqwest::Error) -> Failure {
        if e.is_timeout() && e.is_connect() {
            let seconds = self.timeouts.connect.as_secs_f64();
            self.failed(format!("could not connect within {seconds} s")).into()
        } else if e.is_timeout() {
            let seconds = self.timeouts.idle.as_secs_f64();
            self.failed(format!("the server did not answer within {seconds} s")).into()
        } else if e.is_redirect() {
            self.failed(format!("redirect refused: {}", root_cause(e))).into()
        } else if e.is_connect() {
            self.retryable(format!("could not connect: {}", root_cause(e)))
        } else {
            self.retryable(root_cause(e))
        }
    }

    fn check_space(&self, rest: u64) -> Result<()> {
        let needed = rest + SPACE_MARGIN;
        let free = (self.machine.free_space)(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if free < needed {
            return Err(self.failed(not_enough_space(needed, free, &self.dir)));
        }
        Ok(())
    }

    /// Empties the `.part`, for the next attempt to start from the first byte.
    fn start_over(&mut self) -> Result<()> {
        File::create(&self.part).map_err(|e| self.io(e))?;
        self.reset_hash();
        Ok(())
    }

    fn reset_hash(&mut self) {
        if let Some(hasher) = &mut self.hasher {
            *hasher = Sha256::new();
        }
        self.hashed = 0;
    }

    /// Hashes the first `len` bytes of the `.part` again: those of an earlier run, or of an
    /// attempt whose writes may not all have reached the file.
    fn rehash(&mut self, len: u64) -> Result<()> {
        let mut hasher = Sha256::new();
        let file = File::open(&self.part).map_err(|e| self.io(e))?;
        let mut reader = file.take(len);
        let mut buffer = vec![0u8; MB as usize];
        let mut hashed = 0;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buffer[..n]);
                    hashed += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.hasher = Some(hasher);
        self.hashed = hashed;
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(&self.part, e)
    }
}

/// Copies a local model file into `dir`, under its own name, with progress; returns the new
/// path.
///
/// Only GGUF files are taken (they begin with the bytes `GGUF`); anything else is refused with
/// [`Error::UnsupportedFormat`] before a byte is written. The copy goes to a `.part` file that
/// is renamed once complete, so a cancel ([`Error::Cancelled`]) or a failure leaves nothing
/// behind. A file that already is in `dir` is returned as it is.
pub fn import_gguf(
    source: &Path,
    dir: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<PathBuf> {
    import_with(source, dir, cancel, progress, MACHINE)
}

fn import_with(
    source: &Path,
    dir: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
    machine: Machine,
) -> Result<PathBuf> {
    let read_error = |e| Error::io(source, e);
    let mut input = File::open(source).map_err(read_error)?;
    let metadata = input.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(Error::InvalidInput(format!("{}: not a file", source.display())));
    }
    let mut magic = [0u8; 4];
    let is_gguf = match input.read_exact(&mut magic) {
        Ok(()) => &magic == GGUF_MAGIC,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(read_error(e)),
    };
    if !is_gguf {
        return Err(Error::unsupported(format!(
            "{} is not a GGUF model (it does not begin with \"GGUF\"); Doppel runs chat models in \
             the GGUF format",
            source.display()
        )));
    }
    let name = source
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{}: no file name", source.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dest = dir.join(name);
    let size = metadata.len();
    if is_same_file(&metadata, &dest) {
        progress(&DownloadProgress { done: size, total: Some(size), resumed_from: 0 });
        return Ok(dest);
    }
    let free = (machine.free_space)(dir).map_err(|e| Error::io(dir, e))?;
    if free < size + SPACE_MARGIN {
        let reason = not_enough_space(size + SPACE_MARGIN, free, dir);
        return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::StorageFull, reason)));
    }
    let part = with_suffix(&dest, ".part");
    let copied = copy(&mut input, source, &part, size, cancel, progress)
        .and_then(|copied| install(&part, &dest, dir).map(|()| copied));
    let copied = match copied {
        Ok(copied) => copied,
        Err(e) => {
            remove_part(&part);
            return Err(e);
        }
    };
    tracing::info!(source = %source.display(), dest = %dest.display(), bytes = copied,
        "model imported");
    progress(&DownloadProgress { done: copied, total: Some(copied), resumed_from: 0 });
    Ok(dest)
}

/// Copies `source` to `dest` with progress, checking its SHA-256 before it takes `dest`'s
/// place; returns `dest`. The copy goes to `<dest>.part`, renamed once complete and checked, so
/// `dest` is either what it was or the checked file. Free space is checked first.
pub fn copy_checked(
    source: &Path,
    dest: &Path,
    sha256: &str,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<PathBuf> {
    let expected = checksum(sha256)?;
    let read_error = |e| Error::io(source, e);
    let mut input = File::open(source).map_err(read_error)?;
    let metadata = input.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(Error::InvalidInput(format!("{}: not a file", source.display())));
    }
    let dir = folder_of(dest)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let size = metadata.len();
    let free = (MACHINE.free_space)(&dir).map_err(|e| Error::io(&dir, e))?;
    if free < size + SPACE_MARGIN {
        let reason = not_enough_space(size + SPACE_MARGIN, free, &dir);
        return Err(Error::io(&dir, std::io::Error::new(std::io::ErrorKind::StorageFull, reason)));
    }
    let part = with_suffix(dest, ".part");
    let checked = copy(&mut input, source, &part, size, cancel, progress).and_then(|copied| {
        let got = file_sha256(&part)?;
        if got != expected {
            return Err(Error::InvalidInput(format!(
                "{}: checksum mismatch: expected {expected}, got {got}; nothing was installed",
                source.display()
            )));
        }
        install(&part, dest, &dir).map(|()| copied)
    });
    match checked {
        Ok(copied) => {
            progress(&DownloadProgress { done: copied, total: Some(copied), resumed_from: 0 });
            Ok(dest.to_path_buf())
        }
        Err(e) => {
            remove_part(&part);
            Err(e)
        }
    }
}

/// The GGUF file name a model URL ends in (`…/name.gguf`, query and fragment aside), when it
/// is a plain name that is safe as a file name in the models folder.
pub fn gguf_name_of_url(url: &str) -> Option<&str> {
    url.split(['?', '#']).next().and_then(|u| u.rsplit('/').next()).filter(|n| {
        n.ends_with(".gguf")
            && n.len() <= 200
            && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    })
}

/// The SHA-256 of a file, as 64 lowercase hexadecimal digits.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; MB as usize];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

/// Copies `input` from its start to `part`; returns the bytes copied.
fn copy(
    input: &mut File,
    source: &Path,
    part: &Path,
    size: u64,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    input.seek(SeekFrom::Start(0)).map_err(|e| Error::io(source, e))?;
    let mut output = File::create(part).map_err(|e| Error::io(part, e))?;
    let mut buffer = vec![0u8; MB as usize];
    let (mut done, mut reported) = (0u64, 0u64);
    progress(&DownloadProgress { done, total: Some(size), resumed_from: 0 });
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let n = match input.read(&mut buffer) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(source, e)),
        };
        output.write_all(&buffer[..n]).map_err(|e| Error::io(part, e))?;
        done += n as u64;
        if done - reported >= PROGRESS_STEP {
            progress(&DownloadProgress { done, total: Some(size), resumed_from: 0 });
            reported = done;
        }
    }
}

/// Makes `part` durable and renames it to `dest`, replacing any file there in one step.
fn install(part: &Path, dest: &Path, dir: &Path) -> Result<()> {
    File::open(part).and_then(|f| f.sync_all()).map_err(|e| Error::io(part, e))?;
    std::fs::rename(part, dest).map_err(|e| Error::io(dest, e))?;
    // The rename is durable once the folder is synced. Some file systems cannot sync a folder;
    // the file is in place all the same, so that is only logged.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "could not sync the model folder");
    }
    Ok(())
}

fn client(timeouts: DownloadTimeouts) -> reqwest::Result<Client> {
    let policy = Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            attempt.error("a redirect left http and https")
        } else {
            attempt.follow()
        }
    });
    Client::builder()
        .connect_timeout(timeouts.connect)
        // The blocking client applies this to the wait for the answer and to each read of the
        // body on its own: it bounds silence, not the whole transfer.
        .timeout(timeouts.idle)
        .redirect(policy)
        .user_agent(concat!("Doppel/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A `Content-Range` header: the first byte sent (`None` for `*`, as in a 416 answer) and the
/// whole file's size (`None` for `*`).
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    first: Option<u64>,
    total: Option<u64>,
}

fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse().ok()?),
    };
    let first = match range.trim() {
        "*" => None,
        range => Some(range.split_once('-')?.0.trim().parse().ok()?),
    };
    Some(ContentRange { first, total })
}

/// Whether a body read failed because the server was silent for longer than the idle timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout)
}

/// The URL as messages and logs show it: without credentials, query or fragment, which may carry
/// tokens (signed links do). A removed query is marked `?…`.
fn shown(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url.trim()) else {
        return url.split(['?', '#', '@']).next().unwrap_or_default().to_string();
    };
    let had_query = parsed.query().is_some();
    // Neither can fail for the http and https URLs that get this far; others keep no secrets.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.set_fragment(None);
    if had_query { format!("{parsed}?…") } else { parsed.to_string() }
}

/// An expected SHA-256, checked and lowercased.
fn checksum(text: &str) -> Result<String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "\"{text}\" is not a SHA-256: 64 hexadecimal digits are needed"
        )));
    }
    Ok(text.to_ascii_lowercase())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The folder a destination goes in.
fn folder_of(dest: &Path) -> Result<PathBuf> {
    if dest.file_name().is_none() {
        return Err(Error::InvalidInput(format!("{}: not a file path", dest.display())));
    }
    Ok(match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The `.part`'s length, 0 when there is none.
fn part_len(part: &Path) -> Result<u64> {
    match std::fs::metadata(part) {
        Ok(metadata) => Ok(metadata.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(part, e)),
    }
}

fn remove_part(part: &Path) {
    if let Err(e) = std::fs::remove_file(part)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(part = %part.display(), error = %e, "could not remove a partial file");
    }
}

fn is_gguf_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn begins_with_magic(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    match file.take(4).read_exact(&mut magic) {
        Ok(()) => Ok(&magic == GGUF_MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Whether `path` is the file `metadata` describes (so copying would read what it truncates).
fn is_same_file(metadata: &std::fs::Metadata, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .is_ok_and(|other| other.dev() == metadata.dev() && other.ino() == metadata.ino())
}

fn not_enough_space(needed: u64, free: u64, dir: &Path) -> String {
    format!("needs {}, only {} free on {}", human_size(needed), human_size(free), dir.display())
}

/// Free bytes for an unprivileged user on the file system that holds `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path with a NUL byte")
    })?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stats` points to
    // writable memory the size of a `statvfs`, which is all the call writes.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    // The field types differ between platforms (u32 on some, u64 on others).
    #[allow(clippy::unnecessary_cast)]
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex, OnceLock};

    use super::*;

    /// Retries without the real delays; the free space of the real disk.
    const TEST_MACHINE: Machine =
        Machine { free_space: free_bytes, backoff: Duration::from_millis(1) };

    const TIMEOUTS: DownloadTimeouts =
        DownloadTimeouts { connect: Duration::from_secs(5), idle: Duration::from_secs(10) };

    /// Longest a test server holds a silent connection open, so that every server thread ends.
    const CONNECTION_LIFETIME: Duration = Duration::from_secs(20);

    /// About 3 MB of pseudo-random bytes beginning with the GGUF magic.
    fn payload() -> &'static [u8] {
        static PAYLOAD: OnceLock<Vec<u8>> = OnceLock::new();
        PAYLOAD.get_or_init(|| {
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            let mut bytes = GGUF_MAGIC.to_vec();
            while bytes.len() < 3 * MB as usize + 1234 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.extend_from_slice(&state.to_le_bytes());
            }
            bytes
        })
    }

    fn payload_sha256() -> String {
        hex(&Sha256::digest(payload()))
    }

    /// How a test server answers request number `n` (from 0) that asked for bytes from `range`.
    type Answer = fn(n: usize, range: Option<u64>, stream: &mut TcpStream);

    /// A loopback HTTP server for one test.
    struct Server {
        url: String,
        /// The start of each request's `Range` (`None` without one), in the order they came.
        ranges: Arc<Mutex<Vec<Option<u64>>>>,
    }

    impl Server {
        fn ranges(&self) -> Vec<Option<u64>> {
            self.ranges.lock().unwrap().clone()
        }
    }

    fn serve(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url =
            format!("http://{}/models/tiny.gguf?token=s3cret", listener.local_addr().unwrap());
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&ranges);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || {
                    let Some(range) = read_request(&stream) else { return };
                    // Recorded before answering: the client sees the answer only after this.
                    seen.lock().unwrap().push(range);
                    answer(n, range, &mut stream);
                });
            }
        });
        Server { url, ranges }
    }

    /// Reads a request's head; returns the start of its `Range`, if any.
    fn read_request(stream: &TcpStream) -> Option<Option<u64>> {
        let mut reader = BufReader::new(stream);
        let mut range = None;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.trim().is_empty() {
                return Some(range);
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("range: bytes=") {
                range = value.trim().trim_end_matches('-').parse().ok();
            }
        }
    }

    fn head(stream: &mut TcpStream, status: &str, headers: &str, length: usize) {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{headers}Connection: close\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
    }

    fn respond(stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]) {
        head(stream, status, headers, body.len());
        let _ = stream.write_all(body);
    }

    /// A well-behaved server: 206 for a range inside the file, 416 past its end, 200 otherwise.
    fn honours_range(_: usize, range: Option<u64>, stream: &mut TcpStream) {
        let body = payload();
        let len = body.len();
        match range {
            Some(start) if start as usize >= len => {
                let headers = format!("Content-Range: bytes */{len}\r\n");
                respond(stream, "416 Range Not Satisfiable", &headers, b"");
            }
            Some(start) => {
                let headers = format!("Content-Range: bytes {start}-{}/{len}\r\n", len - 1);
                respond(stream, "206 Partial Content", &headers, &body[start as usize..]);
            }
            None => respond(stream, "200 OK", "", body),
        }
    }

    fn breaks_off_first(n: usize, range: Option<u64>, stream: &mut TcpStream) {
        if n > 0 {
            return honours_range(n, range, stream);
        }
        let body = payload();
        head(stream, "200 OK", "", body.len());
        let _ = stream.write_all(&body[..body.len() / 2]);
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn ignores_range(_: usize, _: Option<u64>, stream: &mut TcpStream) {
        respond(stream, "200 OK", "", payload());
    }

    fn not_found(_: usize, _: Option<u64>, stream: &mut TcpStream) {
        respond(stream, "404 Not Found", "", b"no such model");
    }

    fn unavailable_twice(n: usize, range: Option<u64>, stream: &mut TcpStream) {
        if n < 2 {
            respond(stream, "503 Service Unavailable", "", b"busy");
        } else {
            honours_range(n, range, stream);
        }
    }

    fn goes_silent(_: usize, _: Option<u64>, stream: &mut TcpStream) {
        let body = payload();
        head(stream, "200 OK", "", body.len());
        let _ = stream.write_all(&body[..body.len() / 2]);
        // Holds the connection open without another byte until the client gives up.
        let _ = stream.set_read_timeout(Some(CONNECTION_LIFETIME));
        let _ = stream.read(&mut [0u8; 1]);
    }

    /// Set by [`trickles`] once it has sent [`TRICKLE_BEFORE_CANCEL`] bytes: the cancel of the
    /// download that reads it.
    static TRICKLE_CANCEL: AtomicBool = AtomicBool::new(false);
    /// Bytes of the body [`trickles`] sent in all.
    static TRICKLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    const TRICKLE_BEFORE_CANCEL: usize = 20;

    /// Announces the whole file, then sends one byte every 20 ms, well inside the idle timeout,
    /// until the client hangs up or the connection's lifetime is over; cancels the download
    /// after a few bytes.
    fn trickles(_: usize, _: Option<u64>, stream: &mut TcpStream) {
        let body = payload();
        head(stream, "200 OK", "", body.len());
        let _ = stream.set_nodelay(true);
        let lifetime = std::time::Instant::now() + CONNECTION_LIFETIME;
        for byte in body.iter().take_while(|_| std::time::Instant::now() < lifetime) {
            if stream.write_all(std::slice::from_ref(byte)).is_err() {
                return;
            }
            if TRICKLED.fetch_add(1, Ordering::SeqCst) + 1 == TRICKLE_BEFORE_CANCEL {
                TRICKLE_CANCEL.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn web_page(_: usize, _: Option<u64>, stream: &mut TcpStream) {
        respond(stream, "200 OK", "Content-Type: text/html\r\n", b"<html>Sign in</html>");
    }

    fn request(server: &Server, dir: &Path, sha256: Option<String>) -> DownloadRequest {
        DownloadRequest { url: server.url.clone(), sha256, dest: dir.join("tiny.gguf") }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn downloads_with_progress_and_checksum() {
        let server = serve(honours_range);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), Some(payload_sha256().to_uppercase()));
        let mut seen = Vec::new();
        let path =
            download(&request, TIMEOUTS, &AtomicBool::new(false), &mut |p| seen.push(*p)).unwrap();
        assert_eq!(path, dir.path().join("tiny.gguf"));
        assert_eq!(std::fs::read(&path).unwrap(), payload());
        assert_eq!(files_in(dir.path()), ["tiny.gguf"]);
        let len = payload().len() as u64;
        assert_eq!(
            seen.last(),
            Some(&DownloadProgress { done: len, total: Some(len), resumed_from: 0 })
        );
        assert!(seen.windows(2).all(|w| w[0].done <= w[1].done), "{seen:?}");
        assert!(seen.len() as u64 <= len / PROGRESS_STEP + 2, "{} calls", seen.len());
        assert_eq!(server.ranges(), [None]);
    }

    #[test]
    fn broken_connection_resumes_with_a_range() {
        let server = serve(breaks_off_first);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), Some(payload_sha256()));
        let mut resumed = Vec::new();
        let path = download_with(
            &request,
            TIMEOUTS,
            &AtomicBool::new(false),
            &mut |p| resumed.push(p.resumed_from),
            TEST_MACHINE,
        )
        .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), payload());
        let half = payload().len() as u64 / 2;
        assert_eq!(server.ranges(), [None, Some(half)]);
        assert_eq!(resumed.last(), Some(&half));
    }

    #[test]
    fn cancelled_download_keeps_its_part_for_the_next_run() {
        let server = serve(honours_range);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), Some(payload_sha256()));
        let cancel = AtomicBool::new(false);
        let stopped = download(&request, TIMEOUTS, &cancel, &mut |p| {
            if p.done >= MB {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        assert!(matches!(stopped, Err(Error::Cancelled)), "{stopped:?}");
        let part = dir.path().join("tiny.gguf.part");
        let kept = std::fs::metadata(&part).unwrap().len();
        assert!(kept >= MB && kept < payload().len() as u64, "{kept} bytes kept");
        assert_eq!(files_in(dir.path()), ["tiny.gguf.part"]);

        let mut first = None;
        let path = download(&request, TIMEOUTS, &AtomicBool::new(false), &mut |p| {
            first.get_or_insert(*p);
        })
        .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), payload());
        assert_eq!(server.ranges(), [None, Some(kept)]);
        assert_eq!(first.map(|p| (p.done, p.resumed_from)), Some((kept, kept)));
        assert_eq!(files_in(dir.path()), ["tiny.gguf"]);
    }

    #[test]
    fn complete_part_is_verified_after_a_416() {
        let server = serve(honours_range);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.gguf.part"), payload()).unwrap();
        let request = request(&server, dir.path(), Some(payload_sha256()));
        let path = download(&request, TIMEOUTS, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), payload());
        assert_eq!(server.ranges(), [Some(payload().len() as u64)]);
    }

    #[test]
    fn server_ignoring_range_starts_over_cleanly() {
        let server = serve(ignores_range);
        let dir = tempfile::tempdir().unwrap();
        // A stale `.part` whose bytes are all wrong: resuming onto it would corrupt the file.
        std::fs::write(dir.path().join("tiny.gguf.part"), vec![0xAA; MB as usize]).unwrap();
        let request = request(&server, dir.path(), None);
        let mut resumed = Vec::new();
        let path = download(&request, TIMEOUTS, &AtomicBool::new(false), &mut |p| {
            resumed.push(p.resumed_from)
        })
        .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), payload());
        assert_eq!(server.ranges(), [Some(MB)]);
        assert!(resumed.iter().all(|&r| r == 0), "{resumed:?}");
    }

    #[test]
    fn checksum_mismatch_leaves_nothing() {
        let server = serve(honours_range);
        let dir = tempfile::tempdir().unwrap();
        let wrong = "ab".repeat(32);
        let request = request(&server, dir.path(), Some(wrong.clone()));
        let e = download(&request, TIMEOUTS, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
        let message = e.to_string();
        assert_eq!(e.code(), "download");
        assert!(message.contains("checksum mismatch"), "{message}");
        assert!(message.contains(&wrong) && message.contains(&payload_sha256()), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(files_in(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn not_enough_space_writes_nothing() {
        let server = serve(honours_range);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), None);
        let tiny = Machine { free_space: |_| Ok(1000), ..TEST_MACHINE };
        let e = download_with(&request, TIMEOUTS, &AtomicBool::new(false), &mut |_| {}, tiny)
            .unwrap_err();
        let message = e.to_string();
        assert_eq!(e.code(), "download");
        assert!(message.contains("MB, only 1 KB free on"), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        assert_eq!(files_in(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn not_found_is_asked_once() {
        let server = serve(not_found);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), None);
        let e =
            download_with(&request, TIMEOUTS, &AtomicBool::new(false), &mut |_| {}, TEST_MACHINE)
                .unwrap_err();
        assert!(e.to_string().contains("not found: check the URL"), "{e}");
        assert_eq!(server.ranges().len(), 1);
        assert_eq!(files_in(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn unavailable_server_is_retried() {
        let server = serve(unavailable_twice);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), Some(payload_sha256()));
        let path =
            download_with(&request, TIMEOUTS, &AtomicBool::new(false), &mut |_| {}, TEST_MACHINE)
                .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), payload());
        assert_eq!(server.ranges(), [None, None, None]);
    }

    #[test]
    fn silent_server_times_out_and_keeps_the_part() {
        let server = serve(goes_silent);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), None);
        let timeouts = DownloadTimeouts { idle: Duration::from_millis(300), ..TIMEOUTS };
        let e =
            download_with(&request, timeouts, &AtomicBool::new(false), &mut |_| {}, TEST_MACHINE)
                .unwrap_err();
        assert_eq!(e.code(), "download");
        assert!(e.to_string().contains("sent nothing for 0.3 s"), "{e}");
        assert_eq!(server.ranges(), [None]);
        assert_eq!(files_in(dir.path()), ["tiny.gguf.part"]);
    }

    #[test]
    fn h2_a_trickling_download_stops_soon_after_its_cancel_and_keeps_its_part() {
        let server = serve(trickles);
        let dir = tempfile::tempdir().unwrap();
        let request = request(&server, dir.path(), None);
        let stopped = download_with(&request, TIMEOUTS, &TRICKLE_CANCEL, &mut |_| {}, TEST_MACHINE);
        assert!(matches!(stopped, Err(Error::Cancelled)), "{stopped:?}");
        // Stopped between two bytes of the body, not at the end of the connection's lifetime
        // (a thousand bytes) nor after a retry.
        let sent = TRICKLED.load(Ordering::SeqCst);
        assert!(sent < TRICKLE_BEFORE_CANCEL + 10, "{sent} bytes sent");
        assert_eq!(server.ranges(), [None]);
        assert_eq!(files_in(dir.path()), ["tiny.gguf.part"]);
    }

    #[test]
    fn web_page_is_not_taken_for_a_model() {
        let server = serve(web_page);
        let dir = tempfile::tempdir().unwrap();
        let e = download(
            &request(&server, dir.path(), None),
            TIMEOUTS,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a GGUF model"), "{e}");
        assert_eq!(files_in(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn import_copies_gguf_and_refuses_the_rest() {
        let from = tempfile::tempdir().unwrap();
        let models = tempfile::tempdir().unwrap();
        let source = from.path().join("tiny.gguf");
        std::fs::write(&source, payload()).unwrap();
        let mut last = None;
        let path =
            import_gguf(&source, models.path(), &AtomicBool::new(false), &mut |p| last = Some(*p))
                .unwrap();
        assert_eq!(path, models.path().join("tiny.gguf"));
        assert_eq!(std::fs::read(&path).unwrap(), payload());
        let len = payload().len() as u64;
        assert_eq!(last, Some(DownloadProgress { done: len, total: Some(len), resumed_from: 0 }));
        // Importing the imported file again leaves it as it is.
        assert_eq!(
            import_gguf(&path, models.path(), &AtomicBool::new(false), &mut |_| {}).unwrap(),
            path
        );
        assert_eq!(std::fs::read(&path).unwrap(), payload());

        let notes = from.path().join("notes.txt");
        std::fs::write(&notes, "Remember the milk.\n").unwrap();
        let e =
            import_gguf(&notes, models.path(), &AtomicBool::new(false), &mut |_| {}).unwrap_err();
        assert_eq!(e.code(), "unsupported_format");
        assert!(e.to_string().contains("is not a GGUF model"), "{e}");
        assert_eq!(files_in(models.path()), ["tiny.gguf"]);
    }

    #[test]
    fn cancelled_or_cramped_import_leaves_nothing() {
        let from = tempfile::tempdir().unwrap();
        let models = tempfile::tempdir().unwrap();
        let source = from.path().join("tiny.gguf");
        std::fs::write(&source, payload()).unwrap();
        let cancel = AtomicBool::new(false);
        let e = import_gguf(&source, models.path(), &cancel, &mut |p| {
            if p.done >= MB {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e:?}");
        assert_eq!(files_in(models.path()), Vec::<String>::new());

        let tiny = Machine { free_space: |_| Ok(1000), ..MACHINE };
        let e = import_with(&source, models.path(), &AtomicBool::new(false), &mut |_| {}, tiny)
            .unwrap_err();
        assert!(e.to_string().contains("only 1 KB free on"), "{e}");
        assert_eq!(files_in(models.path()), Vec::<String>::new());
    }

    #[test]
    fn headers_and_urls_are_read_carefully() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(
            content_range(&headers),
            Some(ContentRange { first: Some(100), total: Some(200) })
        );
        headers.insert(CONTENT_RANGE, "bytes */200".parse().unwrap());
        assert_eq!(content_range(&headers), Some(ContentRange { first: None, total: Some(200) }));
        headers.insert(CONTENT_RANGE, "items 1-2/3".parse().unwrap());
        assert_eq!(content_range(&headers), None);

        assert_eq!(
            shown("https://u:p@cdn.example/m.gguf?sig=abc#x"),
            "https://cdn.example/m.gguf?…"
        );
        assert_eq!(shown("https://example.org/m.gguf"), "https://example.org/m.gguf");
        let request = DownloadRequest {
            url: "https://cdn.example/m.gguf?token=s3cret".into(),
            sha256: None,
            dest: "m.gguf".into(),
        };
        assert!(!format!("{request:?}").contains("s3cret"));
        assert!(checksum("xyz").is_err());
        assert_eq!(checksum(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        assert_eq!(folder_of(Path::new("m.gguf")).unwrap(), Path::new("."));
    }
}
