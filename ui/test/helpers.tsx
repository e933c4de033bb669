// Test helpers: a scripted shell behind the real @tauri-apps/api calls, and a mounted app.

import { clearMocks, mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type { ComponentChild } from "preact";
import { render } from "preact";
import { act } from "preact/test-utils";
import type { DoppelEvent, Source } from "../src/api";

export type Call = { cmd: string; args: Record<string, unknown> };
export type Handler = (args: Record<string, unknown>) => unknown;

/** Installs a fake shell: each command answers from `handlers`; every call is recorded. */
export function fakeShell(handlers: Record<string, Handler>) {
  const calls: Call[] = [];
  mockWindows("main");
  mockIPC(
    async (cmd, args) => {
      const a = (args ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args: a });
      let h = handlers[cmd];
      // A test that lists its sources answers the window's pages and "changed since" reads
      // from them, as the shell would from the database.
      const list = handlers.sources as ((args: Record<string, unknown>) => Source[]) | undefined;
      if (!h && cmd === "source_page") h = (args) => pageOf(list ? list(args) : [], args);
      if (!h && cmd === "sources_changed") {
        h = (args) => {
          const rows = list ? list(args) : [];
          return { sources: rows, cursor: args.since as number, counts: countsOf(rows) };
        };
      }
      if (!h) throw { code: "not_found", message: `no handler for ${cmd}` };
      return h(a);
    },
    { shouldMockEvents: true },
  );
  return {
    calls,
    called: (cmd: string) => calls.filter((c) => c.cmd === cmd),
  };
}

const mounted: HTMLElement[] = [];

function countsOf(rows: Source[]) {
  const c = { queued: 0, processing: 0, ready: 0, failed: 0 };
  for (const r of rows) c[r.state]++;
  return c;
}

/** A page of `rows` as `source_page` answers it: newest first, filtered, with counts. */
function pageOf(rows: Source[], args: Record<string, unknown>) {
  const text = (args.text as string | undefined)?.toLowerCase();
  const matching = rows
    .filter((r) => !text || r.title.toLowerCase().includes(text) || (r.origin ?? "").toLowerCase().includes(text))
    .filter((r) => !args.state || r.state === args.state)
    .sort((a, b) => b.id - a.id);
  const offset = args.offset as number;
  return {
    total: matching.length,
    counts: countsOf(rows),
    sources: matching.slice(offset, offset + (args.limit as number)),
    cursor: Math.max(0, ...rows.map((r) => r.updatedAt)),
  };
}

/** Unmounts every app (their window listeners go with them) and removes the fake shell. */
export function resetShell() {
  for (const root of mounted.splice(0)) render(null, root);
  clearMocks();
  document.body.innerHTML = "";
  localStorage.clear();
}

/** Lets pending promises and renders settle. */
export async function settle(rounds = 5) {
  for (let i = 0; i < rounds; i++) {
    await act(async () => {
      await Promise.resolve();
      await new Promise((r) => setTimeout(r, 0));
    });
  }
}

/** Settles until `check` holds (it throws or returns false until then), at most `rounds` times. */
export async function until(check: () => unknown, rounds = 50): Promise<void> {
  let last: unknown;
  for (let i = 0; i < rounds; i++) {
    try {
      if (check() !== false) return;
    } catch (e) {
      last = e;
    }
    await settle(1);
  }
  throw last ?? new Error("condition never held");
}

export async function mount(node: ComponentChild): Promise<HTMLElement> {
  const root = document.createElement("div");
  document.body.appendChild(root);
  mounted.push(root);
  await act(() => {
    render(node, root);
  });
  await settle();
  return root;
}

export async function shellEvent(event: DoppelEvent) {
  await act(async () => {
    await emit("doppel://event", event);
  });
  await settle(2);
}

export function $(sel: string, root: ParentNode = document): HTMLElement {
  const el = root.querySelector<HTMLElement>(sel);
  if (!el) throw new Error(`no element ${sel}`);
  return el;
}

export function $$(sel: string, root: ParentNode = document): HTMLElement[] {
  return Array.from(root.querySelectorAll<HTMLElement>(sel));
}

export const tid = (id: string) => `[data-testid="${id}"]`;

export async function click(el: HTMLElement) {
  await act(() => {
    el.click();
  });
  await settle(2);
}

export async function type(el: HTMLInputElement | HTMLTextAreaElement, value: string) {
  await act(() => {
    el.value = value;
    el.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

export async function key(el: EventTarget, k: string, opts: KeyboardEventInit = {}) {
  await act(() => {
    el.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true, cancelable: true, ...opts }));
  });
  await settle(2);
}

/** The queue with nothing waiting. */
export const idleQueue = {
  paused: false,
  startedAt: null,
  total: 0,
  ended: 0,
  failed: 0,
  running: 0,
  passages: 0,
  timeLeftMs: null,
};

/** A baseline shell with one twin and nothing learnt; tests override what they need. */
export function baseHandlers(): Record<string, Handler> {
  return {
    twins: () => [{ id: 1, name: "Ada", createdAt: 0 }],
    sources: () => [],
    jobs: () => [],
    conversations: () => [],
    messages: () => [],
    settings: () => [],
    embedder: () => ({ kind: "local", url: null, model: null, keyHint: null, pending: 0 }),
    chat_model: () => ({ kind: "off", path: null, url: null, model: null, keyHint: null }),
    chat_models: () => [],
    ocr_status: () => ({ enabled: false, tesseract: "5.3.4", pdftoppm: true, languages: "eng", installed: ["eng", "osd"], problems: [] }),
    transcriber: () => ({ kind: "off", url: null, model: null, keyHint: null }),
    reranker: () => ({ kind: "off", url: null, model: null, keyHint: null }),
    answer_mode: () => "auto",
    watched_folders: () => [],
    api_status: () => ({ enabled: false, address: "127.0.0.1:8765", url: null }),
    api_tokens: () => [],
    stats: () => ({
      days: 30,
      keepDays: 30,
      metrics: [],
      hours: [],
      health: { passages: 0, indexEntries: 0, indexMemoryBytes: 0, indexFileBytes: 0, databaseBytes: 0, indexProblem: null, duplicateVectors: 0, queuedJobs: 0 },
    }),
    diagnostic_report: () => "# Doppel diagnostic report\n",
    app_info: () => ({ version: "0.1.0", dataDir: "/data", schemaVersion: 4 }),
    model_status: () => ({ problems: [], dirs: [] }),
    catalogue: () => ({ chat: [], embedding: [] }),
    queue_progress: () => idleQueue,
  };
}
