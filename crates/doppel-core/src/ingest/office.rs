//! Word-processor documents: DOCX (Office Open XML) and ODT (OpenDocument Text).
//!
//! Both are zip containers of XML. Paragraphs become blocks, headings open sections (DOCX by
//! paragraph style or outline level, ODT by `text:h`), and each table row becomes one block with
//! its cells separated by ` | `. Runs of text, tabs and line breaks keep their order.

use super::archive::{Archive, ArchiveLimits};
use super::xml::{Xml, walk};
use super::{Block, Document};
use crate::error::{Error, Result};

/// Builds a document's blocks from paragraphs and headings, tracking the heading path.
#[derive(Default)]
pub(super) struct Outline {
    headings: Vec<(usize, String)>,
    section: String,
    pub blocks: Vec<Block>,
    pub first_heading: Option<String>,
}

impl Outline {
    pub(super) fn heading(&mut self, level: usize, text: &str) {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return;
        }
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, text.clone()));
        self.section =
            self.headings.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" › ");
        self.first_heading.get_or_insert_with(|| text.clone());
        self.blocks.push(Block { section: self.section.clone(), text, ..Block::default() });
    }

    pub(super) fn paragraph(&mut self, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.blocks.push(Block {
                section: self.section.clone(),
                text: text.to_string(),
                ..Block::default()
            });
        }
    }
}

/// Paragraph and table state shared by both formats.
#[derive(Default)]
struct Body {
    outline: Outline,
    para: String,
    level: Option<usize>,
    tables: usize,
    row: Vec<String>,
    cell: String,
}

impl Body {
    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.para);
        if self.tables > 0 {
            self.cell.push_str(text.trim());
            self.cell.push('\n');
        } else if let Some(level) = self.level.take() {
            self.outline.heading(level, &text);
        } else {
            self.outline.paragraph(&text);
        }
        self.level = None;
    }

    fn end_cell(&mut self) {
        let cell = std::mem::take(&mut self.cell);
        self.row.push(cell.trim().replace('\n', " "));
    }

    fn end_row(&mut self) {
        let cells: Vec<String> =
            std::mem::take(&mut self.row).into_iter().filter(|c| !c.is_empty()).collect();
        if self.tables == 1 {
            self.outline.paragraph(&cells.join(" | "));
        } else {
            // A nested table's row stays inside the outer cell.
            self.cell.push_str(&cells.join(" | "));
            self.cell.push('\n');
        }
    }
}

pub(super) fn docx(bytes: &[u8], limits: ArchiveLimits) -> Result<Document> {
    let mut zip = Archive::open(bytes, limits, "DOCX document")?;
    let body_xml = zip.read_text("word/document.xml")?.ok_or_else(|| Error::Malformed {
        reason: "DOCX document without word/document.xml".into(),
    })?;
    let style_names = match zip.read_text("word/styles.xml")? {
        Some(xml) => style_names(&xml)?,
        None => Vec::new(),
    };
    let title = match zip.read_text("docProps/core.xml")? {
        Some(xml) => element_text(&xml, "title")?,
        None => None,
    };
    let mut body = Body::default();
    let mut in_text = false;
    walk(&body_xml, "DOCX document", |event| match event {
        Xml::Start { name, attrs, empty } => match name.as_str() {
            "p" if !empty => body.para.clear(),
            "pStyle" => {
                let id = Xml::attr(&attrs, "val").unwrap_or_default();
                let name = style_names
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map_or(id.as_str(), |(_, n)| n.as_str());
                body.level = body.level.or(heading_level(name));
            }
            "outlineLvl" => {
                let level = Xml::attr(&attrs, "val").and_then(|v| v.parse::<usize>().ok());
                body.level = body.level.or(level.filter(|l| *l < 9).map(|l| l + 1));
            }
            "t" => in_text = !empty,
            "tab" => body.para.push('\t'),
            "br" | "cr" => body.para.push('\n'),
            "tbl" => body.tables += 1,
            "tr" => body.row.clear(),
            "tc" => body.cell.clear(),
            _ => {}
        },
        Xml::Text(text) if in_text => body.para.push_str(&text),
        Xml::Text(_) => {}
        Xml::End { name } => match name.as_str() {
            "t" => in_text = false,
            "p" => body.end_paragraph(),
            "tc" => body.end_cell(),
            "tr" => body.end_row(),
            "tbl" => body.tables = body.tables.saturating_sub(1),
            _ => {}
        },
    })?;
    let title = title.or(body.outline.first_heading.clone());
    Ok(Document { title, media_type: "", blocks: body.outline.blocks, warnings: Vec::new() })
}

/// `(style id, style name)` pairs from `word/styles.xml`, so that localised style ids
/// ("berschrift1") are recognised by their name ("heading 1").
fn style_names(xml: &str) -> Result<Vec<(String, String)>> {
    let mut names = Vec::new();
    let mut current: Option<String> = None;
    walk(xml, "DOCX styles", |event| match event {
        Xml::Start { name, attrs, .. } if name == "style" => current = Xml::attr(&attrs, "styleId"),
        Xml::Start { name, attrs, .. } if name == "name" => {
            if let (Some(id), Some(value)) = (current.take(), Xml::attr(&attrs, "val")) {
                names.push((id, value));
            }
        }
        _ => {}
    })?;
    Ok(names)
}

/// The heading level a paragraph style stands for: "Title" and "heading N" (in any case and
/// spacing); anything else is body text.
fn heading_level(style: &str) -> Option<usize> {
    let lower = style.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(1);
    }
    let digits = lower.strip_prefix("heading")?;
    digits.parse::<usize>().ok().filter(|l| (1..=9).contains(l))
}

/// The text of the first element with this local name.
fn element_text(xml: &str, element: &str) -> Result<Option<String>> {
    let mut inside = false;
    let mut found: Option<String> = None;
    walk(xml, "document properties", |event| match event {
        Xml::Start { name, empty, .. } if name == element && found.is_none() => inside = !empty,
        Xml::End { name } if name == element => inside = false,
        Xml::Text(text) if inside => found.get_or_insert_with(String::new).push_str(&text),
        _ => {}
    })?;
    Ok(found.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

pub(super) fn odt(bytes: &[u8], limits: ArchiveLimits) -> Result<Document> {
    let mut zip = Archive::open(bytes, limits, "ODT document")?;
    let content = zip
        .read_text("content.xml")?
        .ok_or_else(|| Error::Malformed { reason: "ODT document without content.xml".into() })?;
    let title = match zip.read_text("meta.xml")? {
        Some(xml) => element_text(&xml, "title")?,
        None => None,
    };
    let mut body = Body::default();
    // Paragraphs can nest (a note inside a paragraph); only the outermost one is a block.
    let mut depth = 0usize;
    walk(&content, "ODT document", |event| match event {
        Xml::Start { name, attrs, empty } => match name.as_str() {
            "p" | "h" if !empty => {
                if depth == 0 {
                    body.para.clear();
                    if name == "h" {
                        let level = Xml::attr(&attrs, "outline-level").and_then(|l| l.parse().ok());
                        body.level = Some(level.unwrap_or(1));
                    }
                }
                depth += 1;
            }
            "s" => {
                let count =
                    Xml::attr(&attrs, "c").and_then(|c| c.parse::<usize>().ok()).unwrap_or(1);
                body.para.push_str(&" ".repeat(count.min(100)));
            }
            "tab" => body.para.push('\t'),
            "line-break" => body.para.push('\n'),
            "table" => body.tables += 1,
            "table-row" => body.row.clear(),
            "table-cell" => body.cell.clear(),
            _ => {}
        },
        Xml::Text(text) if depth > 0 => body.para.push_str(&text),
        Xml::Text(_) => {}
        Xml::End { name } => match name.as_str() {
            "p" | "h" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    body.end_paragraph();
                }
            }
            "table-cell" => body.end_cell(),
            "table-row" => body.end_row(),
            "table" => body.tables = body.tables.saturating_sub(1),
            _ => {}
        },
    })?;
    let title = title.or(body.outline.first_heading.clone());
    Ok(Document { title, media_type: "", blocks: body.outline.blocks, warnings: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::super::archive::tests::{LIMITS, zip_of};
    use super::*;

    fn blocks(doc: &Document) -> Vec<(&str, &str)> {
        doc.blocks.iter().map(|b| (b.section.as_str(), b.text.as_str())).collect()
    }

    #[test]
    fn docx_paragraphs_headings_and_tables() {
        let document = r#"<?xml version="1.0"?>
<w:document xmlns:w="w"><w:body>
<w:p><w:pPr><w:pStyle w:val="berschrift1"/></w:pPr><w:r><w:t>Intro</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Fish &amp; </w:t></w:r><w:r><w:t>chips</w:t><w:tab/><w:t>today</w:t></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
<w:p><w:pPr><w:outlineLvl w:val="1"/></w:pPr><w:r><w:t>Details</w:t></w:r></w:p>
<w:p><w:r><w:instrText>PAGE</w:instrText><w:t>body</w:t></w:r></w:p>
</w:body></w:document>"#;
        let styles = r#"<w:styles xmlns:w="w"><w:style w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style></w:styles>"#;
        let core = r#"<cp:coreProperties xmlns:cp="c" xmlns:dc="d"><dc:title>My Report</dc:title></cp:coreProperties>"#;
        let bytes = zip_of(&[
            ("word/document.xml", document.as_bytes()),
            ("word/styles.xml", styles.as_bytes()),
            ("docProps/core.xml", core.as_bytes()),
        ]);
        let doc = docx(&bytes, LIMITS).unwrap();
        assert_eq!(doc.title.as_deref(), Some("My Report"));
        assert_eq!(
            blocks(&doc),
            vec![
                ("Intro", "Intro"),
                ("Intro", "Fish & chips\ttoday"),
                ("Intro", "a | b"),
                ("Intro › Details", "Details"),
                ("Intro › Details", "body"),
            ]
        );
    }

    #[test]
    fn odt_paragraphs_headings_and_tables() {
        let content = r#"<office:document-content xmlns:office="o" xmlns:text="t" xmlns:table="b"><office:body><office:text>
<text:h text:outline-level="1">Chapter</text:h>
<text:p>Two<text:s text:c="2"/>spaces and <text:span>a span</text:span></text:p>
<table:table><table:table-row><table:table-cell><text:p>x</text:p></table:table-cell><table:table-cell><text:p>y</text:p></table:table-cell></table:table-row></table:table>
<text:h text:outline-level="2">Part</text:h><text:p>end</text:p>
</office:text></office:body></office:document-content>"#;
        let bytes = zip_of(&[("content.xml", content.as_bytes())]);
        let doc = odt(&bytes, LIMITS).unwrap();
        assert_eq!(doc.title.as_deref(), Some("Chapter"));
        assert_eq!(
            blocks(&doc),
            vec![
                ("Chapter", "Chapter"),
                ("Chapter", "Two  spaces and a span"),
                ("Chapter", "x | y"),
                ("Chapter › Part", "Part"),
                ("Chapter › Part", "end"),
            ]
        );
    }

    #[test]
    fn missing_parts_are_malformed() {
        let bytes = zip_of(&[("other.xml", b"<x/>")]);
        assert_eq!(
            docx(&bytes, LIMITS).unwrap_err().to_string(),
            "file is malformed: DOCX document without word/document.xml"
        );
        assert_eq!(odt(b"garbage", LIMITS).unwrap_err().code(), "malformed");
    }
}
