// The one place that talks to the desktop shell: typed wrappers for every command and event of
// docs/ipc.md. Every rejection becomes an `AppError` with the shell's stable `code`.

import { Channel, invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

// ---- Types (the same shapes as docs/ipc.md) ----

export type Twin = { id: number; name: string; createdAt: number };
export type SourceState = "queued" | "processing" | "ready" | "failed";
export type Source = {
  id: number;
  twinId: number;
  kind: string;
  origin: string | null;
  title: string;
  mediaType: string | null;
  byteSize: number | null;
  state: SourceState;
  error: string | null;
  chunkCount: number;
  createdAt: number;
  updatedAt: number;
};
export type Location = {
  label: string;
  lineStart: number | null;
  lineEnd: number | null;
  page: number | null;
};
export type Chunk = { id: number; ordinal: number; text: string; location: Location; tokenCount: number };
export type SourceDetail = { source: Source; chunks: Chunk[] };
export type JobState = "queued" | "running" | "done" | "failed" | "cancelled";
export type Job = {
  id: number;
  kind: string;
  twinId: number;
  sourceId: number | null;
  origin: string;
  state: JobState;
  attempts: number;
  lastError: string | null;
  lastErrorCode: string | null;
  outcome: string | null;
  createdAt: number;
  updatedAt: number;
};
export type Enqueued = {
  origin: string;
  sourceId: number;
  jobId: number;
  status: "queued" | "already_queued" | (string & {});
};
export type Skipped = { code: string; message: string };
export type IngestReport = { queued: Enqueued[]; skipped: Skipped[] };
export type Hit = {
  chunkId: number;
  sourceId: number;
  sourceTitle: string;
  origin: string | null;
  location: Location;
  snippet: string;
  text: string;
  score: number;
  retriever: string;
};
export type SearchResults = { hits: Hit[]; notes: string[] };
export type Setting = { key: string; value: string; default: string; help: string };
export type EmbedderKind = "local" | "ollama" | "openai";
export type Embedder = {
  kind: EmbedderKind;
  url: string | null;
  model: string | null;
  keyHint: string | null;
  pending: number;
};
export type ChatModelKind = "local" | "ollama" | "openai" | "off";
export type ChatModel = {
  kind: ChatModelKind;
  path: string | null;
  url: string | null;
  model: string | null;
  keyHint: string | null;
};
/** Whether text recognition (OCR) is on and can run here. */
export type OcrStatus = {
  enabled: boolean;
  /** Tesseract's version; null when it is not installed. */
  tesseract: string | null;
  /** Whether poppler's pdftoppm, which scanned PDF pages need, is installed. */
  pdftoppm: boolean;
  /** The languages asked for: Tesseract's codes joined by `+` ("eng+fra"). */
  languages: string;
  /** The languages Tesseract has data for. */
  installed: string[];
  /** What keeps it from working, each a sentence ending "Fix: <command>"; empty while it is off. */
  problems: string[];
};
/** What a model server chosen by URL and model is for: transcribing recordings, reranking passages. */
export type ServerRole = "transcriber" | "reranker";
/** The model server chosen for one role, or none. */
export type ModelServer = { kind: "server" | "off"; url: string | null; model: string | null; keyHint: string | null };
export type Conversation = {
  id: string;
  twinId: number;
  title: string;
  createdAt: number;
  updatedAt: number;
};
export type Citation = {
  number: number;
  chunkId: number | null;
  sourceId: number | null;
  sourceTitle: string;
  location: string;
  quote: string | null;
  /** The source's path or URL (null for pasted text, and once the source was forgotten). */
  origin: string | null;
  deleted: boolean;
};
/** A sentence of an answer that states facts (numbers, paths, names) no cited passage holds. */
export type Unsupported = { sentence: string; facts: string[] };
/** How answers are made: the passages' own sentences when the model is too small (auto), always
 * (grounded), or the model, checked (model). */
export type AnswerMode = "auto" | "grounded" | "model";
export type MessageState = "streaming" | "complete" | "cancelled" | "failed";
export type Message = {
  id: number;
  role: "user" | "assistant";
  content: string;
  state: MessageState;
  error: string | null;
  model: string | null;
  grounding: string | null;
  verified: boolean;
  citations: Citation[];
  unsupported: Unsupported[];
  /** The model's own answer, when the grounded answer was shown instead; draftNote says why. */
  draft: string | null;
  draftNote: string | null;
  createdAt: number;
};
export type Answer = { conversation: string; message: Message; notes: string[] };
export type VerifiedAnswer = { id: number; question: string; answer: string; createdAt: number };
export type Persona = { name: string; description: string; voice: string; notCovered: string };
export type WatchedFolder = { id: number; twinId: number; path: string; createdAt: number };
export type AppInfo = { version: string; dataDir: string; schemaVersion: number; rendering: string };
export type ModelPart = "embedder" | "runtime" | "chat";
/** A chosen model that cannot run: what is wrong (a sentence) and the fix as the CLI says it. */
export type ModelProblem = { part: ModelPart; problem: string; fix: string };
export type ModelDir = { origin: "cache" | "user" | "bundled"; path: string };
export type ModelStatus = { problems: ModelProblem[]; dirs: ModelDir[] };
export type CatalogueModel = {
  name: string;
  title: string;
  parameters: string;
  quantisation: string;
  size: number;
  memory: number;
  licence: string;
  url: string;
  sha256: string | null;
  goodFor: string;
  demo: boolean;
};
export type EmbeddingModel = { name: string; server: string; model: string; languages: string; goodFor: string };
export type Catalogue = { chat: CatalogueModel[]; embedding: EmbeddingModel[] };
export type AskRequest = { requestId: string; twin: number; conversation?: string; question: string };
export type AskEvent = { type: "token"; text: string };

/** One background event of the core, as the payload of `doppel://event`. */
export type DoppelEvent =
  | { type: "jobQueued"; job: number; source: number }
  | { type: "jobStarted"; job: number; source: number | null; attempt: number }
  | { type: "jobProgress"; job: number; done: number; total: number }
  | { type: "jobEmbedding"; job: number; done: number; total: number }
  /** Pages of a scan or an image read by text recognition; a recording being transcribed is 0/1, then 1/1. */
  | { type: "jobPages"; job: number; done: number; total: number }
  | { type: "indexRebuild"; done: number; total: number }
  | { type: "backfill"; embedded: number; remaining: number }
  | { type: "backfillStalled"; reason: string }
  | { type: "jobDone"; job: number; source: number | null; outcome: string; chunks: number }
  | {
      type: "jobFailed";
      job: number;
      source: number | null;
      code: string;
      message: string;
      retryAt: number | null;
    }
  | { type: "jobCancelled"; job: number }
  | { type: "sourceChanged"; source: number; state: SourceState }
  | { type: "sourceDeleted"; source: number }
  | { type: "watchChanged"; folder: number; queued: number; forgotten: number };

export type DownloadProgress = { done: number; total: number | null };

/** How many sources of a twin are in each state. */
export type SourceCounts = Record<SourceState, number>;
/** The sources whose row changed at or after a moment; ask from `cursor` next time. */
/** Sources changed since a moment; `more` when too many changed to list (read the pages again). */
export type SourceChanges = { sources: Source[]; cursor: number; counts: SourceCounts; more?: boolean };
/** A page of the sources list, newest first: how many the query matches, and the twin's counts. */
export type SourcePage = { total: number; counts: SourceCounts; sources: Source[]; cursor: number };
/** Sources of one format or folder. */
export type Group = { name: string; sources: number; passages: number };
export type ProblemKind = "failed" | "skipped" | "stale";
/** A source that failed, was passed over, or whose last update failed, with the reason. */
export type Problem = {
  kind: ProblemKind;
  sourceId: number;
  title: string;
  origin: string | null;
  code: string;
  reason: string;
  retryable: boolean;
  at: number;
};
/** What a twin knows, as a whole. */
export type Coverage = {
  states: { ready: number; queued: number; processing: number; failed: number; skipped: number };
  formats: Group[];
  folders: Group[];
  otherFolders: number;
  passages: number;
  embedded: number;
  model: string | null;
  modelProblem: string | null;
  contentBytes: number;
  diskBytes: number;
  problems: Problem[];
};
/** Why a word or a file name may not be found. */
export type Explanation = {
  named: Source[];
  words: { word: string; passages: number; sources: number }[];
  keyword: Hit[];
  meaning: Hit[] | null;
  meaningProblem: string | null;
};
export type SearchMode = "hybrid" | "vector" | "keyword";
export type Filter = { sources?: number[]; name?: string; folder?: string; format?: string; from?: number; until?: number };
export type TextPart = { text: string; marked: boolean };
export type FoundPassage = { hit: Hit; parts: TextPart[] };
export type FindResults = { passages: FoundPassage[]; mode: SearchMode; notes: string[] };
/** How far the queue's current run is. */
export type Queue = {
  paused: boolean;
  startedAt: number | null;
  total: number;
  ended: number;
  failed: number;
  running: number;
  passages: number;
  timeLeftMs: number | null;
};

export const EVENT = "doppel://event";
export const DOWNLOAD_EVENT = "doppel://download";
export const BACKUP_EVENT = "doppel://backup";

// ---- Taking the twin along, and the local API ----

export type Counts = { sources: number; chunks: number; conversations: number; verifiedAnswers: number };
export type BackupDone = { path: string; bytes: number; encrypted: boolean; counts: Counts };
export type RestoreDone = {
  counts: Counts;
  replaced: boolean;
  migratedFrom: number | null;
  indexEntries: number;
  notes: string[];
};
export type ExportDone = { dir: string; conversations: number; verifiedAnswers: number; sources: number };
export type BackupProgress = { stage: "snapshot" | "write" | "read" | "check" | "index"; done: number; total: number };
export type ApiStatus = { enabled: boolean; address: string; url: string | null };

/** One metric and label over the period (docs/ipc.md `stats`); times in milliseconds. */
export type MetricSummary = {
  metric: string;
  label: string;
  count: number;
  sum: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
};
export type HourStats = { startMs: number; jobs: number; meanJobMs: number; failures: number };
export type Stats = {
  days: number;
  keepDays: number;
  metrics: MetricSummary[];
  hours: HourStats[];
  health: {
    passages: number;
    indexEntries: number;
    indexMemoryBytes: number;
    indexFileBytes: number;
    databaseBytes: number;
    indexProblem: string | null;
    duplicateVectors: number;
    queuedJobs: number;
  };
};
export type ApiScope = "ask" | "read";
export type ApiToken = {
  id: number;
  twin: number;
  name: string;
  scope: ApiScope;
  prefix: string;
  ratePerMinute: number;
  dailyTokens: number;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
};
export type NewApiToken = { token: ApiToken; secret: string; shareLink: string | null };

// ---- Errors ----

/** A failed command: the shell's stable code and a message for the person. */
export class AppError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "AppError";
    this.code = code;
  }
}

/** Turns whatever a command rejected with into an `AppError`. */
export function toAppError(raw: unknown): AppError {
  if (raw instanceof AppError) return raw;
  if (raw && typeof raw === "object") {
    const r = raw as { code?: unknown; message?: unknown };
    if (typeof r.code === "string" && typeof r.message === "string") {
      return new AppError(r.code, r.message);
    }
    if (raw instanceof Error) return new AppError("unknown", raw.message);
  }
  if (typeof raw === "string" && raw.length > 0) return new AppError("unknown", raw);
  return new AppError("unknown", "Something went wrong.");
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw toAppError(e);
  }
}

// ---- Ids ----

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** A fresh id for a conversation or an ask request (32 hex characters). */
export function newId(): string {
  return crypto.randomUUID().replace(/-/g, "");
}

export function isValidId(id: string): boolean {
  return ID_RE.test(id);
}

// ---- Commands ----

export const api = {
  appInfo: () => call<AppInfo>("app_info"),
  twins: () => call<Twin[]>("twins"),
  createTwin: (name: string) => call<Twin>("create_twin", { name }),
  renameTwin: (twin: number, name: string) => call<Twin>("rename_twin", { twin, name }),

  sources: (twin: number) => call<Source[]>("sources", { twin }),
  sourceDetail: (source: number) => call<SourceDetail>("source_detail", { source }),
  /** Each call is measured as `doppel:ingest_paths` (read by bench/ui-latency). */
  ingestPaths: async (twin: number, paths: string[]) => {
    const start = performance.now();
    try {
      return await call<IngestReport>("ingest_paths", { twin, paths });
    } finally {
      performance.measure("doppel:ingest_paths", { start });
    }
  },
  addText: (twin: number, title: string, text: string) => call<Enqueued>("add_text", { twin, title, text }),
  addUrl: (twin: number, url: string) => call<IngestReport>("add_url", { twin, url }),
  deleteSource: (source: number) => call<null>("delete_source", { source }),
  reingestSource: (source: number) => call<Enqueued>("reingest_source", { source }),
  jobs: (activeOnly: boolean) => call<Job[]>("jobs", { activeOnly }),
  cancelJob: (job: number) => call<Job>("cancel_job", { job }),
  search: (twin: number, query: string, topK?: number) =>
    call<SearchResults>("search", topK === undefined ? { twin, query } : { twin, query, topK }),

  settings: () => call<Setting[]>("settings"),
  setSetting: (key: string, value: string) => call<Setting[]>("set_setting", { key, value }),

  embedder: () => call<Embedder>("embedder"),
  /** A server that would be sent passages to embed is chosen only when `confirmed`; without, the
   * shell rejects with `confirmation_needed` and says how many passages and tokens. */
  setEmbedder: (kind: EmbedderKind, url?: string, model?: string, confirmed?: boolean) =>
    call<Embedder>("set_embedder", { kind, url, model, confirmed }),
  setEmbedderKey: (key: string) => call<Embedder>("set_embedder_key", { key }),
  deleteEmbedderKey: () => call<Embedder>("delete_embedder_key"),

  chatModel: () => call<ChatModel>("chat_model"),
  setChatModel: (kind: ChatModelKind, opts: { path?: string; url?: string; model?: string } = {}) =>
    call<ChatModel>("set_chat_model", { kind, path: opts.path, url: opts.url, model: opts.model }),
  setChatKey: (key: string) => call<ChatModel>("set_chat_key", { key }),
  deleteChatKey: () => call<ChatModel>("delete_chat_key"),
  chatModels: () => call<string[]>("chat_models"),
  /** Opens a source's file (or page) with the system; `reveal` shows it in its folder. */
  openSource: (source: number, reveal = false) => call<null>("open_source", { source, reveal }),
  answerMode: () => call<AnswerMode>("answer_mode"),
  setAnswerMode: (mode: AnswerMode) => call<AnswerMode>("set_answer_mode", { mode }),
  downloadChatModel: (url: string, sha256?: string) =>
    call<string>("download_chat_model", sha256 ? { url, sha256 } : { url }),
  cancelDownload: () => call<null>("cancel_download"),
  importChatModel: (path: string) => call<string>("import_chat_model", { path }),
  modelStatus: () => call<ModelStatus>("model_status"),
  /** The built-in catalogue, or the catalogue file at `path`. */
  catalogue: (path?: string) => call<Catalogue>("catalogue", path ? { catalogue: path } : {}),
  /** Downloads a catalogue model (progress as download events) and chooses it. */
  getCatalogueModel: (name: string, catalogue?: string) =>
    call<ChatModel>("get_catalogue_model", catalogue ? { name, catalogue } : { name }),

  ocrStatus: () => call<OcrStatus>("ocr_status"),
  /** Text recognition on or off (the setting `ocr`); turning it on reads again the files that waited. */
  setOcr: (on: boolean) => call<Setting[]>("set_setting", { key: "ocr", value: on ? "true" : "false" }),
  /** Tesseract's language codes joined by `+`; each must be installed (else `invalid_setting`). */
  setOcrLanguages: (languages: string) => call<Setting[]>("set_setting", { key: "ocr_languages", value: languages }),
  /**
   * The model server of a role (`transcriber`: choosing one reads again the recordings that waited;
   * `reranker`: searches send it their best passages from the next one on), through the commands
   * `<role>`, `set_<role>`, `set_<role>_key` and `delete_<role>_key`.
   */
  modelServer: (role: ServerRole) => call<ModelServer>(role),
  /** A server (its URL and model), or none (null). */
  setModelServer: (role: ServerRole, server: { url: string; model: string } | null) =>
    call<ModelServer>(`set_${role}`, server ? { kind: "server", url: server.url, model: server.model } : { kind: "off" }),
  setModelServerKey: (role: ServerRole, key: string) => call<ModelServer>(`set_${role}_key`, { key }),
  deleteModelServerKey: (role: ServerRole) => call<ModelServer>(`delete_${role}_key`),

  conversations: (twin: number) => call<Conversation[]>("conversations", { twin }),
  messages: (conversation: string) => call<Message[]>("messages", { conversation }),
  /** Asks the twin; `onToken` receives each piece of the answer as it is generated. */
  ask: (request: AskRequest, onToken: (text: string) => void) => {
    const onEvent = new Channel<AskEvent>();
    onEvent.onmessage = (ev) => {
      if (ev && ev.type === "token") onToken(ev.text);
    };
    return call<Answer>("ask", { request, onEvent });
  },
  cancelAsk: (requestId: string) => call<null>("cancel_ask", { requestId }),
  exportConversation: (conversation: string, path: string) =>
    call<null>("export_conversation", { conversation, path }),
  conversationMarkdown: (conversation: string) => call<string>("conversation_markdown", { conversation }),
  verifyMessage: (conversation: string, message: number, revised?: string) =>
    call<VerifiedAnswer>(
      "verify_message",
      revised === undefined ? { conversation, message } : { conversation, message, revised },
    ),
  verifiedAnswers: (twin: number) => call<VerifiedAnswer[]>("verified_answers", { twin }),
  deleteVerified: (verified: number) => call<null>("delete_verified", { verified }),
  persona: (twin: number) => call<Persona>("persona", { twin }),
  setPersona: (twin: number, persona: Persona) => call<Persona>("set_persona", { twin, persona }),

  watchedFolders: () => call<WatchedFolder[]>("watched_folders"),
  watchFolder: (twin: number, path: string) => call<WatchedFolder>("watch_folder", { twin, path }),
  unwatchFolder: (folder: number) => call<null>("unwatch_folder", { folder }),
  ping: () => call<null>("ping"),

  sourcesChanged: (twin: number, since: number) => call<SourceChanges>("sources_changed", { twin, since }),
  sourcePage: (twin: number, offset: number, limit: number, query: { text?: string; state?: SourceState } = {}) =>
    call<SourcePage>("source_page", { twin, offset, limit, ...query }),
  coverage: (twin: number) => call<Coverage>("coverage", { twin }),
  whyNotFound: (twin: number, text: string) => call<Explanation>("why_not_found", { twin, text }),
  find: (twin: number, query: string, mode: SearchMode, filter: Filter, topK?: number) =>
    call<FindResults>("find", topK === undefined ? { twin, query, mode, filter } : { twin, query, mode, filter, topK }),
  queueProgress: () => call<Queue>("queue_progress"),
  pauseQueue: () => call<Queue>("pause_queue"),
  resumeQueue: () => call<Queue>("resume_queue"),
  /** A desktop notification (rejects with `notify_failed` when the desktop shows none). */
  notify: (title: string, body: string) => call<null>("notify", { title, body }),
  backup: (path: string, passphrase?: string) => call<BackupDone>("backup", { path, passphrase }),
  cancelBackup: () => call<null>("cancel_backup"),
  /** Replaces the twin with a backup's; a twin that holds anything is replaced only when
   * `confirmed` (else `confirmation_needed`). */
  restore: (path: string, passphrase: string | undefined, confirmed: boolean) =>
    call<RestoreDone>("restore", { path, passphrase, confirmed }),
  exportTwin: (twin: number, path: string) => call<ExportDone>("export_twin", { twin, path }),
  apiStatus: () => call<ApiStatus>("api_status"),
  /** An address other than loopback needs `confirmed` (else `confirmation_needed`). */
  setApi: (enabled: boolean, address?: string, confirmed?: boolean) =>
    call<ApiStatus>("set_api", { enabled, address, confirmed }),
  apiTokens: () => call<ApiToken[]>("api_tokens"),
  createApiToken: (twin: number, name: string, scope: ApiScope) =>
    call<NewApiToken>("create_api_token", { twin, name, scope }),
  revokeApiToken: (token: number) => call<ApiToken>("revoke_api_token", { token }),
  stats: (days?: number) => call<Stats>("stats", { days }),
  diagnosticReport: () => call<string>("diagnostic_report"),
};

// ---- Events ----

/** Receives the core's events, a batch at a time (the shell sends those that arrived together). */
export function onDoppelEvents(handler: (events: DoppelEvent[]) => void): Promise<UnlistenFn> {
  return listen<DoppelEvent[] | DoppelEvent>(EVENT, (e) => handler(Array.isArray(e.payload) ? e.payload : [e.payload]));
}

export function onDownloadProgress(handler: (p: DownloadProgress) => void): Promise<UnlistenFn> {
  return listen<DownloadProgress>(DOWNLOAD_EVENT, (e) => handler(e.payload));
}

export function onBackupProgress(handler: (p: BackupProgress) => void): Promise<UnlistenFn> {
  return listen<BackupProgress>(BACKUP_EVENT, (e) => handler(e.payload));
}
