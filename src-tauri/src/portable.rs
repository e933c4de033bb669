//! The commands that take the twin along and let others reach it: backup, restore, export, and
//! the local API's switch and tokens. Each maps to one core call (a restore closes the core
//! first and opens it again after, through `Shell::without_core`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use doppel_core::access::{self, ApiSettings, Scope, TokenRequest};
use doppel_core::backup::{self, BackupRequest, Progress, RestoreRequest};
use doppel_core::{Config, Doppel, ExportRequest};
use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

use crate::error::IpcError;
use crate::state::Shell;

type Reply<T> = Result<T, IpcError>;

/// Progress reaches the window at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub sources: u64,
    pub chunks: u64,
    pub conversations: u64,
    pub verified_answers: u64,
}

impl From<&backup::Counts> for Counts {
    fn from(c: &backup::Counts) -> Counts {
        Counts {
            sources: c.sources,
            chunks: c.chunks,
            conversations: c.conversations,
            verified_answers: c.verified_answers,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupDone {
    pub path: String,
    pub bytes: u64,
    pub encrypted: bool,
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDone {
    pub counts: Counts,
    pub replaced: bool,
    pub migrated_from: Option<i64>,
    pub index_entries: u64,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportDone {
    pub dir: String,
    pub conversations: usize,
    pub verified_answers: usize,
    pub sources: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    pub stage: &'static str,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStatus {
    pub enabled: bool,
    pub address: String,
    /// Where it listens now (`null` when off, or when it could not start).
    pub url: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: i64,
    pub twin: i64,
    pub name: String,
    pub scope: &'static str,
    pub prefix: String,
    pub rate_per_minute: u32,
    pub daily_tokens: u64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<access::ApiToken> for ApiToken {
    fn from(t: access::ApiToken) -> ApiToken {
        ApiToken {
            id: t.id,
            twin: t.twin,
            name: t.name,
            scope: t.scope.as_str(),
            prefix: t.prefix,
            rate_per_minute: t.rate_per_minute,
            daily_tokens: t.daily_tokens,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewApiToken {
    pub token: ApiToken,
    /// The whole token, shown once.
    pub secret: String,
    /// For a token of scope `ask`: the share page's link, with the token in its fragment.
    pub share_link: Option<String>,
}

/// Passes progress to the window as `doppel://backup`, at most every 100 ms and at each new
/// stage.
fn progress(app: AppHandle) -> impl FnMut(Progress) {
    let mut last: Option<(Instant, backup::Stage)> = None;
    move |p| {
        let due = last.is_none_or(|(at, stage)| stage != p.stage || at.elapsed() >= PROGRESS_EVERY);
        if due || p.done >= p.total {
            last = Some((Instant::now(), p.stage));
            let event = BackupProgress { stage: p.stage.as_str(), done: p.done, total: p.total };
            let _ = app.emit(crate::events::BACKUP, event);
        }
    }
}

fn some(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

#[tauri::command]
pub async fn backup(
    shell: State<'_, Shell>,
    app: AppHandle,
    path: String,
    passphrase: Option<String>,
) -> Reply<BackupDone> {
    let running = shell.begin_backup()?;
    let request = BackupRequest { path: PathBuf::from(path), passphrase: some(passphrase) };
    shell
        .run(move |d| {
            let report = d.backup(&request, &running.cancel, &mut progress(app))?;
            Ok(BackupDone {
                path: report.path.display().to_string(),
                bytes: report.bytes,
                encrypted: report.manifest.encrypted,
                counts: (&report.manifest.counts).into(),
            })
        })
        .await
}

#[tauri::command]
pub async fn cancel_backup(shell: State<'_, Shell>) -> Reply<()> {
    shell.cancel_backup();
    Ok(())
}

#[tauri::command]
pub async fn restore(
    shell: State<'_, Shell>,
    app: AppHandle,
    path: String,
    passphrase: Option<String>,
    confirmed: bool,
) -> Reply<RestoreDone> {
    let running = shell.begin_backup()?;
    let path = PathBuf::from(path);
    let passphrase = some(passphrase);
    let shell = shell.inner().clone();
    tauri::async_runtime::spawn_blocking(move || {
        // What can be checked while the twin stays open is checked first: the file, its
        // passphrase, and whether it replaces a twin.
        backup::inspect(&path, passphrase.as_deref())?;
        let data_dir = shell.core()?.data_dir().to_path_buf();
        if !confirmed && backup::replaces_a_twin(&data_dir) {
            return Err(IpcError::from(doppel_core::Error::ConfirmationNeeded(
                "restoring replaces this twin (its sources, conversations and verified answers) \
                 with the backup's"
                    .into(),
            )));
        }
        shell.without_core(app.clone(), move |dir| {
            let request = RestoreRequest {
                backup: path,
                passphrase,
                replace: true,
                config: Config::new(dir),
            };
            let report = Doppel::restore(request, &running.cancel, &mut progress(app))?;
            Ok(RestoreDone {
                counts: (&report.counts).into(),
                replaced: report.replaced,
                migrated_from: report.migrated_from,
                index_entries: report.index_entries,
                notes: report.notes,
            })
        })
    })
    .await
    .map_err(|e| IpcError::internal(format!("a background task failed: {e}")))?
}

#[tauri::command]
pub async fn export_twin(shell: State<'_, Shell>, twin: i64, path: String) -> Reply<ExportDone> {
    let request = ExportRequest { twin, dir: PathBuf::from(path) };
    shell
        .run(move |d| {
            let report = d.export(&request)?;
            Ok(ExportDone {
                dir: report.dir.display().to_string(),
                conversations: report.conversations,
                verified_answers: report.verified_answers,
                sources: report.sources,
            })
        })
        .await
}

fn status(shell: &Shell, d: &Doppel) -> Reply<ApiStatus> {
    let settings = d.api_settings()?;
    Ok(ApiStatus {
        enabled: settings.enabled,
        address: settings.address.to_string(),
        url: shell.api_address().map(|a| format!("http://{a}/v1")),
    })
}

#[tauri::command]
pub async fn api_status(shell: State<'_, Shell>) -> Reply<ApiStatus> {
    let shell = shell.inner().clone();
    let probe = shell.clone();
    probe.run(move |d| status(&shell, d)).await
}

#[tauri::command]
pub async fn set_api(
    shell: State<'_, Shell>,
    enabled: bool,
    address: Option<String>,
    confirmed: Option<bool>,
) -> Reply<ApiStatus> {
    let shell = shell.inner().clone();
    tauri::async_runtime::spawn_blocking(move || {
        let doppel = shell.core()?;
        let current = doppel.api_settings()?;
        let address = match address {
            Some(a) => access::check_address(&a, confirmed.unwrap_or(false))?,
            None => current.address,
        };
        doppel.set_api_settings(&ApiSettings { enabled, address })?;
        shell.apply_api(&doppel)?;
        status(&shell, &doppel)
    })
    .await
    .map_err(|e| IpcError::internal(format!("a background task failed: {e}")))?
}

#[tauri::command]
pub async fn api_tokens(shell: State<'_, Shell>) -> Reply<Vec<ApiToken>> {
    shell.run(|d| Ok(d.api_tokens()?.into_iter().map(ApiToken::from).collect())).await
}

#[tauri::command]
pub async fn create_api_token(
    shell: State<'_, Shell>,
    twin: i64,
    name: String,
    scope: String,
) -> Reply<NewApiToken> {
    let scope =
        Scope::parse(&scope).ok_or_else(|| IpcError::invalid_input("a scope is ask or read"))?;
    let request = TokenRequest { twin, name, scope, rate_per_minute: None, daily_tokens: None };
    shell
        .run(move |d| {
            let made = d.create_api_token(&request)?;
            let address = d.api_settings()?.address;
            let share_link = (scope == Scope::Ask)
                .then(|| format!("http://{address}/share#token={}", made.secret));
            Ok(NewApiToken { token: made.token.into(), secret: made.secret, share_link })
        })
        .await
}

#[tauri::command]
pub async fn revoke_api_token(shell: State<'_, Shell>, token: i64) -> Reply<ApiToken> {
    shell.run(move |d| Ok(d.revoke_api_token(token)?.into())).await
}
