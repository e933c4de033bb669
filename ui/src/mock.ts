// A canned backend for development and screenshots outside the desktop shell. It answers the
// commands of docs/ipc.md from memory and plays the worker's events with timers. Never part of a
// production build (main.tsx imports it only in dev or a VITE_MOCK build).
//
// `?empty` starts with nothing learnt; `?slow` slows the simulated worker down; `?notesseract`
// plays a computer without Tesseract (text recognition then says what to install).

import type { Channel } from "@tauri-apps/api/core";
import { emit } from "@tauri-apps/api/event";
import { mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import type {
  AnswerMode,
  ApiToken,
  Catalogue,
  AskEvent,
  ChatModel,
  Chunk,
  Conversation,
  DoppelEvent,
  Embedder,
  Job,
  Message,
  ModelServer,
  OcrStatus,
  Persona,
  Setting,
  ServerRole,
  Source,
  Twin,
  VerifiedAnswer,
  WatchedFolder,
} from "./api";

type Args = Record<string, unknown>;

const now = Date.now();
const min = 60_000;
const params = new URLSearchParams(location.search);
const slow = params.has("slow") ? 4 : 1;

const apiState = { enabled: false, address: "127.0.0.1:8765" };
const apiTokens: ApiToken[] = [];

function err(code: string, message: string) {
  return { code, message };
}

const twins: Twin[] = [
  { id: 1, name: "Ada", createdAt: now - 40 * 24 * 60 * min },
  { id: 2, name: "Work notes", createdAt: now - 3 * 24 * 60 * min },
];
const personas: Record<number, Persona> = {
  1: {
    name: "Ada",
    description: "A product engineer who wrote most of the team handbook.",
    voice: "Warm, direct, short sentences.",
    notCovered: "I haven't written about that yet.",
  },
  2: { name: "", description: "", voice: "", notCovered: "" },
};

let nextId = 100;
const sources: Source[] = [];
const chunks: Record<number, Chunk[]> = {};
const jobs: Job[] = [];
/** Sources that wait for text recognition or a speech-to-text server, by the code they failed with. */
const waiting = new Map<number, "needs_ocr" | "needs_transcriber">();
const NEEDS_OCR =
  'an image: its text is read only with text recognition on (Settings → "Read text in images and scans", or `doppel settings set ocr true`); it is read again then';
const NEEDS_TRANSCRIBER =
  "no speech-to-text server is set to transcribe this recording (Settings → Transcription, or `doppel transcriber server URL`); it is read again once one is set";
const IMAGE = /\.(png|jpe?g|tiff?|webp)$/i;
const RECORDING = /\.(mp3|m4a|wav|ogg|oga|opus|flac|mp4|m4v|mkv|webm)$/i;

function addSource(partial: Partial<Source> & { title: string }): Source {
  const s: Source = {
    id: nextId++,
    twinId: 1,
    kind: "file",
    origin: `/home/ada/Documents/${partial.title}`,
    mediaType: "text/markdown",
    byteSize: 12_345,
    state: "ready",
    error: null,
    chunkCount: 0,
    createdAt: now - 2 * 24 * 60 * min,
    updatedAt: now - 90 * min,
    ...partial,
  };
  sources.unshift(s);
  return s;
}

function makeChunks(s: Source, n: number) {
  chunks[s.id] = Array.from({ length: n }, (_, i) => ({
    id: s.id * 1000 + i,
    ordinal: i,
    text:
      i === 0
        ? "Handbook updates are proposed as pull requests. Anyone may propose a change; two reviewers from different teams approve it, and the change is announced in the Monday note."
        : `Passage ${i + 1} of ${s.title}. Teams keep decisions close to the work and write them down where others can find them, with the reasons that led to them.`,
    location: { label: i === 0 ? "Handbook › Changing the handbook" : `Section ${i + 1}`, lineStart: 10 + i * 12, lineEnd: 21 + i * 12, page: null },
    tokenCount: 120,
  }));
  s.chunkCount = n;
}

if (!params.has("empty")) {
  makeChunks(addSource({ title: "team-handbook.md", byteSize: 48_213 }), 24);
  makeChunks(addSource({ title: "Onboarding checklist.pdf", mediaType: "application/pdf", byteSize: 1_204_551 }), 31);
  addSource({
    title: "old-export.mbox",
    mediaType: "application/mbox",
    state: "failed",
    error: "file is too large: 212 MB is over the 50 MB limit (max_file_mb)",
    byteSize: 222_298_112,
  });
  makeChunks(addSource({ title: "Design review — search.docx", mediaType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document", byteSize: 88_031 }), 12);
  makeChunks(addSource({ title: "Pasted: interview notes", kind: "text", origin: null, mediaType: "text/plain", byteSize: 2_048 }), 3);
  const board = addSource({ title: "whiteboard.jpg", mediaType: null, state: "failed", error: NEEDS_OCR, byteSize: 2_301_442, chunkCount: 0 });
  waiting.set(board.id, "needs_ocr");
}

const conversations: Conversation[] = [];
const messages: Record<string, Message[]> = {};
const verified: VerifiedAnswer[] = [
  { id: 1, question: "Who approves handbook changes?", answer: "Two reviewers from different teams.", createdAt: now - 5 * 60 * min },
];
let msgId = 1;

function cite(n: number, s: Source | undefined, deleted = false) {
  const c = s && chunks[s.id]?.[0];
  return {
    number: n,
    chunkId: deleted ? null : c?.id ?? null,
    sourceId: deleted ? null : s?.id ?? null,
    sourceTitle: deleted ? "Source deleted" : s?.title ?? "",
    location: deleted ? "" : c?.location.label ?? "",
    quote: deleted ? null : c?.text.slice(0, 120) ?? null,
    origin: deleted ? null : s?.origin ?? null,
    deleted,
  };
}

if (!params.has("empty")) {
  const id = "c0ffee";
  conversations.push({ id, twinId: 1, title: "How do handbook changes work?", createdAt: now - 30 * min, updatedAt: now - 28 * min });
  const hb = sources.find((s) => s.title === "team-handbook.md");
  messages[id] = [
    { id: msgId++, role: "user", content: "How do handbook changes work?", state: "complete", error: null, model: null, grounding: null, verified: false, citations: [], unsupported: [], draft: null, draftNote: null, createdAt: now - 30 * min },
    {
      id: msgId++,
      role: "assistant",
      content:
        "Anyone can propose a change as a pull request [1]. Two reviewers from different teams approve it, and it is announced in the Monday note [1]. Older drafts of the process lived in a document I have since removed [2].",
      state: "complete",
      error: null,
      model: "SmolLM2-1.7B-Instruct",
      grounding: "documents",
      verified: true,
      citations: [cite(1, hb), cite(2, undefined, true)],
      unsupported: [],
      draft: null,
      draftNote: null,
      createdAt: now - 29 * min,
    },
    { id: msgId++, role: "user", content: "And who runs the Monday note?", state: "complete", error: null, model: null, grounding: null, verified: false, citations: [], unsupported: [], draft: null, draftNote: null, createdAt: now - 28 * min },
    {
      id: msgId++,
      role: "assistant",
      content: "The person on rotation that week writes the Monday",
      state: "cancelled",
      error: null,
      model: "SmolLM2-1.7B-Instruct",
      grounding: "documents",
      verified: false,
      citations: [],
      unsupported: [],
      draft: null,
      draftNote: null,
      createdAt: now - 28 * min,
    },
  ];
}

const settings: Setting[] = [
  { key: "chunk_tokens", value: "256", default: "256", help: "target chunk length in tokens (suits a 384-dimension sentence embedder)" },
  { key: "chunk_overlap", value: "32", default: "32", help: "tokens repeated from the end of one chunk at the start of the next" },
  { key: "top_k", value: "8", default: "8", help: "number of search results returned by default" },
  { key: "max_file_mb", value: "50", default: "50", help: "largest file accepted, in MB" },
  { key: "max_attempts", value: "3", default: "3", help: "times a job is tried before it is marked failed" },
  { key: "min_similarity_pct", value: "20", default: "20", help: "passages found by meaning below this similarity (percent) are not returned" },
  { key: "chat_timeout_s", value: "120", default: "120", help: "seconds a chat model server may take to start its answer (it may load the model)" },
  { key: "ocr", value: "0", default: "0", help: "read text in images and scanned PDF pages with Tesseract (slow; true or false)" },
  { key: "ocr_min_confidence", value: "60", default: "60", help: 'recognised paragraphs below this confidence (percent) are marked "unsure text recognition"' },
  { key: "ocr_dpi", value: "300", default: "300", help: "resolution scanned PDF pages are rendered at for text recognition" },
  { key: "ocr_max_pages", value: "500", default: "500", help: "most pages of one PDF read by text recognition" },
  { key: "transcribe_timeout_s", value: "600", default: "600", help: "seconds a speech-to-text server may take to transcribe one recording, upload included" },
  { key: "transcribe_retries", value: "2", default: "2", help: "extra tries of a transcription after a refused connection or a 429/5xx answer" },
  { key: "rerank_candidates", value: "30", default: "30", help: "best passages of a search that a reranking server (`doppel reranker`) reorders" },
  { key: "rerank_timeout_s", value: "5", default: "5", help: "seconds a reranking server may take to answer; past it, search keeps its own order" },
  { key: "rerank_retries", value: "1", default: "1", help: "extra tries of a rerank request after a refused connection or a 429/5xx answer" },
];
const ranges: Record<string, [number, number]> = {
  chunk_tokens: [32, 2048],
  chunk_overlap: [0, 512],
  top_k: [1, 200],
  max_file_mb: [1, 4096],
  max_attempts: [1, 100],
  min_similarity_pct: [0, 100],
  chat_timeout_s: [1, 3600],
  ocr: [0, 1],
  ocr_min_confidence: [0, 100],
  ocr_dpi: [72, 600],
  ocr_max_pages: [1, 100_000],
  transcribe_timeout_s: [5, 7200],
  transcribe_retries: [0, 10],
  rerank_candidates: [2, 200],
  rerank_timeout_s: [1, 120],
  rerank_retries: [0, 5],
};
let ocrLanguages = "eng";
const noTesseract = params.has("notesseract");
const ocrInstalled = noTesseract ? [] : ["deu", "eng", "fra", "osd"];
const SERVER_OFF: ModelServer = { kind: "off", url: null, model: null, keyHint: null };
/** The model server of each role, and how the shell's messages name it. */
const servers: Record<ServerRole, ModelServer> = { transcriber: SERVER_OFF, reranker: SERVER_OFF };
const serverNames: Record<ServerRole, string> = { transcriber: "speech-to-text server", reranker: "reranking server" };

/** `set_<role>`, as the shell checks it (the core's checks, shortened). */
function chooseServer(role: ServerRole, a: Args): ModelServer {
  if (a.kind === "off") return (servers[role] = SERVER_OFF);
  if (a.kind !== "server") throw err("invalid_input", `unknown ${serverNames[role]} kind "${String(a.kind)}": server or off`);
  if (!a.url) throw err("invalid_input", `a ${serverNames[role]} needs its URL`);
  if (!/^https?:\/\/\S+$/i.test(String(a.url))) throw err("invalid_input", `not an http(s) URL: ${String(a.url)}`);
  if (!a.model) throw err("invalid_input", "a model name of 1 to 200 printable characters is needed");
  servers[role] = { kind: "server", url: String(a.url).replace(/\/+$/, ""), model: String(a.model), keyHint: null };
  if (role === "transcriber") requeueWaiting("needs_transcriber");
  return servers[role];
}

const ocrOn = () => settings.find((x) => x.key === "ocr")?.value === "1";

function ocrStatus(): OcrStatus {
  const enabled = ocrOn();
  const problems: string[] = [];
  if (enabled && noTesseract) {
    problems.push("text recognition is on, but Tesseract is not installed: images and scans cannot be read. Fix: sudo apt install tesseract-ocr");
  }
  return { enabled, tesseract: noTesseract ? null : "5.3.4", pdftoppm: true, languages: ocrLanguages, installed: ocrInstalled, problems };
}

/** Reads again the files that waited for `code`, as the core does once what they need is set. */
function requeueWaiting(code: "needs_ocr" | "needs_transcriber") {
  for (const [id, c] of [...waiting]) {
    const s = sources.find((x) => x.id === id);
    if (c !== code || !s) continue;
    waiting.delete(id);
    enqueue(s.twinId, s.origin ?? s.title, s.title, s.kind);
  }
}

let embedder: Embedder = { kind: "local", url: null, model: null, keyHint: null, pending: 0 };
let answerMode: AnswerMode = "auto";
let chatModel: ChatModel = { kind: "local", path: "/usr/lib/Doppel/models/smollm2/model.gguf", url: null, model: null, keyHint: null };
const modelFiles = ["/usr/lib/Doppel/models/smollm2/model.gguf"];
const watched: WatchedFolder[] = [{ id: 1, twinId: 1, path: "/home/ada/Documents/Notes", createdAt: now - 10 * 24 * 60 * min }];
const askCancels = new Map<string, () => void>();
let downloadCancel: (() => void) | null = null;
// `?missing`: the chosen chat model's file is gone, as `model_status` then says.
let chatMissing = params.has("missing");
const catalogue: Catalogue = {
  chat: [
    { name: "smollm2-135m", title: "SmolLM2 135M Instruct", parameters: "135M", quantisation: "Q4_1", size: 98_362_432, memory: 300_000_000, licence: "Apache-2.0", url: "https://huggingface.co/x/SmolLM2-135M-Instruct.Q4_1.gguf", sha256: null, goodFor: "A tiny demo model, installed with Doppel: it shows streaming works, but it cannot be trusted to state facts.", demo: true },
    { name: "qwen2.5-1.5b", title: "Qwen2.5 1.5B Instruct", parameters: "1.5B", quantisation: "Q4_K_M", size: 1_120_000_000, memory: 2_000_000_000, licence: "Apache-2.0", url: "https://huggingface.co/x/qwen2.5-1.5b-instruct-q4_k_m.gguf", sha256: null, goodFor: "The smallest model that answers from passages well; quick on any laptop.", demo: false },
    { name: "llama-3.2-3b", title: "Llama 3.2 3B Instruct", parameters: "3B", quantisation: "Q4_K_M", size: 2_020_000_000, memory: 3_500_000_000, licence: "Llama 3.2 Community License", url: "https://huggingface.co/x/Llama-3.2-3B-Instruct-Q4_K_M.gguf", sha256: null, goodFor: "Careful, well-structured answers; English first.", demo: false },
  ],
  embedding: [
    { name: "all-minilm-l6-v2", server: "built in", model: "all-MiniLM-L6-v2", languages: "English only", goodFor: "The built-in model: fast, small, on this computer." },
    { name: "bge-m3", server: "ollama", model: "bge-m3", languages: "100+ languages", goodFor: "Documents in many languages, through Ollama." },
  ],
};

let queuePaused = false;

function mockQueue() {
  const active = jobs.filter((j) => j.state === "queued" || j.state === "running").length;
  const ended = jobs.filter((j) => j.state === "done" || j.state === "failed").length;
  return {
    paused: queuePaused,
    startedAt: active ? now : null,
    total: active ? active + ended : 0,
    ended: active ? ended : 0,
    failed: 0,
    running: jobs.filter((j) => j.state === "running").length,
    passages: 0,
    timeLeftMs: active && !queuePaused ? active * 4000 : null,
  };
}

function mockCoverage(twin: number) {
  const mine = sources.filter((s) => s.twinId === twin);
  const count = (state: Source["state"]) => mine.filter((s) => s.state === state).length;
  const passages = mine.reduce((n, s) => n + s.chunkCount, 0);
  return {
    states: { ready: count("ready"), queued: count("queued"), processing: count("processing"), failed: count("failed"), skipped: 0 },
    formats: [{ name: "Markdown", sources: mine.length, passages }],
    folders: [{ name: "/home/ada/notes", sources: mine.length, passages }],
    otherFolders: 0,
    passages,
    embedded: passages,
    model: "all-MiniLM-L6-v2",
    modelProblem: null,
    contentBytes: mine.reduce((n, s) => n + (s.byteSize ?? 0), 0),
    diskBytes: 3_400_000,
    problems: mine
      .filter((s) => s.state === "failed")
      .map((s) => ({ kind: waiting.has(s.id) ? "skipped" : "failed", sourceId: s.id, title: s.title, origin: s.origin, code: waiting.get(s.id) ?? "malformed", reason: s.error ?? "", retryable: true, at: s.updatedAt })),
  };
}

function event(e: DoppelEvent) {
  void emit("doppel://event", [e]);
}

function hint(key: string) {
  return `${key.slice(0, 3)}…${key.slice(-4)}`;
}

let jobSeq = 500;
let worker: Promise<void> = Promise.resolve();
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms * slow));

function enqueue(twin: number, origin: string, title: string, kind = "file") {
  let s = sources.find((x) => x.origin === origin && x.twinId === twin);
  if (!s) s = addSource({ title, origin, kind, twinId: twin, state: "queued", byteSize: 4_096 + title.length * 977, createdAt: Date.now(), updatedAt: Date.now() });
  else s.state = "queued";
  const job: Job = {
    id: jobSeq++, kind: "ingest", twinId: twin, sourceId: s.id, origin, state: "queued", attempts: 0, lastError: null, lastErrorCode: null, outcome: null, createdAt: Date.now(), updatedAt: Date.now(),
  };
  jobs.unshift(job);
  const src = s;
  setTimeout(() => event({ type: "jobQueued", job: job.id, source: src.id }), 0);
  worker = worker.then(() => run(job, src));
  return { origin, sourceId: s.id, jobId: job.id, status: "queued" };
}

const isCancelled = (job: Job) => job.state === "cancelled";

async function run(job: Job, s: Source) {
  if (isCancelled(job)) return;
  job.state = "running";
  s.state = "processing";
  event({ type: "jobStarted", job: job.id, source: s.id, attempt: 1 });
  event({ type: "sourceChanged", source: s.id, state: "processing" });
  await wait(400);
  const scan = /scan.*\.pdf$/i.test(s.title);
  const needs = (IMAGE.test(s.title) || scan) && !ocrOn() ? "needs_ocr" : RECORDING.test(s.title) && servers.transcriber.kind === "off" ? "needs_transcriber" : null;
  if (needs) {
    job.state = "failed";
    job.lastErrorCode = needs;
    s.state = "failed";
    s.error = needs === "needs_ocr" ? NEEDS_OCR : NEEDS_TRANSCRIBER;
    waiting.set(s.id, needs);
    event({ type: "jobFailed", job: job.id, source: s.id, code: needs, message: s.error, retryAt: null });
    event({ type: "sourceChanged", source: s.id, state: "failed" });
    return;
  }
  // Text recognition page by page; a recording's transcript is its one page.
  const pages = IMAGE.test(s.title) || RECORDING.test(s.title) ? 1 : scan ? 8 : 0;
  for (let i = 0; i <= pages && pages > 0; i++) {
    if (isCancelled(job)) return;
    event({ type: "jobPages", job: job.id, done: i, total: pages });
    if (i < pages) await wait(pages === 1 ? 1500 : 350);
  }
  if (/\.(exe|bin|iso)$/i.test(s.title)) {
    job.state = "failed";
    s.state = "failed";
    s.error = "unsupported format: binary files are not read";
    event({ type: "jobFailed", job: job.id, source: s.id, code: "unsupported_format", message: s.error, retryAt: null });
    event({ type: "sourceChanged", source: s.id, state: "failed" });
    return;
  }
  const total = 6 + (s.title.length % 9);
  for (let i = 1; i <= total; i++) {
    if (isCancelled(job)) return;
    await wait(120);
    event({ type: "jobProgress", job: job.id, done: i, total });
  }
  for (let i = 2; i <= total; i += 2) {
    if (isCancelled(job)) return;
    await wait(150);
    event({ type: "jobEmbedding", job: job.id, done: Math.min(i, total), total });
  }
  makeChunks(s, total);
  s.state = "ready";
  s.error = null;
  s.updatedAt = Date.now();
  job.state = "done";
  event({ type: "sourceChanged", source: s.id, state: "ready" });
  event({ type: "jobDone", job: job.id, source: s.id, outcome: "ingested", chunks: total });
}

const ANSWER =
  "Changes to the handbook start as a pull request that anyone may open [1]. Two reviewers from different teams approve it, and the change is announced in the Monday note [1]. Decisions are written down close to the work, with their reasons [2].";

function ask(args: Args): Promise<unknown> {
  const req = args.request as { requestId: string; twin: number; conversation?: string; question: string };
  const channel = args.onEvent as Channel<AskEvent>;
  const convId = req.conversation ?? `c${Date.now()}`;
  let conv = conversations.find((c) => c.id === convId);
  if (!conv) {
    conv = { id: convId, twinId: req.twin, title: req.question.slice(0, 60), createdAt: Date.now(), updatedAt: Date.now() };
    conversations.unshift(conv);
    messages[convId] = [];
  }
  const list = messages[convId]!;
  list.push({ id: msgId++, role: "user", content: req.question, state: "complete", error: null, model: null, grounding: null, verified: false, citations: [], unsupported: [], draft: null, draftNote: null, createdAt: Date.now() });
  const ready = sources.filter((s) => s.state === "ready" && s.twinId === req.twin);
  const tokens = ANSWER.match(/\S+\s*/g) ?? [];
  return new Promise((resolve) => {
    let i = 0;
    let text = "";
    const finish = (state: Message["state"]) => {
      clearInterval(timer);
      askCancels.delete(req.requestId);
      const message: Message = {
        id: msgId++, role: "assistant", content: text, state, error: null, model: chatModel.kind === "off" ? null : "SmolLM2-1.7B-Instruct", grounding: "documents", verified: false,
        citations: [cite(1, ready[0]), cite(2, ready[1] ?? ready[0])], unsupported: [], draft: null, draftNote: null, createdAt: Date.now(),
      };
      list.push(message);
      conv!.updatedAt = Date.now();
      resolve({ conversation: convId, message, notes: embedder.pending > 0 ? ["keyword search only"] : [] });
    };
    const timer = setInterval(() => {
      if (i >= tokens.length) return finish("complete");
      text += tokens[i++];
      channel.onmessage({ type: "token", text: tokens[i - 1]! });
    }, 45 * slow);
    askCancels.set(req.requestId, () => finish("cancelled"));
  });
}

function download(args: Args): Promise<unknown> {
  const url = String(args.url);
  const total = 1_100_000_000;
  return new Promise((resolve, reject) => {
    let done = 0;
    const timer = setInterval(() => {
      done = Math.min(total, done + 37_000_000);
      void emit("doppel://download", { done, total });
      if (done >= total) {
        clearInterval(timer);
        downloadCancel = null;
        const path = `/home/ada/.local/share/doppel/models/${url.split("/").pop() || "model.gguf"}`;
        modelFiles.push(path);
        resolve(path);
      }
    }, 100 * slow);
    downloadCancel = () => {
      clearInterval(timer);
      reject(err("cancelled", "the download was cancelled"));
    };
  });
}

function handle(cmd: string, a: Args): unknown {
  switch (cmd) {
    case "app_info":
      return { version: "0.1.0", dataDir: "/home/ada/.local/share/doppel", schemaVersion: 4, rendering: "composited on the GPU" };
    case "ping":
      return null;
    case "twins":
      return twins;
    case "create_twin": {
      const name = String(a.name ?? "").trim();
      if (!name) throw err("invalid_input", "a twin needs a name");
      const t = { id: twins.length + 1, name, createdAt: Date.now() };
      twins.push(t);
      personas[t.id] = { name: "", description: "", voice: "", notCovered: "" };
      return t;
    }
    case "rename_twin": {
      const t = twins.find((x) => x.id === a.twin);
      if (!t) throw err("not_found", "no such twin");
      t.name = String(a.name);
      return t;
    }
    case "sources":
      return sources.filter((s) => s.twinId === a.twin).map((s) => ({ ...s }));
    case "source_detail": {
      const s = sources.find((x) => x.id === a.source);
      if (!s) throw err("not_found", `source ${String(a.source)} not found`);
      return { source: { ...s }, chunks: chunks[s.id] ?? [] };
    }
    case "ingest_paths": {
      const paths = a.paths as string[];
      const queued = [];
      const skipped = [];
      for (const p of paths) {
        if (!/\.[a-z0-9]{1,5}$/i.test(p)) {
          // A folder: expand to a few files.
          for (const f of ["intro.md", "faq.txt", "talk.vtt"]) queued.push(enqueue(a.twin as number, `${p}/${f}`, f));
        } else if (p.endsWith(".lock")) {
          skipped.push({ code: "skipped", message: `${p}: not a regular file` });
        } else queued.push(enqueue(a.twin as number, p, p.split(/[\\/]/).pop()!));
      }
      return { queued, skipped };
    }
    case "add_text":
      return enqueue(a.twin as number, String(a.title), String(a.title), "text");
    case "add_url": {
      const url = String(a.url);
      return { queued: [enqueue(a.twin as number, url, url.replace(/^https?:\/\//, ""), "url")], skipped: [] };
    }
    case "delete_source": {
      const i = sources.findIndex((x) => x.id === a.source);
      if (i < 0) throw err("not_found", "no such source");
      sources.splice(i, 1);
      setTimeout(() => event({ type: "sourceDeleted", source: a.source as number }), 0);
      return null;
    }
    case "reingest_source": {
      const s = sources.find((x) => x.id === a.source);
      if (!s) throw err("not_found", "no such source");
      s.error = null;
      return enqueue(s.twinId, s.origin ?? s.title, s.title, s.kind);
    }
    case "jobs":
      return a.activeOnly ? jobs.filter((j) => j.state === "queued" || j.state === "running") : jobs;
    case "cancel_job": {
      const j = jobs.find((x) => x.id === a.job);
      if (!j) throw err("not_found", "no such job");
      j.state = "cancelled";
      const s = sources.find((x) => x.id === j.sourceId);
      if (s && s.chunkCount === 0) sources.splice(sources.indexOf(s), 1);
      setTimeout(() => {
        event({ type: "jobCancelled", job: j.id });
        if (s) event({ type: "sourceDeleted", source: s.id });
      }, 0);
      return j;
    }
    case "search":
      return { hits: [], notes: [] };
    case "sources_changed": {
      // The canned backend has no clock of its own: every row of the twin, each time.
      const rows = sources.filter((s) => s.twinId === a.twin).map((s) => ({ ...s }));
      return { sources: rows, cursor: 0 };
    }
    case "coverage":
      return mockCoverage(a.twin as number);
    case "why_not_found":
      return {
        named: sources.filter((s) => s.twinId === a.twin && s.title.toLowerCase().includes(String(a.text).toLowerCase())),
        words: [{ word: String(a.text).toLowerCase(), passages: 0, sources: 0 }],
        keyword: [],
        meaning: [],
        meaningProblem: null,
      };
    case "find":
      return { passages: [], mode: a.mode, notes: [] };
    case "queue_progress":
      return mockQueue();
    case "pause_queue":
      queuePaused = true;
      return mockQueue();
    case "resume_queue":
      queuePaused = false;
      return mockQueue();
    case "notify":
      return null;
    case "settings":
      return settings;
    case "set_setting": {
      if (a.key === "ocr_languages") {
        const v = String(a.value).trim();
        if (!/^[a-z_]{3,}(\+[a-z_]{3,})*$/i.test(v)) throw err("invalid_setting", "invalid value for ocr_languages: expected Tesseract language codes joined by + (eng, eng+fra)");
        const missing = v.split("+").find((c) => !noTesseract && !ocrInstalled.includes(c));
        if (missing) throw err("invalid_setting", `invalid value for ocr_languages: Tesseract has no data for ${missing}: install it with \`sudo apt install tesseract-ocr-${missing}\``);
        ocrLanguages = v;
        return settings;
      }
      const s = settings.find((x) => x.key === a.key);
      if (!s) throw err("not_found", `no setting ${String(a.key)}`);
      const given = String(a.value);
      const v = s.key === "ocr" && /^(true|false)$/i.test(given) ? (given.toLowerCase() === "true" ? "1" : "0") : given;
      const turnedOn = s.key === "ocr" && v === "1" && s.value !== "1";
      const [lo, hi] = ranges[s.key] ?? [0, 1e9];
      if (!/^\d+$/.test(v)) throw err("invalid_setting", `invalid value for ${s.key}: expected a whole number, got "${v}"`);
      if (Number(v) < lo || Number(v) > hi) throw err("invalid_setting", `invalid value for ${s.key}: must be between ${lo} and ${hi}`);
      s.value = String(Number(v));
      if (turnedOn) requeueWaiting("needs_ocr");
      return settings;
    }
    case "ocr_status":
      return ocrStatus();
    case "transcriber":
    case "reranker":
      return servers[cmd];
    case "set_transcriber":
    case "set_reranker":
      return chooseServer(cmd === "set_reranker" ? "reranker" : "transcriber", a);
    case "set_transcriber_key":
    case "set_reranker_key": {
      const role: ServerRole = cmd === "set_reranker_key" ? "reranker" : "transcriber";
      if (servers[role].kind === "off") throw err("invalid_input", `no ${serverNames[role]} is chosen; choose one first`);
      return (servers[role] = { ...servers[role], keyHint: hint(String(a.key)) });
    }
    case "delete_transcriber_key":
    case "delete_reranker_key": {
      const role: ServerRole = cmd === "delete_reranker_key" ? "reranker" : "transcriber";
      return (servers[role] = { ...servers[role], keyHint: null });
    }
    case "embedder":
      return embedder;
    case "set_embedder": {
      const kind = a.kind as Embedder["kind"];
      if (kind !== "local" && (!a.url || !a.model)) throw err("invalid_input", "a model server needs a URL and a model name");
      if (kind !== "local" && !a.confirmed)
        throw err("confirmation_needed", `1234 passages (about 98765 tokens) will be sent to ${String(a.url)} to be embedded. A paid API charges for them.`);
      embedder = { kind, url: (a.url as string) ?? null, model: (a.model as string) ?? null, keyHint: null, pending: kind === "local" ? 0 : 1234 };
      return embedder;
    }
    case "set_embedder_key":
      embedder = { ...embedder, keyHint: hint(String(a.key)) };
      return embedder;
    case "delete_embedder_key":
      embedder = { ...embedder, keyHint: null };
      return embedder;
    case "chat_model":
      return chatModel;
    case "set_chat_model": {
      const kind = a.kind as ChatModel["kind"];
      if ((kind === "ollama" || kind === "openai") && (!a.url || !a.model)) throw err("invalid_input", "a model server needs a URL and a model name");
      chatModel = { kind, path: (a.path as string) ?? null, url: (a.url as string) ?? null, model: (a.model as string) ?? null, keyHint: null };
      return chatModel;
    }
    case "set_chat_key":
      chatModel = { ...chatModel, keyHint: hint(String(a.key)) };
      return chatModel;
    case "delete_chat_key":
      chatModel = { ...chatModel, keyHint: null };
      return chatModel;
    case "chat_models":
      return modelFiles;
    case "open_source":
      return null;
    case "answer_mode":
      return answerMode;
    case "set_answer_mode":
      answerMode = a.mode as AnswerMode;
      return answerMode;
    case "download_chat_model":
      return download(a);
    case "cancel_download":
      downloadCancel?.();
      downloadCancel = null;
      return null;
    case "model_status":
      return {
        problems: chatMissing && chatModel.kind === "local"
          ? [{ part: "chat", problem: `The chosen chat model's file is missing (${chatModel.path}): answers are made of the passages' own sentences instead.`, fix: "run `doppel models local` for the default model, or `doppel models get NAME`" }]
          : [],
        dirs: [{ origin: "user", path: "/home/ada/.local/share/doppel/models" }, { origin: "bundled", path: "/usr/lib/Doppel/models" }],
      };
    case "catalogue":
      return catalogue;
    case "get_catalogue_model": {
      const m = catalogue.chat.find((c) => c.name === a.name);
      if (!m) throw err("not_found", `catalogue model ${String(a.name)} not found`);
      return download({ url: m.url }).then((path) => {
        chatMissing = false;
        chatModel = { kind: "local", path: path as string, url: null, model: null, keyHint: null };
        return chatModel;
      });
    }
    case "import_chat_model":
      modelFiles.push(String(a.path));
      return a.path;
    case "conversations":
      return conversations.filter((c) => c.twinId === a.twin);
    case "messages":
      return messages[String(a.conversation)] ?? [];
    case "ask":
      return ask(a);
    case "cancel_ask":
      askCancels.get(String(a.requestId))?.();
      return null;
    case "export_conversation":
    case "conversation_markdown":
      return cmd === "export_conversation" ? null : "# Conversation\n";
    case "verify_message": {
      const list = messages[String(a.conversation)] ?? [];
      const m = list.find((x) => x.id === a.message);
      if (!m) throw err("not_found", "no such message");
      m.verified = true;
      const q = list[list.indexOf(m) - 1]?.content ?? "";
      const v = { id: verified.length + 1, question: q, answer: (a.revised as string) ?? m.content, createdAt: Date.now() };
      verified.unshift(v);
      return v;
    }
    case "verified_answers":
      return a.twin === 1 ? verified : [];
    case "delete_verified": {
      const i = verified.findIndex((v) => v.id === a.verified);
      if (i >= 0) verified.splice(i, 1);
      return null;
    }
    case "persona":
      return personas[a.twin as number];
    case "set_persona":
      personas[a.twin as number] = a.persona as Persona;
      return a.persona;
    case "watched_folders":
      return watched;
    case "stats":
      return {
        days: 30,
        keepDays: 30,
        metrics: [
          { metric: "job_ms", label: "markdown", count: 12, sum: 2400, p50: 150, p95: 420, p99: 610, max: 610 },
          { metric: "search_ms", label: "hybrid", count: 5, sum: 60, p50: 11, p95: 19, p99: 19, max: 19 },
          { metric: "job_failed", label: "malformed", count: 1, sum: 1, p50: 1, p95: 1, p99: 1, max: 1 },
        ],
        hours: [0, 1, 2].map((h) => ({ startMs: Date.now() - (3 - h) * 3_600_000, jobs: 4 + h, meanJobMs: 180 + 40 * h, failures: 0 })),
        health: { passages: 48, indexEntries: 48, indexMemoryBytes: 90_000, indexFileBytes: 88_000, databaseBytes: 700_000, indexProblem: null, duplicateVectors: 0, queuedJobs: 0 },
      };
    case "diagnostic_report":
      return "# Doppel diagnostic report\n\nDoppel 0.1.0 (a canned report of the development backend)\n";
    case "api_status":
      return { ...apiState, url: apiState.enabled ? `http://${apiState.address}/v1` : null };
    case "set_api":
      apiState.enabled = Boolean(a.enabled);
      if (typeof a.address === "string") apiState.address = a.address;
      return { ...apiState, url: apiState.enabled ? `http://${apiState.address}/v1` : null };
    case "api_tokens":
      return apiTokens;
    case "create_api_token": {
      const token = {
        id: apiTokens.length + 1,
        twin: a.twin as number,
        name: String(a.name),
        scope: a.scope as "ask" | "read",
        prefix: "0123456789ab",
        ratePerMinute: 60,
        dailyTokens: 50000,
        createdAt: Date.now(),
        lastUsedAt: null,
        revokedAt: null,
      };
      apiTokens.unshift(token);
      const secret = `dpl_0123456789ab_${"f".repeat(64)}`;
      return { token, secret, shareLink: a.scope === "ask" ? `http://${apiState.address}/share#token=${secret}` : null };
    }
    case "revoke_api_token": {
      const t = apiTokens.find((x) => x.id === a.token);
      if (t) t.revokedAt = Date.now();
      return t;
    }
    case "watch_folder": {
      const f = { id: watched.length + 1, twinId: a.twin as number, path: String(a.path), createdAt: Date.now() };
      watched.push(f);
      return f;
    }
    case "unwatch_folder": {
      const i = watched.findIndex((f) => f.id === a.folder);
      if (i >= 0) watched.splice(i, 1);
      return null;
    }
    case "plugin:dialog|open":
      return (a.options as { directory?: boolean; multiple?: boolean })?.directory
        ? "/home/ada/Documents/Research"
        : (a.options as { multiple?: boolean })?.multiple
          ? ["/home/ada/Documents/quarterly-plan.md", "/home/ada/Documents/retro-notes.txt"]
          : "/home/ada/Downloads/Qwen2.5-3B-Instruct-Q4_K_M.gguf";
    case "plugin:dialog|save":
      return "/home/ada/Documents/conversation.md";
  }
  throw err("not_found", `the mock has no command ${cmd}`);
}

export function installMock() {
  mockWindows("main");
  mockIPC(
    async (cmd, args) => {
      // Round trips take a moment, as they do through the real shell.
      await new Promise((r) => setTimeout(r, 8));
      // Copies, as the real shell sends JSON: the views must never share the mock's objects.
      const result = await handle(cmd, (args ?? {}) as Args);
      return result === undefined ? null : JSON.parse(JSON.stringify(result));
    },
    { shouldMockEvents: true },
  );
  // The running job of the initial data keeps the sources list lively in screenshots.
  if (!params.has("empty") && !params.has("still")) {
    setTimeout(() => {
      enqueue(1, "/home/ada/Documents/meeting-2024-03.vtt", "meeting-2024-03.vtt");
      enqueue(1, "/home/ada/Documents/reading-list.csv", "reading-list.csv");
    }, 300);
  }
  (window as unknown as { doppelMock: object }).doppelMock = { sources, jobs, event };
}
