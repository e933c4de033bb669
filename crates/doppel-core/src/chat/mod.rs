//! Chat with the twin: a language model answers from retrieved passages, in the owner's voice,
//! streamed token by token, with citations.
//!
//! - `prompt`: builds the messages from the persona, verified answers, passages and recent turns.
//!   Passage and user text are data: quoted inside delimiters, with anything that looks like a
//!   chat-template token or a delimiter neutralised.
//! - `answer`: `Doppel::ask` and the conversation API: retrieve, prompt, generate (the local
//!   model in `crate::llm`, a model server, or none: an extractive answer), store.
//! - `grounded`: the answer composed from the passages' own best sentences, each cited: the
//!   default without a model and for models too small to be trusted.
//! - `check`: every generated answer is checked against its cited passages as it completes;
//!   one mostly unsupported, or declining although passages were found, is replaced by the
//!   grounded answer. Prompt markup and loops are filtered out of the stream.
//! - `remote`: model servers, Ollama (`/api/chat`, NDJSON) and OpenAI-compatible
//!   (`/v1/chat/completions`, SSE), with connect, first-token, idle and total timeouts, and
//!   retries only before the first token.

pub(crate) mod answer;
pub mod check;
pub(crate) mod export;
pub mod grounded;
pub mod prompt;
pub mod remote;

pub use answer::{Answer, AnswerMode, AskRequest, ChatModel, check_question};

use std::time::Duration;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The person asking.
    User,
    /// The twin.
    Assistant,
}

impl Role {
    /// The name chat templates and model servers use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of the conversation sent to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

/// How to generate an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens of the answer.
    pub max_tokens: u32,
    /// Sampling temperature; 0 picks the likeliest token every time.
    pub temperature: f32,
    /// Seed of the sampler, so that a run can be repeated.
    pub seed: u32,
}

impl Default for GenerateOptions {
    fn default() -> GenerateOptions {
        GenerateOptions { max_tokens: 512, temperature: 0.3, seed: 42 }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer.
    Stop,
    /// The answer reached `max_tokens`.
    Length,
    /// The caller cancelled (or went away).
    Cancelled,
}

/// How patient to be with a chat model server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPolicy {
    /// Time to open the connection.
    pub connect_timeout: Duration,
    /// Time from sending the request to the first token (the model may have to load).
    pub first_token_timeout: Duration,
    /// Longest silence between two pieces of the stream once it has started.
    pub idle_timeout: Duration,
    /// Longest time for the whole answer.
    pub total_timeout: Duration,
    /// Extra tries after a failure that may pass, only before the first token.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for StreamPolicy {
    fn default() -> StreamPolicy {
        StreamPolicy {
            connect_timeout: Duration::from_secs(10),
            first_token_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(600),
            retries: 2,
            backoff: Duration::from_millis(500),
        }
    }
}

use crate::model::{ChunkId, Millis, SourceId, TwinId};

/// A conversation with a twin. Its id is chosen by the caller (or by [`crate::Doppel::ask`]),
/// so that creating it is idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The id: 1 to 64 letters, digits, `-` or `_`.
    pub id: String,
    /// The twin spoken to.
    pub twin: TwinId,
    /// The first question, shortened.
    pub title: String,
    /// When it began.
    pub created_at: Millis,
    /// When its last message was written.
    pub updated_at: Millis,
}

/// How an answer came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounding {
    /// A language model answered from retrieved passages.
    Passages,
    /// An answer the owner approved matched the question closely and was the primary context.
    Verified,
    /// Nothing in the documents matched; the persona's "not covered" answer was given.
    NotCovered,
    /// No language model was available: the most relevant passages are shown instead (answers
    /// of earlier versions; answers are now [`Grounding::Grounded`]).
    Extractive,
    /// Composed from the passages' own sentences, each cited (see [`grounded`]).
    Grounded,
}

/// The state of a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Being generated (a process that died leaves it to recovery, which marks it cancelled).
    Streaming,
    /// Finished.
    Complete,
    /// Stopped by the owner, or its reader went away; the partial text is kept.
    Cancelled,
    /// Failed; `error` says why.
    Failed,
}

crate::model::text_names!(Grounding {
    Passages => "passages",
    Verified => "verified",
    NotCovered => "not_covered",
    Extractive => "extractive",
    Grounded => "grounded",
});

crate::model::text_names!(MessageState {
    Streaming => "streaming",
    Complete => "complete",
    Cancelled => "cancelled",
    Failed => "failed",
});

/// A passage an answer cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citation {
    /// The number the answer cites it by, from 1.
    pub number: u32,
    /// The chunk; `None` once its source was deleted.
    pub chunk_id: Option<ChunkId>,
    /// The source.
    pub source_id: Option<SourceId>,
    /// The source's title when the answer was given; empty once the source was deleted (a
    /// title can be a heading or an e-mail's subject: nothing of the document is kept).
    pub source_title: String,
    /// Where in the source; empty once the source was deleted.
    pub location: String,
    /// The passage text; `None` once its source was deleted ("source deleted").
    pub quote: Option<String>,
    /// The source's canonical path or URL (`None` for pasted text, and once it was deleted).
    pub origin: Option<String>,
}

/// A stored message with its citations.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its id.
    pub id: i64,
    /// `User` or `Assistant`.
    pub role: Role,
    /// The text (for a cancelled answer, what had arrived).
    pub content: String,
    /// Its state.
    pub state: MessageState,
    /// Why it failed.
    pub error: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// How the answer came to be.
    pub grounding: Option<Grounding>,
    /// Whether the owner approved it (or saved a revision of it) as a verified answer.
    pub verified: bool,
    /// The passages it cites.
    pub citations: Vec<Citation>,
    /// Its sentences that state facts none of its cited passages holds (checked as it is read,
    /// for complete answers of a model).
    pub unsupported: Vec<check::Unsupported>,
    /// The model's own answer, when it was not shown and the grounded answer was stored
    /// instead.
    pub draft: Option<String>,
    /// Why the model's answer was not shown.
    pub draft_note: Option<String>,
    /// When it was written.
    pub created_at: Millis,
}

/// An answer the owner approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAnswer {
    /// Its id.
    pub id: i64,
    /// The question.
    pub question: String,
    /// The approved (possibly revised) answer.
    pub answer: String,
    /// When it was approved.
    pub created_at: Millis,
}
