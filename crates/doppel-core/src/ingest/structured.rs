//! Tables (CSV, TSV) and JSON, written out as readable lines.
//!
//! A table row becomes `header: value · header: value`, one block per row with its line, so
//! that a chunk cites the rows it holds. JSON becomes `path: value` lines, one block per
//! top-level member, whose path is the chunk's location.

use serde_json::Value;

use super::{Block, Document};
use crate::error::{Error, Result};

pub(super) fn delimited(text: &str, delimiter: u8) -> Result<Document> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut headers: Option<Vec<String>> = None;
    let mut doc = Document::default();
    for record in reader.records() {
        let record = record.map_err(|e| Error::Malformed { reason: format!("table: {e}") })?;
        let line = record.position().map(|p| p.line() as u32);
        let cells: Vec<&str> = record.iter().map(str::trim).collect();
        let Some(names) = &headers else {
            headers = Some(cells.iter().map(|c| c.to_string()).collect());
            continue;
        };
        let text = cells
            .iter()
            .enumerate()
            .filter(|(_, cell)| !cell.is_empty())
            .map(|(i, cell)| match names.get(i).filter(|n| !n.is_empty()) {
                Some(name) => format!("{name}: {cell}"),
                None => cell.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" · ");
        doc.blocks.push(Block {
            section: String::new(),
            text,
            first_line: line,
            ..Block::default()
        });
    }
    if doc.blocks.is_empty() {
        // A single line is a header with no rows: keep it as text rather than lose it.
        if let Some(names) = headers {
            doc.blocks.push(Block {
                text: names.join(" · "),
                first_line: Some(1),
                ..Block::default()
            });
        }
    }
    Ok(doc)
}

pub(super) fn json(text: &str) -> Result<Document> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::Malformed { reason: format!("JSON: {e}") })?;
    let mut doc = Document::default();
    match &value {
        Value::Object(map) => {
            for (key, member) in map {
                let path = format!("$.{key}");
                doc.blocks.push(block(&path, member, None));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                doc.blocks.push(block(&format!("$[{index}]"), item, None));
            }
        }
        scalar => doc.blocks.push(block("$", scalar, None)),
    }
    Ok(doc)
}

pub(super) fn json_lines(text: &str) -> Result<Document> {
    let mut doc = Document::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Error::Malformed { reason: format!("JSON on line {}: {e}", index + 1) })?;
        let number = index as u32 + 1;
        doc.blocks.push(block(&format!("line {number}"), &value, Some(number)));
    }
    Ok(doc)
}

fn block(path: &str, value: &Value, line: Option<u32>) -> Block {
    Block {
        section: path.to_string(),
        text: lines_of("", value).join("\n"),
        first_line: line,
        ..Block::default()
    }
}

/// `path: value` lines for every scalar inside `value`, depth first.
fn lines_of(root: &str, value: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    // An explicit stack: deep documents cannot overflow the thread's stack.
    let mut stack = vec![(root.to_string(), value)];
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, member) in map.iter().rev() {
                    let sep = if path.is_empty() { "" } else { "." };
                    stack.push((format!("{path}{sep}{key}"), member));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((format!("{path}[{i}]"), item));
                }
            }
            Value::String(s) if path.is_empty() => lines.push(s.clone()),
            Value::String(s) => lines.push(format!("{path}: {s}")),
            Value::Null => {}
            other if path.is_empty() => lines.push(other.to_string()),
            other => lines.push(format!("{path}: {other}")),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_name_their_columns() {
        let doc = delimited("name,city\nAda,London\n\"Grace, Rear Admiral\",\"New\nYork\"\n", b',')
            .unwrap();
        let rows: Vec<_> = doc.blocks.iter().map(|b| (b.text.as_str(), b.first_line)).collect();
        assert_eq!(
            rows,
            vec![
                ("name: Ada · city: London", Some(2)),
                ("name: Grace, Rear Admiral · city: New\nYork", Some(3))
            ]
        );
    }

    #[test]
    fn json_members_become_sections() {
        let doc = json(
            r#"{"title": "Notes", "tags": ["a", "b"], "meta": {"year": 2024, "draft": false}}"#,
        )
        .unwrap();
        let blocks: Vec<_> =
            doc.blocks.iter().map(|b| (b.section.as_str(), b.text.as_str())).collect();
        assert_eq!(
            blocks,
            vec![
                ("$.title", "Notes"),
                ("$.tags", "[0]: a\n[1]: b"),
                ("$.meta", "year: 2024\ndraft: false")
            ]
        );
        assert_eq!(json("{oops").unwrap_err().code(), "malformed");
    }

    #[test]
    fn deep_json_is_refused_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(json(&deep).unwrap_err().code(), "malformed");
    }
}
