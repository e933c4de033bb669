// The window: navigation, the current twin, background events, the drop zone, shortcuts, toasts
// and confirmations. Views get what they share through `useApp()`.

import { createContext, type ComponentChildren } from "preact";
import { useCallback, useContext, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, onDoppelEvents, toAppError, type DoppelEvent, type IngestReport, type Queue, type Twin } from "./api";
import { ConfirmDialog, type ConfirmOptions } from "./components/Modal";
import { Icon } from "./components/Icon";
import { ProgressBar } from "./components/Progress";
import { pickFiles, pickFolder } from "./pickers";
import { debounced, PAGE_SIZE, SourceStore } from "./state/sources";
import { QueueTracker } from "./state/queue";
import { applyTheme, loadTheme, nextTheme, systemIsDark, type ThemePref } from "./theme";
import { plural } from "./format";
import { markFirstQuestionSeen, SourcesView } from "./views/Sources";
import { ChatView } from "./views/Chat";
import { useModels, type ModelsState } from "./views/Models";
import { TwinView } from "./views/Twin";
import { SettingsView } from "./views/Settings";
import { CoverageView } from "./views/Coverage";
import { SearchView } from "./views/Search";
import { QueueStatus } from "./views/Queue";
import { ApiStatusLine } from "./views/Portable";
import { measure } from "./measure";

/**
 * Events gather until the tasks already queued have run: the batches the shell sends in a burst
 * then cost one state change and one render, not one each.
 */
const EVENT_BATCH_MS = 0;

export type View = "sources" | "coverage" | "search" | "chat" | "twin" | "settings";
type ToastKind = "info" | "error" | "success";
type Toast = { id: number; kind: ToastKind; text: string };

export type AppContext = {
  twin: Twin | null;
  twins: Twin[];
  selectTwin: (id: number) => void;
  reloadTwins: () => Promise<Twin[]>;
  view: View;
  setView: (v: View) => void;
  toast: (text: string, kind?: ToastKind) => void;
  /** Shows a failed command's message. */
  fail: (e: unknown) => void;
  confirm: (opts: ConfirmOptions) => Promise<boolean>;
  /** The sources of the current twin (mutated in place; `useSourcesVersion` follows it). */
  sources: SourceStore;
  reloadSources: () => void;
  /** Reads the pages of the sources list that were asked for and are not held. */
  readPages: () => void;
  /** Records files just queued, and resolves once the top of the list shows them. */
  queued: (report: IngestReport) => Promise<void>;
  /** How far the queue's current run is, and whether it is paused (null until known). */
  queue: Queue | null;
  pauseQueue: () => Promise<void>;
  resumeQueue: () => Promise<void>;
  /** The route of a drop and of the pickers: queue paths for the current twin. */
  ingest: (paths: string[]) => Promise<void>;
  showReport: (report: IngestReport) => void;
  addFiles: () => Promise<void>;
  addFolder: () => Promise<void>;
  /** Bumped by Ctrl/Cmd+N: the chat view opens a new conversation. */
  newChatSignal: number;
  /** The models: their honest status, the catalogue and its downloads. */
  models: ModelsState;
  /** Opens Settings at its model section. */
  openModels: () => void;
  /** Bumped by `openModels`: Settings brings its model section into view. */
  openModelsSignal: number;
};

const Ctx = createContext<AppContext | null>(null);

export function useApp(): AppContext {
  const ctx = useContext(Ctx);
  if (!ctx) throw new Error("useApp outside <App>");
  return ctx;
}

const TWIN_KEY = "doppel.twin";

declare global {
  interface Window {
    /** Runs the drop handler with these paths, exactly as a real drop would (for WebDriver tests). */
    doppelDrop?: (paths: string[]) => Promise<void>;
  }
}

const NAV: { view: View; label: string; icon: string }[] = [
  { view: "sources", label: "Sources", icon: "sources" },
  { view: "coverage", label: "Knowledge", icon: "knowledge" },
  { view: "search", label: "Search", icon: "search" },
  { view: "chat", label: "Chat", icon: "chat" },
  { view: "twin", label: "Twin", icon: "twin" },
  { view: "settings", label: "Settings", icon: "settings" },
];

export function App(props: { initialView?: View }) {
  const [twins, setTwins] = useState<Twin[]>([]);
  const [twinId, setTwinId] = useState<number | null>(null);
  const [view, setView] = useState<View>(props.initialView ?? "sources");
  const [toasts, setToasts] = useState<Toast[]>([]);
  const [confirmState, setConfirmState] = useState<(ConfirmOptions & { resolve: (ok: boolean) => void }) | null>(
    null,
  );
  const sources = useMemo(() => new SourceStore(), []);
  const [queue, setQueue] = useState<Queue | null>(null);
  const [dragging, setDragging] = useState(false);
  const [theme, setTheme] = useState<ThemePref>(loadTheme);
  const [newChatSignal, setNewChatSignal] = useState(0);
  const [openModelsSignal, setOpenModelsSignal] = useState(0);

  const twin = twins.find((t) => t.id === twinId) ?? null;
  const twinRef = useRef<number | null>(null);
  twinRef.current = twin?.id ?? null;

  useEffect(() => applyTheme(theme), [theme]);
  // Chat found: the first-question tip of Sources has done its work.
  useEffect(() => {
    if (view === "chat") markFirstQuestionSeen();
  }, [view]);

  const toastSeq = useRef(0);
  const toast = useCallback((text: string, kind: ToastKind = "info") => {
    const id = ++toastSeq.current;
    setToasts((t) => [...t.slice(-3), { id, kind, text }]);
    setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), kind === "error" ? 8000 : 4000);
  }, []);
  const fail = useCallback((e: unknown) => toast(toAppError(e).message, "error"), [toast]);

  const models = useModels(toast);
  const openModels = useCallback(() => {
    setView("settings");
    setOpenModelsSignal((n) => n + 1);
  }, []);

  const confirm = useCallback(
    (opts: ConfirmOptions) => new Promise<boolean>((resolve) => setConfirmState({ ...opts, resolve })),
    [],
  );

  const reloadTwins = useCallback(async () => {
    const list = await api.twins();
    setTwins(list);
    setTwinId((current) => {
      if (current !== null && list.some((t) => t.id === current)) return current;
      const stored = Number(localStorage.getItem(TWIN_KEY));
      return list.find((t) => t.id === stored)?.id ?? list[0]?.id ?? null;
    });
    return list;
  }, []);

  useEffect(() => {
    reloadTwins().catch(fail);
  }, []);

  const selectTwin = useCallback((id: number) => {
    setTwinId(id);
    try {
      localStorage.setItem(TWIN_KEY, String(id));
    } catch {
      // Storage may be unavailable; the choice holds for this session.
    }
  }, []);

  // Pages of the sources list are read as the list asks for them (only those in view).
  const readPage = useCallback(
    async (page: number) => {
      const id = twinRef.current;
      if (id === null) return;
      const generation = sources.generation;
      const marks = sources.marks;
      try {
        const result = await api.sourcePage(id, page * PAGE_SIZE, PAGE_SIZE, sources.query);
        if (twinRef.current !== id) return;
        const first = !sources.loaded;
        const start = performance.now();
        sources.loadPage(page, generation, marks, result);
        measure(`doppel:page ${page}`, start);
        // The jobs waiting or running, once, for "Cancel" (events keep them up to date).
        if (first) void api.jobs(true).then((jobs) => twinRef.current === id && sources.applyJobs(jobs), () => undefined);
      } catch (e) {
        fail(e);
      }
    },
    [fail],
  );
  const readPages = useMemo(() => {
    const reading = new Set<string>();
    return () => {
      for (const page of sources.takeWanted()) {
        const key = `${sources.generation}:${page}`;
        if (reading.has(key)) continue;
        reading.add(key);
        void readPage(page).finally(() => reading.delete(key));
      }
    };
  }, [readPage]);

  // After events, a coalesced read of the rows that changed since the last one (events in a
  // burst cause one read), before the list is first shown nothing.
  const reloader = useMemo(
    () =>
      debounced(async () => {
        const id = twinRef.current;
        if (id === null || !sources.loaded) return;
        // Events that arrive while the rows are read mark the store stale again (see `marks`).
        const marks = sources.marks;
        try {
          const changes = await api.sourcesChanged(id, sources.cursor);
          const start = performance.now();
          if (twinRef.current === id) {
            sources.applyChanges(changes.sources, changes.cursor, changes.counts, marks, changes.more ?? false);
          }
          measure(`doppel:changes ${changes.sources.length}${changes.more ? "+" : ""}`, start);
        } catch (e) {
          fail(e);
        }
      }, 250),
    [],
  );

  const queued = useCallback(
    async (report: IngestReport) => {
      const start = performance.now();
      sources.ingested(report);
      measure(`doppel:ingested ${report.queued.length}`, start);
      queueReloader.schedule();
      // New sources are the newest: the top of the list is read again before the drop is done.
      await readPage(0);
    },
    [readPage],
  );

  // The queue's progress, read again after jobs end (at most once a second).
  const queueTracker = useMemo(() => new QueueTracker(), []);
  const queueReloader = useMemo(
    () =>
      debounced(async () => {
        try {
          const q = await api.queueProgress();
          setQueue(q);
          const ended = queueTracker.update(q, Date.now());
          if (ended) {
            void api.notify(ended.title, ended.body).catch(() => undefined);
          }
        } catch {
          // The queue's bar waits for the next event.
        }
      }, 1000),
    [],
  );

  useEffect(() => {
    sources.reset();
    if (twin) readPages();
  }, [twin?.id]);

  useEffect(
    () =>
      // The window itself does not render again for the sources: only what shows them does.
      sources.subscribe(() => {
        if (sources.stale && sources.loaded) reloader.schedule();
      }),
    [],
  );

  useEffect(() => {
    void queueReloader.now();
    // Whether the window is in front, for the notification at the end of a long ingest.
    const onFocus = () => queueTracker.setFocused(true);
    const onBlur = () => queueTracker.setFocused(false);
    window.addEventListener("focus", onFocus);
    window.addEventListener("blur", onBlur);
    return () => {
      window.removeEventListener("focus", onFocus);
      window.removeEventListener("blur", onBlur);
      queueReloader.cancel();
    };
  }, []);

  useEffect(() => {
    let unlisten: (() => void) | null = null;
    let gone = false;
    // Events are applied in batches (see EVENT_BATCH_MS).
    let batch: DoppelEvent[] = [];
    let flush: ReturnType<typeof setTimeout> | null = null;
    onDoppelEvents((events) => {
      for (const event of events) batch.push(event);
      flush ??= setTimeout(() => {
        const events = batch;
        batch = [];
        flush = null;
        const start = performance.now();
        sources.events(events);
        const now = Date.now();
        let moved = false;
        for (const e of events) moved = queueTracker.observe(e, now) || moved;
        if (moved) queueReloader.schedule();
        // Read by bench/ui-latency, to tell what held the page.
        measure(`doppel:events ${events.length}`, start);
      }, EVENT_BATCH_MS);
    })
      .then((u) => (gone ? u() : (unlisten = u)))
      .catch(() => undefined);
    return () => {
      gone = true;
      unlisten?.();
      if (flush) clearTimeout(flush);
      reloader.cancel();
    };
  }, []);

  const showReport = useCallback(
    (report: IngestReport) => {
      const n = report.queued.length;
      if (n > 0) toast(`${plural(n, "file")} queued`, "success");
      if (report.skipped.length > 0) {
        const first = report.skipped[0]!;
        const more = report.skipped.length > 1 ? ` (and ${report.skipped.length - 1} more)` : "";
        toast(`Skipped: ${first.message}${more}`, "error");
      }
      if (n === 0 && report.skipped.length === 0) toast("Nothing new to learn there.");
    },
    [toast],
  );

  const ingest = useCallback(
    async (paths: string[]) => {
      const id = twinRef.current;
      if (id === null || paths.length === 0) return;
      setView("sources");
      try {
        const report = await api.ingestPaths(id, paths);
        await queued(report);
        showReport(report);
      } catch (e) {
        fail(e);
      }
    },
    [fail, showReport, queued],
  );

  const addFiles = useCallback(async () => {
    try {
      await ingest(await pickFiles());
    } catch (e) {
      fail(e);
    }
  }, [ingest, fail]);

  const addFolder = useCallback(async () => {
    try {
      const folder = await pickFolder();
      if (folder) await ingest([folder]);
    } catch (e) {
      fail(e);
    }
  }, [ingest, fail]);

  // Drops: the window's own drag-and-drop, and the same handler for WebDriver tests.
  const ingestRef = useRef(ingest);
  ingestRef.current = ingest;
  useEffect(() => {
    const onDrop = (paths: string[]) => ingestRef.current(paths);
    window.doppelDrop = onDrop;
    let unlisten: (() => void) | null = null;
    let gone = false;
    import("@tauri-apps/api/webview")
      .then(({ getCurrentWebview }) =>
        getCurrentWebview().onDragDropEvent((e) => {
          const p = e.payload;
          if (p.type === "enter" || p.type === "over") setDragging(true);
          else if (p.type === "leave") setDragging(false);
          else if (p.type === "drop") {
            setDragging(false);
            void onDrop(p.paths);
          }
        }),
      )
      .then((u) => (gone ? u() : (unlisten = u)))
      .catch(() => undefined);
    return () => {
      gone = true;
      unlisten?.();
      if (window.doppelDrop === onDrop) delete window.doppelDrop;
    };
  }, []);

  // Shortcuts that work anywhere: Ctrl/Cmd+N new chat, Ctrl/Cmd+O add files.
  const addFilesRef = useRef(addFiles);
  addFilesRef.current = addFiles;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (!(e.ctrlKey || e.metaKey) || e.altKey || e.shiftKey) return;
      const k = e.key.toLowerCase();
      if (k === "n") {
        e.preventDefault();
        setView("chat");
        setNewChatSignal((n) => n + 1);
      } else if (k === "o") {
        e.preventDefault();
        void addFilesRef.current();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const pauseQueue = useCallback(async () => {
    try {
      setQueue(await api.pauseQueue());
    } catch (e) {
      fail(e);
    }
  }, [fail]);
  const resumeQueue = useCallback(async () => {
    try {
      setQueue(await api.resumeQueue());
      queueReloader.schedule();
    } catch (e) {
      fail(e);
    }
  }, [fail]);

  const ctx: AppContext = {
    twin,
    twins,
    selectTwin,
    reloadTwins,
    view,
    setView,
    toast,
    fail,
    confirm,
    sources,
    reloadSources: reloader.schedule,
    readPages,
    queued,
    queue,
    pauseQueue,
    resumeQueue,
    ingest,
    showReport,
    addFiles,
    addFolder,
    newChatSignal,
    models,
    openModels,
    openModelsSignal,
  };

  const effectiveDark = theme === "dark" || (theme === "system" && systemIsDark());
  const themeLabel =
    theme === "system" ? "Theme: follows the system" : theme === "dark" ? "Theme: dark" : "Theme: light";

  return (
    <Ctx.Provider value={ctx}>
      <div class="app">
        <nav class="sidebar" aria-label="Main">
          <div class="brand">
            <span class="brand-mark" aria-hidden="true">
              D
            </span>
            <span class="brand-name">Doppel</span>
          </div>
          {twins.length > 1 && (
            <label class="twin-switch">
              <span class="sr-only">Twin</span>
              <select
                data-testid="twin-switcher"
                value={twin?.id ?? ""}
                onChange={(e) => selectTwin(Number((e.target as HTMLSelectElement).value))}
              >
                {twins.map((t) => (
                  <option value={t.id} key={t.id} selected={t.id === twin?.id}>
                    {t.name}
                  </option>
                ))}
              </select>
            </label>
          )}
          <ul class="nav">
            {NAV.map((n) => (
              <li key={n.view}>
                <button
                  type="button"
                  class={`nav-item ${view === n.view ? "active" : ""}`}
                  aria-current={view === n.view ? "page" : undefined}
                  aria-controls={`view-${n.view}`}
                  data-testid={`nav-${n.view}`}
                  onClick={() => setView(n.view)}
                >
                  <Icon name={n.icon} />
                  <span>{n.label}</span>
                </button>
              </li>
            ))}
          </ul>
          <div class="sidebar-foot">
            <ApiStatusLine />
            <QueueStatus compact />
            <BackgroundStatus />
            <button
              type="button"
              class="btn ghost theme-toggle"
              data-testid="theme-toggle"
              aria-label={`${themeLabel}. Change theme`}
              title={themeLabel}
              onClick={() => setTheme(nextTheme(theme))}
            >
              <Icon name={theme === "system" ? "monitor" : effectiveDark ? "moon" : "sun"} />
              <span>{theme === "system" ? "System" : theme === "dark" ? "Dark" : "Light"}</span>
            </button>
          </div>
        </nav>
        <main class="main">
          <Panel id="sources" view={view}>
            <SourcesView />
          </Panel>
          <Panel id="coverage" view={view}>
            {view === "coverage" && <CoverageView />}
          </Panel>
          <Panel id="search" view={view}>
            <SearchView />
          </Panel>
          <Panel id="chat" view={view}>
            <ChatView />
          </Panel>
          <Panel id="twin" view={view}>
            {view === "twin" && <TwinView />}
          </Panel>
          <Panel id="settings" view={view}>
            {view === "settings" && <SettingsView />}
          </Panel>
        </main>
        {dragging && (
          <div class="drop-overlay" data-testid="drop-overlay" aria-hidden="true">
            <div class="drop-card">
              <Icon name="download" size={40} />
              <p class="drop-title">Drop to teach {twin?.name ?? "your twin"}</p>
              <p class="muted">Files and whole folders are welcome.</p>
            </div>
          </div>
        )}
        <div class="toasts" role="status" aria-live="polite">
          {toasts.map((t) => (
            <div key={t.id} class={`toast ${t.kind}`} data-testid="toast" data-kind={t.kind}>
              {t.text}
            </div>
          ))}
        </div>
        {confirmState && (
          <ConfirmDialog
            {...confirmState}
            onAnswer={(ok) => {
              confirmState.resolve(ok);
              setConfirmState(null);
            }}
          />
        )}
      </div>
    </Ctx.Provider>
  );
}

/**
 * Renders the calling component again whenever the sources change (events, reads), and returns
 * the store's version: only the views that show sources follow them.
 */
export function useSourcesVersion(): number {
  const { sources } = useApp();
  const [, setVersion] = useState(sources.version);
  useEffect(() => sources.subscribe(() => setVersion(sources.version)), [sources]);
  return sources.version;
}

/** Re-embedding or an index rebuild in progress, or paused with its reason. */
function BackgroundStatus() {
  const { sources } = useApp();
  useSourcesVersion();
  const bg = sources.background;
  if (!bg) return null;
  return (
    <div class={`bg-status ${bg.error ? "error" : ""}`} data-testid="background-status" role="status">
      <span>{bg.label}</span>
      {!bg.error && <ProgressBar label={bg.label} value={bg.total ? Math.round(((bg.done ?? 0) / bg.total) * 100) : null} />}
    </div>
  );
}

function Panel(props: { id: View; view: View; children: ComponentChildren }) {
  return (
    <section
      id={`view-${props.id}`}
      class="view"
      aria-label={NAV.find((n) => n.view === props.id)?.label}
      hidden={props.view !== props.id}
      data-testid={`view-${props.id}`}
    >
      {props.children}
    </section>
  );
}
