//! Plain text, source code and Markdown.
//!
//! Plain text and code are cut into paragraphs at blank lines, each remembering its first line.
//! Markdown adds headings: ATX (`## Title`) and setext (a line underlined with `===` or `---`)
//! headings open a section, whose heading path becomes the location of the chunks beneath it.
//! Lines inside fenced code blocks are never taken for headings.

use super::{Block, Document};

/// Paragraphs separated by blank lines.
pub(super) fn plain(text: &str) -> Document {
    let mut doc = Document::default();
    let mut para = Paragraph::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            para.flush(&mut doc.blocks, "");
        } else {
            para.push(line, index);
        }
    }
    para.flush(&mut doc.blocks, "");
    doc
}

/// Markdown with its headings kept as sections.
pub(super) fn markdown(text: &str) -> Document {
    let mut doc = Document::default();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut section = String::new();
    let mut para = Paragraph::default();
    let mut fence: Option<String> = None;

    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(marker) = &fence {
            para.push(line, index);
            if trimmed.starts_with(marker.as_str()) {
                fence = None;
                para.flush(&mut doc.blocks, &section);
            }
            continue;
        }
        if let Some(marker) = fence_marker(trimmed) {
            para.flush(&mut doc.blocks, &section);
            fence = Some(marker);
            para.push(line, index);
            continue;
        }
        let heading =
            atx_heading(trimmed).map(|(level, title)| (level, title, index)).or_else(|| {
                // Setext: a single-line paragraph underlined with === (level 1) or --- (level 2).
                let level = setext_level(trimmed)?;
                let start = para.first?;
                (para.lines.len() == 1)
                    .then(|| (level, para.lines.remove(0).trim().to_string(), start))
            });
        if let Some((level, title, start)) = heading {
            para.flush(&mut doc.blocks, &section);
            headings.retain(|(l, _)| *l < level);
            headings.push((level, title.clone()));
            section = headings.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" › ");
            if doc.title.is_none() && !title.is_empty() {
                doc.title = Some(title.clone());
            }
            doc.blocks.push(Block {
                section: section.clone(),
                text: title,
                first_line: Some(start as u32 + 1),
                ..Block::default()
            });
            continue;
        }
        if trimmed.is_empty() {
            para.flush(&mut doc.blocks, &section);
        } else {
            para.push(line, index);
        }
    }
    para.flush(&mut doc.blocks, &section);
    doc
}

fn fence_marker(trimmed: &str) -> Option<String> {
    ["```", "~~~"].iter().find(|m| trimmed.starts_with(**m)).map(|m| m.to_string())
}

fn atx_heading(trimmed: &str) -> Option<(usize, String)> {
    let level = trimmed.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim_end();
    Some((level, title.to_string()))
}

fn setext_level(trimmed: &str) -> Option<usize> {
    let line = trimmed.trim_end();
    if line.len() >= 2 && line.bytes().all(|b| b == b'=') {
        Some(1)
    } else if line.len() >= 2 && line.bytes().all(|b| b == b'-') {
        Some(2)
    } else {
        None
    }
}

/// Lines gathered until a blank line ends the paragraph.
#[derive(Default)]
struct Paragraph<'a> {
    lines: Vec<&'a str>,
    first: Option<usize>,
}

impl<'a> Paragraph<'a> {
    fn push(&mut self, line: &'a str, index: usize) {
        if self.lines.is_empty() {
            self.first = Some(index);
        }
        self.lines.push(line);
    }

    fn flush(&mut self, blocks: &mut Vec<Block>, section: &str) {
        if self.lines.is_empty() {
            return;
        }
        blocks.push(Block {
            section: section.to_string(),
            text: self.lines.join("\n"),
            first_line: self.first.map(|i| i as u32 + 1),
            ..Block::default()
        });
        self.lines.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(doc: &Document) -> Vec<(&str, &str, Option<u32>)> {
        doc.blocks.iter().map(|b| (b.section.as_str(), b.text.as_str(), b.first_line)).collect()
    }

    #[test]
    fn plain_paragraphs_keep_their_lines() {
        let doc = plain("one\ntwo\n\n\nthree\n");
        assert_eq!(sections(&doc), vec![("", "one\ntwo", Some(1)), ("", "three", Some(5))]);
    }

    #[test]
    fn markdown_headings_become_sections() {
        let doc = markdown(
            "# Guide\nintro\n\n## Setup\nstep one\n\n```\n# not a heading\n```\nOther\n-----\nbody\n",
        );
        assert_eq!(doc.title.as_deref(), Some("Guide"));
        assert_eq!(
            sections(&doc),
            vec![
                ("Guide", "Guide", Some(1)),
                ("Guide", "intro", Some(2)),
                ("Guide › Setup", "Setup", Some(4)),
                ("Guide › Setup", "step one", Some(5)),
                ("Guide › Setup", "```\n# not a heading\n```", Some(7)),
                ("Guide › Other", "Other", Some(10)),
                ("Guide › Other", "body", Some(12)),
            ]
        );
    }

    #[test]
    fn hashes_without_space_are_text() {
        let doc = markdown("#hashtag here\n");
        assert_eq!(sections(&doc), vec![("", "#hashtag here", Some(1))]);
    }
}
