import { afterEach, describe, expect, it, vi } from "vitest";
import type { IngestReport, Source } from "../src/api";
import { debounced, PAGE_SIZE, percent, progressLine, SourceStore, type Counts, type PageResult } from "../src/state/sources";

function src(id: number, patch: Partial<Source> = {}): Source {
  return {
    id, twinId: 1, kind: "file", origin: `/docs/${id}.md`, title: `${id}.md`, mediaType: null, byteSize: 10,
    state: "ready", error: null, chunkCount: 3, createdAt: 0, updatedAt: id, ...patch,
  };
}

function counts(rows: Source[]): Counts {
  const c: Counts = { queued: 0, processing: 0, ready: 0, failed: 0 };
  for (const r of rows) c[r.state]++;
  return c;
}

/** What the shell's `source_page` answers for `rows` (the twin's sources). */
function page(rows: Source[], index: number): PageResult {
  const newest = [...rows].sort((a, b) => b.id - a.id);
  return {
    total: rows.length,
    counts: counts(rows),
    sources: newest.slice(index * PAGE_SIZE, (index + 1) * PAGE_SIZE),
    cursor: Math.max(0, ...rows.map((r) => r.updatedAt)),
  };
}

/** A store that read the pages the list asked for (as the window does after each render). */
function loaded(rows: Source[], show = 20): SourceStore {
  const s = new SourceStore();
  s.reset();
  read(s, rows, show);
  return s;
}

/** Renders `show` rows from the top and reads the pages they asked for. */
function read(s: SourceStore, rows: Source[], show = 20) {
  for (let i = 0; i < Math.max(1, Math.min(show, s.total || show)); i++) s.at(i);
  const marks = s.marks;
  for (const p of s.takeWanted()) s.loadPage(p, s.generation, marks, page(rows, p));
}

function shown(s: SourceStore, n = s.total): (Source | undefined)[] {
  return Array.from({ length: Math.min(n, s.total) }, (_, i) => s.at(i));
}

const dropped: IngestReport = {
  queued: [
    { origin: "/home/a/notes/plan.md", sourceId: 7, jobId: 12, status: "queued" },
    { origin: "/home/a/talk.vtt", sourceId: 8, jobId: 13, status: "queued" },
  ],
  skipped: [],
};

describe("sources state", () => {
  it("holds only the pages in view of 50,000 sources, newest first, with the twin's counts", () => {
    const rows = Array.from({ length: 50_000 }, (_, i) => src(i + 1, { state: i % 10 === 0 ? "failed" : "ready" }));
    const s = loaded(rows);
    expect(s.total).toBe(50_000);
    expect(s.at(0)!.id).toBe(50_000);
    expect(s.counts).toEqual({ queued: 0, processing: 0, ready: 45_000, failed: 5_000 });
    // The end of the list is read when it is scrolled to, and far pages are let go.
    expect(s.at(49_999)).toBeUndefined();
    for (let p = 0; p < 30; p++) {
      s.at(p * PAGE_SIZE);
      const marks = s.marks;
      for (const w of s.takeWanted()) s.loadPage(w, s.generation, marks, page(rows, w));
    }
    s.at(49_999);
    for (const w of s.takeWanted()) s.loadPage(w, s.generation, s.marks, page(rows, w));
    expect(s.at(49_999)!.id).toBe(1);
    expect(s.at(0)).toBeUndefined(); // the first page was let go to keep the page small
  });

  it("shows files just queued on top once the top is read again, each in its state", () => {
    let rows = [src(1), src(2)];
    const s = loaded(rows);
    rows = [...rows, src(7, { state: "queued", title: "plan.md" }), src(8, { state: "queued", title: "talk.vtt" })];
    s.ingested(dropped);
    // Until the top is read again, the rows held before stay on screen.
    expect(s.at(0)!.id).toBe(2);
    read(s, rows);
    expect(shown(s).map((r) => [r!.id, r!.state])).toEqual([[8, "queued"], [7, "queued"], [2, "ready"], [1, "ready"]]);
    expect([...s.activeJob]).toEqual([[7, 12], [8, 13]]);
    expect(s.stale).toBe(true);
  });

  it("follows a job from queued to processing with progress, reading then embedding", () => {
    const s = loaded([src(7, { state: "queued" })]);
    s.events([{ type: "jobStarted", job: 12, source: 7, attempt: 1 }]);
    expect(s.get(7)!.state).toBe("processing");
    expect(s.counts).toMatchObject({ queued: 0, processing: 1 });
    s.events([{ type: "jobProgress", job: 12, done: 40, total: 96 }]);
    expect(s.progress.get(7)).toEqual({ phase: "reading", done: 40, total: 96 });
    expect(percent(s.progress.get(7))).toBe(42);
    s.events([{ type: "jobEmbedding", job: 12, done: 96, total: 96 }]);
    expect(s.progress.get(7)!.phase).toBe("embedding");
    s.events([{ type: "sourceChanged", source: 7, state: "ready" }]);
    expect(s.get(7)!.state).toBe("ready");
    expect(s.progress.get(7)).toBeUndefined();
    expect(s.activeJob.get(7)).toBeUndefined();
    expect(s.counts).toEqual({ queued: 0, processing: 0, ready: 1, failed: 0 });
  });

  it("says which page of a scan text recognition reads, then goes on to the passages", () => {
    const s = loaded([src(7, { state: "queued", title: "contract-scan.pdf", origin: "/docs/contract-scan.pdf" })]);
    s.events([{ type: "jobStarted", job: 12, source: 7, attempt: 1 }]);
    s.events([{ type: "jobPages", job: 12, done: 0, total: 12 }]);
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Reading text: page 1 of 12");
    s.events([{ type: "jobPages", job: 12, done: 4, total: 12 }]);
    expect(s.progress.get(7)).toEqual({ phase: "recognising", done: 4, total: 12 });
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Reading text: page 5 of 12");
    expect(percent(s.progress.get(7))).toBe(33);
    s.events([{ type: "jobPages", job: 12, done: 12, total: 12 }]);
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Reading text: page 12 of 12");
    // The phases that follow are unchanged.
    s.events([{ type: "jobProgress", job: 12, done: 3, total: 9 }]);
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Reading: 3 of 9 passages");
    s.events([{ type: "jobEmbedding", job: 12, done: 9, total: 9 }]);
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Learning meanings: 9 of 9 passages");
  });

  it("shows a recording as transcribed, and an image as recognised, without a page count", () => {
    const s = loaded([
      src(7, { state: "queued", title: "talk.mp3", origin: "/docs/talk.mp3", mediaType: null }),
      src(8, { state: "queued", title: "board.jpg", origin: "/docs/board.jpg", mediaType: null }),
    ]);
    s.events([
      { type: "jobStarted", job: 12, source: 7, attempt: 1 },
      { type: "jobPages", job: 12, done: 0, total: 1 },
      { type: "jobStarted", job: 13, source: 8, attempt: 1 },
      { type: "jobPages", job: 13, done: 0, total: 1 },
    ]);
    expect(s.get(7)!.state).toBe("processing");
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Transcribing the recording…");
    expect(progressLine(s.get(8)!, s.progress.get(8))).toBe("Recognising text…");
    // One long step: the bar sweeps rather than sit at 0 %.
    expect(percent(s.progress.get(7))).toBeNull();
    s.events([{ type: "jobPages", job: 12, done: 1, total: 1 }]);
    expect(progressLine(s.get(7)!, s.progress.get(7))).toBe("Reading the transcript…");
    expect(percent(s.progress.get(7))).toBe(100);
    // A video known by its media type is a recording too.
    expect(progressLine({ title: "clip", origin: null, mediaType: "video/mp4" }, { phase: "recognising", done: 0, total: 1 })).toBe(
      "Transcribing the recording…",
    );
  });

  it("marks a failure with its reason, or keeps it queued when it will be retried", () => {
    const s = loaded([src(7, { state: "queued", chunkCount: 0 }), src(8, { state: "queued", chunkCount: 0 })]);
    s.events([{ type: "jobFailed", job: 12, source: 7, code: "io", message: "disk busy", retryAt: 99_000 }]);
    expect(s.get(7)).toMatchObject({ state: "queued", error: "disk busy" });
    expect(s.retryAt.get(7)).toBe(99_000);
    s.events([
      { type: "jobStarted", job: 13, source: 8, attempt: 1 },
      { type: "jobFailed", job: 13, source: 8, code: "malformed", message: "file is malformed: bad cue", retryAt: null },
    ]);
    expect(s.get(8)).toMatchObject({ state: "failed", error: "file is malformed: bad cue" });
    expect(s.progress.get(8)).toBeUndefined();
    expect(s.counts.failed).toBe(1);
  });

  it("keeps a ready source ready when its update fails", () => {
    const s = loaded([src(3)]);
    s.events([{ type: "jobFailed", job: 1, source: 3, code: "malformed", message: "update failed: bad", retryAt: null }]);
    expect(s.get(3)).toMatchObject({ state: "ready", error: "update failed: bad" });
  });

  it("takes a deleted source off the list at once, and reads the list again", () => {
    const s = loaded([src(7), src(8)]);
    s.events([{ type: "sourceDeleted", source: 7 }]);
    expect(shown(s, 2).filter(Boolean).map((r) => r!.id)).toEqual([8]);
    expect(s.stale).toBe(true);
    s.applyChanges([], 10, { queued: 0, processing: 0, ready: 1, failed: 0 }, s.marks);
    // One source less than before: the pages in view are read again.
    expect(s.takeWanted()).toEqual([]);
    s.at(0);
    expect(s.takeWanted()).toEqual([0]);
  });

  it("lists sources added from elsewhere (the CLI, a watched folder) once their changes are read", () => {
    const s = loaded([]);
    expect(s.total).toBe(0);
    s.events([{ type: "jobQueued", job: 1, source: 1 }]);
    expect(s.stale).toBe(true);
    s.applyChanges([src(1, { state: "queued" })], 1, counts([src(1, { state: "queued" })]), s.marks);
    expect(s.total).toBe(1);
    expect(s.at(0)).toBeUndefined();
    expect(s.takeWanted()).toEqual([0]);
  });

  it("reads the pages in view again when too many sources changed to be listed", () => {
    const rows = [src(1), src(2), src(3)];
    const s = loaded(rows);
    s.takeWanted();
    const shown = s.at(0)!.title;
    // The same number of sources, thousands changed: the answer lists none and says so.
    s.applyChanges([], 900, counts(rows), s.marks, true);
    expect(s.cursor).toBe(900);
    expect(s.stale).toBe(false);
    // The rows stay shown from the former reading until their page is read again.
    expect(s.at(0)!.title).toBe(shown);
    expect(s.takeWanted()).toEqual([0]);
  });

  it("patches the rows it holds with what changed, and asks for changes only from its cursor", () => {
    const s = loaded([src(1, { updatedAt: 100 }), src(2, { updatedAt: 200 })]);
    expect(s.cursor).toBe(200);
    s.events([{ type: "sourceChanged", source: 2, state: "ready" }]);
    const marks = s.marks;
    s.applyChanges([src(2, { title: "Two", updatedAt: 300 })], 300, counts([src(1), src(2)]), marks);
    expect(s.get(2)!.title).toBe("Two");
    expect(s.cursor).toBe(300);
    expect(s.stale).toBe(false);
  });

  it("shows background re-embedding over its whole length and clears it when done", () => {
    const s = new SourceStore();
    s.events([{ type: "backfill", embedded: 10, remaining: 90 }]);
    expect(s.background).toMatchObject({ done: 10, total: 100 });
    s.events([{ type: "backfill", embedded: 40, remaining: 50 }]);
    expect(s.background).toMatchObject({ done: 50, total: 100 });
    s.events([{ type: "backfillStalled", reason: "server down" }]);
    expect(s.background).toMatchObject({ error: true });
    expect(s.background!.label).toContain("server down");
    s.events([{ type: "backfill", embedded: 50, remaining: 0 }]);
    expect(s.background).toBeNull();
  });
});

describe("reads racing events", () => {
  it("keeps the state an event gave a row over an older one a read brings, and reads again", () => {
    const s = loaded([src(9, { state: "queued" })]);
    const reading = s.marks;
    s.events([{ type: "sourceChanged", source: 9, state: "ready" }]);
    // A read that began before the event brings the row as it was then.
    s.applyChanges([src(9, { state: "processing", chunkCount: 0 })], 11, counts([src(9)]), reading);
    expect(s.get(9)!.state).toBe("ready"); // an older answer does not take a ready row back
    expect(s.stale).toBe(true); // so it is read again, and shows its title and passages
    s.applyChanges([src(9, { title: "Nine" })], 12, counts([src(9)]), s.marks);
    expect(s.stale).toBe(false);
    expect([s.get(9)!.title, s.get(9)!.state]).toEqual(["Nine", "ready"]);
  });

  it("reads every source anew after a restore, with the list's filter kept", () => {
    const before = Array.from({ length: 30 }, (_, i) => src(i + 1));
    const s = loaded(before);
    s.setQuery({ state: "failed" });
    const restored = Array.from({ length: 5 }, (_, i) => src(100 + i, { state: "failed", updatedAt: 1 }));
    s.reload();
    expect(s.query).toEqual({ state: "failed" });
    expect(s.loaded).toBe(false);
    read(s, restored);
    expect(shown(s).map((r) => r?.id)).toEqual([104, 103, 102, 101, 100]);
    expect(s.counts.failed).toBe(5);
  });

  it("drops a page read for rows that changed place meanwhile", () => {
    const s = loaded([src(1)]);
    const generation = s.generation;
    s.invalidate();
    s.loadPage(0, generation, s.marks, page([src(1, { title: "old" })], 0));
    expect(s.get(1)).toBeUndefined();
  });
});

describe("reload coalescing", () => {
  afterEach(() => vi.useRealTimers());

  it("turns a burst of requests into one reload, and one more for requests during it", async () => {
    vi.useFakeTimers();
    let release: () => void = () => undefined;
    const fn = vi.fn(() => new Promise<void>((r) => (release = r)));
    const d = debounced(fn, 250);
    for (let i = 0; i < 20; i++) d.schedule();
    await vi.advanceTimersByTimeAsync(250);
    expect(fn).toHaveBeenCalledTimes(1);
    d.schedule();
    await vi.advanceTimersByTimeAsync(250);
    expect(fn).toHaveBeenCalledTimes(1); // never two at once
    release();
    await vi.advanceTimersByTimeAsync(250);
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it("reloads at once after a quiet spell, and coalesces what follows", async () => {
    vi.useFakeTimers();
    const fn = vi.fn(() => Promise.resolve());
    const d = debounced(fn, 250);
    // An event from elsewhere (a watched folder, the CLI): the list reloads without waiting.
    d.schedule();
    d.schedule();
    await vi.advanceTimersByTimeAsync(0);
    expect(fn).toHaveBeenCalledTimes(1);
    // The events that follow it within the wait cause one more reload, at its end.
    d.schedule();
    d.schedule();
    await vi.advanceTimersByTimeAsync(100);
    expect(fn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(150);
    expect(fn).toHaveBeenCalledTimes(2);
    // After a quiet spell, at once again.
    await vi.advanceTimersByTimeAsync(1000);
    d.schedule();
    await vi.advanceTimersByTimeAsync(0);
    expect(fn).toHaveBeenCalledTimes(3);
  });
});
