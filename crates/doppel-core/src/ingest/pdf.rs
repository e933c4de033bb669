//! PDF: text per page, the page number as each passage's location.
//!
//! `lopdf` was chosen by measurement (BENCHMARKS.md): on the Debian PDFs and a 429-page PDF
//! made from the handbook it matched poppler's text (word recall 0.999 after ligatures are
//! unfolded, every page aligned), was the fastest of the pure-Rust extractors tried, and ended
//! every hostile file (truncated, garbage, reference loops) with an error instead of a hang or
//! a stack overflow. It still runs only inside the sandboxed child.
//!
//! Pages without extractable text (scans) are reported in the source's note; a PDF with no text
//! at all is refused as such, never stored silently empty.

use lopdf::{Document as Pdf, Object};

use super::{Block, Document};
use crate::error::{Error, Result};

pub(super) fn pdf(bytes: &[u8]) -> Result<Document> {
    let pdf = Pdf::load_mem(bytes)
        .map_err(|e| Error::Malformed { reason: format!("not a readable PDF ({e})") })?;
    let pages = pdf.get_pages();
    if pages.is_empty() {
        return Err(Error::Malformed { reason: "the PDF has no pages".into() });
    }
    let mut blocks = Vec::new();
    let mut empty = Vec::new();
    let mut broken = Vec::new();
    for &number in pages.keys() {
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
    if blocks.is_empty() {
        return Err(if broken.is_empty() {
            Error::unsupported(
                "no page has extractable text (a scanned PDF? text recognition is not supported)",
            )
        } else {
            Error::Malformed { reason: format!("no page could be read ({} pages)", pages.len()) }
        });
    }
    let mut warnings = Vec::new();
    if !empty.is_empty() {
        warnings.push(format!("{} without extractable text (scanned?)", page_list(&empty)));
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

fn page_list(pages: &[u32]) -> String {
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
        let doc = pdf(&bytes).unwrap();
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
        let err = pdf(&bytes[..bytes.len() / 2]).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
        assert_eq!(pdf(b"%PDF-1.4 garbage").unwrap_err().code(), "malformed");
    }
}
