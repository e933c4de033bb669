import { afterEach, describe, expect, it, vi } from "vitest";
import type { Source } from "../src/api";
import { debounced, initialSources, percent, sourcesReducer, type SourcesAction, type SourcesState } from "../src/state/sources";

const run = (actions: SourcesAction[], from: SourcesState = initialSources) => actions.reduce(sourcesReducer, from);

function src(id: number, patch: Partial<Source> = {}): Source {
  return {
    id, twinId: 1, kind: "file", origin: `/docs/${id}.md`, title: `${id}.md`, mediaType: null, byteSize: 10,
    state: "ready", error: null, chunkCount: 3, createdAt: 0, updatedAt: 0, ...patch,
  };
}

const dropped: SourcesAction = {
  type: "ingested",
  twin: 1,
  now: 5,
  report: {
    queued: [
      { origin: "/home/a/notes/plan.md", sourceId: 7, jobId: 12, status: "queued" },
      { origin: "C:\\Users\\a\\talk.vtt", sourceId: 8, jobId: 13, status: "queued" },
    ],
    skipped: [],
  },
};

describe("sources state", () => {
  it("shows every queued file at once, named after its file", () => {
    const s = run([dropped]);
    expect(s.rows.map((r) => [r.id, r.title, r.state])).toEqual([
      [7, "plan.md", "queued"],
      [8, "talk.vtt", "queued"],
    ]);
    expect(s.activeJob).toEqual({ 7: 12, 8: 13 });
    expect(s.stale).toBe(true);
  });

  it("follows a job from queued to processing with progress, reading then embedding", () => {
    let s = run([dropped, { type: "event", event: { type: "jobStarted", job: 12, source: 7, attempt: 1 } }]);
    expect(s.rows.find((r) => r.id === 7)!.state).toBe("processing");
    s = run([{ type: "event", event: { type: "jobProgress", job: 12, done: 40, total: 96 } }], s);
    expect(s.progress[7]).toEqual({ phase: "reading", done: 40, total: 96 });
    expect(percent(s.progress[7])).toBe(42);
    s = run([{ type: "event", event: { type: "jobEmbedding", job: 12, done: 96, total: 96 } }], s);
    expect(s.progress[7]!.phase).toBe("embedding");
    expect(percent(s.progress[7])).toBe(100);
    s = run([{ type: "event", event: { type: "sourceChanged", source: 7, state: "ready" } }], s);
    expect(s.rows.find((r) => r.id === 7)!.state).toBe("ready");
    expect(s.progress[7]).toBeUndefined();
    expect(s.activeJob[7]).toBeUndefined();
  });

  it("marks a failure with its reason, or keeps it queued when it will be retried", () => {
    const retried = run([
      dropped,
      { type: "event", event: { type: "jobFailed", job: 12, source: 7, code: "io", message: "disk busy", retryAt: 99_000 } },
    ]);
    expect(retried.rows[0]).toMatchObject({ id: 7, state: "queued", error: "disk busy" });
    expect(retried.retryAt[7]).toBe(99_000);

    const failed = run([
      dropped,
      { type: "event", event: { type: "jobStarted", job: 13, source: 8, attempt: 1 } },
      { type: "event", event: { type: "jobFailed", job: 13, source: 8, code: "malformed", message: "file is malformed: bad cue", retryAt: null } },
    ]);
    expect(failed.rows.find((r) => r.id === 8)).toMatchObject({ state: "failed", error: "file is malformed: bad cue" });
    expect(failed.progress[8]).toBeUndefined();
    expect(failed.activeJob[8]).toBeUndefined();
  });

  it("keeps a ready source ready when its update fails", () => {
    const s = run([
      { type: "loaded", sources: [src(3)] },
      { type: "event", event: { type: "jobFailed", job: 1, source: 3, code: "malformed", message: "update failed: bad", retryAt: null } },
    ]);
    expect(s.rows[0]).toMatchObject({ state: "ready", error: "update failed: bad" });
  });

  it("removes a deleted source with its progress", () => {
    const s = run([
      dropped,
      { type: "event", event: { type: "jobProgress", job: 12, done: 1, total: 2 } },
      { type: "event", event: { type: "sourceDeleted", source: 7 } },
    ]);
    expect(s.rows.map((r) => r.id)).toEqual([8]);
    expect(s.progress[7]).toBeUndefined();
  });

  it("asks for a reload when an event names a source it does not know", () => {
    const s = run([{ type: "loaded", sources: [src(1)] }, { type: "event", event: { type: "sourceChanged", source: 42, state: "queued" } }]);
    expect(s.stale).toBe(true);
  });

  it("keeps live progress across a reload while the source is still processing", () => {
    const s = run([
      { type: "loaded", sources: [src(1, { state: "processing" })], jobs: [{ id: 4, sourceId: 1, state: "running" } as never] },
      { type: "event", event: { type: "jobProgress", job: 4, done: 2, total: 8 } },
      { type: "loaded", sources: [src(1, { state: "processing" }), src(2)] },
    ]);
    expect(s.progress[1]).toEqual({ phase: "reading", done: 2, total: 8 });
    expect(s.activeJob[1]).toBe(4);
    const after = run([{ type: "loaded", sources: [src(1)] }], s);
    expect(after.progress[1]).toBeUndefined();
  });

  it("shows background re-embedding and clears it when done", () => {
    let s = run([{ type: "event", event: { type: "backfill", embedded: 10, remaining: 90 } }]);
    expect(s.background).toMatchObject({ done: 10, total: 100 });
    s = run([{ type: "event", event: { type: "backfillStalled", reason: "server down" } }], s);
    expect(s.background).toMatchObject({ error: true });
    expect(s.background!.label).toContain("server down");
    s = run([{ type: "event", event: { type: "backfill", embedded: 90, remaining: 0 } }], s);
    expect(s.background).toBeNull();
  });
});

describe("reloads racing events", () => {
  it("stays stale when an event arrives while a reload reads the lists", () => {
    // A file added from elsewhere: the first event starts a reload, which reads the source
    // while it is still queued; it becomes ready before that reload's answer arrives.
    let s = run([{ type: "event", event: { type: "jobQueued", job: 3, source: 9 } }]);
    expect(s.stale).toBe(true);
    const marks = s.marks;
    s = run([{ type: "event", event: { type: "sourceChanged", source: 9, state: "ready" } }], s);
    s = run([{ type: "loaded", sources: [src(9, { state: "queued", title: "9.md", chunkCount: 0 })], marks }], s);
    expect(s.stale).toBe(true); // so it is read again, and shows its title and passages
    s = run([{ type: "event", event: { type: "sourceChanged", source: 9, state: "ready" } }], s);
    s = run([{ type: "loaded", sources: [src(9, { state: "processing", chunkCount: 0 })], marks: s.marks - 1 }], s);
    expect(s.rows[0]!.state).toBe("ready"); // an older answer does not take a ready row back
    s = run([{ type: "loaded", sources: [src(9, { title: "Nine" })], marks: s.marks }], s);
    expect(s.stale).toBe(false);
    expect(s.rows.map((r) => [r.title, r.state, r.chunkCount])).toEqual([["Nine", "ready", 3]]);
  });

  it("is fresh after a reload that no event overtook", () => {
    let s = run([dropped]);
    s = run([{ type: "event", event: { type: "jobProgress", job: 12, done: 1, total: 4 } }], s);
    s = run([{ type: "loaded", sources: [src(7), src(8)], marks: s.marks }], s);
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
