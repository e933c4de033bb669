//! Text recognition (OCR) for images and for the pages of a PDF that have no text layer.
//!
//! It runs only inside the sandboxed parser child (see [`crate::sandbox`]), which starts
//! Debian's `tesseract` (and poppler's `pdftoppm` to render a page) as programs of its own:
//! they inherit the child's memory and CPU limits and its process group, so the parent's
//! wall-clock timeout and a cancel stop them too. Each page read is reported to the parent as
//! progress, which also restarts its timeout: a long scan may take as long as it needs, a page
//! that hangs may not.
//!
//! An image's size is read from its header before anything decodes it, so a decompression bomb
//! is refused with its size, and a PDF page is rendered at a lower resolution when its size in
//! pixels would pass the same limit. Paragraphs whose mean word confidence is below the
//! owner's threshold are kept under their own heading, "unsure text recognition", which every
//! citation of them shows.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::Block;
use crate::error::{Error, Result};

/// The heading of paragraphs recognised with low confidence.
pub(crate) const UNSURE: &str = "unsure text recognition";

/// The most pixels an image (or a rendered page) may have: an A3 page at 300 dpi has 17.4
/// million; 40 million bound the recogniser's memory well under the parser's limit.
pub(crate) const MAX_PIXELS: u64 = 40_000_000;

/// How text recognition is asked to run, from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OcrOptions {
    /// Tesseract's language codes joined by `+` (`eng`, `eng+fra`).
    pub languages: String,
    /// Paragraphs below this mean confidence (0 to 100) are marked unsure.
    pub min_confidence: u32,
    /// Resolution scanned PDF pages are rendered at.
    pub dpi: u32,
    /// Most pages of one PDF that are read by recognition.
    pub max_pages: u32,
}

impl OcrOptions {
    /// Whether `languages` is a list of Tesseract language codes (`eng+fra`, `chi_sim`).
    pub(crate) fn valid_languages(languages: &str) -> bool {
        !languages.is_empty()
            && languages.split('+').all(|code| {
                !code.is_empty()
                    && code.len() <= 32
                    && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
    }
}

/// The image formats read, by the name the parser child is given.
pub(crate) const IMAGE_KINDS: [(&str, &str); 4] =
    [("png", "image/png"), ("jpeg", "image/jpeg"), ("tiff", "image/tiff"), ("webp", "image/webp")];

/// What the first bytes of an image say it is, for the formats read.
pub(crate) fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    use imagesize::ImageType;
    match imagesize::image_type(bytes).ok()? {
        ImageType::Png => Some("png"),
        ImageType::Jpeg => Some("jpeg"),
        ImageType::Tiff => Some("tiff"),
        ImageType::Webp => Some("webp"),
        _ => None,
    }
}

/// The text of an image, as paragraphs. A multi-page TIFF gives each page its number.
pub(crate) fn image(
    bytes: &[u8],
    kind: &str,
    options: &OcrOptions,
) -> Result<(Vec<Block>, Vec<String>)> {
    match sniff_image(bytes) {
        Some(found) if found == kind => {}
        Some(found) => {
            return Err(Error::Malformed {
                reason: format!("named as a {kind} image but holds a {found} image"),
            });
        }
        None => return Err(Error::Malformed { reason: format!("not a readable {kind} image") }),
    }
    let size = imagesize::blob_size(bytes)
        .map_err(|_| Error::Malformed { reason: format!("not a readable {kind} image") })?;
    let pixels = (size.width as u64).saturating_mul(size.height as u64);
    if pixels > MAX_PIXELS {
        return Err(Error::Malformed {
            reason: format!(
                "the image is too large to read: {} × {} pixels (the limit is {} million)",
                size.width,
                size.height,
                MAX_PIXELS / 1_000_000
            ),
        });
    }
    if size.width < 8 || size.height < 8 {
        return Err(Error::Empty);
    }
    if truncated(bytes, kind) {
        return Err(Error::Malformed {
            reason: format!("the image is truncated (the {kind} file has no end)"),
        });
    }
    progress(0, 1);
    let tsv = recognise(bytes, options, None)?;
    progress(1, 1);
    let pages = paragraphs(&tsv, options.min_confidence);
    let several = pages.iter().any(|p| p.page > 1);
    let mut blocks = Vec::new();
    let mut unsure = 0;
    for p in pages {
        unsure += usize::from(p.unsure);
        blocks.push(p.into_block(several));
    }
    if blocks.is_empty() {
        return Err(Error::Empty);
    }
    Ok((blocks, unsure_warning(unsure, options).into_iter().collect()))
}

/// Whether an image stops before its end: a JPEG without its end marker, a PNG without its
/// last chunk. A decoder would read the top of such an image and make up the rest.
fn truncated(bytes: &[u8], kind: &str) -> bool {
    let end =
        bytes.len() - bytes.iter().rev().take_while(|b| matches!(b, 0 | b'\n' | b'\r')).count();
    let tail = &bytes[end.saturating_sub(1024)..end];
    match kind {
        "jpeg" => !tail.windows(2).any(|w| w == [0xFF, 0xD9]),
        "png" => !tail.windows(4).any(|w| w == b"IEND"),
        _ => false,
    }
}

/// Reads the given pages of a PDF by rendering each and recognising its text, reporting
/// progress page by page. `sizes` gives each page's size in points, when known, to keep the
/// rendering under [`MAX_PIXELS`]. Pages that fail are listed in the warnings.
pub(crate) fn pdf_pages(
    pdf: &[u8],
    pages: &[(u32, Option<(f32, f32)>)],
    options: &OcrOptions,
) -> Result<(Vec<Block>, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut failed = Vec::new();
    let mut blank = 0;
    let mut unsure = 0;
    let total = pages.len() as u32;
    progress(0, total);
    for (done, &(page, size)) in pages.iter().enumerate() {
        let dpi = fitting_dpi(options.dpi, size);
        let read = render(pdf, page, dpi).and_then(|png| recognise(&png, options, Some(dpi)));
        match read {
            Ok(tsv) => {
                let found = paragraphs(&tsv, options.min_confidence);
                blank += usize::from(found.is_empty());
                for mut p in found {
                    unsure += usize::from(p.unsure);
                    p.page = page;
                    blocks.push(p.into_block(true));
                }
            }
            // A missing program is the same for every page: said once, for the whole file.
            Err(e @ Error::ToolMissing { .. }) => return Err(e),
            Err(_) => failed.push(page),
        }
        progress(done as u32 + 1, total);
    }
    let mut warnings = Vec::new();
    if !failed.is_empty() {
        warnings.push(format!(
            "{} could not be read by text recognition",
            super::pdf::page_list(&failed)
        ));
    }
    if blank > 0 {
        warnings.push(format!("{blank} scanned page(s) held no text"));
    }
    warnings.extend(unsure_warning(unsure, options));
    Ok((blocks, warnings))
}

fn unsure_warning(unsure: usize, options: &OcrOptions) -> Option<String> {
    (unsure > 0).then(|| {
        format!(
            "{unsure} paragraph(s) recognised with low confidence (below {}%), marked \"{UNSURE}\"",
            options.min_confidence
        )
    })
}

/// The resolution to render a page at: the one asked for, lowered when the page is so large
/// that it would pass [`MAX_PIXELS`].
fn fitting_dpi(dpi: u32, size: Option<(f32, f32)>) -> u32 {
    let Some((width, height)) = size.filter(|(w, h)| *w > 0.0 && *h > 0.0) else { return dpi };
    let inches = f64::from(width) / 72.0 * f64::from(height) / 72.0;
    let most = (MAX_PIXELS as f64 / inches).sqrt().floor() as u32;
    dpi.min(most.max(10))
}

/// Tells the parent how far the reading is (one line on stderr, which it watches).
fn progress(done: u32, total: u32) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}{done} {total}", crate::sandbox::PROGRESS_MARK);
    let _ = err.flush();
}

/// Renders one page of a PDF as a greyscale PNG with poppler's `pdftoppm`.
fn render(pdf: &[u8], page: u32, dpi: u32) -> Result<Vec<u8>> {
    let page = page.to_string();
    let dpi = dpi.to_string();
    let args = ["-r", &dpi, "-f", &page, "-l", &page, "-gray", "-png", "-"];
    let (ok, out, _) = run("pdftoppm", "poppler-utils", &args, pdf)?;
    if !ok || out.is_empty() {
        return Err(Error::Malformed { reason: format!("page {page} could not be rendered") });
    }
    Ok(out)
}

/// Recognises the text of an image with `tesseract`, as its TSV (words with their boxes,
/// paragraph numbers and confidences). Page segmentation with orientation detection reads
/// turned and upside-down pages; without its data file, plain segmentation is tried.
fn recognise(image: &[u8], options: &OcrOptions, dpi: Option<u32>) -> Result<String> {
    let dpi = dpi.map(|d| d.to_string());
    for psm in ["1", "3"] {
        let mut args = vec!["stdin", "stdout", "-l", &options.languages, "--psm", psm];
        if let Some(dpi) = &dpi {
            args.extend(["--dpi", dpi]);
        }
        args.push("tsv");
        let (ok, out, err) = run("tesseract", "tesseract-ocr", &args, image)?;
        if ok {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        let err = String::from_utf8_lossy(&err);
        if err.contains("Failed loading language") || err.contains("Could not initialize") {
            if psm == "1" && err.contains("osd") {
                continue;
            }
            return Err(Error::ToolMissing {
                tool: format!("Tesseract's language data for {}", options.languages),
                package: tesseract_packages(&options.languages),
            });
        }
        return Err(Error::Malformed {
            reason: "the image could not be read (damaged or truncated?)".into(),
        });
    }
    Err(Error::Malformed { reason: "the image could not be read".into() })
}

/// The Debian packages of Tesseract's language data for `languages` (`eng+fra` gives
/// `tesseract-ocr-eng tesseract-ocr-fra`).
pub(crate) fn tesseract_packages(languages: &str) -> String {
    languages
        .split('+')
        .map(|code| format!("tesseract-ocr-{}", code.to_ascii_lowercase().replace('_', "-")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a program with `input` on its stdin; returns whether it succeeded, its stdout and its
/// stderr. The program only inherits what the sandbox allows; one thread feeds it while this
/// one reads, so neither pipe can fill up and stall both sides.
fn run(
    program: &str,
    package: &str,
    args: &[&str],
    input: &[u8],
) -> Result<(bool, Vec<u8>, Vec<u8>)> {
    let mut child = Command::new(program)
        .args(args)
        // One thread: the recogniser shares the machine with the window and the embedder.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::ToolMissing { tool: program.to_string(), package: package.to_string() }
            }
            _ => Error::Malformed { reason: format!("{program} could not be started: {e}") },
        })?;
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(input);
            }
        });
        let errors = scope.spawn(move || {
            let mut text = Vec::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.take(64 * 1024).read_to_end(&mut text);
            }
            text
        });
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.as_mut() {
            let _ = stdout.read_to_end(&mut out);
        }
        let status = child
            .wait()
            .map_err(|e| Error::Malformed { reason: format!("{program} failed: {e}") })?;
        Ok((status.success(), out, errors.join().unwrap_or_default()))
    })
}

/// Whether text recognition can run here, as the doctor and the window show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OcrStatus {
    /// Whether the owner turned it on (setting `ocr`).
    pub enabled: bool,
    /// Tesseract's version, when it is installed.
    pub tesseract: Option<String>,
    /// Whether poppler's `pdftoppm` (for scanned PDF pages) is installed.
    pub pdftoppm: bool,
    /// The languages asked for (`eng+fra`).
    pub languages: String,
    /// The languages Tesseract has data for.
    pub installed: Vec<String>,
    /// What is missing for it to work, each with its fix; empty when nothing is (or when it
    /// is off).
    pub problems: Vec<String>,
}

/// Looks for the programs and language data text recognition needs, where the parser child
/// looks (`/usr/bin`, `/bin`).
pub(crate) fn status(enabled: bool, languages: &str) -> OcrStatus {
    let output = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let tesseract = output("tesseract", "--version").and_then(|v| {
        v.lines().next().map(|l| l.trim_start_matches("tesseract ").trim().to_string())
    });
    let pdftoppm =
        ["/usr/bin/pdftoppm", "/bin/pdftoppm"].iter().any(|p| std::path::Path::new(p).exists());
    let installed: Vec<String> = output("tesseract", "--list-langs")
        .map(|list| {
            list.lines().skip(1).map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    if enabled {
        if tesseract.is_none() {
            problems.push(
                "text recognition is on, but Tesseract is not installed: images and scans cannot be read. Fix: sudo apt install tesseract-ocr".to_string(),
            );
        } else {
            let missing: Vec<&str> =
                languages.split('+').filter(|code| !installed.iter().any(|i| i == code)).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "Tesseract has no data for {}: images and scans cannot be read. Fix: sudo apt install {}",
                    missing.join(", "),
                    tesseract_packages(&missing.join("+"))
                ));
            }
        }
        if !pdftoppm {
            problems.push(
                "text recognition is on, but poppler's pdftoppm is not installed: scanned PDF pages cannot be read. Fix: sudo apt install poppler-utils".to_string(),
            );
        }
    }
    OcrStatus {
        enabled,
        tesseract,
        pdftoppm,
        languages: languages.to_string(),
        installed,
        problems,
    }
}

/// One recognised paragraph.
#[derive(Debug, Clone, PartialEq)]
struct Paragraph {
    page: u32,
    text: String,
    unsure: bool,
}

impl Paragraph {
    fn into_block(self, paged: bool) -> Block {
        Block {
            section: if self.unsure { UNSURE.to_string() } else { String::new() },
            text: self.text,
            page: paged.then_some(self.page),
            ..Block::default()
        }
    }
}

/// Tesseract's TSV as paragraphs in reading order: words joined by spaces, lines by line
/// breaks (a word cut by a hyphen at a line's end joined again), each paragraph marked unsure
/// when its mean word confidence is below `min_confidence`.
fn paragraphs(tsv: &str, min_confidence: u32) -> Vec<Paragraph> {
    let mut out: Vec<Paragraph> = Vec::new();
    let mut key = None;
    let mut line = None;
    let mut confidences: Vec<f32> = Vec::new();
    let finish = |out: &mut Vec<Paragraph>, confidences: &mut Vec<f32>| {
        if let Some(last) = out.last_mut() {
            let mean = confidences.iter().sum::<f32>() / confidences.len().max(1) as f32;
            last.unsure = mean < min_confidence as f32;
        }
        confidences.clear();
    };
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" {
            continue;
        }
        let word = cols[11].trim();
        if word.is_empty() {
            continue;
        }
        let number = |i: usize| cols[i].parse::<u32>().unwrap_or(0);
        let here = (number(1), number(2), number(3));
        if key != Some(here) {
            finish(&mut out, &mut confidences);
            out.push(Paragraph { page: here.0.max(1), text: String::new(), unsure: false });
            key = Some(here);
            line = None;
        }
        let Some(paragraph) = out.last_mut() else { continue };
        let this_line = number(4);
        if line.is_some_and(|l| l != this_line) {
            let cut = paragraph.text.ends_with('-')
                && word.chars().next().is_some_and(char::is_lowercase);
            if cut {
                paragraph.text.pop();
            } else {
                paragraph.text.push('\n');
            }
        } else if !paragraph.text.is_empty() {
            paragraph.text.push(' ');
        }
        line = Some(this_line);
        paragraph.text.push_str(word);
        if let Ok(conf) = cols[10].parse::<f32>()
            && conf >= 0.0
        {
            confidences.push(conf);
        }
    }
    finish(&mut out, &mut confidences);
    out.retain(|p| p.text.chars().any(char::is_alphanumeric));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n";

    fn word(page: u32, block: u32, par: u32, line: u32, conf: f32, text: &str) -> String {
        format!("5\t{page}\t{block}\t{par}\t{line}\t1\t0\t0\t1\t1\t{conf}\t{text}\n")
    }

    #[test]
    fn words_become_paragraphs_with_their_confidence() {
        let tsv = [
            HEAD.to_string(),
            "1\t1\t0\t0\t0\t0\t0\t0\t9\t9\t-1\t\n".into(),
            word(1, 1, 1, 1, 96.0, "The"),
            word(1, 1, 1, 1, 95.0, "infor-"),
            word(1, 1, 1, 2, 91.0, "mation"),
            word(1, 1, 1, 2, 90.0, "is"),
            word(1, 1, 1, 3, 93.0, "Here."),
            word(1, 2, 1, 1, 20.0, "sc#ibble"),
            word(1, 2, 1, 1, 30.0, "~~"),
            word(2, 1, 1, 1, 88.0, "Next"),
            word(2, 1, 1, 1, 10.0, "|"),
        ]
        .concat();
        let found = paragraphs(&tsv, 60);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].text, "The information is\nHere.");
        assert!(!found[0].unsure);
        assert_eq!(found[1].text, "sc#ibble ~~");
        assert!(found[1].unsure);
        assert_eq!((found[2].page, found[2].unsure), (2, true));
        assert_eq!(found[1].clone().into_block(false).section, UNSURE);
    }

    #[test]
    fn big_pages_render_at_a_lower_resolution() {
        // A4 at 300 dpi fits; a 200-inch poster does not.
        assert_eq!(fitting_dpi(300, Some((595.0, 842.0))), 300);
        let poster = fitting_dpi(300, Some((14_400.0, 14_400.0)));
        assert!(poster < 40, "{poster}");
        assert_eq!(fitting_dpi(150, None), 150);
    }

    #[test]
    fn languages_are_codes_and_name_their_packages() {
        assert!(OcrOptions::valid_languages("eng+fra"));
        assert!(OcrOptions::valid_languages("chi_sim"));
        assert!(!OcrOptions::valid_languages("eng; rm -rf"));
        assert!(!OcrOptions::valid_languages("eng++fra"));
        assert_eq!(tesseract_packages("eng+chi_sim"), "tesseract-ocr-eng tesseract-ocr-chi-sim");
    }

    #[test]
    fn images_are_checked_before_anything_decodes_them() {
        let options =
            OcrOptions { languages: "eng".into(), min_confidence: 60, dpi: 300, max_pages: 10 };
        // A PNG header that declares 100,000 × 100,000 pixels.
        let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bomb.extend(100_000u32.to_be_bytes());
        bomb.extend(100_000u32.to_be_bytes());
        bomb.extend([8, 0, 0, 0, 0, 0, 0, 0, 0]);
        let err = image(&bomb, "png", &options).unwrap_err();
        assert!(err.to_string().contains("100000 × 100000 pixels"), "{err}");
        let err = image(&bomb, "jpeg", &options).unwrap_err();
        assert!(err.to_string().contains("holds a png image"), "{err}");
        assert_eq!(image(b"%PDF-1.4", "png", &options).unwrap_err().code(), "malformed");
    }
}
