//! Conversations, messages with their citations, verified answers and personas.
//!
//! Writes take a transaction and run on the worker; reads take any connection.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::now_ms;
use crate::chat::prompt::Persona;
use crate::chat::{Citation, Conversation, Grounding, Message, MessageState, Role, VerifiedAnswer};
use crate::error::{Error, Result};
use crate::model::TwinId;

/// Longest conversation title, in characters.
const TITLE_CHARS: usize = 80;

/// The two rows a new answer needs: the question (complete) and the answer (streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnswerRows {
    pub question: i64,
    pub answer: i64,
}

/// Creates the conversation unless it exists (two first messages at once make one), then
/// stores the question and an empty streaming answer.
pub(crate) fn begin_answer(
    tx: &Transaction,
    conversation: &str,
    twin: TwinId,
    question: &str,
) -> Result<AnswerRows> {
    let now = now_ms();
    let title: String = question.split_whitespace().collect::<Vec<_>>().join(" ");
    let title: String = title.chars().take(TITLE_CHARS).collect();
    tx.execute(
        "INSERT INTO conversations (id, twin_id, title, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (id) DO NOTHING",
        params![conversation, twin, title, now],
    )?;
    let owner: TwinId =
        tx.query_row("SELECT twin_id FROM conversations WHERE id = ?1", [conversation], |r| {
            r.get(0)
        })?;
    if owner != twin {
        return Err(Error::InvalidInput(format!(
            "conversation {conversation} belongs to another twin"
        )));
    }
    tx.execute(
        "UPDATE conversations SET updated_at = ?2 WHERE id = ?1",
        params![conversation, now],
    )?;
    let insert = "INSERT INTO messages (conversation_id, role, content, state, created_at)
                  VALUES (?1, ?2, ?3, ?4, ?5)";
    tx.execute(insert, params![conversation, "user", question, "complete", now])?;
    let question = tx.last_insert_rowid();
    tx.execute(insert, params![conversation, "assistant", "", "streaming", now])?;
    Ok(AnswerRows { question, answer: tx.last_insert_rowid() })
}

/// What an answer ended as.
#[derive(Debug, Clone)]
pub(crate) struct FinishedAnswer {
    pub message: i64,
    pub content: String,
    pub state: MessageState,
    pub error: Option<String>,
    pub model: Option<String>,
    pub grounding: Grounding,
    pub verified: bool,
    pub citations: Vec<Citation>,
}

/// Keeps what an answer has said so far, so that a crash loses at most the last moments of it.
/// Only a streaming answer is touched: a late save never overwrites a finished one.
pub(crate) fn save_progress(tx: &Transaction, message: i64, content: &str) -> Result<()> {
    tx.execute(
        "UPDATE messages SET content = ?2 WHERE id = ?1 AND state = 'streaming'",
        params![message, content],
    )?;
    Ok(())
}

pub(crate) fn finish_answer(tx: &Transaction, answer: &FinishedAnswer) -> Result<()> {
    tx.execute(
        "UPDATE messages SET content = ?2, state = ?3, error = ?4, model = ?5, grounding = ?6,
                verified = ?7
         WHERE id = ?1",
        params![
            answer.message,
            answer.content,
            answer.state.as_str(),
            answer.error,
            answer.model,
            answer.grounding.as_str(),
            answer.verified,
        ],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO citations (message_id, number, chunk_id, source_id, source_title, location, quote)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
         WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?3)",
    )?;
    for c in &answer.citations {
        // A passage whose source was deleted while the answer streamed is not cited.
        insert.execute(params![
            answer.message,
            c.number,
            c.chunk_id,
            c.source_id,
            c.source_title,
            c.location,
            c.quote
        ])?;
    }
    Ok(())
}

/// Saves an approved answer; the message it came from (if any) is marked verified.
pub(crate) fn add_verified(
    tx: &Transaction,
    twin: TwinId,
    question: &str,
    answer: &str,
    message: Option<i64>,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO verified_answers (twin_id, question, answer, message_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![twin, question, answer, message, now_ms()],
    )?;
    let id = tx.last_insert_rowid();
    if let Some(message) = message {
        tx.execute("UPDATE messages SET verified = 1 WHERE id = ?1", [message])?;
    }
    Ok(id)
}

pub(crate) fn delete_verified(tx: &Transaction, id: i64) -> Result<()> {
    if tx.execute("DELETE FROM verified_answers WHERE id = ?1", [id])? == 0 {
        return Err(Error::NotFound { what: "verified answer", id: id.to_string() });
    }
    Ok(())
}

pub(crate) fn set_persona(tx: &Transaction, twin: TwinId, p: &Persona) -> Result<()> {
    tx.execute(
        "INSERT INTO personas (twin_id, name, description, voice, not_covered)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (twin_id) DO UPDATE SET name = ?2, description = ?3, voice = ?4,
                                             not_covered = ?5",
        params![twin, p.name, p.description, p.voice, p.not_covered],
    )?;
    Ok(())
}

/// The twin's persona, or the default one.
pub(crate) fn persona(conn: &Connection, twin: TwinId) -> Result<Persona> {
    let stored = conn
        .query_row(
            "SELECT name, description, voice, not_covered FROM personas WHERE twin_id = ?1",
            [twin],
            |r| {
                Ok(Persona {
                    name: r.get(0)?,
                    description: r.get(1)?,
                    voice: r.get(2)?,
                    not_covered: r.get(3)?,
                })
            },
        )
        .optional()?;
    Ok(stored.unwrap_or_default())
}

pub(crate) fn conversations(conn: &Connection, twin: TwinId) -> Result<Vec<Conversation>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, twin_id, title, created_at, updated_at FROM conversations
         WHERE twin_id = ?1 ORDER BY updated_at DESC, id",
    )?;
    let rows = stmt.query_map([twin], conversation_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn conversation_from_row(r: &rusqlite::Row) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        twin: r.get(1)?,
        title: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

pub(crate) fn conversation(conn: &Connection, id: &str) -> Result<Conversation> {
    conn.query_row(
        "SELECT id, twin_id, title, created_at, updated_at FROM conversations WHERE id = ?1",
        [id],
        conversation_from_row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound { what: "conversation", id: id.to_string() })
}

/// The messages of a conversation, oldest first, each with its citations.
pub(crate) fn messages(conn: &Connection, conversation: &str) -> Result<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, role, content, state, error, model, grounding, verified, created_at
         FROM messages WHERE conversation_id = ?1 ORDER BY id",
    )?;
    let mut messages = stmt
        .query_map([conversation], |r| {
            let role: String = r.get(1)?;
            let state: String = r.get(3)?;
            let grounding: Option<String> = r.get(6)?;
            Ok(Message {
                id: r.get(0)?,
                role: if role == "user" { Role::User } else { Role::Assistant },
                content: r.get(2)?,
                state: MessageState::parse(&state).unwrap_or(MessageState::Failed),
                error: r.get(4)?,
                model: r.get(5)?,
                grounding: grounding.as_deref().and_then(Grounding::parse),
                verified: r.get(7)?,
                citations: Vec::new(),
                created_at: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut cited = conn.prepare_cached(
        "SELECT number, chunk_id, source_id, source_title, location, quote
         FROM citations WHERE message_id = ?1 ORDER BY number",
    )?;
    for message in &mut messages {
        message.citations = cited
            .query_map([message.id], |r| {
                Ok(Citation {
                    number: r.get(0)?,
                    chunk_id: r.get(1)?,
                    source_id: r.get(2)?,
                    source_title: r.get(3)?,
                    location: r.get(4)?,
                    quote: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(messages)
}

pub(crate) fn verified_answers(conn: &Connection, twin: TwinId) -> Result<Vec<VerifiedAnswer>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, question, answer, created_at FROM verified_answers WHERE twin_id = ?1
         ORDER BY id",
    )?;
    let rows = stmt.query_map([twin], |r| {
        Ok(VerifiedAnswer {
            id: r.get(0)?,
            question: r.get(1)?,
            answer: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Answers repeat what they were given, so forgetting a source also takes its words out of
/// every answer that cited it: any run of [`ECHO_WORDS`] or more words that the answer shares
/// with one of the source's passages becomes `[…]`. Runs in the deleting transaction, before
/// the passages are gone. An extractive answer, made of whole passages, keeps only the other
/// sources' passages.
pub(crate) fn forget_echoes(tx: &Transaction, source: crate::model::SourceId) -> Result<()> {
    let answers: Vec<(i64, String)> = tx
        .prepare_cached(
            "SELECT id, content FROM messages WHERE role = 'assistant'
               AND id IN (SELECT message_id FROM citations WHERE source_id = ?1)",
        )?
        .query_map([source], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if answers.is_empty() {
        return Ok(());
    }
    let mut echoes: Vec<Echoes> = answers.iter().map(|(_, content)| Echoes::new(content)).collect();
    let mut passages = tx.prepare_cached("SELECT text FROM chunks WHERE source_id = ?1")?;
    let mut rows = passages.query([source])?;
    while let Some(row) = rows.next()? {
        let passage: String = row.get(0)?;
        let words = words(&passage);
        for echo in &mut echoes {
            echo.mark(&words);
        }
    }
    let mut update = tx.prepare_cached("UPDATE messages SET content = ?2 WHERE id = ?1")?;
    for ((id, content), echo) in answers.iter().zip(echoes) {
        if let Some(scrubbed) = echo.scrubbed(content) {
            update.execute(params![id, scrubbed])?;
        }
    }
    Ok(())
}

/// Shared runs shorter than this are common phrasing, not an echo of the passage.
const ECHO_WORDS: usize = 6;

/// A word, as a hash of its lowercased letters, with its byte range in the text.
type Word = (u64, std::ops::Range<usize>);

/// The words of a text. Hashing each word once keeps forgetting a large source cheap: runs are
/// compared as numbers, with no string built per window.
fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((word_hash(&text[s..i]), s..i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// FNV-1a over the word's lowercased characters.
fn word_hash(word: &str) -> u64 {
    word.chars().flat_map(char::to_lowercase).fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(u32::from(c))).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One run of words, by their hashes.
type Run = [u64; ECHO_WORDS];

fn run_of(window: &[Word]) -> Run {
    std::array::from_fn(|i| window[i].0)
}

/// One answer's words, and which of them echo a passage.
struct Echoes {
    words: Vec<Word>,
    /// Where each run of `ECHO_WORDS` words starts.
    runs: std::collections::HashMap<Run, Vec<usize>>,
    echoed: Vec<bool>,
}

impl Echoes {
    fn new(content: &str) -> Echoes {
        let words = words(content);
        let mut runs: std::collections::HashMap<Run, Vec<usize>> = Default::default();
        for (start, window) in words.windows(ECHO_WORDS).enumerate() {
            runs.entry(run_of(window)).or_default().push(start);
        }
        let echoed = vec![false; words.len()];
        Echoes { words, runs, echoed }
    }

    /// Marks the words of every run this answer shares with `passage`. A passage shorter than
    /// a run is an echo wherever it appears whole.
    fn mark(&mut self, passage: &[Word]) {
        if passage.is_empty() {
            return;
        }
        if passage.len() < ECHO_WORDS {
            let n = passage.len();
            for start in 0..self.words.len().saturating_sub(n - 1) {
                if self.words[start..start + n].iter().zip(passage).all(|(a, b)| a.0 == b.0) {
                    self.echoed[start..start + n].iter_mut().for_each(|e| *e = true);
                }
            }
            return;
        }
        for window in passage.windows(ECHO_WORDS) {
            for &start in self.runs.get(&run_of(window)).into_iter().flatten() {
                self.echoed[start..start + ECHO_WORDS].iter_mut().for_each(|e| *e = true);
            }
        }
    }

    /// The content with each echoed run replaced by `[…]`, if there was any.
    fn scrubbed(&self, content: &str) -> Option<String> {
        if !self.echoed.contains(&true) {
            return None;
        }
        let mut out = String::with_capacity(content.len());
        let mut at = 0;
        let mut i = 0;
        while i < self.words.len() {
            if !self.echoed[i] {
                i += 1;
                continue;
            }
            let start = self.words[i].1.start;
            while i < self.words.len() && self.echoed[i] {
                i += 1;
            }
            let end = self.words[i - 1].1.end;
            out.push_str(&content[at..start]);
            out.push_str("[…]");
            at = end;
        }
        out.push_str(&content[at..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(answer: &str, passages: &[&str]) -> String {
        let mut echoes = Echoes::new(answer);
        for passage in passages {
            echoes.mark(&words(passage));
        }
        echoes.scrubbed(answer).unwrap_or_else(|| answer.to_string())
    }

    #[test]
    fn runs_copied_from_a_passage_are_taken_out_and_the_rest_stays() {
        let passage = "The quokka recipe needs three cups of flour and a pinch of salt.";
        let answer = "You wrote that it needs three cups of flour and a pinch, as I recall [1].";
        assert_eq!(scrub(answer, &[passage]), "You wrote that it […], as I recall [1].");
        // Case and punctuation do not hide an echo.
        let shouted = "NEEDS THREE CUPS -- OF FLOUR, AND a pinch!";
        assert_eq!(scrub(shouted, &[passage]), "[…]!");
        // Five shared words in a row are common phrasing, not an echo.
        assert_eq!(
            scrub("It needs three cups of sugar.", &[passage]),
            "It needs three cups of sugar."
        );
    }

    #[test]
    fn a_short_passage_is_an_echo_wherever_it_appears_whole() {
        let answer = "First: Quokka marker forgotten. Then the rest.";
        assert_eq!(scrub(answer, &["quokka marker forgotten"]), "First: […]. Then the rest.");
        assert_eq!(
            scrub("A quokka, then marker.", &["quokka marker forgotten"]),
            "A quokka, then marker."
        );
    }
}
