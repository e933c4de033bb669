//! Ingestion: reading files within limits, recognising formats, decoding text, parsing each
//! format into blocks, and cutting blocks into chunks.
//!
//! Everything here is pure work on bytes and strings: it never touches the database. The worker
//! calls [`read_file`], then [`parse`] (text formats, in process) or the sandbox (complex
//! formats, in a child process that calls [`parse_format`]), then [`chunk::chunk`], and stores
//! the result in one transaction. A bad file ends in an [`Error`] for that file alone; nothing here panics on
//! input, and memory stays bounded by the file-size limit, which is checked before reading and
//! again while reading.

pub(crate) mod archive;
pub(crate) mod chunk;
mod decode;
mod email;
mod epub;
mod html;
pub(crate) mod ocr;
mod office;
mod pdf;
mod structured;
mod subtitles;
mod text;
pub(crate) mod walk;
mod xml;

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A parsed document: an optional title and its text as blocks in reading order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Document {
    pub title: Option<String>,
    pub media_type: &'static str,
    pub blocks: Vec<Block>,
    /// Parts that were left out (a scanned page, an oversized message), for the source's note.
    pub warnings: Vec<String>,
}

/// Size limits for parsing, and whether text in images is read, from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest file, message or attachment, in bytes.
    pub max_bytes: u64,
    /// Limits for zip containers.
    pub archive: archive::ArchiveLimits,
    /// Text recognition for images and scanned pages; `None` when it is off.
    pub ocr: Option<ocr::OcrOptions>,
}

impl Limits {
    #[cfg(test)]
    pub(crate) const fn for_tests() -> Limits {
        Limits {
            max_bytes: 50 * 1024 * 1024,
            archive: archive::ArchiveLimits {
                max_bytes: 200 * 1024 * 1024,
                max_entries: 10_000,
                max_ratio: 100,
            },
            ocr: None,
        }
    }
}

/// A run of text that belongs together (a paragraph, a table row, a subtitle cue).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Block {
    /// The heading path it sits under; chunks never cross from one section to another.
    pub section: String,
    pub text: String,
    /// The source line its text starts on (1-based), for formats with lines.
    pub first_line: Option<u32>,
    /// A time range in milliseconds, for subtitles.
    pub time_ms: Option<(u64, u64)>,
    /// The page (1-based), for paged documents.
    pub page: Option<u32>,
}

/// The formats Doppel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Plain,
    Markdown,
    Html,
    Code(&'static str),
    Csv,
    Tsv,
    Json,
    JsonLines,
    Srt,
    Vtt,
    Pdf,
    Docx,
    Odt,
    Epub,
    Eml,
    Mbox,
    /// An image whose text is read by recognition, by its kind (`png`, `jpeg`, `tiff`, `webp`).
    Image(&'static str),
    /// A recording whose speech is transcribed by a server, by its media type.
    Audio(&'static str),
}

impl Format {
    /// The format a file name suggests; `None` when the extension says nothing.
    pub(crate) fn from_path(path: &Path) -> Result<Option<Format>> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if let Some(kind) = binary_kind(&ext) {
            return Err(Error::unsupported(kind));
        }
        Ok(Some(match ext.as_str() {
            "txt" | "text" | "log" | "rst" | "org" | "tex" => Format::Plain,
            "md" | "markdown" | "mdown" | "mkd" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::JsonLines,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "odt" => Format::Odt,
            "epub" => Format::Epub,
            "eml" => Format::Eml,
            "mbox" => Format::Mbox,
            "png" => Format::Image("png"),
            "jpg" | "jpeg" => Format::Image("jpeg"),
            "tif" | "tiff" => Format::Image("tiff"),
            "webp" => Format::Image("webp"),
            other => match audio_media_type(other) {
                Some(media) => Format::Audio(media),
                None => match code_media_type(other) {
                    Some(media) => Format::Code(media),
                    None => return Ok(None),
                },
            },
        }))
    }

    /// Its name in metrics and reports, from a fixed list.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Code(_) => "code",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::JsonLines => "jsonl",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Epub => "epub",
            Format::Eml => "eml",
            Format::Mbox => "mbox",
            Format::Image(_) => "image",
            Format::Audio(media) if media.starts_with("video/") => "video",
            Format::Audio(_) => "audio",
        }
    }

    /// Formats whose parsers are complex enough to run in the sandboxed child process.
    pub(crate) fn is_complex(self) -> bool {
        matches!(
            self,
            Format::Pdf
                | Format::Docx
                | Format::Odt
                | Format::Epub
                | Format::Eml
                | Format::Mbox
                | Format::Image(_)
        )
    }

    /// The name of a complex format, as passed to the parser child.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Epub => "epub",
            Format::Eml => "eml",
            Format::Mbox => "mbox",
            Format::Image(kind) => kind,
            _ => "text",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Format> {
        let images = ocr::IMAGE_KINDS.map(|(kind, _)| Format::Image(kind));
        [Format::Pdf, Format::Docx, Format::Odt, Format::Epub, Format::Eml, Format::Mbox]
            .into_iter()
            .chain(images)
            .find(|f| f.name() == name)
    }

    /// The format a `Content-Type` names, for fetched URLs.
    pub(crate) fn from_media_type(media: &str) -> Option<Format> {
        Some(match media {
            "text/html" | "application/xhtml+xml" => Format::Html,
            "text/plain" => Format::Plain,
            "text/markdown" | "text/x-markdown" => Format::Markdown,
            "text/csv" => Format::Csv,
            "text/tab-separated-values" => Format::Tsv,
            "application/json" => Format::Json,
            "application/x-ndjson" => Format::JsonLines,
            "application/x-subrip" => Format::Srt,
            "text/vtt" => Format::Vtt,
            "application/pdf" => Format::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                Format::Docx
            }
            "application/vnd.oasis.opendocument.text" => Format::Odt,
            "application/epub+zip" => Format::Epub,
            "message/rfc822" => Format::Eml,
            "application/mbox" => Format::Mbox,
            "image/png" => Format::Image("png"),
            "image/jpeg" => Format::Image("jpeg"),
            "image/tiff" => Format::Image("tiff"),
            "image/webp" => Format::Image("webp"),
            _ => return None,
        })
    }

    /// The format the first bytes announce, for content whose name said nothing.
    pub(crate) fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(b"%PDF-") {
            Some(Format::Pdf)
        } else if let Some(kind) = ocr::sniff_image(bytes) {
            Some(Format::Image(kind))
        } else if bytes.starts_with(b"From ") && bytes.iter().take(4096).any(|b| *b == b'\n') {
            Some(Format::Mbox)
        } else {
            None
        }
    }

    pub(crate) fn media_type(self) -> &'static str {
        match self {
            Format::Plain => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Code(media) => media,
            Format::Csv => "text/csv",
            Format::Tsv => "text/tab-separated-values",
            Format::Json => "application/json",
            Format::JsonLines => "application/x-ndjson",
            Format::Srt => "application/x-subrip",
            Format::Vtt => "text/vtt",
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Odt => "application/vnd.oasis.opendocument.text",
            Format::Epub => "application/epub+zip",
            Format::Eml => "message/rfc822",
            Format::Mbox => "application/mbox",
            Format::Image(kind) => ocr::IMAGE_KINDS
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or("image/png", |(_, media)| media),
            Format::Audio(media) => media,
        }
    }
}

/// Kinds of binary files recognised by extension, with the reason they are refused.
pub(crate) fn binary_kind(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "doc" | "rtf" | "pages" => {
            "this word-processor format is not supported (save it as DOCX or ODT)"
        }
        "mobi" | "azw" | "azw3" => "this e-book format is not supported (EPUB is)",
        "xlsx" | "xls" | "ods" | "pptx" | "ppt" | "odp" => "office documents are not supported yet",
        "gif" | "xpm" | "xbm" | "ppm" | "pgm" | "bmp" | "ico" | "heic" | "psd" => {
            "this image format is not read (PNG, JPEG, TIFF and WebP are)"
        }
        "aac" => "this audio format is not read (MP3, M4A, WAV, OGG, OPUS and FLAC are)",
        "mov" | "avi" | "wmv" => "this video format is not read (MP4, MKV and WebM are)",
        "zip" | "gz" | "tgz" | "bz2" | "xz" | "zst" | "7z" | "rar" | "tar" | "deb" | "rpm"
        | "jar" => "archive",
        "exe" | "dll" | "so" | "dylib" | "o" | "a" | "class" | "pyc" | "wasm" | "bin" => {
            "executable or binary"
        }
        "sqlite" | "sqlite3" | "db" => "database file",
        "ttf" | "otf" | "woff" | "woff2" => "font",
        _ => return None,
    })
}

/// Recordings whose speech is transcribed, by extension.
fn audio_media_type(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "flac" => "audio/flac",
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        _ => return None,
    })
}

fn code_media_type(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "rs" => "text/x-rust",
        "py" | "pyi" => "text/x-python",
        "js" | "mjs" | "cjs" | "jsx" => "text/javascript",
        "ts" | "tsx" | "mts" => "text/x-typescript",
        "c" | "h" => "text/x-c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "text/x-c++",
        "go" => "text/x-go",
        "java" | "kt" | "kts" | "scala" | "groovy" => "text/x-java",
        "rb" => "text/x-ruby",
        "php" => "text/x-php",
        "cs" => "text/x-csharp",
        "swift" => "text/x-swift",
        "sh" | "bash" | "zsh" | "fish" => "text/x-shellscript",
        "sql" => "text/x-sql",
        "css" | "scss" | "less" => "text/css",
        "xml" | "svg" | "xsl" | "plist" => "text/xml",
        "toml" | "yaml" | "yml" | "ini" | "cfg" | "conf" | "properties" | "env" => "text/x-config",
        "lua" | "pl" | "pm" | "r" | "jl" | "hs" | "ml" | "ex" | "exs" | "erl" | "clj" | "el"
        | "vim" => "text/x-source",
        "makefile" | "mk" | "cmake" | "gradle" | "dockerfile" => "text/x-build",
        _ => return None,
    })
}

/// Reads a whole file, refusing anything but a regular file and anything over `limit` bytes.
///
/// The size is checked before opening and enforced while reading, so a sparse 10 GB file is
/// refused at once and a file that grows, or lies about its size, is never read past the limit.
pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Skipped {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > limit {
        return Err(Error::FileTooLarge { size: meta.len(), limit });
    }
    // Non-blocking open: should the path have become a FIFO since the check, open does not hang.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::FileTooLarge { size: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

/// What a file looked like at one moment: enough to tell, without reading it, that it has not
/// changed since (as `make` and `rsync` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl FileStat {
    /// The size and modification time of the regular file at `path` (following links), or
    /// `None` when it is no regular file or has no usable time.
    pub(crate) fn of(path: &Path) -> Option<FileStat> {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        let since = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(FileStat { size: meta.len(), mtime_ns: i64::try_from(since.as_nanos()).ok()? })
    }
}

/// The first `most` characters of `text` (all of it when shorter), cut between characters.
pub(crate) fn first_chars(text: &str, most: usize) -> &str {
    match text.char_indices().nth(most) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `text` when it has at most `most` characters, else its first `most` and an ellipsis.
pub(crate) fn clipped(text: &str, most: usize) -> String {
    let kept = first_chars(text, most);
    if kept.len() < text.len() { format!("{}…", kept.trim_end()) } else { text.to_string() }
}

/// SHA-256 of some bytes, as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 15), 16).unwrap_or('0'));
    }
    hex
}

/// Parses raw bytes of a text format into a document. `format` comes from the file name or
/// the content type; `None` means "sniff". `charset` is a declared encoding (from HTTP).
pub(crate) fn parse(
    bytes: &[u8],
    format: Option<Format>,
    charset: Option<&str>,
) -> Result<Document> {
    decode::refuse_known_binary(bytes)?;
    let text = decode::decode(bytes, charset)?;
    parse_text(&text, format.unwrap_or_else(|| sniff(&text)))
}

/// Parses any format, complex ones included. The sandboxed child calls this; `depth` counts
/// how deeply documents are nested (attachments of attachments).
pub(crate) fn parse_format(
    bytes: &[u8],
    format: Option<Format>,
    limits: &Limits,
    depth: usize,
) -> Result<Document> {
    let format = format.or_else(|| Format::sniff(bytes));
    let Some(complex) = format.filter(|f| f.is_complex()) else {
        return parse(bytes, format, None);
    };
    if depth > 3 {
        return Err(Error::unsupported("documents nested too deeply"));
    }
    let mut doc = match complex {
        Format::Pdf => pdf::pdf(bytes, limits.ocr.as_ref())?,
        Format::Image(kind) => {
            let Some(options) = &limits.ocr else {
                return Err(Error::NeedsOcr { reason: "an image".into() });
            };
            let (blocks, warnings) = ocr::image(bytes, kind, options)?;
            Document { blocks, warnings, ..Document::default() }
        }
        Format::Docx => office::docx(bytes, limits.archive)?,
        Format::Odt => office::odt(bytes, limits.archive)?,
        Format::Epub => epub::epub(bytes, limits.archive)?,
        Format::Eml => email::eml(bytes, limits)?,
        _ => email::mbox(bytes, limits)?,
    };
    doc.media_type = complex.media_type();
    finish(doc)
}

/// Parses the HTML of a web page, keeping its main content only (see `html::parse_main`).
pub(crate) fn parse_web_page(bytes: &[u8], charset: Option<&str>) -> Result<Document> {
    let text = decode::decode(bytes, charset)?;
    let mut doc = html::parse_main(&text);
    doc.media_type = Format::Html.media_type();
    finish(doc)
}

fn finish(mut doc: Document) -> Result<Document> {
    doc.blocks.retain(|b| !b.text.trim().is_empty());
    if doc.blocks.is_empty() {
        return Err(Error::Empty);
    }
    Ok(doc)
}

/// Parses text that is already decoded (pasted text, or a decoded file).
pub(crate) fn parse_text(text: &str, format: Format) -> Result<Document> {
    let mut doc = match format {
        Format::Plain | Format::Code(_) => text::plain(text),
        Format::Markdown => text::markdown(text),
        Format::Html => html::parse(text),
        Format::Csv => structured::delimited(text, b',')?,
        Format::Tsv => structured::delimited(text, b'\t')?,
        Format::Json => structured::json(text)?,
        Format::JsonLines => structured::json_lines(text)?,
        Format::Srt | Format::Vtt => subtitles::parse(text)?,
        complex => {
            return Err(Error::unsupported(format!("{} content is not text", complex.name())));
        }
    };
    doc.media_type = format.media_type();
    finish(doc)
}

/// Guesses the format of text whose file name said nothing.
fn sniff(text: &str) -> Format {
    let head: String = text.chars().take(512).collect::<String>().to_ascii_lowercase();
    let head = head.trim_start();
    if head.starts_with("<!doctype html") || head.starts_with("<html") {
        Format::Html
    } else if head.starts_with("webvtt") {
        Format::Vtt
    } else {
        Format::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_and_special_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = dir.path().join("sparse.txt");
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(10 * 1024 * 1024 * 1024).unwrap();
        let err = read_file(&sparse, 50 * 1024 * 1024).unwrap_err();
        assert_eq!(err.code(), "file_too_large");
        assert_eq!(err.to_string(), "file too large (10240 MB > limit of 50 MB)");
        assert_eq!(read_file(Path::new("/dev/zero"), 1024).unwrap_err().code(), "skipped");
        assert_eq!(read_file(dir.path(), 1024).unwrap_err().code(), "skipped");
    }

    #[test]
    fn formats_come_from_names_and_content() {
        assert_eq!(Format::from_path(Path::new("a/B.MD")).unwrap(), Some(Format::Markdown));
        assert_eq!(
            Format::from_path(Path::new("x.rs")).unwrap(),
            Some(Format::Code("text/x-rust"))
        );
        assert_eq!(Format::from_path(Path::new("README")).unwrap(), None);
        assert_eq!(Format::from_path(Path::new("scan.pdf")).unwrap(), Some(Format::Pdf));
        let err = Format::from_path(Path::new("old.doc")).unwrap_err();
        assert!(err.to_string().starts_with("unsupported format: this word-processor format"));
        assert_eq!(
            parse(b"<!DOCTYPE html><p>hi there</p>", None, None).unwrap().media_type,
            "text/html"
        );
        assert_eq!(parse(b"   \n\n  ", None, None).unwrap_err().code(), "empty");
        assert_eq!(Format::sniff(b"%PDF-1.4"), Some(Format::Pdf));
        assert_eq!(Format::from_media_type("application/pdf"), Some(Format::Pdf));
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
