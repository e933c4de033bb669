// Models in the window: the shared model state (`useModels`, owned by the app), the banner of
// Sources and Chat, the honest status lines and the catalogue of Settings, and the offer of a
// better chat model on first run. What to say is decided in `state/models.ts`.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import {
  api,
  onDownloadProgress,
  toAppError,
  type Catalogue,
  type CatalogueModel,
  type ChatModel,
  type DownloadProgress,
  type ModelStatus,
} from "../api";
import { useApp } from "../app";
import { Icon } from "../components/Icon";
import { ProgressBar } from "../components/Progress";
import {
  OFFER_DISMISSED_KEY,
  bannerText,
  chatModelLabel,
  chatProblem,
  downloadPercent,
  downloadedFile,
  embedderProblems,
  formatModelSize,
  inUse,
  offeredModel,
  windowFix,
} from "../state/models";

declare global {
  interface Window {
    /**
     * Lists the catalogue file at `path` (null: the built-in one) and downloads from it, as the
     * CLI's `--catalogue` does; for WebDriver tests against a loopback server.
     */
    doppelCatalogue?: (path: string | null) => Promise<void>;
  }
}

export type ModelsState = {
  status: ModelStatus | null;
  catalogue: Catalogue | null;
  chat: ChatModel | null;
  /** Chat model files in the user's model folder. */
  files: string[];
  /** Bumped whenever a model changed, so that views holding their own copy read it again. */
  version: number;
  /** Reads the status, the chat model and the files again (after any model change). */
  reload: () => void;
  /** The catalogue download running, if any, with its progress. */
  download: { name: string; progress: DownloadProgress | null } | null;
  /** Why the last catalogue download failed. */
  failed: { name: string; message: string } | null;
  /** Downloads a catalogue model and chooses it; resolves whether it succeeded. */
  get: (m: CatalogueModel) => Promise<boolean>;
  cancel: () => void;
  offerDismissed: boolean;
  dismissOffer: () => void;
};

function storedFlag(key: string): boolean {
  try {
    return localStorage.getItem(key) === "1";
  } catch {
    return false;
  }
}

/** The window's model state; `App` holds one and shares it through `useApp().models`. */
export function useModels(toast: (text: string, kind?: "info" | "error" | "success") => void): ModelsState {
  const [status, setStatus] = useState<ModelStatus | null>(null);
  const [catalogue, setCatalogue] = useState<Catalogue | null>(null);
  const [chat, setChat] = useState<ChatModel | null>(null);
  const [files, setFiles] = useState<string[]>([]);
  const [version, setVersion] = useState(0);
  const [download, setDownload] = useState<ModelsState["download"]>(null);
  const [failed, setFailed] = useState<ModelsState["failed"]>(null);
  const [offerDismissed, setOfferDismissed] = useState(() => storedFlag(OFFER_DISMISSED_KEY));
  const cataloguePath = useRef<string | null>(null);
  const running = useRef(false);

  const reload = useCallback(() => {
    // A failure leaves the last known state: the banner is a hint, never an error of its own.
    api.modelStatus().then(setStatus).catch(() => undefined);
    api.chatModel().then(setChat).catch(() => undefined);
    api.chatModels().then(setFiles).catch(() => setFiles([]));
  }, []);

  const loadCatalogue = useCallback(
    () =>
      api
        .catalogue(cataloguePath.current ?? undefined)
        .then(setCatalogue)
        .catch(() => setCatalogue({ chat: [], embedding: [] })),
    [],
  );

  useEffect(() => {
    reload();
    void loadCatalogue();
    // A model file may be removed or added while the window is away.
    const onFocus = () => reload();
    window.addEventListener("focus", onFocus);
    window.doppelCatalogue = async (path) => {
      cataloguePath.current = path;
      await loadCatalogue();
    };
    let unlisten: (() => void) | null = null;
    let gone = false;
    onDownloadProgress((p) => {
      if (running.current) setDownload((d) => (d ? { ...d, progress: p } : d));
    })
      .then((u) => (gone ? u() : (unlisten = u)))
      .catch(() => undefined);
    return () => {
      gone = true;
      unlisten?.();
      window.removeEventListener("focus", onFocus);
      delete window.doppelCatalogue;
    };
  }, []);

  const get = useCallback(
    async (m: CatalogueModel) => {
      if (running.current) return false;
      running.current = true;
      setFailed(null);
      setDownload({ name: m.name, progress: { done: 0, total: m.size } });
      try {
        const chosen = await api.getCatalogueModel(m.name, cataloguePath.current ?? undefined);
        setChat(chosen);
        toast(`${m.title} downloaded and chosen for answers`, "success");
        return true;
      } catch (err) {
        const e = toAppError(err);
        setFailed({
          name: m.name,
          message:
            e.code === "cancelled"
              ? "Download cancelled. What was fetched is kept: downloading again resumes from there."
              : e.message,
        });
        return false;
      } finally {
        running.current = false;
        setDownload(null);
        setVersion((v) => v + 1);
        reload();
      }
    },
    [reload, toast],
  );

  const cancel = useCallback(() => {
    api.cancelDownload().catch(() => undefined);
  }, []);

  const dismissOffer = useCallback(() => {
    setOfferDismissed(true);
    try {
      localStorage.setItem(OFFER_DISMISSED_KEY, "1");
    } catch {
      // Storage may be unavailable; the offer stays away for this session.
    }
  }, []);

  return {
    status,
    catalogue,
    chat,
    files,
    version,
    reload,
    download,
    failed,
    get,
    cancel,
    offerDismissed,
    dismissOffer,
  };
}

// ---- The banner of Sources and Chat ----

export function ModelBanner() {
  const app = useApp();
  const text = bannerText(app.models.status);
  if (!text) return null;
  return (
    <div class="model-banner" role="status" data-testid="model-banner">
      <Icon name="alert" />
      <p data-testid="model-banner-text">{text}</p>
      <button type="button" class="btn sm" data-testid="model-banner-open" onClick={() => app.openModels()}>
        Open model settings
      </button>
    </div>
  );
}

// ---- Settings: the honest status lines ----

/** The local embedding model's state; shown only while the built-in model is the choice. */
export function EmbedderStatus() {
  const app = useApp();
  const status = app.models.status;
  if (!status) return null;
  const problems = embedderProblems(status);
  if (problems.length === 0) {
    return (
      <p class="model-state ready" data-testid="embedder-status" data-state="ready">
        <Icon name="check" size={16} />
        <span>
          <strong>Installed:</strong> all-MiniLM-L6-v2 runs on this computer. It reads English only; for other
          languages see the recommended models below.
        </span>
      </p>
    );
  }
  return (
    <div class="model-state missing" data-testid="embedder-status" data-state="missing">
      <Icon name="alert" size={16} />
      <div>
        <strong>Not installed</strong>
        {problems.map((p) => (
          <p key={p.part} class="small">
            {p.problem}
          </p>
        ))}
        <p class="small fix">{windowFix(problems[0]!)}</p>
      </div>
    </div>
  );
}

/** The chat model in use, named only when its file is there. */
export function ChatModelStatus() {
  const app = useApp();
  const { status, chat, catalogue } = app.models;
  if (!status || !chat) return null;
  const shown = chatModelLabel(chat, status, catalogue);
  const problem = chatProblem(status);
  if (shown.state === "missing" && problem) {
    return (
      <div class="model-state missing" data-testid="chat-model-status" data-state="missing">
        <Icon name="alert" size={16} />
        <div>
          <strong>Not installed</strong>
          <p class="small">{problem.problem}</p>
          <p class="small fix">{windowFix(problem)}</p>
        </div>
      </div>
    );
  }
  return (
    <p class={`model-state ${shown.state}`} data-testid="chat-model-status" data-state={shown.state}>
      <Icon name={shown.state === "ready" ? "check" : shown.state === "server" ? "link" : "x"} size={16} />
      <span>
        <strong>{shown.state === "ready" ? "In use:" : shown.state === "server" ? "Served:" : "Chat model"}</strong>{" "}
        <span data-testid="chat-model-name">{shown.label}</span>
      </span>
    </p>
  );
}

// ---- Settings: the catalogue ----

export function CatalogueCard() {
  const app = useApp();
  const { catalogue, status } = app.models;
  return (
    <section class="card" id="model-catalogue" data-testid="catalogue-card" aria-labelledby="catalogue-title">
      <h2 id="catalogue-title">Model catalogue</h2>
      <p class="muted small">
        Chat models to download, checked and chosen when done. Larger models answer better and need more memory.
      </p>
      {catalogue === null ? (
        <p class="muted small">Reading the catalogue…</p>
      ) : (
        <ul class="catalogue-list" aria-label="Chat models to download">
          {catalogue.chat.map((m) => (
            <CatalogueItem key={m.name} model={m} />
          ))}
        </ul>
      )}
      {catalogue && catalogue.embedding.length > 0 && (
        <>
          <h3 class="section-title">Embedding models</h3>
          <ul class="embedding-list" aria-label="Recommended embedding models">
            {catalogue.embedding.map((e) => (
              <li key={e.name} class="embedding-item" data-testid="embedding-model" data-name={e.name}>
                <div class="embedding-head">
                  <strong>{e.name}</strong>
                  <span class="badge">{e.server === "built in" ? "Built in" : `${e.server}: ${e.model}`}</span>
                  <span class="badge lang" data-testid="embedding-languages">
                    {e.languages}
                  </span>
                </div>
                <p class="muted small">{e.goodFor}</p>
              </li>
            ))}
          </ul>
        </>
      )}
      {status && status.dirs.length > 0 && (
        <details class="model-dirs">
          <summary>Where model files are looked for</summary>
          <ol data-testid="model-dirs">
            {status.dirs.map((d) => (
              <li key={d.path}>
                <span class="badge">{ORIGIN[d.origin] ?? d.origin}</span> <code>{d.path}</code>
              </li>
            ))}
          </ol>
        </details>
      )}
    </section>
  );
}

const ORIGIN: Record<string, string> = { cache: "Model cache", user: "Your models", bundled: "Installed with Doppel" };

function CatalogueItem(props: { model: CatalogueModel }) {
  const app = useApp();
  const m = props.model;
  const { download, failed, chat, status, catalogue, files } = app.models;
  const mine = download?.name === m.name;
  const using = inUse(m, chat, status, catalogue);
  const onDisk = downloadedFile(m, files);
  const pct = mine ? downloadPercent(download?.progress ?? null) : null;
  const error = failed?.name === m.name ? failed.message : null;

  const use = async (path: string) => {
    try {
      await api.setChatModel("local", { path });
      app.models.reload();
      app.toast(`${m.title} chosen for answers`, "success");
    } catch (e) {
      app.fail(e);
    }
  };

  return (
    <li class={`catalogue-item ${using ? "in-use" : ""}`} data-testid="catalogue-model" data-name={m.name}>
      <div class="catalogue-head">
        <div class="catalogue-title">
          <strong data-testid="catalogue-title">{m.title}</strong>
          {m.demo && (
            <span class="badge demo" data-testid="demo-badge">
              tiny demo model
            </span>
          )}
          {using && (
            <span class="badge ready" data-testid="catalogue-in-use">
              In use
            </span>
          )}
        </div>
        <div class="catalogue-action">
          {mine ? (
            <button type="button" class="btn sm" data-testid="catalogue-cancel" onClick={app.models.cancel}>
              <Icon name="stop" />
              Cancel
            </button>
          ) : using ? null : onDisk ? (
            <button
              type="button"
              class="btn sm"
              data-testid="catalogue-use"
              aria-label={`Use ${m.title}`}
              disabled={download !== null}
              onClick={() => void use(onDisk)}
            >
              Use
            </button>
          ) : (
            <button
              type="button"
              class="btn sm primary"
              data-testid="catalogue-download"
              aria-label={`Download ${m.title}, ${formatModelSize(m.size)}`}
              disabled={download !== null}
              onClick={() => void app.models.get(m)}
            >
              <Icon name="download" />
              Download
            </button>
          )}
        </div>
      </div>
      <p class="small">{m.goodFor}</p>
      <dl class="catalogue-facts">
        <div>
          <dt>Parameters</dt>
          <dd>{m.parameters}</dd>
        </div>
        <div>
          <dt>Quantisation</dt>
          <dd>{m.quantisation}</dd>
        </div>
        <div>
          <dt>Download</dt>
          <dd data-testid="catalogue-size">{formatModelSize(m.size)}</dd>
        </div>
        <div>
          <dt>Memory</dt>
          <dd>{formatModelSize(m.memory)}</dd>
        </div>
        <div>
          <dt>Licence</dt>
          <dd>{m.licence}</dd>
        </div>
      </dl>
      {mine && (
        <div class="download-progress" data-testid="catalogue-downloading">
          <ProgressBar value={pct} label={`Downloading ${m.title}`} testid="catalogue-progress" />
          <span class="muted small" data-testid="catalogue-progress-text">
            {pct === null ? "Starting…" : `${pct}% · ${formatModelSize(download?.progress?.done ?? 0)} of ${formatModelSize(download?.progress?.total ?? m.size)}`}
          </span>
        </div>
      )}
      {error && (
        <p class="field-error" role="alert" data-testid="catalogue-error">
          {error}
        </p>
      )}
    </li>
  );
}

// ---- First run: the better model on offer ----

/** "Answers are better with a larger model": offered once, never insisted on. */
export function ModelOffer(props: { compact?: boolean }) {
  const app = useApp();
  const { catalogue, chat, status, offerDismissed, download, failed } = app.models;
  const m = offeredModel(catalogue, chat, status, offerDismissed);
  if (!m) return null;
  const mine = download?.name === m.name;
  const pct = mine ? downloadPercent(download?.progress ?? null) : null;
  return (
    <div class={`model-offer ${props.compact ? "compact" : ""}`} data-testid="model-offer" data-name={m.name}>
      <p>
        Answers are better with a larger model: <strong>{m.title}</strong>, {formatModelSize(m.size)}.
      </p>
      {mine ? (
        <div class="offer-progress">
          <ProgressBar value={pct} label={`Downloading ${m.title}`} testid="model-offer-progress" />
          <button type="button" class="btn sm" data-testid="model-offer-cancel" onClick={app.models.cancel}>
            Cancel
          </button>
        </div>
      ) : (
        <div class={`actions ${props.compact ? "" : "center"}`}>
          <button
            type="button"
            class={`btn sm ${props.compact ? "" : "primary"}`}
            data-testid="model-offer-download"
            aria-label={`Download ${m.title}, ${formatModelSize(m.size)}`}
            disabled={download !== null}
            onClick={() => void app.models.get(m)}
          >
            <Icon name="download" />
            Download
          </button>
          <button type="button" class="btn sm ghost" data-testid="model-offer-dismiss" onClick={app.models.dismissOffer}>
            Not now
          </button>
        </div>
      )}
      {failed?.name === m.name && (
        <p class="field-error" role="alert" data-testid="model-offer-error">
          {failed.message}
        </p>
      )}
    </div>
  );
}

/** The welcome's line on the models: ready, or what is missing and how to get it. */
export function WelcomeModels() {
  const app = useApp();
  const status = app.models.status;
  if (!status) return null;
  if (status.problems.length === 0) {
    return (
      <li class="welcome-models ready" data-testid="welcome-models" data-state="ready">
        <Icon name="check" size={16} />
        <span>The models are ready: finding by meaning and answering work offline.</span>
      </li>
    );
  }
  return (
    <li class="welcome-models missing" data-testid="welcome-models" data-state="missing">
      <Icon name="alert" size={16} />
      <div>
        {status.problems.map((p) => (
          <p key={p.part + p.problem}>
            {p.problem} <span class="fix">{windowFix(p, false)}</span>
          </p>
        ))}
        <button type="button" class="btn sm" data-testid="welcome-open-models" onClick={() => app.openModels()}>
          Open model settings
        </button>
      </div>
    </li>
  );
}
