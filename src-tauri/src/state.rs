//! What the shell keeps between commands: the open core (or why it could not be opened), the
//! running answers' cancel flags, and the running download's.
//!
//! The core is opened on a thread of its own at start, so the window appears at once even while
//! the embedding model and the vector index load; commands wait for it on their blocking thread.
//! If opening fails (another process holds the data directory, say), the window still opens and
//! every command, `app_info` first, rejects with that error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use doppel_core::{Config, Doppel};
use tauri::AppHandle;

use crate::error::IpcError;

/// The shell's state, shared by every command (cheap to clone).
#[derive(Clone, Default)]
pub struct Shell {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    core: Mutex<Slot>,
    opened: Condvar,
    /// Running answers by request id.
    asks: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// The running download or import, if any.
    download: Mutex<Option<Arc<AtomicBool>>>,
    /// The local API's server, while it runs.
    api: Mutex<Option<doppel_api::ApiServer>>,
    /// The running backup or restore, if any.
    backup: Mutex<Option<Arc<AtomicBool>>>,
}

/// The core as it is: still opening, open, failed to open, or closed at exit.
#[derive(Default)]
enum Slot {
    #[default]
    Opening,
    Open(Arc<Doppel>),
    Failed(IpcError),
    Closed,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, so a poisoned lock is usable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shell {
    /// Opens the data directory (`$DOPPEL_DATA_DIR`, else the platform's, as the CLI does) on a
    /// thread of its own, then forwards the core's events to the window.
    pub fn open_in_background(&self, app: AppHandle) {
        let shell = self.clone();
        let spawned = std::thread::Builder::new().name("doppel-open".into()).spawn(move || {
            // Subscribed from the moment of opening, so that the catch-up of watched folders
            // and an index rebuild at open reach the window too.
            let (events, received) = std::sync::mpsc::channel();
            let opened = open_core(events);
            if opened.is_ok() {
                crate::events::forward(app, received);
            }
            shell.set_core(opened);
            shell.start_api_if_on();
        });
        if let Err(e) = spawned {
            self.set_core(Err(IpcError::internal(format!("could not start opening: {e}"))));
        }
    }

    fn set_core(&self, opened: Result<Doppel, IpcError>) {
        let mut slot = lock(&self.inner.core);
        if matches!(*slot, Slot::Opening) {
            *slot = match opened {
                Ok(doppel) => Slot::Open(Arc::new(doppel)),
                Err(e) => {
                    tracing::error!(code = %e.code, message = %e.message, "could not open");
                    Slot::Failed(e)
                }
            };
        }
        self.inner.opened.notify_all();
    }

    /// The open core, waiting while it opens. Call only on a blocking thread.
    pub fn core(&self) -> Result<Arc<Doppel>, IpcError> {
        let mut slot = lock(&self.inner.core);
        loop {
            match &*slot {
                Slot::Opening => {
                    slot = self.inner.opened.wait(slot).unwrap_or_else(|p| p.into_inner());
                }
                Slot::Open(doppel) => return Ok(Arc::clone(doppel)),
                Slot::Failed(e) => return Err(e.clone()),
                Slot::Closed => {
                    return Err(IpcError::from(doppel_core::Error::WorkerGone(
                        "Doppel is closing".into(),
                    )));
                }
            }
        }
    }

    /// Runs `work` with the core on a blocking thread, so that the window never waits for the
    /// core (which may wait for a running job's chunk, a model or the disk).
    pub async fn run<T, F>(&self, work: F) -> Result<T, IpcError>
    where
        T: Send + 'static,
        F: FnOnce(&Doppel) -> Result<T, IpcError> + Send + 'static,
    {
        let shell = self.clone();
        tauri::async_runtime::spawn_blocking(move || work(&*shell.core()?))
            .await
            .map_err(|e| IpcError::internal(format!("a background task failed: {e}")))?
    }

    /// Registers a running answer; the guard unregisters it when dropped.
    pub fn begin_ask(&self, request_id: &str) -> Result<AskGuard, IpcError> {
        let valid = !request_id.is_empty()
            && request_id.len() <= 64
            && request_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(IpcError::invalid_input(
                "a request id is 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let mut asks = lock(&self.inner.asks);
        if asks.contains_key(request_id) {
            return Err(IpcError::invalid_input(format!(
                "request {request_id} is already running"
            )));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        asks.insert(request_id.to_string(), Arc::clone(&cancel));
        Ok(AskGuard { shell: self.clone(), request_id: request_id.to_string(), cancel })
    }

    /// Stops a running answer; an answer that already ended is left alone.
    pub fn cancel_ask(&self, request_id: &str) {
        if let Some(cancel) = lock(&self.inner.asks).get(request_id) {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Stops every running answer (the window closed, or the app exits).
    pub fn cancel_all_asks(&self) {
        for cancel in lock(&self.inner.asks).values() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Registers the download (or import) about to run; only one runs at a time.
    pub fn begin_download(&self) -> Result<DownloadGuard, IpcError> {
        let mut slot = lock(&self.inner.download);
        if slot.is_some() {
            return Err(IpcError::invalid_input("a model download is already running"));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        *slot = Some(Arc::clone(&cancel));
        Ok(DownloadGuard { shell: self.clone(), cancel })
    }

    /// Stops the running download or import, if any (its partial file is kept for a resume).
    pub fn cancel_download(&self) {
        if let Some(cancel) = lock(&self.inner.download).as_ref() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Starts the local API if the owner switched it on (at open, and after a restore). A
    /// failure to listen (the port is taken) is logged and shown by `api_status`.
    pub fn start_api_if_on(&self) {
        let Ok(doppel) = self.core() else { return };
        if let Err(e) = self.apply_api(&doppel) {
            tracing::warn!(code = %e.code, "the local API could not start");
        }
    }

    /// Runs the API server as the settings say: started at their address, or stopped.
    pub fn apply_api(&self, doppel: &Arc<Doppel>) -> Result<(), IpcError> {
        let settings = doppel.api_settings()?;
        let mut api = lock(&self.inner.api);
        let running = api.as_ref().map(doppel_api::ApiServer::address);
        if !settings.enabled {
            drop(api.take());
            return Ok(());
        }
        if running == Some(settings.address) {
            return Ok(());
        }
        drop(api.take());
        *api = Some(doppel_api::ApiServer::start(
            Arc::clone(doppel),
            settings.address,
            Default::default(),
        )?);
        Ok(())
    }

    /// Where the API server listens, while it runs.
    pub fn api_address(&self) -> Option<std::net::SocketAddr> {
        lock(&self.inner.api).as_ref().map(doppel_api::ApiServer::address)
    }

    /// Registers the backup or restore about to run; only one runs at a time.
    pub fn begin_backup(&self) -> Result<BackupGuard, IpcError> {
        let mut slot = lock(&self.inner.backup);
        if slot.is_some() {
            return Err(IpcError::invalid_input("a backup or restore is already running"));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        *slot = Some(Arc::clone(&cancel));
        Ok(BackupGuard { shell: self.clone(), cancel })
    }

    /// Stops the running backup or restore, if any; it leaves everything as it was.
    pub fn cancel_backup(&self) {
        if let Some(cancel) = lock(&self.inner.backup).as_ref() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Closes the core, runs `work` on its data directory (a restore), and opens it again,
    /// whatever `work` did. Commands meanwhile wait for the core to open.
    pub fn without_core<T>(
        &self,
        app: AppHandle,
        work: impl FnOnce(PathBuf) -> Result<T, IpcError>,
    ) -> Result<T, IpcError> {
        let doppel = self.core()?;
        let data_dir = doppel.data_dir().to_path_buf();
        self.cancel_all_asks();
        self.cancel_download();
        drop(lock(&self.inner.api).take());
        *lock(&self.inner.core) = Slot::Opening;
        // The core closes when the last command that holds it returns (answers and downloads
        // were just stopped).
        let mut held = doppel;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match Arc::try_unwrap(held) {
                Ok(doppel) => {
                    drop(doppel);
                    break;
                }
                Err(still) if std::time::Instant::now() < deadline => {
                    held = still;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(still) => {
                    // Something still works with it: it stays open, and nothing is restored.
                    *lock(&self.inner.core) = Slot::Open(still);
                    self.inner.opened.notify_all();
                    self.start_api_if_on();
                    return Err(IpcError::from(doppel_core::Error::Busy(
                        "Doppel is still busy with the data directory; try again".into(),
                    )));
                }
            }
        }
        let result = work(data_dir);
        let (events, received) = std::sync::mpsc::channel();
        let opened = open_core(events);
        if opened.is_ok() {
            crate::events::forward(app, received);
        }
        self.set_core(opened);
        self.start_api_if_on();
        result
    }

    /// At exit: stops answers and downloads, and lets the core go. The core closes (its worker
    /// puts a running job back in the queue and releases the lock) once the last command
    /// holding it returns.
    pub fn close(&self) {
        self.cancel_all_asks();
        self.cancel_download();
        self.cancel_backup();
        drop(lock(&self.inner.api).take());
        let previous = std::mem::replace(&mut *lock(&self.inner.core), Slot::Closed);
        self.inner.opened.notify_all();
        drop(previous);
    }

    #[cfg(test)]
    fn running_asks(&self) -> usize {
        lock(&self.inner.asks).len()
    }
}

/// A running answer's cancel flag; unregisters the answer when dropped.
pub struct AskGuard {
    shell: Shell,
    request_id: String,
    pub cancel: Arc<AtomicBool>,
}

impl Drop for AskGuard {
    fn drop(&mut self) {
        lock(&self.shell.inner.asks).remove(&self.request_id);
    }
}

/// The running download's cancel flag; frees the slot when dropped.
pub struct DownloadGuard {
    shell: Shell,
    pub cancel: Arc<AtomicBool>,
}

impl Drop for DownloadGuard {
    fn drop(&mut self) {
        *lock(&self.shell.inner.download) = None;
    }
}

/// The running backup's or restore's cancel flag; frees the slot when dropped.
pub struct BackupGuard {
    shell: Shell,
    pub cancel: Arc<AtomicBool>,
}

impl Drop for BackupGuard {
    fn drop(&mut self) {
        *lock(&self.shell.inner.backup) = None;
    }
}

/// Opens the core on the data directory the CLI would use, keeping watched folders in sync while
/// the window is open.
fn open_core(events: std::sync::mpsc::Sender<doppel_core::Event>) -> Result<Doppel, IpcError> {
    let data_dir: PathBuf = Config::resolve_data_dir(None)?;
    doppel_core::init_logging(&data_dir);
    Ok(Doppel::open(Config { watch: true, subscriber: Some(events), ..Config::new(data_dir) })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_cancelled_by_id_and_unregistered_when_done() {
        let shell = Shell::default();
        let first = shell.begin_ask("r-1").unwrap();
        let second = shell.begin_ask("r-2").unwrap();
        assert_eq!(shell.begin_ask("r-1").err().unwrap().code, "invalid_input");
        shell.cancel_ask("r-1");
        assert!(first.cancel.load(Ordering::Relaxed));
        assert!(!second.cancel.load(Ordering::Relaxed));
        drop(first);
        assert_eq!(shell.running_asks(), 1);
        shell.cancel_all_asks();
        assert!(second.cancel.load(Ordering::Relaxed));
        drop(second);
        assert_eq!(shell.running_asks(), 0);
        shell.cancel_ask("r-1"); // an answer that ended is left alone
    }

    #[test]
    fn request_ids_are_checked() {
        let shell = Shell::default();
        for bad in ["", "has space", &"x".repeat(65), "semi;colon"] {
            assert_eq!(shell.begin_ask(bad).err().unwrap().code, "invalid_input", "{bad:?}");
        }
    }

    #[test]
    fn one_download_at_a_time_and_cancel_reaches_it() {
        let shell = Shell::default();
        let running = shell.begin_download().unwrap();
        assert_eq!(shell.begin_download().err().unwrap().code, "invalid_input");
        shell.cancel_download();
        assert!(running.cancel.load(Ordering::Relaxed));
        drop(running);
        assert!(shell.begin_download().is_ok());
    }

    #[test]
    fn a_core_that_failed_to_open_answers_with_its_error() {
        let shell = Shell::default();
        let held = doppel_core::Error::AlreadyRunning { dir: "/d".into(), pid: Some(9) };
        shell.set_core(Err(held.into()));
        let e = shell.core().err().unwrap();
        assert_eq!(
            (e.code.as_ref(), e.message.as_str()),
            ("already_running", "Doppel is already running on this data directory (pid 9): /d")
        );
        shell.close();
        assert_eq!(shell.core().err().unwrap().code, "worker_gone");
    }

    #[test]
    fn a_real_data_directory_opens_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let shell = Shell::default();
        let config = Config { process_queue: false, ..Config::new(dir.path()) };
        shell.set_core(Doppel::open(config).map_err(IpcError::from));
        assert_eq!(shell.core().unwrap().data_dir(), dir.path());
        shell.close();
        // The lock is released: the directory opens again.
        assert!(Doppel::open(Config::new(dir.path())).is_ok());
    }
}
