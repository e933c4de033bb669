//! PDF: text per page, the page number as each passage's location.
//!
//! `lopdf` was chosen by measurement (BENCHMARKS.md): on the Debian PDFs and a 429-page PDF
//! made from the handbook it matched poppler's text (word recall 0.999 after ligatures are
//! unfolded, every page aligned), was the fastest of the pure-Rust extractors tried, and ended
//! every hostile file (truncated, garbage, reference loops) with an error instead of a hang or
//! a stack overflow. It still runs only inside the sandboxed child.
//!
//! Pages without extractable text (scans) are read by text recognition when it is on (see
//! [`super::ocr`]; only those pages, the others keep their text layer). When it is off they
//! are reported in the source's note, and a PDF with no text at all is refused as a scan that
//! needs it, never stored silently empty.

use lopdf::{Document as Pdf, Object, ObjectId};

use super::ocr::{self, OcrOptions};
use super::{Block, Document};
use crate::error::{Error, Result};

pub(super) fn pdf(bytes: &[u8], ocr: Option<&OcrOptions>) -> Result<Document> {
    if !bytes.starts_with(b"%PDF")
        && let Some(kind) = ocr::sniff_image(bytes)
    {
        return Err(Error::Malformed {
            reason: format!("named as a PDF but holds a {kind} image"),
        });
    }
    let pdf = Pdf::load_mem(bytes)
        .map_err(|e| Error::Malformed { reason: format!("not a readable PDF ({e})") })?;
    let pages = pdf.get_pages();
    if pages.is_empty() {
        return Err(Error::Malformed { reason: "the PDF has no pages".into() });
    }
    let mut blocks = Vec::new();
    let mut empty = Vec::new();
    let mut broken = Vec::new();
    for (&number, &id) in &pages {
        // A page without fonts has no text (a scan): known at once, without extracting (which
        // walks the whole page tree again for every page).
        if pdf.get_page_fonts(id).is_ok_and(|fonts| fonts.is_empty()) {
            empty.push(number);
            continue;
        }
        match pdf.extract_text(&[number]) {
            Ok(text) => {
                let text = unfold_ligatures(&text);
                let paragraphs = paragraphs(&text);
                if paragraphs.is_empty() {
                    empty.push(number);
                }
                blocks.extend(paragraphs.into_iter().map(|text| Block {
                    text,
                    page: Some(number),
                    ..Block::default()
                }));
            }
            Err(_) => broken.push(number),
        }
    }
    let mut warnings = Vec::new();
    if !empty.is_empty() {
        match ocr {
            Some(options) if empty.len() <= options.max_pages as usize => {
                let sized: Vec<(u32, Option<(f32, f32)>)> =
                    empty.iter().map(|n| (*n, page_size(&pdf, pages[n]))).collect();
                let (read, notes) = ocr::pdf_pages(bytes, &sized, options)?;
                blocks.extend(read);
                // Each page's blocks stay in their order; pages come in order.
                blocks.sort_by_key(|b| b.page);
                warnings.extend(notes);
            }
            Some(options) => {
                let why = format!(
                    "{} pages have no text layer, more than the {} that text recognition reads in one file (setting ocr_max_pages)",
                    empty.len(),
                    options.max_pages
                );
                if blocks.is_empty() {
                    return Err(Error::unsupported(why));
                }
                warnings.push(why);
            }
            None if blocks.is_empty() && broken.is_empty() => {
                return Err(Error::NeedsOcr {
                    reason: "a scanned PDF: no page has a text layer".into(),
                });
            }
            None => warnings.push(format!(
                "{} without a text layer (scanned?); turn on text recognition to read them",
                page_list(&empty)
            )),
        }
    }
    if blocks.is_empty() {
        return Err(if broken.is_empty() {
            Error::Empty
        } else {
            Error::Malformed { reason: format!("no page could be read ({} pages)", pages.len()) }
        });
    }
    if !broken.is_empty() {
        warnings.push(format!("{} could not be read", page_list(&broken)));
    }
    Ok(Document { title: info_title(&pdf), blocks, warnings, ..Document::default() })
}

/// The page's text cut into paragraphs at blank lines (lopdf writes them where the PDF's text
/// objects leave a gap; many PDFs give one run of text per page, which the chunker then cuts at
/// sentences).
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Typographic ligatures as the letters they stand for, so that "ﬁle" is found as "file".
fn unfold_ligatures(text: &str) -> String {
    if !text.chars().any(|c| ('\u{FB00}'..='\u{FB06}').contains(&c)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            other => out.push(other),
        }
    }
    out
}

/// A page's size in points, from its own or an inherited media box.
fn page_size(pdf: &Pdf, page: ObjectId) -> Option<(f32, f32)> {
    let mut node = pdf.get_object(page).ok()?.as_dict().ok()?;
    for _ in 0..32 {
        if let Ok(Object::Array(corners)) = node.get(b"MediaBox").map(|o| match o {
            Object::Reference(id) => pdf.get_object(*id).unwrap_or(o),
            other => other,
        }) {
            let n: Vec<f32> = corners.iter().filter_map(|v| v.as_float().ok()).collect();
            if let [x0, y0, x1, y1] = n[..] {
                return Some(((x1 - x0).abs(), (y1 - y0).abs()));
            }
            return None;
        }
        let Ok(Object::Reference(parent)) = node.get(b"Parent") else { return None };
        node = pdf.get_object(*parent).ok()?.as_dict().ok()?;
    }
    None
}

pub(super) fn page_list(pages: &[u32]) -> String {
    const SHOWN: usize = 10;
    let mut list = pages.iter().take(SHOWN).map(u32::to_string).collect::<Vec<_>>().join(", ");
    if pages.len() > SHOWN {
        list.push_str(&format!(" and {} more", pages.len() - SHOWN));
    }
    if pages.len() == 1 { format!("page {list}") } else { format!("pages {list}") }
}

/// The document's own title from its information dictionary, when it has a non-empty one.
fn info_title(pdf: &Pdf) -> Option<String> {
    let info = match pdf.trailer.get(b"Info").ok()? {
        Object::Reference(id) => pdf.get_object(*id).ok()?.as_dict().ok()?,
        Object::Dictionary(dict) => dict,
        _ => return None,
    };
    let Object::String(bytes, _) = info.get(b"Title").ok()? else { return None };
    let title = match bytes.strip_prefix(&[0xFE, 0xFF]) {
        Some(utf16) => {
            let units: Vec<u16> =
                utf16.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        // PDFDocEncoding matches Latin-1 for the printable characters that matter here.
        None => bytes.iter().map(|&b| b as char).collect(),
    };
    let title = title.trim().to_string();
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ligatures_pages_and_paragraphs() {
        assert_eq!(unfold_ligatures("ﬁle ﬂow eﬀect"), "file flow effect");
        assert_eq!(paragraphs("a\nb\n\n\nc\n"), vec!["a\nb".to_string(), "c".to_string()]);
        assert_eq!(page_list(&[3]), "page 3");
        assert_eq!(
            page_list(&(1..=12).collect::<Vec<_>>()),
            "pages 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more"
        );
    }

    #[test]
    fn a_real_pdf_has_its_pages() {
        let bytes =
            std::fs::read("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf").unwrap();
        let doc = pdf(&bytes, None).unwrap();
        // Its information dictionary has an empty title: the source keeps its file name.
        assert_eq!(doc.title, None);
        assert_eq!(doc.blocks.first().and_then(|b| b.page), Some(1));
        assert_eq!(doc.blocks.last().and_then(|b| b.page), Some(17));
        assert!(
            doc.blocks.iter().any(|b| b.page == Some(14) && b.text.contains("2.11. Subclassing"))
        );
        assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    }

    #[test]
    fn broken_pdfs_are_malformed() {
        let bytes =
            std::fs::read("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf").unwrap();
        let err = pdf(&bytes[..bytes.len() / 2], None).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
        assert_eq!(pdf(b"%PDF-1.4 garbage", None).unwrap_err().code(), "malformed");
    }
}
