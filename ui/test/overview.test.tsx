// The views over a twin as a whole: Knowledge (what it knows, failures and skips with Retry, why
// something is not found), Search (modes, filters, marked words, a hit's passage), the queue's
// bar with Pause and Resume, and the notification at the end of a long ingest.

import { afterEach, describe, expect, it } from "vitest";
import type { Coverage, FindResults, Queue } from "../src/api";
import { App } from "../src/app";
import { QueueTracker } from "../src/state/queue";
import { $, $$, baseHandlers, click, fakeShell, idleQueue, mount, resetShell, shellEvent, tid, type, until } from "./helpers";

afterEach(resetShell);

const coverage: Coverage = {
  states: { ready: 3, queued: 0, processing: 0, failed: 1, skipped: 1 },
  formats: [
    { name: "Markdown", sources: 2, passages: 5 },
    { name: "JSON", sources: 1, passages: 0 },
  ],
  folders: [{ name: "/home/ana/notes", sources: 5, passages: 9 }],
  otherFolders: 0,
  passages: 9,
  embedded: 6,
  model: "all-MiniLM-L6-v2",
  modelProblem: null,
  contentBytes: 4096,
  diskBytes: 1_048_576,
  problems: [
    { kind: "failed", sourceId: 4, title: "ledger.json", origin: "/home/ana/notes/ledger.json", code: "malformed", reason: "file is malformed: JSON: EOF", retryable: true, at: 0 },
    { kind: "skipped", sourceId: 5, title: "empty.txt", origin: "/home/ana/notes/empty.txt", code: "empty", reason: "no text in it", retryable: false, at: 0 },
  ],
};

describe("what does my twin know?", () => {
  it("counts sources by state, says what is embedded, and lists failures and skips with a Retry", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      coverage: () => coverage,
      reingest_source: (a) => ({ origin: "/home/ana/notes/ledger.json", sourceId: a.source, jobId: 9, status: "queued" }),
    });
    await mount(<App />);
    await click($(tid("nav-coverage")));
    await until(() => $$(tid("coverage-state")).length === 5);
    const count = (state: string) => $(`${tid("coverage-state")}[data-state="${state}"]`).textContent;
    expect(count("ready")).toContain("3");
    expect(count("failed")).toContain("1");
    expect(count("skipped")).toContain("1");
    expect($(tid("coverage-embedded")).textContent).toContain("6 of 9 passages");
    const problems = $$(tid("coverage-problem"));
    expect(problems.map((p) => [p.dataset.kind, p.dataset.code])).toEqual([["failed", "malformed"], ["skipped", "empty"]]);
    expect($(tid("coverage-reason"), problems[0]!).textContent).toContain("malformed");
    // A skip that reading again cannot change has no Retry.
    expect($$(tid("coverage-retry"), problems[1]!)).toHaveLength(0);
    await click($(tid("coverage-retry"), problems[0]!));
    expect(shell.called("reingest_source")[0]!.args).toEqual({ source: 4 });
    expect($$(tid("coverage-format")).map((r) => r.dataset.name)).toEqual(["Markdown", "JSON"]);
  });

  it("says why a word is not found: no source by that name, no passage, and what meaning finds", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      coverage: () => coverage,
      why_not_found: () => ({
        named: [],
        words: [{ word: "zeppelin", passages: 0, sources: 0 }],
        keyword: [],
        meaning: null,
        meaningProblem: "no embedding model is loaded",
      }),
    });
    await mount(<App />);
    await click($(tid("nav-coverage")));
    await until(() => $(tid("why-input")));
    await type($(tid("why-input")) as HTMLInputElement, "zeppelin");
    await click($(tid("why-submit")));
    await until(() => $(tid("why-result")));
    expect(shell.called("why_not_found")[0]!.args).toEqual({ twin: 1, text: "zeppelin" });
    expect($(tid("why-result")).dataset.found).toBe("false");
    expect($(tid("why-named-none")).textContent).toContain("No source is named like");
    expect($(tid("why-word")).textContent).toContain("no passage");
    expect($(tid("why-meaning-problem")).textContent).toContain("no embedding model is loaded");
  });
});

describe("search", () => {
  const found: FindResults = {
    mode: "keyword",
    notes: [],
    passages: [
      {
        hit: {
          chunkId: 31, sourceId: 4, sourceTitle: "Orchard", origin: "/home/ana/notes/orchard.md",
          location: { label: "Orchard › Quinces", lineStart: null, lineEnd: null, page: null },
          snippet: "", text: "Aunt Wilhelmina planted the quince orchard.", score: 1, retriever: "keyword",
        },
        parts: [
          { text: "Aunt Wilhelmina ", marked: false },
          { text: "planted", marked: true },
          { text: " the quince orchard.", marked: false },
        ],
      },
    ],
  };

  it("searches in the mode and the sources chosen, marks the words, and opens a hit as a citation", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      coverage: () => coverage,
      find: () => found,
      source_detail: () => ({ source: {}, chunks: [] }),
    });
    await mount(<App />);
    await click($(tid("nav-search")));
    await until(() => $$(`${tid("search-folder")} option`).length === 2);
    await type($(tid("search-input")) as HTMLInputElement, "planting");
    await click($(tid("search-mode-keyword")));
    const folder = $(tid("search-folder")) as HTMLSelectElement;
    folder.value = "/home/ana/notes";
    folder.dispatchEvent(new Event("change", { bubbles: true }));
    const format = $(tid("search-format")) as HTMLSelectElement;
    format.value = "Markdown";
    format.dispatchEvent(new Event("change", { bubbles: true }));
    await type($(tid("search-from")) as HTMLInputElement, "2024-01-01");
    await click($(tid("search-submit")));
    await until(() => $(tid("search-hit")));
    const args = shell.called("find")[0]!.args;
    expect(args).toMatchObject({ twin: 1, query: "planting", mode: "keyword", topK: 20 });
    expect(args.filter).toEqual({ folder: "/home/ana/notes", format: "Markdown", from: new Date(2024, 0, 1).getTime() });
    expect($$(tid("marked-word"), $(tid("search-hit"))).map((m) => m.textContent)).toEqual(["planted"]);

    await click($(tid("search-hit")));
    await until(() => $(tid("passage-panel")));
    expect($(tid("passage-source")).textContent).toBe("Orchard");
    expect($(tid("passage-origin")).textContent).toBe("/home/ana/notes/orchard.md");
    expect($$(tid("marked-word"), $(tid("passage-quote"))).map((m) => m.textContent)).toEqual(["planted"]);
  });
});

describe("the queue", () => {
  const busy: Queue = { ...idleQueue, startedAt: 1, total: 10, ended: 4, passages: 40, running: 1, timeLeftMs: 180_000 };

  it("shows files, passages and the time left, and pauses and resumes the whole queue", async () => {
    let queue = busy;
    const shell = fakeShell({
      ...baseHandlers(),
      sources: () => [{ id: 1, twinId: 1, kind: "file", origin: "/a.md", title: "a.md", mediaType: null, byteSize: 1, state: "queued", error: null, chunkCount: 0, createdAt: 0, updatedAt: 0 }],
      queue_progress: () => queue,
      pause_queue: () => (queue = { ...queue, paused: true, timeLeftMs: null }),
      resume_queue: () => (queue = { ...queue, paused: false }),
    });
    await mount(<App />);
    await until(() => $(tid("queue-status")));
    expect($(tid("queue-text")).textContent).toBe("4 of 10 files · 40 passages · about 3 min left");
    expect($(tid("queue-progress")).getAttribute("aria-valuenow")).toBe("40");
    await click($(tid("queue-pause")));
    expect(shell.called("pause_queue")).toHaveLength(1);
    await until(() => $(tid("queue-status")).dataset.paused === "true");
    expect($(tid("queue-text")).textContent).toContain("paused");
    await click($(tid("queue-resume")));
    expect(shell.called("resume_queue")).toHaveLength(1);
    await until(() => $(tid("queue-status")).dataset.paused === "false");
  });

  it("notifies the end of a long ingest only when the window is not in front, and says what failed", () => {
    const tracker = new QueueTracker();
    tracker.setFocused(false);
    expect(tracker.update({ ...busy, startedAt: 0 }, 10_000)).toBeNull();
    tracker.observe({ type: "jobFailed", job: 1, source: 1, code: "malformed", message: "x", retryAt: null }, 20_000);
    const notice = tracker.update(idleQueue, 60_000);
    expect(notice).toEqual({ title: "Doppel finished learning, with failures", body: "10 files read; 1 could not be learnt (see Knowledge for why)." });

    // A short one, or one that ends in front of the person, says nothing.
    tracker.update({ ...busy, startedAt: 100_000 }, 100_000);
    expect(tracker.update(idleQueue, 110_000)).toBeNull();
    tracker.setFocused(true);
    tracker.update({ ...busy, startedAt: 0 }, 200_000);
    expect(tracker.update(idleQueue, 300_000)).toBeNull();

    // A run the queue's reads never saw waiting is known by its events.
    tracker.setFocused(false);
    tracker.observe({ type: "jobQueued", job: 5, source: 5 }, 400_000);
    tracker.observe({ type: "jobDone", job: 5, source: 5, outcome: "ingested", chunks: 1 }, 460_000);
    expect(tracker.update(idleQueue, 460_000)).toEqual({ title: "Doppel finished learning", body: "1 file read and learnt." });
  });

  it("sends the notification through the shell when the run ends in the background", async () => {
    let queue: Queue = { ...busy, startedAt: 0 };
    const shell = fakeShell({ ...baseHandlers(), queue_progress: () => queue, notify: () => null });
    await mount(<App />);
    await until(() => shell.called("queue_progress").length === 1);
    window.dispatchEvent(new Event("blur"));
    queue = idleQueue;
    await shellEvent({ type: "jobDone", job: 9, source: 1, outcome: "ingested", chunks: 3 });
    await until(() => shell.called("notify").length === 1, 2000);
    expect(shell.called("notify")[0]!.args).toEqual({ title: "Doppel finished learning", body: "10 files read and learnt." });
  });
});

describe("chat layout", () => {
  it("hides and shows the conversations list, and remembers it", async () => {
    fakeShell(baseHandlers());
    await mount(<App />);
    await click($(tid("nav-chat")));
    const toggle = $(tid("toggle-conversations"));
    expect(toggle.getAttribute("aria-expanded")).toBe("true");
    await click(toggle);
    expect(($("#conversations") as HTMLElement).hidden).toBe(true);
    expect($(tid("toggle-conversations")).getAttribute("aria-expanded")).toBe("false");
    expect(localStorage.getItem("doppel.conversationsHidden")).toBe("1");
    expect($(tid("new-chat-head"))).toBeTruthy();
    await click($(tid("toggle-conversations")));
    expect(($("#conversations") as HTMLElement).hidden).toBe(false);
  });
});
