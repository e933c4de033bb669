//! EPUB e-books: the chapters of the spine, in reading order, each parsed as HTML.
//!
//! `META-INF/container.xml` names the package file; its manifest maps ids to entries and its
//! spine orders them. Each chapter's first heading (else its `<title>`, else its entry name)
//! becomes the location of passages that sit under no heading of their own. Entry names are
//! resolved as strings inside the archive only.

use super::archive::{Archive, ArchiveLimits};
use super::xml::{Xml, walk};
use super::{Block, Document, html};
use crate::error::{Error, Result};

pub(super) fn epub(bytes: &[u8], limits: ArchiveLimits) -> Result<Document> {
    let malformed = |reason: &str| Error::Malformed { reason: format!("EPUB book: {reason}") };
    let mut zip = Archive::open(bytes, limits, "EPUB book")?;
    let container = zip
        .read_text("META-INF/container.xml")?
        .ok_or_else(|| malformed("no META-INF/container.xml"))?;
    let mut package_path = None;
    walk(&container, "EPUB container", |event| {
        if let Xml::Start { name, attrs, .. } = event
            && name == "rootfile"
            && package_path.is_none()
        {
            package_path = Xml::attr(&attrs, "full-path");
        }
    })?;
    let package_path =
        package_path.ok_or_else(|| malformed("the container names no package file"))?;
    let package =
        zip.read_text(&package_path)?.ok_or_else(|| malformed("the package file is missing"))?;
    let base = package_path.rsplit_once('/').map_or("", |(dir, _)| dir);

    let mut title: Option<String> = None;
    let mut in_title = false;
    let mut manifest: Vec<(String, String)> = Vec::new();
    let mut spine: Vec<String> = Vec::new();
    walk(&package, "EPUB package", |event| match event {
        Xml::Start { name, attrs, empty } => match name.as_str() {
            "title" if title.is_none() => in_title = !empty,
            "item" => {
                if let (Some(id), Some(href)) = (Xml::attr(&attrs, "id"), Xml::attr(&attrs, "href"))
                {
                    manifest.push((id, href));
                }
            }
            "itemref" => spine.extend(Xml::attr(&attrs, "idref")),
            _ => {}
        },
        Xml::Text(text) if in_title => title.get_or_insert_with(String::new).push_str(&text),
        Xml::End { name } if name == "title" => in_title = false,
        _ => {}
    })?;

    let mut blocks = Vec::new();
    let mut warnings = Vec::new();
    for idref in &spine {
        let Some((_, href)) = manifest.iter().find(|(id, _)| id == idref) else { continue };
        let entry = resolve(base, href);
        let Some(text) = zip.read_text(&entry)? else {
            warnings.push(format!("chapter {entry:?} is listed but missing"));
            continue;
        };
        let chapter = html::parse(&text);
        let label = chapter
            .blocks
            .iter()
            .find(|b| !b.section.is_empty())
            .map(|b| b.section.split(" › ").next().unwrap_or("").to_string())
            .or(chapter.title.clone())
            .unwrap_or_else(|| entry.rsplit('/').next().unwrap_or(&entry).to_string());
        blocks.extend(chapter.blocks.into_iter().map(|b| Block {
            section: if b.section.is_empty() { label.clone() } else { b.section },
            ..b
        }));
    }
    if spine.is_empty() {
        return Err(malformed("the spine lists no chapters"));
    }
    let title = title.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    Ok(Document { title, media_type: "", blocks, warnings })
}

/// `href` (relative to the package file's folder) as an entry name: fragment dropped,
/// percent-escapes decoded, `.` and `..` segments folded.
fn resolve(base: &str, href: &str) -> String {
    let href = href.split('#').next().unwrap_or("");
    let href = percent_decode(href);
    let mut parts: Vec<&str> = if base.is_empty() { Vec::new() } else { base.split('/').collect() };
    for part in href.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) =
                (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::archive::tests::{LIMITS, zip_of};
    use super::*;

    pub(crate) fn book(chapters: &[(&str, &str)]) -> Vec<u8> {
        let manifest: String = chapters
            .iter()
            .enumerate()
            .map(|(i, (href, _))| {
                format!(r#"<item id="c{i}" href="{href}" media-type="application/xhtml+xml"/>"#)
            })
            .collect();
        let spine: String =
            (0..chapters.len()).map(|i| format!(r#"<itemref idref="c{i}"/>"#)).collect();
        let opf = format!(
            r#"<package xmlns:dc="dc"><metadata><dc:title>The Book</dc:title></metadata><manifest>{manifest}</manifest><spine>{spine}</spine></package>"#
        );
        let container = r#"<container><rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>"#;
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("META-INF/container.xml".into(), container.as_bytes().to_vec()),
            ("OEBPS/content.opf".into(), opf.into_bytes()),
        ];
        for (href, html) in chapters {
            entries.push((resolve("OEBPS", href), html.as_bytes().to_vec()));
        }
        let refs: Vec<(&str, &[u8])> =
            entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        zip_of(&refs)
    }

    #[test]
    fn chapters_follow_the_spine_with_their_titles() {
        let bytes = book(&[
            ("text/one.xhtml", "<html><body><h1>Chapter One</h1><p>It began.</p></body></html>"),
            (
                "text/two%20b.xhtml#start",
                "<html><head><title>Two</title></head><body><p>Then more.</p></body></html>",
            ),
        ]);
        let doc = epub(&bytes, LIMITS).unwrap();
        assert_eq!(doc.title.as_deref(), Some("The Book"));
        let blocks: Vec<_> =
            doc.blocks.iter().map(|b| (b.section.as_str(), b.text.as_str())).collect();
        assert_eq!(
            blocks,
            vec![
                ("Chapter One", "Chapter One"),
                ("Chapter One", "It began."),
                ("Two", "Then more.")
            ]
        );
    }

    #[test]
    fn names_resolve_inside_the_archive_only() {
        assert_eq!(resolve("OEBPS", "../../../etc/passwd"), "etc/passwd");
        assert_eq!(resolve("a/b", "./c/../d.xhtml#x"), "a/b/d.xhtml");
        assert_eq!(resolve("", "%41%zz"), "A%zz");
    }
}
