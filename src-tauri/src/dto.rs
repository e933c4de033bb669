//! What crosses IPC: the shapes of docs/ipc.md as serialisable structs, converted by hand from
//! the core's plain types (the core never decides how it looks on a wire).
//!
//! Every field is camelCase; ids are numbers except conversation and ask request ids; times
//! are milliseconds since the Unix epoch. Nothing here can hold an API key: keys only go in
//! (`set_embedder_key`, `set_chat_key`) and come back as masked hints.

use std::path::Path;

use doppel_core::catalogue;
use doppel_core::chat::{self, ChatModel as CoreChatModel, Role};
use doppel_core::{EmbedderChoice, EnqueueStatus, ModelSearch, SETTING_SPECS, Settings};
use serde::{Deserialize, Serialize};

use crate::error::IpcError;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub version: &'static str,
    pub data_dir: String,
    pub schema_version: i64,
    /// How the window draws (`rendering::Rendering::describe`).
    pub rendering: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

impl From<doppel_core::Twin> for Twin {
    fn from(t: doppel_core::Twin) -> Twin {
        Twin { id: t.id, name: t.name, created_at: t.created_at }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub id: i64,
    pub twin_id: i64,
    pub kind: &'static str,
    pub origin: Option<String>,
    pub title: String,
    pub media_type: Option<String>,
    pub byte_size: Option<u64>,
    pub state: &'static str,
    pub error: Option<String>,
    pub chunk_count: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<doppel_core::Source> for Source {
    fn from(s: doppel_core::Source) -> Source {
        Source {
            id: s.id,
            twin_id: s.twin_id,
            kind: s.kind.as_str(),
            origin: s.origin,
            title: s.title,
            media_type: s.media_type,
            byte_size: s.byte_size,
            state: s.state.as_str(),
            error: s.error,
            chunk_count: s.chunk_count,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub label: String,
    pub line_start: Option<u32>,
    pub line_end: Option<u32>,
    pub page: Option<u32>,
}

impl From<doppel_core::Location> for Location {
    fn from(l: doppel_core::Location) -> Location {
        Location { label: l.label, line_start: l.line_start, line_end: l.line_end, page: l.page }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    pub id: i64,
    pub ordinal: u32,
    pub text: String,
    pub location: Location,
    pub token_count: u32,
}

impl From<doppel_core::Chunk> for Chunk {
    fn from(c: doppel_core::Chunk) -> Chunk {
        Chunk {
            id: c.id,
            ordinal: c.ordinal,
            text: c.text,
            location: c.location.into(),
            token_count: c.token_count,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceDetail {
    pub source: Source,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: i64,
    pub kind: &'static str,
    pub twin_id: i64,
    pub source_id: Option<i64>,
    pub origin: String,
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_error_code: Option<String>,
    pub outcome: Option<&'static str>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<doppel_core::Job> for Job {
    fn from(j: doppel_core::Job) -> Job {
        Job {
            id: j.id,
            kind: j.kind.as_str(),
            twin_id: j.twin_id,
            source_id: j.source_id,
            origin: j.origin,
            state: j.state.as_str(),
            attempts: j.attempts,
            last_error: j.last_error,
            last_error_code: j.last_error_code,
            outcome: j.outcome.map(|o| o.as_str()),
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enqueued {
    pub origin: String,
    pub source_id: i64,
    pub job_id: i64,
    pub status: &'static str,
}

impl From<doppel_core::Enqueued> for Enqueued {
    fn from(e: doppel_core::Enqueued) -> Enqueued {
        Enqueued {
            origin: e.origin,
            source_id: e.source_id,
            job_id: e.job_id,
            status: match e.status {
                EnqueueStatus::Queued => "queued",
                EnqueueStatus::AlreadyQueued => "already_queued",
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestReport {
    pub queued: Vec<Enqueued>,
    /// Each path not taken with its reason, in the error shape.
    pub skipped: Vec<IpcError>,
}

impl From<doppel_core::IngestReport> for IngestReport {
    fn from(r: doppel_core::IngestReport) -> IngestReport {
        IngestReport {
            queued: r.queued.into_iter().map(Enqueued::from).collect(),
            skipped: r.skipped.iter().map(IpcError::from).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    pub chunk_id: i64,
    pub source_id: i64,
    pub source_title: String,
    pub origin: Option<String>,
    pub location: Location,
    pub snippet: String,
    pub text: String,
    pub score: f64,
    pub retriever: &'static str,
}

impl From<doppel_core::Hit> for Hit {
    fn from(h: doppel_core::Hit) -> Hit {
        Hit {
            chunk_id: h.chunk_id,
            source_id: h.source_id,
            source_title: h.source_title,
            origin: h.origin,
            location: h.location.into(),
            snippet: h.snippet,
            text: h.text,
            score: h.score,
            retriever: h.retriever.as_str(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    pub notes: Vec<String>,
}

impl From<doppel_core::SearchResults> for SearchResults {
    fn from(r: doppel_core::SearchResults) -> SearchResults {
        SearchResults {
            hits: r.hits.into_iter().map(Hit::from).collect(),
            notes: r.note.into_iter().collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    pub default: String,
    pub help: &'static str,
}

/// Every setting with its value, default and meaning, in the core's order.
pub fn settings(settings: &Settings) -> Vec<Setting> {
    settings
        .entries()
        .into_iter()
        .zip(SETTING_SPECS)
        .map(|((key, value), spec)| Setting {
            key,
            value: value.to_string(),
            default: spec.default.to_string(),
            help: spec.help,
        })
        .collect()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Embedder {
    pub kind: &'static str,
    pub url: Option<String>,
    pub model: Option<String>,
    /// The stored key's last characters (`••••abcd`); never the key.
    pub key_hint: Option<String>,
    /// Passages still waiting for a vector from this model.
    pub pending: u64,
}

impl Embedder {
    pub fn new(choice: EmbedderChoice, key_hint: Option<String>, pending: u64) -> Embedder {
        let (kind, url, model) = match choice {
            EmbedderChoice::Local => ("local", None, None),
            EmbedderChoice::Remote { kind, url, model } => (kind.as_str(), Some(url), Some(model)),
        };
        Embedder { kind, url, model, key_hint, pending }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatModel {
    pub kind: &'static str,
    pub path: Option<String>,
    pub url: Option<String>,
    pub model: Option<String>,
    /// The stored key's last characters; never the key.
    pub key_hint: Option<String>,
}

impl ChatModel {
    /// `default_path` is the file a local choice without a path means.
    pub fn new(choice: CoreChatModel, default_path: &Path, key_hint: Option<String>) -> ChatModel {
        let none = ChatModel { kind: "off", path: None, url: None, model: None, key_hint };
        match choice {
            CoreChatModel::Local(path) => ChatModel {
                kind: "local",
                path: Some(path.as_deref().unwrap_or(default_path).display().to_string()),
                ..none
            },
            CoreChatModel::Remote(server) => ChatModel {
                kind: server.kind.as_str(),
                url: Some(server.url),
                model: Some(server.model),
                ..none
            },
            CoreChatModel::Off => none,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    pub twin_id: i64,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<chat::Conversation> for Conversation {
    fn from(c: chat::Conversation) -> Conversation {
        Conversation {
            id: c.id,
            twin_id: c.twin,
            title: c.title,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Citation {
    pub number: u32,
    pub chunk_id: Option<i64>,
    pub source_id: Option<i64>,
    pub source_title: String,
    pub location: String,
    pub quote: Option<String>,
    /// The source's path or URL (none for pasted text, and once it was forgotten).
    pub origin: Option<String>,
    /// The source was forgotten: the quote is gone.
    pub deleted: bool,
}

impl From<chat::Citation> for Citation {
    fn from(c: chat::Citation) -> Citation {
        Citation {
            number: c.number,
            deleted: c.quote.is_none(),
            chunk_id: c.chunk_id,
            source_id: c.source_id,
            source_title: c.source_title,
            location: c.location,
            quote: c.quote,
            origin: c.origin,
        }
    }
}

/// A sentence of an answer that states facts no cited passage holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unsupported {
    pub sentence: String,
    pub facts: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i64,
    pub role: &'static str,
    pub content: String,
    pub state: &'static str,
    pub error: Option<String>,
    pub model: Option<String>,
    pub grounding: Option<&'static str>,
    pub verified: bool,
    pub citations: Vec<Citation>,
    /// Its sentences that no cited passage supports.
    pub unsupported: Vec<Unsupported>,
    /// The model's own answer, when the grounded one was shown instead, and why.
    pub draft: Option<String>,
    pub draft_note: Option<String>,
    pub created_at: i64,
}

impl From<chat::Message> for Message {
    fn from(m: chat::Message) -> Message {
        Message {
            id: m.id,
            // Stored messages are the person's or the twin's; system turns are never stored.
            role: match m.role {
                Role::User => "user",
                Role::Assistant | Role::System => "assistant",
            },
            content: m.content,
            state: m.state.as_str(),
            error: m.error,
            model: m.model,
            grounding: m.grounding.map(|g| g.as_str()),
            verified: m.verified,
            citations: m.citations.into_iter().map(Citation::from).collect(),
            unsupported: m
                .unsupported
                .into_iter()
                .map(|u| Unsupported { sentence: u.sentence, facts: u.facts })
                .collect(),
            draft: m.draft,
            draft_note: m.draft_note,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub conversation: String,
    pub message: Message,
    pub notes: Vec<String>,
}

impl From<chat::Answer> for Answer {
    fn from(a: chat::Answer) -> Answer {
        Answer { conversation: a.conversation, message: a.message.into(), notes: a.notes }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedAnswer {
    pub id: i64,
    pub question: String,
    pub answer: String,
    pub created_at: i64,
}

impl From<chat::VerifiedAnswer> for VerifiedAnswer {
    fn from(v: chat::VerifiedAnswer) -> VerifiedAnswer {
        VerifiedAnswer {
            id: v.id,
            question: v.question,
            answer: v.answer,
            created_at: v.created_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persona {
    pub name: String,
    pub description: String,
    pub voice: String,
    pub not_covered: String,
}

impl From<chat::prompt::Persona> for Persona {
    fn from(p: chat::prompt::Persona) -> Persona {
        Persona {
            name: p.name,
            description: p.description,
            voice: p.voice,
            not_covered: p.not_covered,
        }
    }
}

impl From<Persona> for chat::prompt::Persona {
    fn from(p: Persona) -> chat::prompt::Persona {
        chat::prompt::Persona {
            name: p.name,
            description: p.description,
            voice: p.voice,
            not_covered: p.not_covered,
        }
    }
}

/// A folder kept in sync.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedFolder {
    pub id: i64,
    pub twin_id: i64,
    pub path: String,
    pub created_at: i64,
}

impl From<doppel_core::WatchedFolder> for WatchedFolder {
    fn from(f: doppel_core::WatchedFolder) -> WatchedFolder {
        WatchedFolder { id: f.id, twin_id: f.twin_id, path: f.path, created_at: f.created_at }
    }
}

/// The `request` argument of `ask`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AskInput {
    pub request_id: String,
    pub twin: i64,
    pub conversation: Option<String>,
    pub question: String,
}

/// What streams to the front end while an answer is generated, over the `ask` channel.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AskEvent {
    Token { text: String },
}

/// The payload of `doppel://download`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    pub done: u64,
    pub total: Option<u64>,
}

/// What `model_status` returns: the chosen models that cannot run, and where model files are
/// looked for (first to last).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    pub problems: Vec<ModelProblem>,
    pub dirs: Vec<ModelDir>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelProblem {
    /// `embedder`, `runtime` or `chat`.
    pub part: &'static str,
    /// What is wrong and what the user loses, as a sentence.
    pub problem: String,
    /// The fix in one line, as the CLI phrases it (the window rephrases it by `part`).
    pub fix: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDir {
    /// `cache`, `user` or `bundled`.
    pub origin: &'static str,
    pub path: String,
}

impl ModelStatus {
    pub fn new(problems: Vec<doppel_core::ModelProblem>, search: &ModelSearch) -> ModelStatus {
        let problems = problems
            .into_iter()
            .map(|p| ModelProblem { part: p.part.as_str(), problem: p.problem, fix: p.fix })
            .collect();
        let dirs = search
            .dirs
            .iter()
            .map(|d| ModelDir { origin: d.origin.as_str(), path: d.path.display().to_string() })
            .collect();
        ModelStatus { problems, dirs }
    }
}

/// What `catalogue` returns: the chat models to download and the embedding models recommended.
/// The default models' files stay behind the IPC line (only the installer needs them).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalogue {
    pub chat: Vec<CatalogueModel>,
    pub embedding: Vec<EmbeddingModel>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueModel {
    pub name: String,
    pub title: String,
    pub parameters: String,
    pub quantisation: String,
    /// The download's size in bytes.
    pub size: u64,
    /// Memory needed to run it, in bytes (roughly).
    pub memory: u64,
    pub licence: String,
    pub url: String,
    pub sha256: Option<String>,
    pub good_for: String,
    pub demo: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingModel {
    pub name: String,
    pub server: String,
    pub model: String,
    pub languages: String,
    pub good_for: String,
}

impl From<catalogue::Catalogue> for Catalogue {
    fn from(c: catalogue::Catalogue) -> Catalogue {
        Catalogue {
            chat: c.chat.into_iter().map(CatalogueModel::from).collect(),
            embedding: c.embedding.into_iter().map(EmbeddingModel::from).collect(),
        }
    }
}

impl From<catalogue::CatalogueModel> for CatalogueModel {
    fn from(m: catalogue::CatalogueModel) -> CatalogueModel {
        CatalogueModel {
            name: m.name,
            title: m.title,
            parameters: m.parameters,
            quantisation: m.quantisation,
            size: m.size,
            memory: m.memory,
            licence: m.licence,
            url: m.url,
            sha256: m.sha256,
            good_for: m.good_for,
            demo: m.demo,
        }
    }
}

impl From<catalogue::EmbeddingModel> for EmbeddingModel {
    fn from(e: catalogue::EmbeddingModel) -> EmbeddingModel {
        EmbeddingModel {
            name: e.name,
            server: e.server,
            model: e.model,
            languages: e.languages,
            good_for: e.good_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_core::{Location as CoreLocation, SourceKind, SourceState};
    use serde_json::json;

    #[test]
    fn a_source_is_camel_case_with_its_state_by_name() {
        let source = doppel_core::Source {
            id: 7,
            twin_id: 1,
            kind: SourceKind::File,
            origin: Some("/notes/garden.md".into()),
            title: "Garden".into(),
            media_type: Some("text/markdown".into()),
            byte_size: Some(1200),
            content_hash: Some("ab12".into()),
            state: SourceState::Ready,
            error: None,
            chunk_count: 3,
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_500,
        };
        let value = serde_json::to_value(Source::from(source)).unwrap();
        assert_eq!(
            value,
            json!({
                "id": 7, "twinId": 1, "kind": "file", "origin": "/notes/garden.md",
                "title": "Garden", "mediaType": "text/markdown", "byteSize": 1200,
                "state": "ready", "error": null, "chunkCount": 3,
                "createdAt": 1_700_000_000_000i64, "updatedAt": 1_700_000_000_500i64
            })
        );
    }

    #[test]
    fn a_chunk_carries_its_location() {
        let chunk = doppel_core::Chunk {
            id: 3,
            source_id: 7,
            ordinal: 0,
            text: "Tomatoes in May.".into(),
            location: CoreLocation {
                label: "Garden › Spring".into(),
                line_start: Some(1),
                line_end: Some(4),
                page: None,
            },
            token_count: 4,
            text_hash: "cd".into(),
        };
        assert_eq!(
            serde_json::to_value(Chunk::from(chunk)).unwrap(),
            json!({
                "id": 3, "ordinal": 0, "text": "Tomatoes in May.", "tokenCount": 4,
                "location": { "label": "Garden › Spring", "lineStart": 1, "lineEnd": 4, "page": null }
            })
        );
    }

    #[test]
    fn skipped_paths_use_the_error_shape() {
        let report = doppel_core::IngestReport {
            queued: vec![],
            skipped: vec![doppel_core::Error::Skipped {
                path: "/notes/.hidden".into(),
                reason: "hidden".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(IngestReport::from(report)).unwrap(),
            json!({ "queued": [], "skipped": [{ "code": "skipped", "message": "/notes/.hidden: hidden" }] })
        );
    }

    #[test]
    fn a_deleted_citation_says_so() {
        let citation = chat::Citation {
            number: 2,
            chunk_id: None,
            source_id: None,
            source_title: "Old notes".into(),
            location: "Intro".into(),
            quote: None,
            origin: None,
        };
        assert_eq!(
            serde_json::to_value(Citation::from(citation)).unwrap(),
            json!({
                "number": 2, "chunkId": null, "sourceId": null, "sourceTitle": "Old notes",
                "location": "Intro", "quote": null, "origin": null, "deleted": true
            })
        );
    }

    #[test]
    fn models_show_only_a_masked_key() {
        let choice = EmbedderChoice::Remote {
            kind: doppel_core::RemoteKind::OpenAi,
            url: "https://api.example.com/v1".into(),
            model: "text-embedding-3-small".into(),
        };
        let hint = Some(doppel_core::masked("sk-secret-1234567890abcd"));
        assert_eq!(
            serde_json::to_value(Embedder::new(choice, hint, 5)).unwrap(),
            json!({
                "kind": "openai", "url": "https://api.example.com/v1",
                "model": "text-embedding-3-small", "keyHint": "••••abcd", "pending": 5
            })
        );
        let local =
            ChatModel::new(CoreChatModel::Local(None), Path::new("/models/smol.gguf"), None);
        assert_eq!(
            serde_json::to_value(local).unwrap(),
            json!({ "kind": "local", "path": "/models/smol.gguf", "url": null, "model": null, "keyHint": null })
        );
    }

    #[test]
    fn ask_events_and_requests_match_the_contract() {
        assert_eq!(
            serde_json::to_value(AskEvent::Token { text: "Hel".into() }).unwrap(),
            json!({ "type": "token", "text": "Hel" })
        );
        let input: AskInput = serde_json::from_value(
            json!({ "requestId": "r-1", "twin": 1, "question": "When?", "conversation": null }),
        )
        .unwrap();
        assert_eq!((input.request_id.as_str(), input.twin, input.conversation), ("r-1", 1, None));
        let persona: Persona = serde_json::from_value(json!({
            "name": "Ana", "description": "A gardener", "voice": "dry", "notCovered": "No idea."
        }))
        .unwrap();
        assert_eq!(chat::prompt::Persona::from(persona).not_covered, "No idea.");
    }

    #[test]
    fn model_status_names_parts_and_origins() {
        let problems = vec![doppel_core::ModelProblem {
            part: doppel_core::models::ModelPart::Chat,
            problem: "The chosen chat model's file is missing (/m/x.gguf).".into(),
            fix: "run `doppel models local`".into(),
        }];
        let search = ModelSearch::new(
            Some("/cache".into()),
            Path::new("/data"),
            Some("/usr/lib/Doppel/models".into()),
        );
        assert_eq!(
            serde_json::to_value(ModelStatus::new(problems, &search)).unwrap(),
            json!({
                "problems": [{
                    "part": "chat",
                    "problem": "The chosen chat model's file is missing (/m/x.gguf).",
                    "fix": "run `doppel models local`"
                }],
                "dirs": [
                    { "origin": "cache", "path": "/cache" },
                    { "origin": "user", "path": "/data/models" },
                    { "origin": "bundled", "path": "/usr/lib/Doppel/models" }
                ]
            })
        );
    }

    #[test]
    fn the_catalogue_is_camel_case_and_marks_the_demo_model() {
        let value =
            serde_json::to_value(Catalogue::from(catalogue::Catalogue::built_in())).unwrap();
        let demo = &value["chat"][0];
        assert_eq!(
            (demo["demo"].as_bool(), demo["name"].as_str()),
            (Some(true), Some("smollm2-135m"))
        );
        for key in "title parameters quantisation size memory licence url sha256 goodFor".split(' ')
        {
            assert!(demo.get(key).is_some(), "{key} missing from {demo}");
        }
        assert!(value.get("defaults").is_none());
        assert_eq!(value["embedding"][0]["languages"], "English only");
        assert!(value["embedding"][0]["goodFor"].is_string());
    }
}
