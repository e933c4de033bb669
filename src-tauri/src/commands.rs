//! The commands of docs/ipc.md: each maps its arguments to one core call and the result to
//! `dto`, on a blocking thread (`Shell::run`), so the window never waits for the core.
//!
//! Nothing here decides anything the CLI would have to decide again; if a command grows logic,
//! that logic belongs in doppel-core.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use doppel_core::catalogue::Catalogue;
use doppel_core::chat::remote::ChatServer;
use doppel_core::chat::{AskRequest, ChatModel};
use doppel_core::{
    EmbedderChoice, IngestRequest, JobFilter, RemoteKind, SCHEMA_VERSION, SearchMode,
    SearchRequest, TextRequest,
};
use tauri::ipc::Channel;
use tauri::{AppHandle, Emitter, State};

use crate::dto;
use crate::error::IpcError;
use crate::rendering::Rendering;
use crate::state::Shell;

// Taking the twin along and the local API have a file of their own, and so do diagnostics, the
// views of the twin as a whole (sources page by page, coverage, find, the queue), text
// recognition, and the model servers chosen by URL and model (transcription, reranking).
pub use crate::diagnostics::*;
pub use crate::overview::*;
pub use crate::portable::*;
pub use crate::recognition::*;
pub use crate::servers::*;

type Reply<T> = Result<T, IpcError>;

/// Jobs listed at most, newest first.
const JOBS_LIMIT: u32 = 200;
/// The Ollama server a choice without a URL means (as in the CLI).
const OLLAMA_URL: &str = "http://127.0.0.1:11434";
/// Download progress reaches the window at most this often (the core reports every block).
const DOWNLOAD_EVENT_EVERY: Duration = Duration::from_millis(100);

#[tauri::command]
pub async fn ping() -> Reply<()> {
    Ok(())
}

#[tauri::command]
pub async fn app_info(
    shell: State<'_, Shell>,
    rendering: State<'_, Rendering>,
) -> Reply<dto::AppInfo> {
    let rendering = rendering.describe();
    shell
        .run(move |d| {
            Ok(dto::AppInfo {
                version: env!("CARGO_PKG_VERSION"),
                data_dir: d.data_dir().display().to_string(),
                schema_version: SCHEMA_VERSION,
                rendering,
            })
        })
        .await
}

#[tauri::command]
pub async fn twins(shell: State<'_, Shell>) -> Reply<Vec<dto::Twin>> {
    shell.run(|d| Ok(d.twins()?.into_iter().map(dto::Twin::from).collect())).await
}

#[tauri::command]
pub async fn create_twin(shell: State<'_, Shell>, name: String) -> Reply<dto::Twin> {
    shell.run(move |d| Ok(d.create_twin(&name)?.into())).await
}

#[tauri::command]
pub async fn rename_twin(shell: State<'_, Shell>, twin: i64, name: String) -> Reply<dto::Twin> {
    shell.run(move |d| Ok(d.rename_twin(twin, &name)?.into())).await
}

#[tauri::command]
pub async fn sources(shell: State<'_, Shell>, twin: i64) -> Reply<Vec<dto::Source>> {
    shell.run(move |d| Ok(d.sources(twin)?.into_iter().map(dto::Source::from).collect())).await
}

#[tauri::command]
pub async fn source_detail(shell: State<'_, Shell>, source: i64) -> Reply<dto::SourceDetail> {
    shell
        .run(move |d| {
            let chunks = d.chunks(source)?.into_iter().map(dto::Chunk::from).collect();
            Ok(dto::SourceDetail { source: d.source(source)?.into(), chunks })
        })
        .await
}

#[tauri::command]
pub async fn ingest_paths(
    shell: State<'_, Shell>,
    twin: i64,
    paths: Vec<String>,
) -> Reply<dto::IngestReport> {
    let paths = paths.into_iter().map(PathBuf::from).collect();
    let request = IngestRequest { twin, paths, urls: Vec::new() };
    shell.run(move |d| Ok(d.ingest(request)?.into())).await
}

#[tauri::command]
pub async fn add_text(
    shell: State<'_, Shell>,
    twin: i64,
    title: String,
    text: String,
) -> Reply<dto::Enqueued> {
    shell.run(move |d| Ok(d.add_text(TextRequest { twin, title, text })?.into())).await
}

#[tauri::command]
pub async fn add_url(shell: State<'_, Shell>, twin: i64, url: String) -> Reply<dto::IngestReport> {
    let request = IngestRequest { twin, paths: Vec::new(), urls: vec![url] };
    shell.run(move |d| Ok(d.ingest(request)?.into())).await
}

#[tauri::command]
pub async fn delete_source(shell: State<'_, Shell>, source: i64) -> Reply<()> {
    shell.run(move |d| Ok(d.delete_source(source)?)).await
}

#[tauri::command]
pub async fn reingest_source(shell: State<'_, Shell>, source: i64) -> Reply<dto::Enqueued> {
    shell.run(move |d| Ok(d.reingest(source)?.into())).await
}

#[tauri::command]
pub async fn jobs(shell: State<'_, Shell>, active_only: bool) -> Reply<Vec<dto::Job>> {
    let filter = JobFilter { active_only, limit: JOBS_LIMIT };
    shell.run(move |d| Ok(d.jobs(filter)?.into_iter().map(dto::Job::from).collect())).await
}

#[tauri::command]
pub async fn cancel_job(shell: State<'_, Shell>, job: i64) -> Reply<dto::Job> {
    shell.run(move |d| Ok(d.cancel_job(job)?.into())).await
}

#[tauri::command]
pub async fn search(
    shell: State<'_, Shell>,
    twin: i64,
    query: String,
    top_k: Option<u32>,
) -> Reply<dto::SearchResults> {
    let request =
        SearchRequest { twin, query, limit: top_k, sources: Vec::new(), mode: SearchMode::Hybrid };
    shell.run(move |d| Ok(d.search(&request)?.into())).await
}

#[tauri::command]
pub async fn settings(shell: State<'_, Shell>) -> Reply<Vec<dto::Setting>> {
    shell.run(|d| Ok(dto::settings(&d.settings()?))).await
}

#[tauri::command]
pub async fn set_setting(
    shell: State<'_, Shell>,
    key: String,
    value: String,
) -> Reply<Vec<dto::Setting>> {
    shell.run(move |d| Ok(dto::settings(&d.set_setting(&key, &value)?))).await
}

fn embedder_now(d: &doppel_core::Doppel) -> Reply<dto::Embedder> {
    Ok(dto::Embedder::new(d.embedder()?, d.api_key_hint()?, d.vector_status().waiting))
}

fn remote_kind(kind: &str) -> Reply<RemoteKind> {
    match kind {
        "ollama" => Ok(RemoteKind::Ollama),
        "openai" => Ok(RemoteKind::OpenAi),
        other => Err(IpcError::invalid_input(format!(
            "unknown model kind {other:?}: local, ollama or openai"
        ))),
    }
}

/// A server choice's URL: the one given, or Ollama's usual address.
fn server_url(kind: RemoteKind, url: Option<String>) -> Reply<String> {
    match (kind, url) {
        (_, Some(url)) => Ok(url),
        (RemoteKind::Ollama, None) => Ok(OLLAMA_URL.to_string()),
        (_, None) => Err(IpcError::invalid_input("an OpenAI-compatible server needs its URL")),
    }
}

#[tauri::command]
pub async fn embedder(shell: State<'_, Shell>) -> Reply<dto::Embedder> {
    shell.run(embedder_now).await
}

#[tauri::command]
pub async fn set_embedder(
    shell: State<'_, Shell>,
    kind: String,
    url: Option<String>,
    model: Option<String>,
    confirmed: Option<bool>,
) -> Reply<dto::Embedder> {
    shell
        .run(move |d| {
            let choice = match kind.as_str() {
                "local" => EmbedderChoice::Local,
                other => {
                    let kind = remote_kind(other)?;
                    let url = server_url(kind, url)?;
                    EmbedderChoice::remote(kind, &url, model.as_deref().unwrap_or_default())?
                }
            };
            // The audit's cost guard: a server that would be sent passages to embed is chosen
            // only once the owner has confirmed, with the count and the tokens before them.
            let cost = d.embedding_cost(&choice)?;
            if cost.passages > 0 && confirmed != Some(true) {
                return Err(doppel_core::Error::ConfirmationNeeded(format!(
                    "{} passage{} (about {} tokens) will be sent to {} to be embedded. A paid \
                     API charges for them.",
                    cost.passages,
                    if cost.passages == 1 { "" } else { "s" },
                    cost.tokens,
                    choice.url().unwrap_or_default()
                ))
                .into());
            }
            d.set_embedder(choice)?;
            embedder_now(d)
        })
        .await
}

#[tauri::command]
pub async fn set_embedder_key(shell: State<'_, Shell>, key: String) -> Reply<dto::Embedder> {
    shell
        .run(move |d| {
            d.set_api_key(&key)?;
            embedder_now(d)
        })
        .await
}

#[tauri::command]
pub async fn delete_embedder_key(shell: State<'_, Shell>) -> Reply<dto::Embedder> {
    shell
        .run(|d| {
            d.delete_api_key()?;
            embedder_now(d)
        })
        .await
}

fn chat_model_now(d: &doppel_core::Doppel) -> Reply<dto::ChatModel> {
    let default = d.default_chat_model_path();
    Ok(dto::ChatModel::new(d.chat_model()?, &default, d.chat_api_key_hint()?))
}

#[tauri::command]
pub async fn chat_model(shell: State<'_, Shell>) -> Reply<dto::ChatModel> {
    shell.run(chat_model_now).await
}

#[tauri::command]
pub async fn set_chat_model(
    shell: State<'_, Shell>,
    kind: String,
    path: Option<String>,
    url: Option<String>,
    model: Option<String>,
) -> Reply<dto::ChatModel> {
    shell
        .run(move |d| {
            let choice = match kind.as_str() {
                "local" => ChatModel::Local(path.map(PathBuf::from)),
                "off" => ChatModel::Off,
                other => {
                    let kind = remote_kind(other)?;
                    let url = server_url(kind, url)?;
                    let model = model.as_deref().unwrap_or_default();
                    ChatModel::Remote(ChatServer::new(kind, &url, model)?)
                }
            };
            d.set_chat_model(&choice)?;
            chat_model_now(d)
        })
        .await
}

#[tauri::command]
pub async fn set_chat_key(shell: State<'_, Shell>, key: String) -> Reply<dto::ChatModel> {
    shell
        .run(move |d| {
            d.set_chat_api_key(&key)?;
            chat_model_now(d)
        })
        .await
}

#[tauri::command]
pub async fn delete_chat_key(shell: State<'_, Shell>) -> Reply<dto::ChatModel> {
    shell
        .run(|d| {
            d.delete_chat_api_key()?;
            chat_model_now(d)
        })
        .await
}

/// Opens a source of the twin: its file with the system's default program (`reveal`: its
/// folder, with the file selected), or its page in the browser. The window names the source by
/// id, never by path, so nothing but a source of the twin can be opened.
#[tauri::command]
pub async fn open_source(
    app: AppHandle,
    shell: State<'_, Shell>,
    source: i64,
    reveal: bool,
) -> Reply<()> {
    use doppel_core::SourceKind;
    use tauri_plugin_opener::OpenerExt;
    let source = shell.run(move |d| Ok(d.source(source)?)).await?;
    let origin = source.origin.unwrap_or_default();
    let failed = |e: tauri_plugin_opener::Error| IpcError {
        code: "open_failed".into(),
        message: format!("could not open {origin}: {e}"),
    };
    match source.kind {
        SourceKind::File if Path::new(&origin).exists() => {
            if reveal {
                app.opener().reveal_item_in_dir(&origin).map_err(failed)
            } else {
                app.opener().open_path(origin.clone(), None::<&str>).map_err(failed)
            }
        }
        SourceKind::File => {
            Err(IpcError::from(doppel_core::Error::NotFound { what: "file", id: origin }))
        }
        SourceKind::Url if !reveal => {
            app.opener().open_url(origin.clone(), None::<&str>).map_err(failed)
        }
        _ => Err(IpcError::invalid_input("this source has no file to open")),
    }
}

/// How answers are made: `auto`, `grounded` or `model`.
#[tauri::command]
pub async fn answer_mode(shell: State<'_, Shell>) -> Reply<&'static str> {
    shell.run(|d| Ok(d.answer_mode()?.as_str())).await
}

#[tauri::command]
pub async fn set_answer_mode(shell: State<'_, Shell>, mode: String) -> Reply<&'static str> {
    shell
        .run(move |d| {
            let mode = doppel_core::chat::AnswerMode::parse(&mode).ok_or_else(|| {
                doppel_core::Error::InvalidInput(format!(
                    "no answer mode {mode:?}: auto, grounded or model"
                ))
            })?;
            d.set_answer_mode(mode)?;
            Ok(d.answer_mode()?.as_str())
        })
        .await
}

#[tauri::command]
pub async fn chat_models(shell: State<'_, Shell>) -> Reply<Vec<String>> {
    shell.run(|d| Ok(d.chat_models()?.iter().map(|p| p.display().to_string()).collect())).await
}

/// Passes transfer progress to the window as `doppel://download`, at most every 100 ms and
/// always at the end.
fn download_progress(app: AppHandle) -> impl FnMut(&doppel_core::download::DownloadProgress) {
    let mut last: Option<Instant> = None;
    move |p| {
        let finished = p.total.is_some_and(|t| p.done >= t);
        if finished || last.is_none_or(|at| at.elapsed() >= DOWNLOAD_EVENT_EVERY) {
            last = Some(Instant::now());
            let _ =
                app.emit(crate::events::DOWNLOAD, dto::Download { done: p.done, total: p.total });
        }
    }
}

#[tauri::command]
pub async fn download_chat_model(
    app: AppHandle,
    shell: State<'_, Shell>,
    url: String,
    sha256: Option<String>,
) -> Reply<String> {
    let running = shell.begin_download()?;
    shell
        .run(move |d| {
            let mut progress = download_progress(app);
            let path =
                d.download_chat_model(&url, sha256.as_deref(), &running.cancel, &mut progress)?;
            Ok(path.display().to_string())
        })
        .await
}

#[tauri::command]
pub async fn cancel_download(shell: State<'_, Shell>) -> Reply<()> {
    shell.cancel_download();
    Ok(())
}

#[tauri::command]
pub async fn import_chat_model(
    app: AppHandle,
    shell: State<'_, Shell>,
    path: String,
) -> Reply<String> {
    let running = shell.begin_download()?;
    shell
        .run(move |d| {
            let mut progress = download_progress(app);
            let file = PathBuf::from(path);
            Ok(d.import_chat_model(&file, &running.cancel, &mut progress)?.display().to_string())
        })
        .await
}

#[tauri::command]
pub async fn model_status(shell: State<'_, Shell>) -> Reply<dto::ModelStatus> {
    shell.run(|d| Ok(dto::ModelStatus::new(d.model_problems()?, d.model_search()))).await
}

/// The built-in catalogue, or the catalogue file at `path` (as the CLI's `--catalogue`).
fn load_catalogue(path: Option<&str>) -> Reply<Catalogue> {
    match path {
        Some(path) => Ok(Catalogue::load(Path::new(path))?),
        None => Ok(Catalogue::built_in()),
    }
}

/// Needs no open core: the catalogue lists what can be had even when the data directory is held.
#[tauri::command]
pub async fn catalogue(catalogue: Option<String>) -> Reply<dto::Catalogue> {
    tauri::async_runtime::spawn_blocking(move || -> Reply<dto::Catalogue> {
        Ok(load_catalogue(catalogue.as_deref())?.into())
    })
    .await
    .map_err(|e| IpcError::internal(format!("a background task failed: {e}")))?
}

/// Downloads a catalogue model (progress as `doppel://download`, stopped by `cancel_download`)
/// and returns the chat model as it is then: the core chooses the model once it is whole.
#[tauri::command]
pub async fn get_catalogue_model(
    app: AppHandle,
    shell: State<'_, Shell>,
    name: String,
    catalogue: Option<String>,
) -> Reply<dto::ChatModel> {
    let running = shell.begin_download()?;
    shell
        .run(move |d| {
            let list = load_catalogue(catalogue.as_deref())?;
            let mut progress = download_progress(app);
            d.get_catalogue_model(list.chat_model(&name)?, &running.cancel, &mut progress)?;
            chat_model_now(d)
        })
        .await
}

#[tauri::command]
pub async fn conversations(shell: State<'_, Shell>, twin: i64) -> Reply<Vec<dto::Conversation>> {
    shell
        .run(move |d| Ok(d.conversations(twin)?.into_iter().map(dto::Conversation::from).collect()))
        .await
}

#[tauri::command]
pub async fn messages(shell: State<'_, Shell>, conversation: String) -> Reply<Vec<dto::Message>> {
    shell
        .run(move |d| Ok(d.messages(&conversation)?.into_iter().map(dto::Message::from).collect()))
        .await
}

#[tauri::command]
pub async fn ask(
    shell: State<'_, Shell>,
    request: dto::AskInput,
    on_event: Channel<dto::AskEvent>,
) -> Reply<dto::Answer> {
    let running = shell.begin_ask(&request.request_id)?;
    let dto::AskInput { twin, conversation, question, request_id, .. } = request;
    shell
        .run(move |d| {
            let cancel = &running.cancel;
            // The window's id names the ask in the log too.
            let request = AskRequest {
                twin,
                conversation,
                request_id: Some(request_id),
                ..AskRequest::new(question)
            };
            let mut on_token = |text: &str| {
                // The window is gone: stop generating (the answer is kept as cancelled).
                if on_event.send(dto::AskEvent::Token { text: text.to_string() }).is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
            };
            Ok(d.ask(&request, cancel, &mut on_token)?.into())
        })
        .await
}

#[tauri::command]
pub async fn cancel_ask(shell: State<'_, Shell>, request_id: String) -> Reply<()> {
    shell.cancel_ask(&request_id);
    Ok(())
}

#[tauri::command]
pub async fn export_conversation(
    shell: State<'_, Shell>,
    conversation: String,
    path: String,
) -> Reply<()> {
    shell
        .run(move |d| {
            let markdown = d.export_conversation(&conversation)?;
            let path = PathBuf::from(path);
            std::fs::write(&path, markdown)
                .map_err(|source| doppel_core::Error::Io { path, source })?;
            Ok(())
        })
        .await
}

#[tauri::command]
pub async fn conversation_markdown(shell: State<'_, Shell>, conversation: String) -> Reply<String> {
    shell.run(move |d| Ok(d.export_conversation(&conversation)?)).await
}

#[tauri::command]
pub async fn verify_message(
    shell: State<'_, Shell>,
    conversation: String,
    message: i64,
    revised: Option<String>,
) -> Reply<dto::VerifiedAnswer> {
    shell
        .run(move |d| {
            let id = d.verify_message(&conversation, message, revised.as_deref())?;
            let twin = d.conversation(&conversation)?.twin;
            let verified = d.verified_answers(twin)?.into_iter().find(|v| v.id == id);
            let not_found =
                || doppel_core::Error::NotFound { what: "verified answer", id: id.to_string() };
            Ok(verified.ok_or_else(not_found)?.into())
        })
        .await
}

#[tauri::command]
pub async fn verified_answers(
    shell: State<'_, Shell>,
    twin: i64,
) -> Reply<Vec<dto::VerifiedAnswer>> {
    shell
        .run(move |d| {
            Ok(d.verified_answers(twin)?.into_iter().map(dto::VerifiedAnswer::from).collect())
        })
        .await
}

#[tauri::command]
pub async fn delete_verified(shell: State<'_, Shell>, verified: i64) -> Reply<()> {
    shell.run(move |d| Ok(d.delete_verified(verified)?)).await
}

#[tauri::command]
pub async fn persona(shell: State<'_, Shell>, twin: i64) -> Reply<dto::Persona> {
    shell.run(move |d| Ok(d.persona(twin)?.into())).await
}

#[tauri::command]
pub async fn set_persona(
    shell: State<'_, Shell>,
    twin: i64,
    persona: dto::Persona,
) -> Reply<dto::Persona> {
    shell
        .run(move |d| {
            d.set_persona(twin, &persona.into())?;
            Ok(d.persona(twin)?.into())
        })
        .await
}

#[tauri::command]
pub async fn watched_folders(shell: State<'_, Shell>) -> Reply<Vec<dto::WatchedFolder>> {
    shell
        .run(|d| Ok(d.watched_folders()?.into_iter().map(dto::WatchedFolder::from).collect()))
        .await
}

#[tauri::command]
pub async fn watch_folder(
    shell: State<'_, Shell>,
    twin: i64,
    path: String,
) -> Reply<dto::WatchedFolder> {
    shell.run(move |d| Ok(d.watch_folder(twin, std::path::Path::new(&path))?.into())).await
}

#[tauri::command]
pub async fn unwatch_folder(shell: State<'_, Shell>, folder: i64) -> Reply<()> {
    shell.run(move |d| Ok(d.unwatch_folder(folder)?)).await
}
