//! A small streaming view of XML for the office and e-book formats.
//!
//! It hides quick-xml's event details (entity references arrive as separate events) behind four
//! plain events with local names (namespace prefixes dropped), and never fails: malformed XML
//! ends the stream with an error the caller reports as "file is malformed".

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::{Error, Result};

/// One piece of an XML document.
#[derive(Debug, PartialEq)]
pub(super) enum Xml {
    /// An opening tag; `empty` for a self-closing one (no `End` follows).
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        empty: bool,
    },
    End {
        name: String,
    },
    Text(String),
}

impl Xml {
    pub(super) fn attr(attrs: &[(String, String)], key: &str) -> Option<String> {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

/// Walks `xml`, calling `visit` for every event.
pub(super) fn walk(xml: &str, what: &str, mut visit: impl FnMut(Xml)) -> Result<()> {
    let mut reader = Reader::from_str(xml);
    let malformed = |e: &dyn std::fmt::Display| Error::Malformed { reason: format!("{what}: {e}") };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => visit(start(&e, false)),
            Ok(Event::Empty(e)) => visit(start(&e, true)),
            Ok(Event::End(e)) => visit(Xml::End { name: local(e.local_name().as_ref()) }),
            Ok(Event::Text(t)) => visit(Xml::Text(t.xml10_content().into_owned())),
            Ok(Event::CData(t)) => visit(Xml::Text(t.xml10_content().into_owned())),
            Ok(Event::GeneralRef(r)) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or("")
                            .to_string()
                    }
                };
                visit(Xml::Text(text));
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(malformed(&e)),
        }
    }
}

fn start(e: &BytesStart, empty: bool) -> Xml {
    let attrs = e
        .attributes()
        .flatten()
        .map(|a| {
            (
                local(a.key.local_name().as_ref()),
                html_escape::decode_html_entities(&a.value).into_owned(),
            )
        })
        .collect();
    Xml::Start { name: local(e.local_name().as_ref()), attrs, empty }
}

fn local(name: &str) -> String {
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_and_names_are_resolved() {
        let mut seen = Vec::new();
        walk(r#"<w:p a:x="1 &amp; 2"><w:t>A &amp; B &#233;</w:t><br/></w:p>"#, "test", |e| {
            seen.push(e)
        })
        .unwrap();
        let text: String = seen
            .iter()
            .filter_map(|e| if let Xml::Text(t) = e { Some(t.as_str()) } else { None })
            .collect();
        assert_eq!(text, "A & B é");
        assert_eq!(
            seen[0],
            Xml::Start {
                name: "p".into(),
                attrs: vec![("x".into(), "1 & 2".into())],
                empty: false
            }
        );
        assert!(seen.contains(&Xml::Start { name: "br".into(), attrs: vec![], empty: true }));
        assert_eq!(walk("<a><b></a>", "test", |_| {}).unwrap_err().code(), "malformed");
    }
}
