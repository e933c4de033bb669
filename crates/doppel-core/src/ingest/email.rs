//! E-mail: single messages (`.eml`) and mailboxes (`.mbox`).
//!
//! Each message becomes a section named by its subject, sender and date; its first block holds
//! the headers (from, to, date, subject) so that they are searchable, then the body's
//! paragraphs follow. Attachments in supported formats are parsed too, as sub-sections of their
//! message, within the same limits as files. A message over the size limit is skipped with a
//! warning; the rest of the mailbox goes on.

use std::io::Cursor;

use mail_parser::{Address, Message, MessageParser, MimeHeaders};

use super::{Block, Document, Format, Limits, parse_format};
use crate::error::{Error, Result};

/// How deep messages attached to messages are followed.
const MAX_DEPTH: usize = 3;

pub(super) fn eml(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let message = MessageParser::default()
        .parse(bytes)
        .filter(|m| !m.headers().is_empty())
        .ok_or_else(|| Error::Malformed { reason: "not an e-mail message".into() })?;
    let mut doc = Document { title: message.subject().map(str::to_string), ..Document::default() };
    add_message(&message, "", limits, 0, &mut doc);
    Ok(doc)
}

pub(super) fn mbox(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let mut doc = Document::default();
    let mut count = 0usize;
    for item in mail_parser::mailbox::mbox::MessageIterator::new(Cursor::new(bytes)) {
        let item = item.map_err(|e| Error::Malformed { reason: format!("mailbox: {e}") })?;
        count += 1;
        let raw = item.contents();
        if raw.len() as u64 > limits.max_bytes {
            doc.warnings.push(format!(
                "message {count} skipped: {} MB, over the {} MB limit",
                raw.len() / (1024 * 1024),
                limits.max_bytes / (1024 * 1024)
            ));
            continue;
        }
        match MessageParser::default().parse(raw) {
            Some(message) => add_message(&message, "", limits, 0, &mut doc),
            None => doc.warnings.push(format!("message {count} skipped: it could not be parsed")),
        }
    }
    if count == 0 {
        return Err(Error::Malformed {
            reason: "no messages found (an mbox starts with a \"From \" line)".into(),
        });
    }
    Ok(doc)
}

fn add_message(message: &Message, parent: &str, limits: &Limits, depth: usize, doc: &mut Document) {
    let subject = message.subject().unwrap_or("(no subject)").trim().to_string();
    let from = addresses(message.from());
    let date = message.date().map(|d| d.to_rfc3339());
    let mut label = subject.clone();
    if !from.is_empty() {
        label.push_str(&format!(" — {from}"));
    }
    if let Some(date) = &date {
        label.push_str(&format!(", {date}"));
    }
    let section = if parent.is_empty() { label } else { format!("{parent} › {label}") };

    let mut headers = vec![format!("Subject: {subject}")];
    if !from.is_empty() {
        headers.push(format!("From: {from}"));
    }
    let to = addresses(message.to());
    if !to.is_empty() {
        headers.push(format!("To: {to}"));
    }
    if let Some(date) = &date {
        headers.push(format!("Date: {date}"));
    }
    doc.blocks.push(Block {
        section: section.clone(),
        text: headers.join("\n"),
        ..Block::default()
    });
    if let Some(body) = message.body_text(0) {
        let body = body.replace("\r\n", "\n");
        for para in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
            doc.blocks.push(Block {
                section: section.clone(),
                text: para.to_string(),
                ..Block::default()
            });
        }
    }

    for attachment in message.attachments() {
        let name = attachment.attachment_name().unwrap_or("attachment").to_string();
        if let Some(inner) = attachment.message() {
            if depth < MAX_DEPTH {
                add_message(inner, &section, limits, depth + 1, doc);
            }
            continue;
        }
        let contents = attachment.contents();
        let format = match Format::from_path(std::path::Path::new(&name)) {
            Ok(Some(format)) => format,
            _ => continue,
        };
        if contents.len() as u64 > limits.max_bytes {
            doc.warnings.push(format!("attachment {name:?} skipped: over the size limit"));
            continue;
        }
        match parse_format(contents, Some(format), limits, depth + 1) {
            Ok(inner) => {
                let place = format!("{section} › {name}");
                doc.blocks.extend(inner.blocks.into_iter().map(|b| Block {
                    section: if b.section.is_empty() {
                        place.clone()
                    } else {
                        format!("{place} › {}", b.section)
                    },
                    ..b
                }));
                doc.warnings.extend(inner.warnings.into_iter().map(|w| format!("{name}: {w}")));
            }
            Err(e) => doc.warnings.push(format!("attachment {name:?} skipped: {e}")),
        }
    }
}

fn addresses(address: Option<&Address>) -> String {
    let Some(address) = address else { return String::new() };
    let list: Vec<String> = match address.as_list() {
        Some(list) => list.iter().map(|a| person(a.name(), a.address())).collect(),
        None => address.first().map(|a| person(a.name(), a.address())).into_iter().collect(),
    };
    list.join(", ")
}

fn person(name: Option<&str>, address: Option<&str>) -> String {
    match (name, address) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (Some(name), None) => name.to_string(),
        (None, Some(address)) => address.to_string(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits::for_tests();

    const MESSAGE: &str = "From: Ada Lovelace <ada@example.org>\r\nTo: Charles <cb@example.org>\r\n\
Subject: The engine\r\nDate: Mon, 1 Jul 1843 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
First paragraph about the analytical engine.\r\n\r\nSecond paragraph.\r\n--b\r\n\
Content-Type: text/markdown\r\nContent-Disposition: attachment; filename=\"notes.md\"\r\n\r\n\
# Notes\r\nBernoulli numbers.\r\n--b--\r\n";

    #[test]
    fn a_message_with_headers_body_and_attachment() {
        let doc = eml(MESSAGE.as_bytes(), &LIMITS).unwrap();
        assert_eq!(doc.title.as_deref(), Some("The engine"));
        let label = "The engine — Ada Lovelace <ada@example.org>, 1843-07-01T10:00:00Z";
        let blocks: Vec<_> =
            doc.blocks.iter().map(|b| (b.section.as_str(), b.text.as_str())).collect();
        assert_eq!(blocks[0].0, label);
        assert!(
            blocks[0]
                .1
                .contains("From: Ada Lovelace <ada@example.org>\nTo: Charles <cb@example.org>")
        );
        assert_eq!(blocks[1], (label, "First paragraph about the analytical engine."));
        assert!(blocks.iter().any(
            |(s, t)| *s == format!("{label} › notes.md › Notes") && *t == "Bernoulli numbers."
        ));
    }

    #[test]
    fn mailboxes_hold_many_messages_and_skip_oversized_ones() {
        let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(2048));
        let mbox_text = format!(
            "From a@b Mon Jul  1 10:00:00 1843\r\n{MESSAGE}\r\nFrom c@d Tue Jul  2 10:00:00 1843\r\n\
             Subject: Second\r\n\r\nAnother body.\r\n\r\nFrom e@f Tue Jul  2 10:00:00 1843\r\n{big}"
        );
        let small = Limits { max_bytes: 1024, ..LIMITS };
        let doc = mbox(mbox_text.as_bytes(), &small).unwrap();
        assert!(doc.blocks.iter().any(|b| b.section.starts_with("The engine")));
        assert!(doc.blocks.iter().any(|b| b.section == "Second" && b.text == "Another body."));
        assert_eq!(doc.warnings, ["message 3 skipped: 0 MB, over the 0 MB limit"]);
        assert_eq!(mbox(b"", &LIMITS).unwrap_err().code(), "malformed");
    }
}
