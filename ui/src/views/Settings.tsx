// Settings: models (embedder and chat), API keys written once, model downloads, text recognition,
// transcription and reranking, watched folders and the validated tunables.

import { Segmented } from "../components/Segmented";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  api,
  onDownloadProgress,
  toAppError,
  type AnswerMode,
  type AppInfo,
  type ChatModel,
  type ChatModelKind,
  type DownloadProgress,
  type Embedder,
  type EmbedderKind,
  type Setting,
  type WatchedFolder,
} from "../api";
import { useApp } from "../app";
import { Icon } from "../components/Icon";
import { ProgressBar } from "../components/Progress";
import { formatBytes, formatRelative, plural } from "../format";
import { pickFolder, pickModelFile } from "../pickers";
import { chatProblem } from "../state/models";
import { KeyField, ServerFields } from "../components/ServerFields";
import { CatalogueCard, ChatModelStatus, EmbedderStatus } from "./Models";
import { DiagnosticsCard } from "./Diagnostics";
import { BackupCard, LocalApiCard } from "./Portable";
import { TextRecognitionCard, TranscriptionCard } from "./Recognition";
import { RerankingCard } from "./Reranking";

export function SettingsView() {
  const app = useApp();
  const models = useRef<HTMLDivElement>(null);
  // The status may have changed while Settings was closed (a file removed on disk).
  useEffect(() => app.models.reload(), []);
  useEffect(() => {
    if (app.openModelsSignal === 0 || !models.current) return;
    models.current.scrollIntoView?.({ block: "start" });
    models.current.focus({ preventScroll: true });
  }, [app.openModelsSignal]);
  return (
    <div class="page">
      <header class="view-head">
        <div>
          <h1>Settings</h1>
          <p class="muted small">Everything runs on this computer unless you point Doppel at a model server.</p>
        </div>
      </header>
      <div id="settings-models" ref={models} tabIndex={-1} class="models-section" aria-label="Models" data-testid="settings-models">
        <EmbedderCard />
        <ChatModelCard />
        <CatalogueCard />
      </div>
      <TextRecognitionCard />
      <TranscriptionCard />
      <RerankingCard />
      <WatchedFoldersCard />
      <BackupCard />
      <LocalApiCard />
      <DiagnosticsCard />
      <TunablesCard />
      <AboutCard />
    </div>
  );
}

// ---- Embedder ----

const EMBEDDER_KINDS: { kind: EmbedderKind; label: string; help: string }[] = [
  { kind: "local", label: "Built in", help: "all-MiniLM-L6-v2, runs on this computer" },
  { kind: "ollama", label: "Ollama", help: "a model served by Ollama" },
  { kind: "openai", label: "OpenAI-compatible", help: "any /v1/embeddings server" },
];

function EmbedderCard() {
  const app = useApp();
  const [emb, setEmb] = useState<Embedder | null>(null);
  const [kind, setKind] = useState<EmbedderKind>("local");
  const [url, setUrl] = useState("");
  const [model, setModel] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const take = (e: Embedder) => {
    setEmb(e);
    setKind(e.kind);
    setUrl(e.url ?? "");
    setModel(e.model ?? "");
  };
  useEffect(() => {
    api.embedder().then(take).catch(app.fail);
  }, []);

  const changed = emb !== null && (kind !== emb.kind || (kind !== "local" && (url !== (emb.url ?? "") || model !== (emb.model ?? ""))));

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const choose = (confirmed?: boolean) =>
        kind === "local" ? api.setEmbedder("local") : api.setEmbedder(kind, url.trim(), model.trim(), confirmed);
      let chosen: Embedder;
      try {
        chosen = await choose();
      } catch (err) {
        const e = toAppError(err);
        if (e.code !== "confirmation_needed") throw err;
        // The audit's cost guard: nothing is sent to a server before the owner says so.
        const ok = await app.confirm({
          title: "Send your passages to this server?",
          body: (
            <>
              <p data-testid="embedder-cost">{e.message}</p>
              <p class="muted">Your twin learns them again by meaning; keyword search answers meanwhile.</p>
            </>
          ),
          confirm: "Send and use this model",
        });
        if (!ok) return;
        chosen = await choose(true);
      }
      take(chosen);
      app.models.reload();
      app.toast("Embedding model changed: passages are learnt again in the background", "success");
    } catch (err) {
      setError(toAppError(err).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" data-testid="embedder-card">
      <h2>Understanding (embedding model)</h2>
      <p class="muted small">Turns passages into vectors so the twin finds them by meaning.</p>
      {emb?.kind === "local" && <EmbedderStatus />}
      <form class="form" onSubmit={save}>
        <Segmented
          name="embedder-kind"
          options={EMBEDDER_KINDS.map((k) => ({ value: k.kind, label: k.label, help: k.help }))}
          value={kind}
          onChange={(v) => setKind(v as EmbedderKind)}
        />
        {kind !== "local" && (
          <ServerFields prefix="embedder" kind={kind} url={url} model={model} setUrl={setUrl} setModel={setModel} />
        )}
        {error && (
          <p class="field-error" role="alert" data-testid="embedder-error">
            {error}
          </p>
        )}
        {emb && emb.pending > 0 && (
          <p class="muted small" data-testid="embedder-pending">
            {plural(emb.pending, "passage")} waiting to be learnt by meaning; keyword search answers meanwhile.
          </p>
        )}
        <div class="actions">
          <button type="submit" class="btn primary" data-testid="embedder-save" disabled={!changed || busy}>
            Use this model
          </button>
        </div>
      </form>
      {emb && emb.kind !== "local" && kind === emb.kind && (
        <KeyField
          prefix="embedder"
          hint={emb.keyHint}
          onSave={async (k) => take(await api.setEmbedderKey(k))}
          onDelete={async () => take(await api.deleteEmbedderKey())}
        />
      )}
    </section>
  );
}

// ---- Chat model ----

const CHAT_KINDS: { value: ChatModelKind; label: string; help: string }[] = [
  { value: "local", label: "Local file", help: "a GGUF model run by llama.cpp on this computer" },
  { value: "ollama", label: "Ollama", help: "a model served by Ollama" },
  { value: "openai", label: "OpenAI-compatible", help: "any /v1/chat/completions server" },
  { value: "off", label: "Off", help: "answers are the passages' own sentences, each cited" },
];

const ANSWER_MODES: { value: AnswerMode; label: string; help: string }[] = [
  { value: "auto", label: "Auto", help: "the passages' own sentences when the model is too small to be trusted, the model otherwise" },
  { value: "grounded", label: "Passages' sentences", help: "always the best sentences of the passages, each cited: nothing can be invented" },
  { value: "model", label: "Model", help: "always the model; its answer is checked against the passages" },
];

/** How answers are made, saved as soon as it is chosen. */
function AnswerModeField() {
  const app = useApp();
  const [mode, setMode] = useState<AnswerMode | null>(null);
  useEffect(() => {
    api.answerMode().then(setMode).catch(app.fail);
  }, []);
  if (!mode) return null;
  return (
    <div class="field" data-testid="answer-mode">
      <span class="label">How answers are made</span>
      <Segmented
        name="answer-mode"
        options={ANSWER_MODES}
        value={mode}
        onChange={async (v) => {
          try {
            setMode(await api.setAnswerMode(v as AnswerMode));
            app.toast("Answer mode saved", "success");
          } catch (e) {
            app.fail(e);
          }
        }}
      />
      <p class="small muted">{ANSWER_MODES.find((m) => m.value === mode)?.help}</p>
    </div>
  );
}

function fileName(path: string): string {
  return path.split(/[\\/]/).pop() || path;
}

function ChatModelCard() {
  const app = useApp();
  const [cm, setCm] = useState<ChatModel | null>(null);
  const [kind, setKind] = useState<ChatModelKind>("off");
  const [path, setPath] = useState("");
  const [url, setUrl] = useState("");
  const [model, setModel] = useState("");
  const [files, setFiles] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const take = (c: ChatModel) => {
    setCm(c);
    setKind(c.kind);
    setPath(c.path ?? "");
    setUrl(c.url ?? "");
    setModel(c.model ?? "");
  };
  const loadFiles = () => api.chatModels().then(setFiles).catch(() => setFiles([]));
  useEffect(() => {
    api.chatModel().then(take).catch(app.fail);
    void loadFiles();
  }, [app.models.version]);

  const apply = async (k: ChatModelKind, opts: { path?: string; url?: string; model?: string }) => {
    setBusy(true);
    setError(null);
    try {
      take(await api.setChatModel(k, opts));
      app.models.reload();
      app.toast(k === "off" ? "Chat model turned off" : "Chat model changed", "success");
    } catch (err) {
      setError(toAppError(err).message);
    } finally {
      setBusy(false);
    }
  };

  const save = (e: Event) => {
    e.preventDefault();
    if (kind === "local") void apply("local", { path });
    else if (kind === "off") void apply("off", {});
    else void apply(kind, { url: url.trim(), model: model.trim() });
  };

  const chooseFile = async () => {
    try {
      const p = await pickModelFile();
      if (p) setPath(p);
    } catch (err) {
      app.fail(err);
    }
  };

  const changed =
    cm !== null &&
    (kind !== cm.kind ||
      (kind === "local" && path !== (cm.path ?? "")) ||
      ((kind === "ollama" || kind === "openai") && (url !== (cm.url ?? "") || model !== (cm.model ?? ""))));
  const options = path && !files.includes(path) ? [path, ...files] : files;
  // The file of the model in use may be gone: never name it as if it were there.
  const missing = cm?.kind === "local" && chatProblem(app.models.status) ? cm.path : null;

  return (
    <section class="card" data-testid="chat-model-card">
      <h2>Answering (chat model)</h2>
      <p class="muted small">Writes the answer from the passages found. Without one, answers show the passages.</p>
      <ChatModelStatus />
      <form class="form" onSubmit={save}>
        <Segmented name="chat-kind" options={CHAT_KINDS} value={kind} onChange={(v) => setKind(v as ChatModelKind)} />
        {kind === "local" && (
          <div class="field">
            <span>Model file</span>
            <div class="row">
              <select
                data-testid="chat-model-select"
                aria-label="Model file"
                value={path}
                onChange={(e) => setPath((e.target as HTMLSelectElement).value)}
              >
                <option value="" disabled>
                  {files.length ? "Choose a downloaded model" : "No model downloaded yet"}
                </option>
                {options.map((f) => (
                  <option key={f} value={f}>
                    {f === missing ? "Not installed (the file is missing)" : fileName(f)}
                  </option>
                ))}
              </select>
              <button type="button" class="btn" data-testid="chat-model-file" onClick={() => void chooseFile()}>
                <Icon name="file" />
                Choose file…
              </button>
            </div>
          </div>
        )}
        {(kind === "ollama" || kind === "openai") && (
          <ServerFields prefix="chat" kind={kind} url={url} model={model} setUrl={setUrl} setModel={setModel} />
        )}
        {error && (
          <p class="field-error" role="alert" data-testid="chat-model-error">
            {error}
          </p>
        )}
        <div class="actions">
          <button
            type="submit"
            class="btn primary"
            data-testid="chat-model-save"
            disabled={!changed || busy || (kind === "local" && !path)}
          >
            Use this model
          </button>
        </div>
      </form>
      {cm && (cm.kind === "ollama" || cm.kind === "openai") && kind === cm.kind && (
        <KeyField
          prefix="chat"
          hint={cm.keyHint}
          onSave={async (k) => take(await api.setChatKey(k))}
          onDelete={async () => take(await api.deleteChatKey())}
        />
      )}
      <AnswerModeField />
      <ModelDownload
        onDone={(p) => {
          void loadFiles();
          app.models.reload();
          setKind("local");
          setPath(p);
        }}
      />
    </section>
  );
}

function ModelDownload(props: { onDone: (path: string) => void }) {
  const app = useApp();
  const [url, setUrl] = useState("");
  const [sha, setSha] = useState("");
  const [progress, setProgress] = useState<DownloadProgress | null>(null);
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let unlisten: (() => void) | null = null;
    let gone = false;
    onDownloadProgress(setProgress)
      .then((u) => (gone ? u() : (unlisten = u)))
      .catch(() => undefined);
    return () => {
      gone = true;
      unlisten?.();
    };
  }, []);

  const shaOk = sha.trim() === "" || /^[0-9a-fA-F]{64}$/.test(sha.trim());

  const start = async (e: Event) => {
    e.preventDefault();
    if (!/^https?:\/\/\S+$/i.test(url.trim())) {
      setError("Enter a web address that starts with http:// or https://");
      return;
    }
    if (!shaOk) return;
    setRunning(true);
    setError(null);
    setProgress({ done: 0, total: null });
    try {
      const path = await api.downloadChatModel(url.trim(), sha.trim() || undefined);
      app.toast(`Downloaded ${fileName(path)}`, "success");
      setUrl("");
      setSha("");
      props.onDone(path);
    } catch (err) {
      const ae = toAppError(err);
      setError(ae.code === "cancelled" ? "Download cancelled." : ae.message);
    } finally {
      setRunning(false);
      setProgress(null);
    }
  };

  const pct = progress && progress.total ? Math.round((progress.done / progress.total) * 100) : null;

  return (
    <form class="form download" onSubmit={start} data-testid="download-form">
      <h3 class="section-title">Download a model</h3>
      <div class="grid2">
        <label class="field">
          <span>GGUF file URL</span>
          <input
            type="url"
            data-testid="download-url"
            placeholder="https://…/model.Q4_K_M.gguf"
            value={url}
            disabled={running}
            onInput={(e) => {
              setUrl((e.target as HTMLInputElement).value);
              setError(null);
            }}
          />
        </label>
        <label class="field">
          <span>SHA-256 (optional)</span>
          <input
            data-testid="download-sha256"
            placeholder="64 hexadecimal characters"
            value={sha}
            disabled={running}
            aria-invalid={shaOk ? undefined : true}
            onInput={(e) => setSha((e.target as HTMLInputElement).value)}
          />
          {!shaOk && <span class="field-error">A SHA-256 is 64 hexadecimal characters.</span>}
        </label>
      </div>
      {running && (
        <div class="download-progress">
          <ProgressBar value={pct} label="Model download" testid="download-progress" />
          <span class="muted small" data-testid="download-status">
            {progress ? formatBytes(progress.done) : ""}
            {progress?.total ? ` of ${formatBytes(progress.total)}` : ""}
          </span>
        </div>
      )}
      {error && (
        <p class="field-error" role="alert" data-testid="download-error">
          {error}
        </p>
      )}
      <div class="actions">
        {running ? (
          <button type="button" class="btn" data-testid="download-cancel" onClick={() => api.cancelDownload().catch(app.fail)}>
            <Icon name="stop" />
            Cancel download
          </button>
        ) : (
          <>
            <button
              type="button"
              class="btn ghost"
              data-testid="import-model"
              onClick={async () => {
                try {
                  const p = await pickModelFile();
                  if (!p) return;
                  const stored = await api.importChatModel(p);
                  app.toast(`Imported ${fileName(stored)}`, "success");
                  props.onDone(stored);
                } catch (err) {
                  app.fail(err);
                }
              }}
            >
              Import a file…
            </button>
            <button type="submit" class="btn" data-testid="download-start" disabled={!url.trim() || !shaOk}>
              <Icon name="download" />
              Download
            </button>
          </>
        )}
      </div>
    </form>
  );
}

// ---- Watched folders ----

function WatchedFoldersCard() {
  const app = useApp();
  const [folders, setFolders] = useState<WatchedFolder[]>([]);
  const load = () => api.watchedFolders().then(setFolders).catch(app.fail);
  useEffect(() => {
    void load();
  }, []);

  const add = async () => {
    if (!app.twin) return;
    try {
      const path = await pickFolder("Watch a folder");
      if (!path) return;
      const f = await api.watchFolder(app.twin.id, path);
      setFolders((list) => [...list.filter((x) => x.id !== f.id), f]);
      app.reloadSources();
      app.toast("Watching the folder: its files are being learnt", "success");
    } catch (e) {
      app.fail(e);
    }
  };

  const remove = async (f: WatchedFolder) => {
    try {
      await api.unwatchFolder(f.id);
      setFolders((list) => list.filter((x) => x.id !== f.id));
    } catch (e) {
      app.fail(e);
    }
  };

  const twinName = (id: number) => app.twins.find((t) => t.id === id)?.name ?? `twin ${id}`;

  return (
    <section class="card" data-testid="watched-card">
      <h2>Watched folders</h2>
      <p class="muted small">Changed files are read again and removed files are forgotten, as they happen.</p>
      {folders.length === 0 ? (
        <p class="muted pad small">No folder is watched.</p>
      ) : (
        <ul class="watched-list">
          {folders.map((f) => (
            <li key={f.id} class="watched" data-testid="watched-item" data-folder-id={f.id}>
              <Icon name="folder" />
              <span class="watched-path" title={f.path}>
                {f.path}
              </span>
              <span class="muted small">
                {app.twins.length > 1 ? `${twinName(f.twinId)} · ` : ""}since {formatRelative(f.createdAt)}
              </span>
              <button
                type="button"
                class="btn ghost sm"
                data-testid="watch-remove"
                aria-label={`Stop watching ${f.path}`}
                onClick={() => void remove(f)}
              >
                Stop watching
              </button>
            </li>
          ))}
        </ul>
      )}
      <div class="actions">
        <button type="button" class="btn" data-testid="watch-add" onClick={() => void add()}>
          <Icon name="folder" />
          Watch a folder…
        </button>
      </div>
    </section>
  );
}

// ---- Tunables ----

const LABELS: Record<string, string> = {
  chunk_tokens: "Passage length (tokens)",
  chunk_overlap: "Passage overlap (tokens)",
  top_k: "Passages per answer",
  max_file_mb: "Largest file (MB)",
  max_attempts: "Attempts per file",
  retry_backoff_ms: "First retry delay (ms)",
  parse_timeout_s: "Parser time limit (s)",
  parse_memory_mb: "Parser memory limit (MB)",
  archive_max_mb: "Largest unpacked document (MB)",
  archive_max_entries: "Most entries in a document",
  archive_max_ratio: "Highest compression ratio",
  fetch_timeout_s: "Web page time limit (s)",
  fetch_max_redirects: "Most redirects",
  hnsw_m: "HNSW m",
  hnsw_ef_construction: "HNSW ef_construction",
  hnsw_ef_search: "HNSW ef_search",
  min_similarity_pct: "Minimum similarity (%)",
  embed_timeout_s: "Embedding server time limit (s)",
  embed_retries: "Embedding server retries",
  chat_timeout_s: "Chat server start limit (s)",
  chat_idle_s: "Chat server silence limit (s)",
  ocr_min_confidence: "Text recognition: least confidence (%)",
  ocr_dpi: "Text recognition: scan resolution (dpi)",
  ocr_max_pages: "Text recognition: most pages of a PDF",
  transcribe_timeout_s: "Transcription time limit (s)",
  transcribe_retries: "Transcription retries",
  rerank_candidates: "Reranking: passages sent per search",
  rerank_timeout_s: "Reranking time limit (s)",
  rerank_retries: "Reranking retries",
};

/** Settings that a switch of their own card owns (a second control here would disagree with it). */
const SWITCHED = new Set(["ocr"]);

function label(key: string): string {
  if (LABELS[key]) return LABELS[key]!;
  const s = key.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function TunablesCard() {
  const app = useApp();
  const [settings, setSettings] = useState<Setting[]>([]);
  useEffect(() => {
    api.settings().then(setSettings).catch(app.fail);
  }, []);
  return (
    <section class="card" data-testid="settings-card">
      <h2>Tuning</h2>
      <p class="muted small">Each value is checked before it is kept. Changes apply to work that starts afterwards.</p>
      <div class="settings-list">
        {settings
          .filter((s) => !SWITCHED.has(s.key))
          .map((s) => (
            <SettingRow key={s.key} setting={s} onSaved={setSettings} />
          ))}
      </div>
    </section>
  );
}

export function SettingRow(props: { setting: Setting; onSaved: (all: Setting[]) => void }) {
  const s = props.setting;
  const [value, setValue] = useState(s.value);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => setValue(s.value), [s.value]);

  const commit = async (v: string) => {
    if (v === s.value) {
      setError(null);
      return;
    }
    if (v.trim() === "") {
      setError("Enter a value.");
      return;
    }
    try {
      props.onSaved(await api.setSetting(s.key, v.trim()));
      setError(null);
      setSaved(true);
      setTimeout(() => setSaved(false), 1500);
    } catch (e) {
      setError(toAppError(e).message);
    }
  };

  const id = `setting-${s.key}`;
  return (
    <div class={`setting ${error ? "invalid" : ""}`} data-testid="setting-row" data-key={s.key}>
      <label for={id} class="setting-label">
        <span class="setting-name">
          {label(s.key)} <code class="muted small">{s.key}</code>
        </span>
        <span class="muted small">{s.help}</span>
      </label>
      <div class="setting-control">
        <input
          id={id}
          inputMode="numeric"
          data-testid="setting-input"
          data-key={s.key}
          value={value}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${id}-error` : undefined}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          onBlur={() => void commit(value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              void commit(value);
            } else if (e.key === "Escape") {
              setValue(s.value);
              setError(null);
            }
          }}
        />
        {s.value !== s.default && (
          <button
            type="button"
            class="btn ghost sm"
            title={`Default: ${s.default}`}
            data-testid="setting-reset"
            onClick={() => {
              setValue(s.default);
              void commit(s.default);
            }}
          >
            Reset
          </button>
        )}
        {saved && <span class="saved small" aria-live="polite">Saved</span>}
      </div>
      {error && (
        <span id={`${id}-error`} class="field-error" role="alert" data-testid="setting-error" data-key={s.key}>
          {error}
        </span>
      )}
    </div>
  );
}

// ---- About ----

function AboutCard() {
  const [info, setInfo] = useState<AppInfo | null>(null);
  useEffect(() => {
    api.appInfo().then(setInfo).catch(() => undefined);
  }, []);
  if (!info) return null;
  return (
    <section class="card" data-testid="about-card">
      <h2>About</h2>
      <dl class="meta">
        <dt>Version</dt>
        <dd>{info.version}</dd>
        <dt>Data folder</dt>
        <dd class="origin">{info.dataDir}</dd>
        <dt>Schema</dt>
        <dd>{info.schemaVersion}</dd>
        <dt>Drawing</dt>
        <dd data-testid="about-rendering">{info.rendering}</dd>
      </dl>
    </section>
  );
}
