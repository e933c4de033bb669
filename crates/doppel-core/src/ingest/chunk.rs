//! Cutting a document into chunks: structure-aware, bounded, deterministic.
//!
//! Blocks are first partitioned into small pieces (sentences and lines; over-long sentences into
//! word groups; over-long words into character runs), each a slice of the block's text, so
//! that nothing is lost or rewritten. Pieces of one section are then packed greedily into
//! chunks of about `chunk_tokens`, and each chunk starts with up to `chunk_overlap` tokens of
//! whole pieces from the end of the previous one. A chunk never spans two sections or two
//! pages, so its location (heading path, page, lines, times) is exact. Work is linear in the
//! text.

use super::subtitles::format_time;
use super::{Block, Document, sha256_hex};
use crate::error::Result;
use crate::model::Location;
use crate::store::NewChunk;

/// Sizes for chunking, from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkConfig {
    /// Target tokens per chunk.
    pub target: u32,
    /// Tokens repeated from the previous chunk.
    pub overlap: u32,
}

/// An estimate of how many tokens a WordPiece-style tokenizer makes of `text`: a word of up to
/// six characters counts one, and every six further characters one more. It errs on the high
/// side for long words, which keeps chunks inside a model's window.
pub(crate) fn estimate_tokens(text: &str) -> u32 {
    text.split_whitespace().map(|w| 1 + (w.chars().count() as u32).saturating_sub(1) / 6).sum()
}

/// A slice of one block's text.
#[derive(Debug, Clone)]
struct Piece<'a> {
    block: usize,
    text: &'a str,
    tokens: u32,
    lines: Option<(u32, u32)>,
}

/// Cuts `doc` into chunks. `checkpoint` runs before each chunk is made and may stop the work by
/// returning an error (cancellation).
pub(crate) fn chunk(
    doc: &Document,
    config: ChunkConfig,
    mut checkpoint: impl FnMut() -> Result<()>,
) -> Result<Vec<NewChunk>> {
    let target = config.target.max(1);
    let overlap = config.overlap.min(target / 2);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < doc.blocks.len() {
        // A chunk stays inside one section of one page, so that its citation is exact.
        let first = &doc.blocks[start];
        let end = start
            + doc.blocks[start..]
                .iter()
                .take_while(|b| b.section == first.section && b.page == first.page)
                .count();
        let mut pieces = Vec::new();
        for index in start..end {
            split_block(index, &doc.blocks[index], target, &mut pieces);
        }
        pack(&doc.blocks, &pieces, target, overlap, &mut chunks, &mut checkpoint)?;
        start = end;
    }
    Ok(chunks)
}

fn pack(
    blocks: &[Block],
    pieces: &[Piece],
    target: u32,
    overlap: u32,
    chunks: &mut Vec<NewChunk>,
    checkpoint: &mut impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut current: Vec<usize> = Vec::new();
    let mut tokens = 0;
    // Whether `current` holds anything beyond the overlap carried from the previous chunk.
    let mut fresh = false;
    for (index, piece) in pieces.iter().enumerate() {
        if fresh && tokens + piece.tokens > target {
            checkpoint()?;
            chunks.push(make_chunk(blocks, pieces, &current));
            let mut carried = Vec::new();
            let mut carried_tokens = 0;
            for &i in current.iter().rev() {
                if carried_tokens + pieces[i].tokens > overlap || carried.len() + 1 >= current.len()
                {
                    break;
                }
                carried_tokens += pieces[i].tokens;
                carried.push(i);
            }
            carried.reverse();
            if carried_tokens + piece.tokens > target {
                carried.clear();
                carried_tokens = 0;
            }
            current = carried;
            tokens = carried_tokens;
        }
        current.push(index);
        tokens += piece.tokens;
        fresh = true;
    }
    if fresh {
        checkpoint()?;
        chunks.push(make_chunk(blocks, pieces, &current));
    }
    Ok(())
}

fn make_chunk(blocks: &[Block], pieces: &[Piece], members: &[usize]) -> NewChunk {
    let mut text = String::new();
    let mut previous_block = None;
    let mut lines: Option<(u32, u32)> = None;
    let mut times: Option<(u64, u64)> = None;
    for &i in members {
        let piece = &pieces[i];
        if previous_block.is_some_and(|b| b != piece.block) {
            text.truncate(text.trim_end().len());
            text.push_str("\n\n");
        }
        previous_block = Some(piece.block);
        text.push_str(piece.text);
        if let Some((a, b)) = piece.lines {
            lines = Some(lines.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        if let Some((a, b)) = blocks[piece.block].time_ms {
            times = Some(times.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }
    let text = text.trim().to_string();
    let section = &blocks[pieces[members[0]].block].section;
    let label = match times {
        Some((a, b)) if section.is_empty() => format!("{} – {}", format_time(a), format_time(b)),
        Some((a, b)) => format!("{section}, {} – {}", format_time(a), format_time(b)),
        None => section.clone(),
    };
    NewChunk {
        token_count: estimate_tokens(&text),
        text_hash: sha256_hex(text.as_bytes()),
        location: Location {
            label,
            line_start: lines.map(|l| l.0),
            line_end: lines.map(|l| l.1),
            page: blocks[pieces[members[0]].block].page,
        },
        text,
    }
}

/// Partitions a block's text into pieces of at most `target` tokens.
fn split_block<'a>(index: usize, block: &'a Block, target: u32, out: &mut Vec<Piece<'a>>) {
    let text = block.text.as_str();
    let mut line = block.first_line;
    for sentence in sentences(text) {
        let tokens = estimate_tokens(sentence);
        if tokens <= target {
            push_piece(out, index, sentence, tokens, &mut line);
        } else {
            for part in word_groups(sentence, target) {
                push_piece(out, index, part, estimate_tokens(part), &mut line);
            }
        }
    }
}

fn push_piece<'a>(
    out: &mut Vec<Piece<'a>>,
    block: usize,
    text: &'a str,
    tokens: u32,
    line: &mut Option<u32>,
) {
    let first = *line;
    if let Some(l) = line.as_mut() {
        *l += text.matches('\n').count() as u32;
    }
    if text.trim().is_empty() {
        return;
    }
    let lines = first.map(|first| {
        let leading = text[..text.len() - text.trim_start().len()].matches('\n').count() as u32;
        let inner = text.trim().matches('\n').count() as u32;
        (first + leading, first + leading + inner)
    });
    out.push(Piece { block, text, tokens, lines });
}

/// Splits text after line ends and after sentence punctuation followed by white space; the
/// pieces concatenate back to the whole text.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            let boundary = b == b'\n'
                || (matches!(b, b'.' | b'!' | b'?' | b';')
                    && bytes.get(i).is_some_and(|n| *n == b' ' || *n == b'\t'));
            if boundary {
                while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                    i += 1;
                }
                let piece = &text[start..i];
                start = i;
                return Some(piece);
            }
        }
        (start < bytes.len()).then(|| {
            let piece = &text[start..];
            start = bytes.len();
            piece
        })
    })
}

/// Splits an over-long sentence into runs of whole words of at most `target` tokens; a single
/// word longer than that is cut into runs of characters.
fn word_groups(text: &str, target: u32) -> Vec<&str> {
    let max_chars = (target as usize - 1) * 6 + 1;
    let mut groups = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    let mut word_start = None;
    let mut words: Vec<(usize, usize)> = Vec::new();
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_whitespace(), word_start) {
            (false, None) => word_start = Some(i),
            (true, Some(ws)) => {
                words.push((ws, i));
                word_start = None;
            }
            _ => {}
        }
    }
    for (ws, we) in words {
        let word = &text[ws..we];
        let word_tokens = estimate_tokens(word);
        if word_tokens > target {
            if ws > start {
                groups.push(&text[start..ws]);
            }
            let mut run_start = ws;
            let mut count = 0;
            for (i, _) in word.char_indices() {
                if count == max_chars {
                    groups.push(&text[run_start..ws + i]);
                    run_start = ws + i;
                    count = 0;
                }
                count += 1;
            }
            start = run_start;
            tokens = estimate_tokens(&text[run_start..we]);
            continue;
        }
        if tokens + word_tokens > target && ws > start {
            groups.push(&text[start..ws]);
            start = ws;
            tokens = 0;
        }
        tokens += word_tokens;
    }
    if start < text.len() {
        groups.push(&text[start..]);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(blocks: &[(&str, &str, Option<u32>)]) -> Document {
        Document {
            blocks: blocks
                .iter()
                .map(|(section, text, line)| Block {
                    section: section.to_string(),
                    text: text.to_string(),
                    first_line: *line,
                    ..Block::default()
                })
                .collect(),
            ..Document::default()
        }
    }

    fn cut(d: &Document, target: u32, overlap: u32) -> Vec<NewChunk> {
        chunk(d, ChunkConfig { target, overlap }, || Ok(())).unwrap()
    }

    #[test]
    fn sections_are_never_mixed() {
        let d = doc(&[
            ("A", "alpha one.", Some(1)),
            ("A", "alpha two.", Some(3)),
            ("B", "beta.", Some(5)),
        ]);
        let chunks = cut(&d, 100, 10);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "alpha one.\n\nalpha two.");
        assert_eq!(
            chunks[0].location,
            Location { label: "A".into(), line_start: Some(1), line_end: Some(3), page: None }
        );
        assert_eq!(chunks[1].location.label, "B");
    }

    #[test]
    fn long_text_is_cut_near_the_target_with_overlap() {
        let text: String = (0..200).map(|i| format!("Sentence number {i} is here. ")).collect();
        let chunks = cut(&doc(&[("", &text, Some(1))]), 50, 10);
        assert!(chunks.len() > 10);
        for pair in chunks.windows(2) {
            assert!(pair[0].token_count <= 50, "{}", pair[0].token_count);
            // The next chunk begins with the last sentence of this one.
            let last_sentence = pair[0].text.rsplit(". ").next().unwrap();
            assert!(pair[1].text.contains(last_sentence.trim_end_matches('.')));
        }
        assert!(chunks.last().unwrap().text.ends_with("Sentence number 199 is here."));
    }

    #[test]
    fn a_huge_word_is_cut_into_runs() {
        let word = "x".repeat(100_000);
        let chunks = cut(&doc(&[("", &word, None)]), 64, 8);
        let total: usize = chunks.iter().map(|c| c.text.len()).sum();
        assert_eq!(total, 100_000);
        assert!(chunks.iter().all(|c| c.token_count <= 64));
    }

    #[test]
    fn lines_are_tracked_through_pieces() {
        let text =
            (1..=40).map(|i| format!("line {i} with some words")).collect::<Vec<_>>().join("\n");
        let chunks = cut(&doc(&[("", &text, Some(10))]), 20, 0);
        assert_eq!(chunks[0].location.line_start, Some(10));
        let last = chunks.last().unwrap();
        assert_eq!(last.location.line_end, Some(49));
        assert!(last.text.ends_with("line 40 with some words"));
    }

    #[test]
    fn chunking_is_deterministic_and_cancellable() {
        let text: String = (0..500).map(|i| format!("Word{i} ")).collect();
        let d = doc(&[("", &text, None)]);
        assert_eq!(cut(&d, 40, 8), cut(&d, 40, 8));
        let mut calls = 0;
        let result = chunk(&d, ChunkConfig { target: 40, overlap: 8 }, || {
            calls += 1;
            if calls == 3 { Err(crate::Error::Cancelled) } else { Ok(()) }
        });
        assert_eq!(result.unwrap_err().code(), "cancelled");
    }
}
