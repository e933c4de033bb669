//! Chat with the twin: a language model answers from retrieved passages, in the owner's voice,
//! streamed token by token, with citations.
//!
//! - `prompt`: builds the messages from the persona, verified answers, passages and recent turns.
//!   Passage and user text are data: quoted inside delimiters, with anything that looks like a
//!   chat-template token or a delimiter neutralised.
//! - `local`: llama.cpp (llama-cpp-2) on its own thread, the model loaded once and kept.
//! - `remote`: model servers, Ollama (`/api/chat`, NDJSON) and OpenAI-compatible
//!   (`/v1/chat/completions`, SSE), with connect, first-token, idle and total timeouts, and
//!   retries only before the first token.

pub mod remote;

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
