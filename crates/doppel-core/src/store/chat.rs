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
