//! Conversations, messages with their citations, verified answers and personas.
//!
//! Writes take a transaction and run on the worker; reads take any connection.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::now_ms;
use crate::chat::check::Unsupported;
use crate::chat::prompt::Persona;
use crate::chat::{Citation, Conversation, Grounding, Message, MessageState, Role, VerifiedAnswer};
use crate::error::{Error, Result};
use crate::model::{SourceId, TwinId};

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
    /// The model's answer when the grounded one replaced it, and why.
    pub draft: Option<(String, String)>,
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
                verified = ?7, draft = ?8, draft_note = ?9
         WHERE id = ?1",
        params![
            answer.message,
            answer.content,
            answer.state.as_str(),
            answer.error,
            answer.model,
            answer.grounding.as_str(),
            answer.verified,
            answer.draft.as_ref().map(|d| &d.0),
            answer.draft.as_ref().map(|d| &d.1),
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
        // Drawn from what its message was given: its passages' sources, and those of the
        // verified answers it was given.
        tx.execute(
            "INSERT OR IGNORE INTO verified_sources (verified_id, source_id)
             SELECT ?1, source_id FROM answer_sources WHERE message_id = ?2
             UNION SELECT ?1, s.source_id FROM answer_verified a
                   JOIN verified_sources s ON s.verified_id = a.verified_id
                   WHERE a.message_id = ?2",
            params![id, message],
        )?;
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
        "SELECT id, role, content, state, error, model, grounding, verified, created_at, draft,
                draft_note
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
                unsupported: Vec::new(),
                draft: r.get(9)?,
                draft_note: r.get(10)?,
                created_at: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut cited = conn.prepare_cached(
        "SELECT c.number, c.chunk_id, c.source_id, c.source_title, c.location, c.quote, s.origin
         FROM citations c
         LEFT JOIN sources s ON s.id = c.source_id AND c.quote IS NOT NULL
         WHERE c.message_id = ?1 ORDER BY c.number",
    )?;
    let mut question = String::new();
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
                    origin: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        message.unsupported = unsupported(message, &question);
        if message.role == Role::User {
            question.clone_from(&message.content);
        }
    }
    Ok(messages)
}

/// The sentences of a model's complete answer that its cited passages do not support. Answers
/// that cite a forgotten source are not checked: their words are gone.
fn unsupported(message: &Message, question: &str) -> Vec<Unsupported> {
    let checked = message.role == Role::Assistant
        && message.state == MessageState::Complete
        && message.grounding == Some(Grounding::Passages)
        && message.citations.iter().all(|c| c.quote.is_some());
    if !checked {
        return Vec::new();
    }
    let quotes: Vec<&str> = message.citations.iter().filter_map(|c| c.quote.as_deref()).collect();
    crate::chat::check::check(&message.content, question, &quotes)
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

/// Records what an answer is given before it says anything: the sources of its passages and
/// the verified answers in its context. Forgetting one of them later finds the answer by these,
/// cited or not, even if the process dies before the answer ends.
pub(crate) fn record_context(
    tx: &Transaction,
    message: i64,
    sources: &[SourceId],
    verified: &[i64],
) -> Result<()> {
    let mut source = tx.prepare_cached(
        "INSERT OR IGNORE INTO answer_sources (message_id, source_id) VALUES (?1, ?2)",
    )?;
    for id in sources {
        source.execute(params![message, id])?;
    }
    let mut answer = tx.prepare_cached(
        "INSERT OR IGNORE INTO answer_verified (message_id, verified_id) VALUES (?1, ?2)",
    )?;
    for id in verified {
        answer.execute(params![message, id])?;
    }
    Ok(())
}

/// Forgetting a source reaches every answer that could repeat its words. Runs in the deleting
/// transaction, before the passages are gone:
///
/// - verified answers drawn from it (their message was given its passages) are removed: the
///   owner approved them as answers from a source that is now forgotten;
/// - every other verified answer of the twin (one the owner typed, say) is scrubbed: any run of
///   [`ECHO_WORDS`] or more words it shares with one of the source's passages becomes `[…]`,
///   and one left with no word of its own is removed;
/// - every answer that was given the source's passages, or a verified answer removed or
///   scrubbed here, is scrubbed the same way. An extractive answer, made of whole passages,
///   keeps only the other sources' passages.
pub(crate) fn forget_source(tx: &Transaction, source: SourceId) -> Result<()> {
    let twin: Option<TwinId> = tx
        .query_row("SELECT twin_id FROM sources WHERE id = ?1", [source], |r| r.get(0))
        .optional()?;
    let Some(twin) = twin else {
        return Ok(());
    };
    let removed: Vec<i64> = tx
        .prepare_cached(
            "DELETE FROM verified_answers WHERE id IN
                 (SELECT verified_id FROM verified_sources WHERE source_id = ?1)
             RETURNING id",
        )?
        .query_map([source], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let passages: Vec<Vec<Word>> = tx
        .prepare_cached("SELECT text FROM chunks WHERE source_id = ?1")?
        .query_map([source], |r| r.get::<_, String>(0))?
        .map(|text| text.map(|t| words(&t)))
        .collect::<rusqlite::Result<_>>()?;
    scrub_answers(tx, twin, source, removed, &passages, &[])?;
    // Nothing of the source is left to find these answers by.
    tx.execute("DELETE FROM answer_sources WHERE source_id = ?1", [source])?;
    tx.execute("DELETE FROM verified_sources WHERE source_id = ?1", [source])?;
    Ok(())
}

/// Forgetting what an edit took out of a source: its passages that are in none of `new_texts`
/// are forgotten as [`forget_source`] forgets a whole source, except that the source stays,
/// and so do the verified answers drawn from it. A run of words that the new passages still
/// hold is kept. Citations that quoted a removed passage keep their number and the source's
/// title, and nothing of the passage. Runs in the replacing transaction, before the old
/// passages are gone.
pub(crate) fn forget_edited(tx: &Transaction, source: SourceId, new_texts: &[&str]) -> Result<()> {
    let twin: Option<TwinId> = tx
        .query_row("SELECT twin_id FROM sources WHERE id = ?1", [source], |r| r.get(0))
        .optional()?;
    let Some(twin) = twin else {
        return Ok(());
    };
    let kept: std::collections::HashSet<&str> = new_texts.iter().copied().collect();
    let old: Vec<String> = tx
        .prepare_cached("SELECT text FROM chunks WHERE source_id = ?1")?
        .query_map([source], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let removed: Vec<&String> = old.iter().filter(|t| !kept.contains(t.as_str())).collect();
    if removed.is_empty() {
        return Ok(());
    }
    let mut unquote = tx.prepare_cached(
        "UPDATE citations SET quote = NULL, chunk_id = NULL, location = ''
         WHERE source_id = ?1 AND quote = ?2",
    )?;
    for text in &removed {
        unquote.execute(params![source, text])?;
    }
    let passages: Vec<Vec<Word>> = removed.iter().map(|t| words(t)).collect();
    let still: Vec<Vec<Word>> = new_texts.iter().map(|t| words(t)).collect();
    scrub_answers(tx, twin, source, Vec::new(), &passages, &still)
}

/// Takes the runs an answer shares with `passages` (and not with `kept`) out of the twin's
/// verified answers and of every answer that was given the source's passages, or one of the
/// verified answers changed here or in `touched` (removed by the caller).
fn scrub_answers(
    tx: &Transaction,
    twin: TwinId,
    source: SourceId,
    mut touched: Vec<i64>,
    passages: &[Vec<Word>],
    kept: &[Vec<Word>],
) -> Result<()> {
    let scrub = |text: &str| -> Option<String> {
        let mut echo = Echoes::new(text);
        passages.iter().for_each(|p| echo.mark(p));
        if !kept.is_empty() {
            let mut still = Echoes::new(text);
            kept.iter().for_each(|p| still.mark(p));
            echo.except(&still);
        }
        echo.scrubbed(text)
    };
    let verified: Vec<(i64, String)> = tx
        .prepare_cached("SELECT id, answer FROM verified_answers WHERE twin_id = ?1")?
        .query_map([twin], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, answer) in &verified {
        let Some(scrubbed) = scrub(answer) else { continue };
        if words(&scrubbed).is_empty() {
            tx.execute("DELETE FROM verified_answers WHERE id = ?1", [id])?;
        } else {
            tx.execute(
                "UPDATE verified_answers SET answer = ?2 WHERE id = ?1",
                params![id, scrubbed],
            )?;
        }
        touched.push(*id);
    }
    let mut messages: std::collections::BTreeSet<i64> = tx
        .prepare_cached(
            "SELECT message_id FROM answer_sources WHERE source_id = ?1
             UNION SELECT message_id FROM citations WHERE source_id = ?1",
        )?
        .query_map([source], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut given =
        tx.prepare_cached("SELECT message_id FROM answer_verified WHERE verified_id = ?1")?;
    for id in &touched {
        let rows = given.query_map([id], |r| r.get(0))?;
        messages.extend(rows.collect::<rusqlite::Result<Vec<i64>>>()?);
    }
    // Each answer's text, and the model's draft it replaced (if any).
    let mut content = tx.prepare_cached(
        "SELECT content, draft FROM messages WHERE id = ?1 AND role = 'assistant'",
    )?;
    let mut update = tx.prepare_cached("UPDATE messages SET content = ?2 WHERE id = ?1")?;
    let mut update_draft = tx.prepare_cached("UPDATE messages SET draft = ?2 WHERE id = ?1")?;
    for id in messages {
        let row: Option<(String, Option<String>)> =
            content.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let Some((text, draft)) = row else { continue };
        if let Some(scrubbed) = scrub(&text) {
            update.execute(params![id, scrubbed])?;
        }
        if let Some(scrubbed) = draft.as_deref().and_then(scrub) {
            update_draft.execute(params![id, scrubbed])?;
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

    /// Unmarks the words that `other` (the same text) marked.
    fn except(&mut self, other: &Echoes) {
        for (echoed, kept) in self.echoed.iter_mut().zip(&other.echoed) {
            *echoed &= !kept;
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
