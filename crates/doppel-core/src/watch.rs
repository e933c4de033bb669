//! Watched folders: twins kept in sync with folders on disk.
//!
//! The watch thread runs only when the opener asked for it (`Config::watch`). For each watched
//! folder it first catches up with what changed while nobody watched: files that are not
//! sources yet, or whose size or modification time differ from when they were last read, are
//! queued; sources whose file lies under the folder and is gone are forgotten. Then it follows
//! the folder's events (inotify, FSEvents, ...), collects the paths they name until the folder
//! has been quiet for `watch_debounce_ms`, and handles each path as it is then: a file that
//! exists is queued, a path that is gone forgets the sources at or below it, a folder that
//! appeared is walked. A rename is both: its old path is gone, its new one exists.
//!
//! This module never writes to the database. It reads through the read pool and sends the
//! worker the very commands `Doppel::ingest` and `Doppel::delete_source` send, so a watched file
//! takes the same route as a dropped one: the walk's rules (hidden files, binary formats, links),
//! the queue's one-job-per-source, the content hash that settles unchanged files, and the text
//! hashes that embed only changed passages. It publishes [`Event::WatchChanged`] with counts.
//!
//! A folder that is missing (an unmounted disk) is left alone: nothing under it is forgotten
//! until it is back or unwatched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ingest::FileStat;
use crate::ingest::walk::{folder_takes, walk};
use crate::model::*;
use crate::settings::Settings;
use crate::store::{self, KnownFile, ReadPool};
use crate::worker::{self, Command, Shared};

/// The name of the watch thread.
pub(crate) const THREAD_NAME: &str = "doppel-watch";

/// What the watch thread hears: file-system events and the handle's requests.
enum Message {
    Fs(notify::Result<notify::Event>),
    Watch(WatchedFolder),
    Unwatch(FolderId),
    /// Look at every folder again (what a folder takes changed: text recognition turned on).
    CatchUp,
    Stop,
}

/// What the watch thread needs from the open data directory.
pub(crate) struct Context {
    /// The worker's inbox: every change goes there.
    pub commands: Sender<Command>,
    pub readers: Arc<ReadPool>,
    pub shared: Arc<Shared>,
    /// The data directory (canonical): never ingested, even inside a watched folder.
    pub data_dir: PathBuf,
}

/// The handle's side of the watch thread. Stopping it (or dropping it) ends the thread and the
/// file-system watcher's own thread before it returns.
pub(crate) struct Watcher {
    messages: Option<Sender<Message>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the watch thread, which catches up with every stored folder and then follows them.
    pub(crate) fn start(context: Context) -> Result<Watcher> {
        let (messages, inbox) = mpsc::channel();
        let events = messages.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || WatchThread::new(context, inbox, events).run())
            .map_err(|e| Error::WorkerGone(format!("the folder watcher could not start: {e}")))?;
        Ok(Watcher { messages: Some(messages), thread: Some(thread) })
    }

    /// Starts watching a folder (again): it is caught up with at once.
    pub(crate) fn watch(&self, folder: WatchedFolder) {
        self.send(Message::Watch(folder));
    }

    /// Stops watching a folder. Events about it that arrive later are ignored.
    pub(crate) fn unwatch(&self, folder: FolderId) {
        self.send(Message::Unwatch(folder));
    }

    /// Catches up with every watched folder (images are taken since text recognition is on).
    pub(crate) fn catch_up(&self) {
        self.send(Message::CatchUp);
    }

    fn send(&self, message: Message) {
        if let Some(messages) = &self.messages
            && messages.send(message).is_err()
        {
            warn!("the folder watcher has stopped");
        }
    }

    /// Ends the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(messages) = self.messages.take() {
            // The thread may have ended already; then there is nobody to tell.
            drop(messages.send(Message::Stop));
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the folder watcher panicked");
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one look at a folder found to do.
#[derive(Debug, Default)]
struct Changes {
    /// Files to queue (canonical paths).
    ingest: Vec<PathBuf>,
    /// Sources whose file is gone.
    forget: Vec<SourceId>,
}

struct WatchThread {
    context: Context,
    inbox: Receiver<Message>,
    /// The platform's watcher; `None` when it could not be set up (folders are then only
    /// caught up with when watching starts).
    notify: Option<notify::RecommendedWatcher>,
    folders: Vec<WatchedFolder>,
    /// Paths named by events since the last flush.
    pending: BTreeSet<PathBuf>,
    /// When the first of them arrived.
    first_pending: Option<Instant>,
    /// When they are handled, unless more events arrive.
    deadline: Option<Instant>,
    debounce: Duration,
}

impl WatchThread {
    fn new(context: Context, inbox: Receiver<Message>, events: Sender<Message>) -> WatchThread {
        let handler = move |event| drop(events.send(Message::Fs(event)));
        let notify = match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                warn!(error = %e, "folders cannot be followed live; they are caught up with when watching starts");
                None
            }
        };
        WatchThread {
            context,
            inbox,
            notify,
            folders: Vec::new(),
            pending: BTreeSet::new(),
            first_pending: None,
            deadline: None,
            debounce: Duration::from_millis(u64::from(Settings::default().watch_debounce_ms)),
        }
    }

    fn run(mut self) {
        match self.context.readers.with(store::watched_folders) {
            Ok(folders) => {
                for folder in folders {
                    self.watch(folder);
                }
            }
            Err(e) => warn!(error = %e, "watched folders could not be read"),
        }
        loop {
            let message = match self.deadline {
                Some(at) => {
                    match self.inbox.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(message) => message,
                        Err(RecvTimeoutError::Timeout) => {
                            self.flush();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.inbox.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            match message {
                Message::Fs(Ok(event)) => self.note(event),
                Message::Fs(Err(e)) => {
                    // Lost events (a full inotify queue, say): look at every folder again.
                    warn!(error = %e, "the folder watcher reported an error; catching up");
                    for folder in self.folders.clone() {
                        self.catch_up(&folder);
                    }
                }
                Message::Watch(folder) => self.watch(folder),
                Message::Unwatch(id) => self.unwatch(id),
                Message::CatchUp => {
                    for folder in self.folders.clone() {
                        self.catch_up(&folder);
                    }
                }
                Message::Stop => break,
            }
            if self.stopping() {
                break;
            }
        }
        // Dropping the platform's watcher tells its thread to end; that thread holds the last
        // sender of the inbox, so the inbox disconnects once it has ended: then nothing of
        // watching is left running.
        drop(self.notify.take());
        while self.inbox.recv().is_ok() {}
        debug!("folder watcher stopped");
    }

    fn stopping(&self) -> bool {
        self.context.shared.stopping.load(Ordering::Relaxed)
    }

    /// Whether folders take images: text recognition is on.
    fn images(&self) -> bool {
        self.context
            .readers
            .with(store::stored_settings)
            .is_ok_and(|stored| Settings::from_stored(&stored).ocr == 1)
    }

    fn read_debounce(&mut self) {
        let settings = self.context.readers.with(store::stored_settings);
        if let Ok(stored) = settings {
            let ms = Settings::from_stored(&stored).watch_debounce_ms;
            self.debounce = Duration::from_millis(u64::from(ms));
        }
    }

    /// Starts following a folder and catches up with it. A folder followed already (read from
    /// the database at start just after it was added, or added twice) is left as it is.
    fn watch(&mut self, folder: WatchedFolder) {
        if self.folders.iter().any(|f| f.id == folder.id) {
            return;
        }
        self.follow(Path::new(&folder.path));
        self.folders.push(folder.clone());
        self.catch_up(&folder);
    }

    fn follow(&mut self, path: &Path) {
        if let Some(notify) = &mut self.notify
            && let Err(e) = notify.watch(path, RecursiveMode::Recursive)
        {
            warn!(error = %e, folder = %path.display(), "a watched folder cannot be followed live");
        }
    }

    fn unwatch(&mut self, id: FolderId) {
        let Some(at) = self.folders.iter().position(|f| f.id == id) else { return };
        let gone = self.folders.remove(at);
        let path = PathBuf::from(&gone.path);
        if let Some(notify) = &mut self.notify
            && let Err(e) = notify.unwatch(&path)
        {
            debug!(error = %e, folder = %path.display(), "unwatching");
        }
        // The platform's watches are per folder on disk: folders still watched that share
        // some of them (the same path for another twin, or nested folders) are followed again.
        let overlapping: Vec<PathBuf> = self
            .folders
            .iter()
            .map(|f| PathBuf::from(&f.path))
            .filter(|p| p.starts_with(&path) || path.starts_with(p))
            .collect();
        for other in overlapping {
            self.follow(&other);
        }
        info!(folder = id, "folder no longer watched");
    }

    /// Collects the paths of an event and (re)arms the quiet-time deadline.
    fn note(&mut self, event: notify::Event) {
        if event.need_rescan() {
            for folder in self.folders.clone() {
                self.catch_up(&folder);
            }
            return;
        }
        // Opening or reading a file (the worker does both) changes nothing; closing it after
        // writing says the write is complete.
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return;
        }
        if event.paths.is_empty() {
            return;
        }
        if self.first_pending.is_none() {
            // A change of the setting applies from the next burst on.
            self.read_debounce();
        }
        self.pending.extend(event.paths);
        let now = Instant::now();
        let first = *self.first_pending.get_or_insert(now);
        // A file written without pause is still picked up, at least every twenty quiet times.
        self.deadline = Some((now + self.debounce).min(first + self.debounce * 20));
    }

    /// Handles the paths collected since the last flush, folder by folder.
    fn flush(&mut self) {
        let paths = std::mem::take(&mut self.pending);
        self.first_pending = None;
        self.deadline = None;
        let mut per_folder: BTreeMap<FolderId, Vec<PathBuf>> = BTreeMap::new();
        for path in paths {
            if path.starts_with(&self.context.data_dir) {
                continue;
            }
            // A path belongs to the innermost watched folder of each twin that holds it.
            let mut owners: HashMap<TwinId, &WatchedFolder> = HashMap::new();
            for folder in self.folders.iter().filter(|f| path.starts_with(&f.path)) {
                let owner = owners.entry(folder.twin_id).or_insert(folder);
                if folder.path.len() > owner.path.len() {
                    *owner = folder;
                }
            }
            for folder in owners.values() {
                per_folder.entry(folder.id).or_default().push(path.clone());
            }
        }
        for (id, paths) in per_folder {
            let Some(folder) = self.folders.iter().find(|f| f.id == id).cloned() else { continue };
            match self.changes_at(&folder, &paths) {
                Ok(changes) => self.apply(&folder, changes, false),
                Err(e) => warn!(error = %e, folder = id, "changes in a watched folder not handled"),
            }
            if self.stopping() {
                return;
            }
        }
    }

    /// What the paths an event named mean now.
    fn changes_at(&self, folder: &WatchedFolder, paths: &[PathBuf]) -> Result<Changes> {
        let root = Path::new(&folder.path);
        let mut changes = Changes::default();
        let mut files = Vec::new();
        let images = self.images();
        for path in paths {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    if folder_takes(root, path, false, images) {
                        files.extend(walk(std::slice::from_ref(path), images).files);
                    }
                }
                Ok(meta) if meta.is_file() => {
                    if folder_takes(root, path, true, images)
                        && let Ok(canonical) = path.canonicalize()
                    {
                        files.push(canonical);
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !root.is_dir() {
                        // The whole folder is gone (an unmounted disk?): forget nothing.
                        continue;
                    }
                    let known = self.known(folder.twin_id, path)?;
                    changes
                        .forget
                        .extend(known.iter().filter(|k| is_gone(&k.origin)).map(|k| k.source));
                }
                Err(e) => debug!(error = %e, path = %path.display(), "not readable; ignored"),
            }
        }
        files.sort();
        files.dedup();
        for file in files {
            if file.starts_with(&self.context.data_dir) {
                continue;
            }
            let origin = file.to_string_lossy().into_owned();
            let known = self.known(folder.twin_id, &file)?;
            let stored = known.iter().find(|k| k.origin == origin);
            if changed(stored, &file) {
                changes.ingest.push(file);
            }
        }
        changes.forget.sort_unstable();
        changes.forget.dedup();
        Ok(changes)
    }

    /// File sources of a twin at or below `path`.
    fn known(&self, twin: TwinId, path: &Path) -> Result<Vec<KnownFile>> {
        let path = path.to_string_lossy();
        self.context.readers.with(|c| store::files_under(c, twin, &path))
    }

    /// Queues what is new or changed in a folder and forgets what is gone from it.
    fn catch_up(&mut self, folder: &WatchedFolder) {
        let root = Path::new(&folder.path);
        if !root.is_dir() {
            warn!(folder = folder.id, path = %root.display(), "a watched folder is missing; nothing under it is forgotten");
            self.publish(folder, 0, 0);
            return;
        }
        let changes = (|| -> Result<Changes> {
            let known: HashMap<String, KnownFile> = self
                .known(folder.twin_id, root)?
                .into_iter()
                .map(|k| (k.origin.clone(), k))
                .collect();
            let mut changes = Changes::default();
            for file in walk(&[root.to_path_buf()], self.images()).files {
                if file.starts_with(&self.context.data_dir) {
                    continue;
                }
                let origin = file.to_string_lossy().into_owned();
                let stored = match known.get(&origin) {
                    Some(k) => Some(k.clone()),
                    // A link may lead out of the folder; its target is the source's origin.
                    None if !file.starts_with(root) => {
                        self.known(folder.twin_id, &file)?.into_iter().find(|k| k.origin == origin)
                    }
                    None => None,
                };
                if changed(stored.as_ref(), &file) {
                    changes.ingest.push(file);
                }
                if self.stopping() {
                    return Err(Error::Cancelled);
                }
            }
            changes.forget =
                known.values().filter(|k| is_gone(&k.origin)).map(|k| k.source).collect();
            changes.forget.sort_unstable();
            Ok(changes)
        })();
        match changes {
            Ok(changes) => self.apply(folder, changes, true),
            Err(Error::Cancelled) => {}
            Err(e) => {
                warn!(error = %e, folder = folder.id, "a watched folder could not be caught up with")
            }
        }
    }

    /// Sends the changes to the worker and tells subscribers. A catch-up is always told, so
    /// that a shell knows it ended; a flush only when something changed.
    fn apply(&self, folder: &WatchedFolder, changes: Changes, catch_up: bool) {
        let commands = &self.context.commands;
        // Forgotten first: a renamed file has the content of the source its old path held,
        // and would be settled as a duplicate of it just before that one goes.
        let mut forgotten = 0;
        for source in changes.forget {
            match worker::call(commands, |reply| Command::Delete { source, reply }) {
                Ok(()) => forgotten += 1,
                // Deleted meanwhile by someone else: just as good.
                Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    warn!(error = %e, source, "a source whose file is gone was not forgotten")
                }
            }
        }
        let mut queued = 0;
        if !changes.ingest.is_empty() {
            let files = changes.ingest;
            let twin = folder.twin_id;
            match worker::call(commands, |reply| Command::Ingest {
                twin,
                files,
                urls: Vec::new(),
                reply,
            }) {
                Ok(enqueued) => queued = enqueued.len() as u64,
                Err(e) => {
                    warn!(error = %e, folder = folder.id, "files of a watched folder not queued")
                }
            }
        }
        if catch_up || queued > 0 || forgotten > 0 {
            info!(folder = folder.id, queued, forgotten, catch_up, "watched folder changed");
            self.publish(folder, queued, forgotten);
        }
    }

    fn publish(&self, folder: &WatchedFolder, queued: u64, forgotten: u64) {
        self.context.shared.events.publish(Event::WatchChanged {
            folder: folder.id,
            queued,
            forgotten,
        });
    }
}

/// Whether a file must be read again: it is no source yet, or its size or time differ from
/// when it was last read.
fn changed(stored: Option<&KnownFile>, file: &Path) -> bool {
    match (stored.and_then(|k| k.stat), FileStat::of(file)) {
        (Some(before), Some(now)) => before != now,
        _ => true,
    }
}

/// Whether nothing is at `origin` any more (an unreadable path is not gone).
fn is_gone(origin: &str) -> bool {
    matches!(std::fs::metadata(origin), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}
