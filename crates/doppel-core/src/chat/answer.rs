//! Asking the twin: retrieve, build the prompt, generate, store. Part of [`Doppel`]'s API.
//!
//! An answer never fails whole. Without a language model, or with one too small to be trusted,
//! it is grounded (the passages' own best sentences, each cited, see [`grounded`]); without
//! matching passages it is the persona's "not covered" message; a model's answer is checked
//! against its passages as it completes and replaced by the grounded one when they do not
//! support it (see [`check`]); a model that fails mid-answer leaves the partial text stored as failed, and a cancel
//! leaves it stored as cancelled. The question and the answer are stored by the worker (between
//! embedding batches if a job runs), so chat never waits for ingestion.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::prompt::{self, Persona, PromptParts, Quoted, VerifiedContext};
use super::remote::{self, ChatServer};
use super::{
    Citation, Conversation, Finish, GenerateOptions, Grounding, Message, MessageState, Role,
    StreamPolicy, Turn, VerifiedAnswer,
};
use super::{check, grounded};
use crate::error::{Error, Result};
use crate::llm::LocalLlm;
use crate::metrics::Metric;
use crate::model::*;
use crate::retrieve::SearchRequest;
use crate::store::chat::{AnswerRows, FinishedAnswer};
use crate::worker::{ChatWrite, Command};
use crate::{Doppel, RemoteKind, store};

/// Which language model answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatModel {
    /// A GGUF file run by llama.cpp in this process; `None` means the default model of the
    /// model cache (SmolLM2-135M-Instruct).
    Local(Option<PathBuf>),
    /// A model server.
    Remote(ChatServer),
    /// No model: answers are grounded (the passages' own sentences).
    Off,
}

impl Default for ChatModel {
    fn default() -> ChatModel {
        ChatModel::Local(None)
    }
}

const CHOICE_KEYS: [&str; 4] = ["chat.kind", "chat.url", "chat.model", "chat.path"];

impl ChatModel {
    fn to_stored(&self) -> [String; 4] {
        match self {
            ChatModel::Local(path) => [
                "local".into(),
                String::new(),
                String::new(),
                path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            ],
            ChatModel::Remote(server) => [
                server.kind.as_str().into(),
                server.url.clone(),
                server.model.clone(),
                String::new(),
            ],
            ChatModel::Off => ["off".into(), String::new(), String::new(), String::new()],
        }
    }

    fn from_stored(values: [&str; 4]) -> ChatModel {
        let [kind, url, model, path] = values;
        let remote =
            |kind| ChatServer::new(kind, url, model).map_or(ChatModel::Off, ChatModel::Remote);
        match kind {
            "ollama" => remote(RemoteKind::Ollama),
            "openai" => remote(RemoteKind::OpenAi),
            "off" => ChatModel::Off,
            _ if path.is_empty() => ChatModel::Local(None),
            _ => ChatModel::Local(Some(PathBuf::from(path))),
        }
    }
}

/// How answers are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerMode {
    /// Grounded when no model is at hand or the local model is too small to be trusted (the
    /// default SmolLM2-135M among them); the model otherwise, checked.
    #[default]
    Auto,
    /// Always the passages' own best sentences, each cited: nothing can be invented.
    Grounded,
    /// The language model, its answer checked against its passages and replaced by the
    /// grounded one when they do not support it.
    Model,
}

crate::model::text_names!(AnswerMode {
    Auto => "auto",
    Grounded => "grounded",
    Model => "model",
});

/// Where the answer mode is stored.
const MODE_KEY: &str = "answer.mode";
/// Local models with fewer parameters than this answer in grounded mode unless asked otherwise:
/// below about a billion, they invent facts even with the right passage in hand.
const TRUSTED_PARAMETERS: u64 = 1_000_000_000;

/// A question to the twin.
#[derive(Debug, Clone)]
pub struct AskRequest {
    /// The question.
    pub question: String,
    /// The conversation to continue or to create with this id; `None` starts a new one.
    pub conversation: Option<String>,
    /// The twin asked.
    pub twin: TwinId,
    /// How to generate.
    pub options: GenerateOptions,
    /// How to answer; `None` uses the stored [`AnswerMode`].
    pub mode: Option<AnswerMode>,
    /// The shell's id for this ask (1 to 64 letters, digits, `-` or `_`), carried by every log
    /// line of it; `None` (or an id of any other shape) names it by its answer's message id.
    pub request_id: Option<String>,
}

impl AskRequest {
    /// A question to the default twin in a new conversation.
    pub fn new(question: impl Into<String>) -> AskRequest {
        AskRequest {
            question: question.into(),
            conversation: None,
            twin: DEFAULT_TWIN,
            options: GenerateOptions::default(),
            mode: None,
            request_id: None,
        }
    }
}

/// What an answer ended as.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The conversation it belongs to.
    pub conversation: String,
    /// The stored answer, with its citations.
    pub message: Message,
    /// Things the asker should know: keyword search only, no model configured, and the like.
    pub notes: Vec<String>,
}

/// How often a streaming answer's text so far is stored, so that a crash keeps most of it.
const SAVE_EVERY: Duration = Duration::from_secs(2);
/// Longest question, in characters.
const MAX_QUESTION_CHARS: usize = 4000;
/// How many earlier messages of the conversation the prompt may use.
const HISTORY_MESSAGES: usize = 6;
/// Verified answers closer than this to the question are its primary context.
const VERIFIED_PRIMARY: f32 = 0.9;
/// Verified answers closer than this are offered as context.
const VERIFIED_RELATED: f32 = 0.6;

/// The loaded local model, shared by every answer (one model slot; requests queue).
#[derive(Default)]
pub(crate) struct LlmSlot {
    loaded: Mutex<Option<(PathBuf, Arc<LocalLlm>)>>,
}

impl LlmSlot {
    fn get(&self, path: &std::path::Path) -> Result<Arc<LocalLlm>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, llm)) = loaded.as_ref()
            && at == path
        {
            return Ok(Arc::clone(llm));
        }
        // The old model's thread ends when its last answer does.
        *loaded = None;
        let llm = Arc::new(LocalLlm::start(path)?);
        *loaded = Some((path.to_path_buf(), Arc::clone(&llm)));
        Ok(llm)
    }
}

/// A conversation id for a new conversation: unique in this data directory.
fn new_conversation_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}-{}-{}",
        store::now_ms(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    crate::ingest::sha256_hex(seed.as_bytes())[..16].to_string()
}

/// Refuses a question that is empty or longer than an answer can take, before anything is
/// stored (a shell may check it before it starts streaming).
pub fn check_question(question: &str) -> Result<()> {
    let question = question.trim();
    if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
        return Err(Error::InvalidInput(format!(
            "a question of 1 to {MAX_QUESTION_CHARS} characters is needed"
        )));
    }
    Ok(())
}

fn check_conversation_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput("a conversation id is 1 to 64 letters, digits, '-' or '_'".into()))
    }
}

impl Doppel {
    /// Asks the twin. Tokens go to `on_token` as they are generated; setting `cancel` (or
    /// dropping out, as a closed window does) stops generation within a token or two and stores
    /// the partial answer as cancelled. Returns the stored answer with its citations.
    pub fn ask(
        &self,
        request: &AskRequest,
        cancel: &AtomicBool,
        on_token: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        check_question(&request.question)?;
        let question = request.question.trim();
        let conversation = match &request.conversation {
            Some(id) => {
                check_conversation_id(id)?;
                id.clone()
            }
            None => new_conversation_id(),
        };
        let history = self.history(&conversation)?;
        let rows = self.call(|reply| {
            Command::Chat(ChatWrite::BeginAnswer {
                conversation: conversation.clone(),
                twin: request.twin,
                question: question.to_string(),
                reply,
            })
        })?;
        let request_id = match &request.request_id {
            Some(id)
                if (1..=64).contains(&id.len())
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                id.clone()
            }
            _ => format!("message-{}", rows.answer),
        };
        // Ids, modes, counts and times only: never the question, a passage or the answer.
        let span = tracing::info_span!("ask", request = %request_id);
        let _entered = span.enter();
        let started = Instant::now();
        tracing::info!(message = rows.answer, "answer started");
        let mut notes = Vec::new();
        let mut text = String::new();
        // Saved at the first piece, then every SAVE_EVERY.
        let mut saved: Option<Instant> = None;
        let mut first_piece: Option<f64> = None;
        let asked = Asked { request, question, message: rows.answer, history: &history };
        let result = self.answer(asked, &mut notes, cancel, &mut |piece| {
            first_piece.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1000.0);
            text.push_str(piece);
            if saved.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
                saved = Some(Instant::now());
                self.save_progress(rows.answer, &text);
            }
            on_token(piece);
        });
        let finished = match result {
            Ok(mut done) => {
                if done.content.is_empty() {
                    done.content = text;
                }
                done
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e.for_log(), "answer failed");
                FinishedAnswer {
                    message: 0,
                    content: text,
                    state: MessageState::Failed,
                    error: Some(e.to_string()),
                    model: None,
                    grounding: Grounding::Passages,
                    verified: false,
                    citations: Vec::new(),
                    draft: None,
                }
            }
        };
        tracing::info!(
            state = ?finished.state,
            grounding = ?finished.grounding,
            citations = finished.citations.len(),
            ms = started.elapsed().as_millis() as u64,
            "answer finished"
        );
        self.measure_answer(&finished, started, first_piece);
        let finished = FinishedAnswer { message: rows.answer, ..finished };
        self.finish(rows, finished, conversation, notes)
    }

    /// Records an answer's time, its first piece's, and whether it was cancelled or replaced.
    fn measure_answer(&self, finished: &FinishedAnswer, started: Instant, first: Option<f64>) {
        let metrics = &self.shared.metrics;
        let by = if finished.model.is_some() { "model" } else { "passages" };
        metrics.record_since(Metric::AnswerTime, by, started);
        if let Some(ms) = first {
            metrics.record(Metric::FirstPiece, by, ms);
        }
        if finished.state == MessageState::Cancelled {
            metrics.record(Metric::AnswerCancelled, "", 1.0);
        }
        if finished.draft.is_some() {
            metrics.record(Metric::AnswerUnsupported, "", 1.0);
        }
    }

    /// Sends what an answer has said so far to the worker, without waiting for it.
    fn save_progress(&self, message: i64, text: &str) {
        if let Some(commands) = self.commands.as_ref() {
            let content = text.to_string();
            let save = ChatWrite::SaveProgress { message, content };
            // A worker that is gone stores nothing more; the answer's end reports that.
            drop(commands.send(Command::Chat(save)));
        }
    }

    fn finish(
        &self,
        rows: AnswerRows,
        finished: FinishedAnswer,
        conversation: String,
        notes: Vec<String>,
    ) -> Result<Answer> {
        self.call(|reply| {
            Command::Chat(ChatWrite::FinishAnswer { answer: Box::new(finished), reply })
        })?;
        let message = self
            .messages(&conversation)?
            .into_iter()
            .find(|m| m.id == rows.answer)
            .ok_or_else(|| Error::NotFound { what: "message", id: rows.answer.to_string() })?;
        Ok(Answer { conversation, message, notes })
    }

    /// The recent turns of a conversation (none for a new one).
    fn history(&self, conversation: &str) -> Result<Vec<Turn>> {
        let messages = self.readers.with(|c| store::chat::messages(c, conversation))?;
        let turns: Vec<Turn> = messages
            .into_iter()
            .filter(|m| m.state == MessageState::Complete && !m.content.is_empty())
            .map(|m| Turn { role: m.role, content: m.content })
            .collect();
        Ok(turns[turns.len().saturating_sub(HISTORY_MESSAGES)..].to_vec())
    }

    /// Everything between storing the question and storing the answer.
    fn answer(
        &self,
        asked: Asked,
        notes: &mut Vec<String>,
        cancel: &AtomicBool,
        on_token: &mut dyn FnMut(&str),
    ) -> Result<FinishedAnswer> {
        let Asked { request, question, message, history } = asked;
        let persona = self.readers.with(|c| store::chat::persona(c, request.twin))?;
        let search = SearchRequest { twin: request.twin, ..SearchRequest::new(question) };
        let results = self.search(&search)?;
        if let Some(note) = results.note {
            notes.push(note);
        }
        let (primary, related) = self.matching_verified(request.twin, question)?;
        // Every passage retrieved is recorded, a superset of those the prompt has room for.
        let mut sources: Vec<SourceId> = results.hits.iter().map(|h| h.source_id).collect();
        sources.sort_unstable();
        sources.dedup();
        let verified: Vec<i64> = primary.iter().chain(&related).map(|v| v.id).collect();
        if !sources.is_empty() || !verified.is_empty() {
            self.call(|reply| {
                Command::Chat(ChatWrite::RecordContext { message, sources, verified, reply })
            })?;
        }
        let passages: Vec<Quoted> = results
            .hits
            .iter()
            .enumerate()
            .map(|(i, hit)| Quoted {
                number: i + 1,
                title: hit.source_title.clone(),
                location: hit.location.to_string(),
                heading: hit.location.label.clone(),
                text: hit.text.clone(),
            })
            .collect();
        let citation = |number: usize| {
            let hit = &results.hits[number - 1];
            Citation {
                number: number as u32,
                chunk_id: Some(hit.chunk_id),
                source_id: Some(hit.source_id),
                source_title: hit.source_title.clone(),
                location: hit.location.to_string(),
                quote: Some(hit.text.clone()),
                origin: hit.origin.clone(),
            }
        };
        let base = FinishedAnswer {
            message: 0,
            content: String::new(),
            state: MessageState::Complete,
            error: None,
            model: None,
            grounding: Grounding::Passages,
            verified: false,
            citations: Vec::new(),
            draft: None,
        };
        if passages.is_empty() && primary.is_none() && related.is_empty() {
            on_token(&persona.not_covered);
            return Ok(FinishedAnswer { grounding: Grounding::NotCovered, ..base });
        }
        let composed = grounded::compose(question, &passages, &mut |texts: &[String]| {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.vectors.similarities(question, &texts)
        });
        let grounded_answer = |base: FinishedAnswer| match &composed {
            Some(g) => FinishedAnswer {
                content: g.text.clone(),
                grounding: Grounding::Grounded,
                citations: g.cited.iter().map(|&n| citation(n)).collect(),
                ..base
            },
            None => FinishedAnswer {
                content: persona.not_covered.clone(),
                grounding: Grounding::NotCovered,
                ..base
            },
        };
        let mode = request.mode.unwrap_or(self.answer_mode()?);
        let model = match self.model_for(mode, notes)? {
            Some(model) => model,
            None => {
                if let Some(verified) = &primary {
                    on_token(&verified.answer);
                    return Ok(FinishedAnswer {
                        content: verified.answer.clone(),
                        grounding: Grounding::Verified,
                        verified: true,
                        ..base
                    });
                }
                let answer = grounded_answer(base);
                on_token(&answer.content);
                return Ok(answer);
            }
        };
        let verified: Vec<VerifiedContext> = primary
            .iter()
            .chain(&related)
            .map(|v| VerifiedContext { question: v.question.clone(), answer: v.answer.clone() })
            .collect();
        let options = &request.options;
        let window = model.window().saturating_sub(options.max_tokens as usize + 64);
        let built = prompt::build(
            &PromptParts {
                persona: Some(&persona),
                verified: &verified,
                key_sentences: composed.as_ref().map(|g| g.text.as_str()),
                passages: &passages,
                history,
                question,
            },
            window,
        );
        let mut cleaner = check::Cleaner::new();
        let stop = AtomicBool::new(false);
        let finish = relay_cancel(cancel, &stop, || {
            model.generate(&built.turns, options, &stop, &mut |piece| {
                // A cancel set by the last piece's reader stops the answer before the next.
                if cancel.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                let (text, flow) = cleaner.push(piece);
                if !text.is_empty() {
                    on_token(&text);
                }
                if flow == check::Flow::Stop {
                    stop.store(true, Ordering::Relaxed);
                }
            })
        })?;
        let rest = cleaner.finish();
        if !rest.is_empty() {
            on_token(&rest);
        }
        let text = cleaner.shown().trim().to_string();
        let cancelled = finish == Finish::Cancelled && cancel.load(Ordering::Relaxed);
        // The passages it cites by number; all it was given if it cites none (small models
        // often do not).
        let mut cited: Vec<usize> =
            built.included.iter().copied().filter(|n| text.contains(&format!("[{n}]"))).collect();
        if cited.is_empty() {
            cited = built.included.clone();
        }
        let generated = FinishedAnswer {
            content: text.clone(),
            state: if cancelled { MessageState::Cancelled } else { MessageState::Complete },
            model: Some(model.name()),
            grounding: if primary.is_some() { Grounding::Verified } else { Grounding::Passages },
            verified: primary.is_some(),
            citations: cited.iter().map(|&n| citation(n)).collect(),
            ..base
        };
        if cancelled || primary.is_some() {
            return Ok(generated);
        }
        let quotes: Vec<&str> = cited.iter().map(|&n| passages[n - 1].text.as_str()).collect();
        let unsupported = check::check(&text, question, &quotes);
        let Some(rejection) = check::verdict(&text, &unsupported, &persona.not_covered) else {
            return Ok(generated);
        };
        // A model that declines when the sentences do not come near the question either agrees
        // with the grounded answer: its words stand.
        if rejection == check::Rejection::Refused && composed.is_none() {
            return Ok(generated);
        }
        notes.push(rejection.reason().to_string());
        let model_name = generated.model.clone();
        let replaced = grounded_answer(FinishedAnswer {
            model: model_name,
            draft: Some((text, rejection.reason().to_string())),
            ..generated
        });
        Ok(replaced)
    }

    /// The language model that answers in `mode`, if one does: none in grounded mode, nor in
    /// auto mode when no model is at hand or the local model is too small to be trusted. Why
    /// none answers goes to `notes`.
    fn model_for(&self, mode: AnswerMode, notes: &mut Vec<String>) -> Result<Option<Backend>> {
        if mode == AnswerMode::Grounded {
            return Ok(None);
        }
        let choice = self.chat_model()?;
        let model = match self.chat_backend(&choice) {
            Ok(model) => model,
            Err(e) => {
                let why = match choice {
                    ChatModel::Off => "no language model is configured".to_string(),
                    _ => e.to_string(),
                };
                notes.push(format!("{why}; the answer is made of the passages' own sentences"));
                return Ok(None);
            }
        };
        if let (AnswerMode::Auto, Backend::Local(llm)) = (mode, &model)
            && llm.info.parameters < TRUSTED_PARAMETERS
        {
            notes.push(format!(
                "{} is too small to answer reliably, so the answer is made of the passages' own \
                 sentences (the answer mode \"model\" asks it anyway)",
                llm.info.name
            ));
            return Ok(None);
        }
        Ok(Some(model))
    }

    /// How answers are made unless a question says otherwise.
    pub fn answer_mode(&self) -> Result<AnswerMode> {
        let stored = self.readers.with(store::stored_settings)?;
        Ok(stored.get(MODE_KEY).and_then(|m| AnswerMode::parse(m)).unwrap_or_default())
    }

    /// Sets how answers are made.
    pub fn set_answer_mode(&self, mode: AnswerMode) -> Result<()> {
        let values = vec![(MODE_KEY.to_string(), mode.as_str().to_string())];
        self.call(|reply| Command::Chat(ChatWrite::SetSettings { values, reply }))
    }

    /// The closest verified answer if it matches the question closely, and the related ones.
    fn matching_verified(
        &self,
        twin: TwinId,
        question: &str,
    ) -> Result<(Option<VerifiedAnswer>, Vec<VerifiedAnswer>)> {
        let verified = self.readers.with(|c| store::chat::verified_answers(c, twin))?;
        if verified.is_empty() {
            return Ok((None, Vec::new()));
        }
        let questions: Vec<&str> = verified.iter().map(|v| v.question.as_str()).collect();
        let mut scored: Vec<(f32, VerifiedAnswer)> =
            match self.vectors.similarities(question, &questions) {
                Some(scores) => scores.into_iter().zip(verified).collect(),
                None => {
                    verified.into_iter().map(|v| (word_overlap(question, &v.question), v)).collect()
                }
            };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut scored = scored.into_iter().filter(|(s, _)| *s >= VERIFIED_RELATED).take(3);
        let first = scored.next();
        let (primary, mut related) = match first {
            Some((s, v)) if s >= VERIFIED_PRIMARY => (Some(v), Vec::new()),
            Some((_, v)) => (None, vec![v]),
            None => (None, Vec::new()),
        };
        related.extend(scored.map(|(_, v)| v));
        Ok((primary, related))
    }

    /// The language model in use.
    pub fn chat_model(&self) -> Result<ChatModel> {
        let stored = self.readers.with(store::stored_settings)?;
        let values = CHOICE_KEYS.map(|k| stored.get(k).map(String::as_str).unwrap_or_default());
        Ok(ChatModel::from_stored(values))
    }

    /// Chooses the language model. A local file is loaded at the next question.
    pub fn set_chat_model(&self, model: &ChatModel) -> Result<()> {
        if let ChatModel::Local(Some(path)) = model
            && !path.is_file()
        {
            return Err(Error::InvalidInput(format!("no model file at {}", path.display())));
        }
        let values = model.to_stored();
        self.call(|reply| {
            Command::Chat(ChatWrite::SetSettings {
                values: CHOICE_KEYS.iter().map(|k| k.to_string()).zip(values).collect(),
                reply,
            })
        })
    }

    /// The default local chat model's file: its first copy in the lookup order, else where
    /// it would be in the user's model folder.
    pub fn default_chat_model_path(&self) -> PathBuf {
        self.models.default_chat_model()
    }

    fn chat_backend(&self, choice: &ChatModel) -> Result<Backend> {
        match choice {
            ChatModel::Off => Err(Error::Generation { reason: "none is configured".into() }),
            ChatModel::Local(path) => {
                let path = path.clone().unwrap_or_else(|| self.default_chat_model_path());
                Ok(Backend::Local(self.llm.get(&path)?))
            }
            ChatModel::Remote(server) => {
                let settings = self.settings()?;
                // A server without a key (Ollama on this machine, say) must still answer when
                // no keychain runs; one that needs a key then says so with a 401.
                let key = match self.key_stored(&server.url)? {
                    false => None,
                    true => crate::secrets::api_key(&server.url).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "no API key for the chat server");
                        None
                    }),
                };
                let policy = StreamPolicy {
                    first_token_timeout: std::time::Duration::from_secs(u64::from(
                        settings.chat_timeout_s,
                    )),
                    idle_timeout: std::time::Duration::from_secs(u64::from(settings.chat_idle_s)),
                    retries: settings.embed_retries,
                    ..StreamPolicy::default()
                };
                Ok(Backend::Remote { server: server.clone(), key, policy })
            }
        }
    }

    /// Stores the chat model server's API key in the OS keychain (never on disk), bound to its
    /// URL.
    pub fn set_chat_api_key(&self, key: &str) -> Result<()> {
        let ChatModel::Remote(server) = self.chat_model()? else {
            return Err(Error::InvalidInput(
                "a local model needs no API key; choose a model server first".into(),
            ));
        };
        if key.trim().is_empty() {
            return Err(Error::InvalidInput("the API key is empty".into()));
        }
        crate::secrets::set_api_key(&server.url, key.trim())?;
        self.mark_key(&server.url, true)
    }

    /// The chat model server's API key, masked for display (`None` when none is stored or the
    /// model is not a server).
    pub fn chat_api_key_hint(&self) -> Result<Option<String>> {
        match self.chat_model()? {
            ChatModel::Remote(server) if self.key_stored(&server.url)? => {
                Ok(crate::secrets::api_key(&server.url)?.as_deref().map(crate::secrets::masked))
            }
            _ => Ok(None),
        }
    }

    /// Removes the chat model server's API key; returns whether there was one.
    pub fn delete_chat_api_key(&self) -> Result<bool> {
        match self.chat_model()? {
            ChatModel::Remote(server) => {
                let removed = crate::secrets::delete_api_key(&server.url)?;
                self.mark_key(&server.url, false)?;
                Ok(removed)
            }
            _ => Ok(false),
        }
    }

    /// Where downloaded and imported chat models are kept: `chat/` in the user's model folder.
    pub fn chat_models_dir(&self) -> PathBuf {
        self.models.chat_models_dir()
    }

    /// The chat models at hand: the default one (if the cache has it) and every GGUF file
    /// downloaded or imported, by name.
    pub fn chat_models(&self) -> Result<Vec<PathBuf>> {
        let mut found: Vec<PathBuf> = Vec::new();
        if self.default_chat_model_path().is_file() {
            found.push(self.default_chat_model_path());
        }
        let dir = self.chat_models_dir();
        if dir.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf") && p.is_file())
                .collect();
            files.sort();
            found.extend(files);
        }
        Ok(found)
    }

    /// Downloads a GGUF chat model into [`Doppel::chat_models_dir`] with progress; an
    /// interrupted download resumes, and `sha256`, when given, is checked. Returns its path.
    pub fn download_chat_model(
        &self,
        url: &str,
        sha256: Option<&str>,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&crate::download::DownloadProgress),
    ) -> Result<PathBuf> {
        let checked = crate::fetch::check_url(url)?;
        let name = crate::download::gguf_name_of_url(&checked).ok_or_else(|| {
            Error::InvalidInput("the URL must end in a model file name such as model.gguf".into())
        })?;
        let request = crate::download::DownloadRequest {
            url: checked.to_string(),
            sha256: sha256.map(str::to_string),
            dest: self.chat_models_dir().join(name),
        };
        crate::download::download(&request, Default::default(), cancel, progress)
    }

    /// Copies a GGUF file into [`Doppel::chat_models_dir`]; returns its new path.
    pub fn import_chat_model(
        &self,
        file: &std::path::Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&crate::download::DownloadProgress),
    ) -> Result<PathBuf> {
        crate::download::import_gguf(file, &self.chat_models_dir(), cancel, progress)
    }

    /// The conversations of a twin, most recent first.
    pub fn conversations(&self, twin: TwinId) -> Result<Vec<Conversation>> {
        self.readers.with(|c| store::chat::conversations(c, twin))
    }

    /// One conversation.
    pub fn conversation(&self, id: &str) -> Result<Conversation> {
        self.readers.with(|c| store::chat::conversation(c, id))
    }

    /// The messages of a conversation, oldest first, with their citations.
    pub fn messages(&self, conversation: &str) -> Result<Vec<Message>> {
        self.conversation(conversation)?;
        self.readers.with(|c| store::chat::messages(c, conversation))
    }

    /// A conversation as Markdown, with its citations as footnotes.
    pub fn export_conversation(&self, id: &str) -> Result<String> {
        let conversation = self.conversation(id)?;
        let messages = self.messages(id)?;
        Ok(super::export::markdown(&conversation, &messages))
    }

    /// Approves an answer as it is, or as revised by the owner (`answer`). Verified answers are
    /// retrieved first for later questions.
    pub fn verify(
        &self,
        twin: TwinId,
        question: &str,
        answer: &str,
        message: Option<i64>,
    ) -> Result<i64> {
        if question.trim().is_empty() || answer.trim().is_empty() {
            return Err(Error::InvalidInput(
                "a verified answer needs a question and an answer".into(),
            ));
        }
        self.call(|reply| {
            Command::Chat(ChatWrite::Verify {
                twin,
                question: question.trim().to_string(),
                answer: answer.trim().to_string(),
                message,
                reply,
            })
        })
    }

    /// Approves a stored answer: its question is the user message just before it.
    pub fn verify_message(
        &self,
        conversation: &str,
        message: i64,
        revised: Option<&str>,
    ) -> Result<i64> {
        let messages = self.messages(conversation)?;
        let at = messages
            .iter()
            .position(|m| m.id == message && m.role == Role::Assistant)
            .ok_or_else(|| Error::NotFound { what: "answer", id: message.to_string() })?;
        let question = messages[..at]
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let twin = self.conversation(conversation)?.twin;
        let answer = revised.unwrap_or(&messages[at].content);
        self.verify(twin, &question, answer, Some(message))
    }

    /// The verified answers of a twin.
    pub fn verified_answers(&self, twin: TwinId) -> Result<Vec<VerifiedAnswer>> {
        self.readers.with(|c| store::chat::verified_answers(c, twin))
    }

    /// Removes a verified answer.
    pub fn delete_verified(&self, id: i64) -> Result<()> {
        self.call(|reply| Command::Chat(ChatWrite::Unverify { id, reply }))
    }

    /// The twin's persona (the default one until the owner sets it).
    pub fn persona(&self, twin: TwinId) -> Result<Persona> {
        self.readers.with(|c| store::chat::persona(c, twin))
    }

    /// Sets the twin's persona.
    pub fn set_persona(&self, twin: TwinId, persona: &Persona) -> Result<()> {
        for (what, value, max) in [
            ("name", &persona.name, 100),
            ("description", &persona.description, 2000),
            ("voice", &persona.voice, 2000),
            ("not-covered message", &persona.not_covered, 500),
        ] {
            if value.trim().is_empty() || value.chars().count() > max {
                return Err(Error::InvalidInput(format!(
                    "the persona's {what} needs 1 to {max} characters"
                )));
            }
        }
        let persona = persona.clone();
        self.call(|reply| Command::Chat(ChatWrite::SetPersona { twin, persona, reply }))
    }
}

/// A question on its way to an answer: the request, its trimmed text, the stored answer's
/// message id, and the conversation's recent turns.
struct Asked<'a> {
    request: &'a AskRequest,
    question: &'a str,
    message: i64,
    history: &'a [Turn],
}

/// The model an answer is generated with.
enum Backend {
    Local(Arc<LocalLlm>),
    Remote { server: ChatServer, key: Option<String>, policy: StreamPolicy },
}

impl Backend {
    /// Tokens of context the prompt may use (estimated for servers).
    fn window(&self) -> usize {
        match self {
            Backend::Local(llm) => llm.info.context as usize,
            Backend::Remote { .. } => 8192,
        }
    }

    fn name(&self) -> String {
        match self {
            Backend::Local(llm) => llm.info.name.clone(),
            Backend::Remote { server, .. } => format!("{} ({})", server.model, server.url),
        }
    }

    fn generate(
        &self,
        turns: &[Turn],
        options: &GenerateOptions,
        cancel: &AtomicBool,
        on_token: &mut dyn FnMut(&str),
    ) -> Result<Finish> {
        match self {
            Backend::Local(llm) => llm.generate(turns, options, cancel, on_token),
            Backend::Remote { server, key, policy } => remote::stream_chat(
                server,
                key.as_deref(),
                turns,
                options,
                policy,
                cancel,
                on_token,
            ),
        }
    }
}

/// Runs `generate` with `stop` set as soon as the asker's `cancel` is: the answer's own stop
/// (a loop, a new turn) must not touch the asker's flag, which may outlive this answer.
fn relay_cancel<T>(cancel: &AtomicBool, stop: &AtomicBool, generate: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let relay = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if cancel.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(20));
            }
        });
        let result = generate();
        done.store(true, Ordering::Relaxed);
        relay.thread().unpark();
        result
    })
}

/// The share of the words of the shorter text that the other one has too.
fn word_overlap(a: &str, b: &str) -> f32 {
    let words = |t: &str| -> std::collections::HashSet<String> {
        t.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (a, b) = (words(a), words(b));
    let shorter = a.len().min(b.len());
    if shorter == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f32 / a.len().max(b.len()) as f32
}
