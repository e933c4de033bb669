import { afterEach, describe, expect, it, vi } from "vitest";
import type { DoppelEvent, IngestReport, Source } from "../src/api";
import { debounced, percent, SourceStore } from "../src/state/sources";

function src(id: number, patch: Partial<Source> = {}): Source {
  return {
    id, twinId: 1, kind: "file", origin: `/docs/${id}.md`, title: `${id}.md`, mediaType: null, byteSize: 10,
    state: "ready", error: null, chunkCount: 3, createdAt: 0, updatedAt: 0, ...patch,
  };
}

const dropped: IngestReport = {
  queued: [
    { origin: "/home/a/notes/plan.md", sourceId: 7, jobId: 12, status: "queued" },
    { origin: "C:\\Users\\a\\talk.vtt", sourceId: 8, jobId: 13, status: "queued" },
  ],
  skipped: [],
};

/** The rows as the list shows them, newest first. */
function rows(s: SourceStore): Source[] {
  return Array.from({ length: s.shown }, (_, i) => s.at(i)!);
}

function store(...events: DoppelEvent[]): SourceStore {
  const s = new SourceStore();
  s.ingested(dropped, 1, 5);
  if (events.length) s.events(events);
  return s;
}

describe("sources state", () => {
  it("shows every queued file at once, named after its file, newest first", () => {
    const s = store();
    expect(rows(s).map((r) => [r.id, r.title, r.state])).toEqual([
      [8, "talk.vtt", "queued"],
      [7, "plan.md", "queued"],
    ]);
    expect([...s.activeJob]).toEqual([[7, 12], [8, 13]]);
    expect(s.counts.queued).toBe(2);
    expect(s.stale).toBe(true);
  });

  it("follows a job from queued to processing with progress, reading then embedding", () => {
    const s = store({ type: "jobStarted", job: 12, source: 7, attempt: 1 });
    expect(s.get(7)!.state).toBe("processing");
    s.events([{ type: "jobProgress", job: 12, done: 40, total: 96 }]);
    expect(s.progress.get(7)).toEqual({ phase: "reading", done: 40, total: 96 });
    expect(percent(s.progress.get(7))).toBe(42);
    s.events([{ type: "jobEmbedding", job: 12, done: 96, total: 96 }]);
    expect(s.progress.get(7)!.phase).toBe("embedding");
    expect(percent(s.progress.get(7))).toBe(100);
    s.events([{ type: "sourceChanged", source: 7, state: "ready" }]);
    expect(s.get(7)!.state).toBe("ready");
    expect(s.progress.get(7)).toBeUndefined();
    expect(s.activeJob.get(7)).toBeUndefined();
    expect(s.counts).toEqual({ queued: 1, processing: 0, ready: 1, failed: 0 });
  });

  it("marks a failure with its reason, or keeps it queued when it will be retried", () => {
    const retried = store({ type: "jobFailed", job: 12, source: 7, code: "io", message: "disk busy", retryAt: 99_000 });
    expect(retried.get(7)).toMatchObject({ state: "queued", error: "disk busy" });
    expect(retried.retryAt.get(7)).toBe(99_000);

    const failed = store(
      { type: "jobStarted", job: 13, source: 8, attempt: 1 },
      { type: "jobFailed", job: 13, source: 8, code: "malformed", message: "file is malformed: bad cue", retryAt: null },
    );
    expect(failed.get(8)).toMatchObject({ state: "failed", error: "file is malformed: bad cue" });
    expect(failed.progress.get(8)).toBeUndefined();
    expect(failed.activeJob.get(8)).toBeUndefined();
    expect(failed.counts.failed).toBe(1);
  });

  it("keeps a ready source ready when its update fails", () => {
    const s = new SourceStore();
    s.applyChanges([src(3)], 10, s.marks);
    s.events([{ type: "jobFailed", job: 1, source: 3, code: "malformed", message: "update failed: bad", retryAt: null }]);
    expect(s.get(3)).toMatchObject({ state: "ready", error: "update failed: bad" });
  });

  it("removes a deleted source with its progress", () => {
    const s = store({ type: "jobProgress", job: 12, done: 1, total: 2 }, { type: "sourceDeleted", source: 7 });
    expect(rows(s).map((r) => r.id)).toEqual([8]);
    expect(s.progress.get(7)).toBeUndefined();
    expect(s.counts.queued).toBe(1);
  });

  it("asks for a reload when an event names a source it does not know", () => {
    const s = new SourceStore();
    s.applyChanges([src(1)], 10, s.marks);
    expect(s.stale).toBe(false);
    s.events([{ type: "sourceChanged", source: 42, state: "queued" }]);
    expect(s.stale).toBe(true);
  });

  it("keeps live progress across a reload while the source is still processing", () => {
    const s = new SourceStore();
    s.applyChanges([src(1, { state: "processing" })], 10, s.marks, [{ id: 4, sourceId: 1, state: "running" }]);
    s.events([{ type: "jobProgress", job: 4, done: 2, total: 8 }]);
    s.applyChanges([src(1, { state: "processing" }), src(2)], 11, s.marks);
    expect(s.progress.get(1)).toEqual({ phase: "reading", done: 2, total: 8 });
    expect(s.activeJob.get(1)).toBe(4);
    s.applyChanges([src(1)], 12, s.marks);
    expect(s.progress.get(1)).toBeUndefined();
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

  it("filters by name, path or state, and keeps the filtered rows up to date row by row", () => {
    const s = new SourceStore();
    s.applyChanges([src(1, { title: "Orchard" }), src(2, { title: "Chutney" }), src(3, { title: "Orchard notes", state: "queued" })], 10, s.marks);
    s.setFilter((r) => r.title.toLowerCase().includes("orchard"));
    expect(rows(s).map((r) => r.id)).toEqual([3, 1]);
    expect(s.indexOf(1)).toBe(1);
    s.applyChanges([src(2, { title: "Orchard chutney" })], 11, s.marks);
    expect(rows(s).map((r) => r.id)).toEqual([3, 2, 1]);
    s.events([{ type: "sourceDeleted", source: 3 }]);
    expect(rows(s).map((r) => r.id)).toEqual([2, 1]);
    s.setFilter(null);
    expect(s.shown).toBe(2);
  });

  it("takes 50,000 sources, and an event about one of them touches that one", () => {
    const s = new SourceStore();
    const all = Array.from({ length: 50_000 }, (_, i) => src(i + 1));
    s.applyChanges(all, 10, s.marks);
    expect(s.total).toBe(50_000);
    expect(s.at(0)!.id).toBe(50_000);
    const before = s.at(49_999);
    s.events([{ type: "sourceChanged", source: 25_000, state: "queued" }]);
    expect(s.get(25_000)!.state).toBe("queued");
    // Other rows are the same objects: nothing else was copied or rendered again.
    expect(s.at(49_999)).toBe(before);
    expect(s.counts).toEqual({ queued: 1, processing: 0, ready: 49_999, failed: 0 });
  });
});

describe("reloads racing events", () => {
  it("stays stale when an event arrives while a reload reads the rows", () => {
    // A file added from elsewhere: the first event starts a reload, which reads the source
    // while it is still queued; it becomes ready before that reload's answer arrives.
    const s = new SourceStore();
    s.events([{ type: "jobQueued", job: 3, source: 9 }]);
    expect(s.stale).toBe(true);
    const marks = s.marks;
    s.applyChanges([src(9, { state: "queued", title: "9.md", chunkCount: 0 })], 10, marks);
    s.events([{ type: "sourceChanged", source: 9, state: "ready" }]);
    const reading = s.marks;
    s.events([{ type: "sourceChanged", source: 9, state: "ready" }]);
    s.applyChanges([src(9, { state: "processing", chunkCount: 0 })], 11, reading);
    expect(s.get(9)!.state).toBe("ready"); // an older answer does not take a ready row back
    expect(s.stale).toBe(true); // so it is read again, and shows its title and passages
    s.applyChanges([src(9, { title: "Nine" })], 12, s.marks);
    expect(s.stale).toBe(false);
    expect(rows(s).map((r) => [r.title, r.state, r.chunkCount])).toEqual([["Nine", "ready", 3]]);
    expect(s.cursor).toBe(12);
  });

  it("is fresh after a reload that no event overtook", () => {
    const s = store({ type: "jobProgress", job: 12, done: 1, total: 4 });
    s.applyChanges([src(7), src(8)], 20, s.marks);
    expect(s.stale).toBe(false);
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
