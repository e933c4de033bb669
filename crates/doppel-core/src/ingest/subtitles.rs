//! SubRip (`.srt`) and WebVTT (`.vtt`) subtitles: one block per cue, with its time range.
//!
//! Both formats are cues separated by blank lines, each with a `start --> end` line; SRT writes
//! `00:01:02,500`, VTT `00:01:02.500` or `01:02.500`. Cue numbers, identifiers, `NOTE` and
//! `STYLE` blocks and inline tags such as `<i>` are dropped.

use super::{Block, Document};
use crate::error::{Error, Result};

pub(super) fn parse(text: &str) -> Result<Document> {
    let mut doc = Document::default();
    let mut cue: Vec<&str> = Vec::new();
    let mut cue_line = 0;
    let mut timing_seen = false;
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            timing_seen |= push_cue(&mut doc, &cue, cue_line);
            cue.clear();
        } else {
            if cue.is_empty() {
                cue_line = index as u32 + 1;
            }
            cue.push(line);
        }
    }
    timing_seen |= push_cue(&mut doc, &cue, cue_line);
    if !timing_seen {
        return Err(Error::Malformed {
            reason: "no subtitle timings (`start --> end`) found".into(),
        });
    }
    Ok(doc)
}

/// Adds a cue's text as a block; returns whether it had a timing line.
fn push_cue(doc: &mut Document, cue: &[&str], first_line: u32) -> bool {
    let Some(timing) = cue.iter().position(|l| l.contains("-->")) else {
        return false;
    };
    let mut parts = cue[timing].split("-->");
    let start = parts.next().and_then(parse_time);
    let end = parts.next().and_then(|rest| rest.split_whitespace().next()).and_then(parse_time);
    let text = cue[timing + 1..].iter().map(|l| strip_tags(l)).collect::<Vec<_>>().join("\n");
    if !text.trim().is_empty() {
        doc.blocks.push(Block {
            section: String::new(),
            text,
            first_line: Some(first_line + timing as u32 + 1),
            time_ms: start.zip(end.or(start)),
            page: None,
        });
    }
    true
}

/// `hh:mm:ss,mmm`, `hh:mm:ss.mmm` or `mm:ss.mmm` in milliseconds.
fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim().replace(',', ".");
    let (clock, millis) = text.split_once('.').unwrap_or((&text, "0"));
    let mut seconds = 0u64;
    for part in clock.split(':') {
        seconds = seconds.checked_mul(60)?.checked_add(part.parse::<u64>().ok()?)?;
    }
    let millis: u64 = millis.get(..3.min(millis.len()))?.parse().ok()?;
    seconds.checked_mul(1000)?.checked_add(millis)
}

/// `hh:mm:ss` for a time in milliseconds.
pub(crate) fn format_time(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn strip_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_tag = false;
    for c in line.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_and_vtt_cues_keep_their_times() {
        let srt = "1\n00:00:01,000 --> 00:00:04,250\nHello <i>there</i>\n\n2\n00:01:02,000 --> 00:01:05,000\nSecond\nline\n";
        let doc = parse(srt).unwrap();
        let cues: Vec<_> =
            doc.blocks.iter().map(|b| (b.text.as_str(), b.time_ms, b.first_line)).collect();
        assert_eq!(
            cues,
            vec![
                ("Hello there", Some((1000, 4250)), Some(3)),
                ("Second\nline", Some((62000, 65000)), Some(7))
            ]
        );
        let vtt = "WEBVTT\n\nNOTE a comment\n\nintro\n00:05.000 --> 00:07.500 align:start\nHi\n";
        let doc = parse(vtt).unwrap();
        assert_eq!(doc.blocks.len(), 1);
        assert_eq!(doc.blocks[0].time_ms, Some((5000, 7500)));
        assert_eq!(format_time(3_723_000), "01:02:03");
    }

    #[test]
    fn text_without_timings_is_malformed() {
        assert_eq!(parse("just words\n").unwrap_err().code(), "malformed");
        assert!(parse_time("99999999999999999999:00:00.000").is_none());
    }
}
