//! HTML: the visible text, cut into blocks at block-level elements, with headings as sections.
//!
//! A small forgiving tokenizer, linear in the input: it never builds a tree, never recurses and
//! never fails; malformed markup only makes the text less tidy. Scripts, styles, the document
//! head and navigation (`<nav>`, `role="navigation"`, and the usual navigation classes) are
//! dropped; the `<title>` becomes the document's title.

use super::{Block, Document};

/// Elements whose content is never visible text.
const HIDDEN: &[&str] =
    &["script", "style", "noscript", "template", "svg", "iframe", "object", "nav", "select"];

/// Elements that end one block of text and start another.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hr",
    "html",
    "li",
    "main",
    "menu",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
];

/// Class names that mark navigation rather than content.
const NAV_CLASSES: &[&str] = &[
    "nav",
    "navbar",
    "navheader",
    "navfooter",
    "navigation",
    "breadcrumb",
    "breadcrumbs",
    "skip-link",
];

pub(super) fn parse(html: &str) -> Document {
    extract(html, Extractor::default())
}

/// The main content of a web page: when the page marks it with `<main>` or `<article>`, only
/// the text inside those, without headers, footers and asides; otherwise the whole page.
pub(super) fn parse_main(html: &str) -> Document {
    let lower = html.to_ascii_lowercase();
    let marked = lower.contains("<main") || lower.contains("<article");
    extract(html, Extractor { main_only: marked, ..Extractor::default() })
}

fn extract(html: &str, mut out: Extractor) -> Document {
    let mut i = 0;
    while i < html.len() {
        let Some(offset) = html[i..].find('<') else {
            out.text(&html[i..]);
            break;
        };
        out.text(&html[i..i + offset]);
        i += offset;
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |end| end + 3);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            i += rest.find('>').map_or(rest.len(), |end| end + 1);
            continue;
        }
        let Some(tag) = Tag::read(rest) else {
            out.text("<");
            i += 1;
            continue;
        };
        i += tag.len;
        if tag.closing {
            out.close(&tag.name);
            continue;
        }
        if matches!(tag.name.as_str(), "title" | "script" | "style" | "textarea")
            && !tag.self_closing
        {
            // Raw-text elements: their content is not markup, so jump to the closing tag.
            let (content, after) = raw_text(html, i, &tag.name);
            if tag.name == "title" && out.title.is_none() && out.skip.is_empty() {
                let title = collapse(&decode(content));
                out.title = (!title.is_empty()).then_some(title);
            } else if tag.name == "textarea" {
                out.text(content);
            }
            i = after;
            continue;
        }
        out.open(&tag);
    }
    out.flush();
    Document { title: out.title, blocks: out.blocks, ..Document::default() }
}

/// An opening or closing tag.
struct Tag {
    name: String,
    attrs: String,
    closing: bool,
    self_closing: bool,
    len: usize,
}

impl Tag {
    /// Reads a tag at the start of `s` (which starts with `<`); `None` if it is not one.
    fn read(s: &str) -> Option<Tag> {
        let bytes = s.as_bytes();
        let closing = bytes.get(1) == Some(&b'/');
        let start = if closing { 2 } else { 1 };
        let name_len =
            bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'-').count();
        if name_len == 0 || !bytes[start].is_ascii_alphabetic() {
            return None;
        }
        let name = s[start..start + name_len].to_ascii_lowercase();
        let mut quote = None;
        let mut end = None;
        for (offset, &b) in bytes.iter().enumerate().skip(start + name_len) {
            match (quote, b) {
                (Some(q), _) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'>') => {
                    end = Some(offset);
                    break;
                }
                _ => {}
            }
        }
        let end = end.unwrap_or(s.len().saturating_sub(1));
        let attrs = s.get(start + name_len..end).unwrap_or("").to_string();
        let self_closing = attrs.trim_end().ends_with('/');
        Some(Tag { name, attrs, closing, self_closing, len: (end + 1).min(s.len()) })
    }

    fn attr(&self, key: &str) -> Option<String> {
        let lower = self.attrs.to_ascii_lowercase();
        let mut from = 0;
        while let Some(found) = lower[from..].find(key) {
            let at = from + found;
            from = at + key.len();
            let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
            let rest = lower[from..].trim_start();
            if !before_ok || !rest.starts_with('=') {
                continue;
            }
            let value = rest[1..].trim_start();
            let original = &self.attrs[self.attrs.len() - value.len()..];
            return Some(match original.chars().next() {
                Some(q @ ('"' | '\'')) => original[1..].split(q).next().unwrap_or("").to_string(),
                _ => original
                    .split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        None
    }

    fn is_navigation(&self) -> bool {
        let class = self.attr("class").unwrap_or_default();
        class.split_whitespace().any(|c| NAV_CLASSES.contains(&c.to_ascii_lowercase().as_str()))
            || self.attr("role").is_some_and(|r| r.eq_ignore_ascii_case("navigation"))
    }
}

/// The content of a raw-text element starting at `from`, and the offset after its closing tag.
fn raw_text<'a>(html: &'a str, from: usize, name: &str) -> (&'a str, usize) {
    let mut at = from;
    while let Some(found) = html[at..].find("</") {
        let start = at + found;
        let after_name = start + 2 + name.len();
        if html.get(start + 2..after_name).is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            let end = html[after_name..].find('>').map_or(html.len(), |e| after_name + e + 1);
            return (&html[from..start], end);
        }
        at = start + 2;
    }
    (&html[from..], html.len())
}

fn decode(text: &str) -> String {
    html_escape::decode_html_entities(text).into_owned()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Default)]
struct Extractor {
    title: Option<String>,
    blocks: Vec<Block>,
    /// Hidden elements being skipped: (name, nesting depth of that name).
    skip: Vec<(String, usize)>,
    pre: usize,
    heading: Option<usize>,
    headings: Vec<(usize, String)>,
    section: String,
    buffer: String,
    /// Keep only text inside `<main>` or `<article>`.
    main_only: bool,
    /// How many `<main>` or `<article>` elements are open.
    main_depth: usize,
}

impl Extractor {
    fn text(&mut self, raw: &str) {
        if !self.skip.is_empty() || raw.is_empty() || (self.main_only && self.main_depth == 0) {
            return;
        }
        let decoded = decode(raw);
        if self.pre > 0 {
            self.buffer.push_str(&decoded);
            return;
        }
        let starts_space = decoded.starts_with(char::is_whitespace);
        let ends_space = decoded.ends_with(char::is_whitespace);
        let words = collapse(&decoded);
        if starts_space && !self.buffer.is_empty() && !self.buffer.ends_with([' ', '\n']) {
            self.buffer.push(' ');
        }
        self.buffer.push_str(&words);
        if ends_space && !words.is_empty() {
            self.buffer.push(' ');
        }
    }

    fn open(&mut self, tag: &Tag) {
        if let Some((name, depth)) = self.skip.last_mut() {
            if *name == tag.name && !tag.self_closing {
                *depth += 1;
            }
            return;
        }
        let name = tag.name.as_str();
        let boilerplate = self.main_only && matches!(name, "header" | "footer" | "aside");
        if (HIDDEN.contains(&name) || tag.is_navigation() || boilerplate) && !tag.self_closing {
            self.skip.push((tag.name.clone(), 1));
            return;
        }
        if matches!(name, "main" | "article") {
            self.main_depth += 1;
        }
        match name {
            "br" => self.buffer.push('\n'),
            "td" | "th" if !self.buffer.is_empty() && !self.buffer.ends_with([' ', '\n']) => {
                self.buffer.push_str(" | ");
            }
            "pre" => {
                self.flush();
                self.pre += 1;
            }
            _ if heading_level(name).is_some() => {
                self.flush();
                self.heading = heading_level(name);
            }
            _ if BLOCKS.contains(&name) => self.flush(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if let Some((skipped, depth)) = self.skip.last_mut() {
            if skipped == name {
                *depth -= 1;
                if *depth == 0 {
                    self.skip.pop();
                }
            }
            return;
        }
        if matches!(name, "main" | "article") {
            self.flush();
            self.main_depth = self.main_depth.saturating_sub(1);
        } else if name == "pre" {
            self.flush();
            self.pre = self.pre.saturating_sub(1);
        } else if let Some(level) = heading_level(name) {
            if self.heading == Some(level) {
                self.end_heading(level);
            }
        } else if BLOCKS.contains(&name) {
            self.flush();
        }
    }

    fn end_heading(&mut self, level: usize) {
        self.heading = None;
        let title = collapse(&std::mem::take(&mut self.buffer));
        if title.is_empty() {
            return;
        }
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, title.clone()));
        self.section =
            self.headings.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" › ");
        self.blocks.push(Block {
            section: self.section.clone(),
            text: title,
            first_line: None,
            ..Block::default()
        });
    }

    fn flush(&mut self) {
        if let Some(level) = self.heading {
            return self.end_heading(level);
        }
        let text = std::mem::take(&mut self.buffer);
        let text = if self.pre > 0 {
            text.trim_matches('\n').to_string()
        } else {
            text.trim().to_string()
        };
        if !text.trim().is_empty() {
            self.blocks.push(Block {
                section: self.section.clone(),
                text,
                first_line: None,
                ..Block::default()
            });
        }
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(doc: &Document) -> Vec<(&str, &str)> {
        doc.blocks.iter().map(|b| (b.section.as_str(), b.text.as_str())).collect()
    }

    #[test]
    fn visible_text_with_headings() {
        let doc = parse(
            "<!DOCTYPE html><html><head><title>The  Guide</title><style>p{}</style></head>\
             <body><div class=\"navheader\"><a>Prev</a><div>inner</div></div>\
             <h1>Intro <em>now</em></h1><p>Hello &amp; <b>welcome</b>\n to   it.</p>\
             <script>if (a < b) { alert('x') }</script><!-- hidden -->\
             <h2>Setup</h2><ul><li>one</li><li>two</li></ul><pre>  keep\n   this</pre>\
             <table><tr><td>a</td><td>b</td></tr></table></body></html>",
        );
        assert_eq!(doc.title.as_deref(), Some("The Guide"));
        assert_eq!(
            blocks(&doc),
            vec![
                ("Intro now", "Intro now"),
                ("Intro now", "Hello & welcome to it."),
                ("Intro now › Setup", "Setup"),
                ("Intro now › Setup", "one"),
                ("Intro now › Setup", "two"),
                ("Intro now › Setup", "  keep\n   this"),
                ("Intro now › Setup", "a | b"),
            ]
        );
    }

    #[test]
    fn web_pages_keep_their_main_content() {
        let page = "<html><head><title>Post</title></head><body><header><h1>Site</h1></header>\
                    <nav>Home | About</nav><div>Sidebar junk</div><main><article><h2>The post</h2>\
                    <p>Real words.</p><aside>Related links</aside></article></main>\
                    <footer>Copyright</footer></body></html>";
        let doc = parse_main(page);
        assert_eq!(doc.title.as_deref(), Some("Post"));
        assert_eq!(blocks(&doc), vec![("The post", "The post"), ("The post", "Real words.")]);
        // A page without such markers keeps everything visible.
        assert_eq!(blocks(&parse_main("<p>Only this</p>")), vec![("", "Only this")]);
    }

    #[test]
    fn malformed_markup_never_fails() {
        for html in [
            "<",
            "<p",
            "<<>>",
            "</",
            "<a href='x>unterminated",
            "<script>never closed",
            "a < b > c",
            "<é>x",
        ] {
            let _ = parse(html);
        }
        assert_eq!(blocks(&parse("a < b > c")), vec![("", "a < b > c")]);
    }
}
