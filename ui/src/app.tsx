// The window: navigation, the current twin, background events, the drop zone, shortcuts, toasts
// and confirmations. Views get what they share through `useApp()`.

import { createContext, type ComponentChildren } from "preact";
import { useCallback, useContext, useEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { api, onDoppelEvent, toAppError, type DoppelEvent, type IngestReport, type Twin } from "./api";
import { ConfirmDialog, type ConfirmOptions } from "./components/Modal";
import { Icon } from "./components/Icon";
import { ProgressBar } from "./components/Progress";
import { pickFiles, pickFolder } from "./pickers";
import { debounced, initialSources, sourcesReducer, type SourcesAction, type SourcesState } from "./state/sources";
import { applyTheme, loadTheme, nextTheme, systemIsDark, type ThemePref } from "./theme";
import { plural } from "./format";
import { markFirstQuestionSeen, SourcesView } from "./views/Sources";
import { ChatView } from "./views/Chat";
import { useModels, type ModelsState } from "./views/Models";

/**
 * Events gather until the tasks already queued have run: the events of a burst (a large folder
 * queues thousands at once) then cost one state change and one render, not one each.
 */
const EVENT_BATCH_MS = 0;
import { TwinView } from "./views/Twin";
import { SettingsView } from "./views/Settings";
import { ApiStatusLine } from "./views/Portable";

export type View = "sources" | "chat" | "twin" | "settings";
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
  sources: SourcesState;
  dispatchSources: (a: SourcesAction) => void;
  reloadSources: () => void;
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
  const [sources, dispatchSources] = useReducer(sourcesReducer, initialSources);
  const sourcesRef = useRef(sources);
  sourcesRef.current = sources;
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

  // Reloads of the sources list, coalesced: events in a burst cause one reload.
  const reloader = useMemo(
    () =>
      debounced(async () => {
        const id = twinRef.current;
        if (id === null) return;
        // Events that arrive while the lists are read mark the state stale again (see `marks`).
        const marks = sourcesRef.current.marks;
        try {
          const [list, jobs] = await Promise.all([api.sources(id), api.jobs(true).catch(() => undefined)]);
          if (twinRef.current === id) dispatchSources({ type: "loaded", sources: list, jobs, marks });
        } catch (e) {
          fail(e);
        }
      }, 250),
    [],
  );

  useEffect(() => {
    dispatchSources({ type: "reset" });
    if (twin) void reloader.now();
  }, [twin?.id]);

  useEffect(() => {
    if (sources.stale) reloader.schedule();
  }, [sources]);

  useEffect(() => {
    let unlisten: (() => void) | null = null;
    let gone = false;
    // Events are applied in batches (see EVENT_BATCH_MS).
    let batch: DoppelEvent[] = [];
    let flush: ReturnType<typeof setTimeout> | null = null;
    onDoppelEvent((event) => {
      batch.push(event);
      flush ??= setTimeout(() => {
        const events = batch;
        batch = [];
        flush = null;
        dispatchSources({ type: "events", events });
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
        dispatchSources({ type: "ingested", report, twin: id, now: Date.now() });
        showReport(report);
      } catch (e) {
        fail(e);
      }
    },
    [fail, showReport],
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
    dispatchSources,
    reloadSources: reloader.schedule,
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
  const bg = sources.background;

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
            {bg && (
              <div class={`bg-status ${bg.error ? "error" : ""}`} data-testid="background-status" role="status">
                <span>{bg.label}</span>
                {!bg.error && (
                  <ProgressBar
                    label={bg.label}
                    value={bg.total ? Math.round(((bg.done ?? 0) / bg.total) * 100) : null}
                  />
                )}
              </div>
            )}
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
          <Panel id="chat" view={view}>
            <ChatView />
          </Panel>
          {view === "twin" && (
            <Panel id="twin" view={view}>
              <TwinView />
            </Panel>
          )}
          {view === "settings" && (
            <Panel id="settings" view={view}>
              <SettingsView />
            </Panel>
          )}
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
