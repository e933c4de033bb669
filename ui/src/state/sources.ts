// The sources list as the person sees it, for any number of sources: the shell's rows, updated at
// once by background events, and reconciled by reloading only the rows that changed since the
// last reload (`sources_changed`). Nothing here costs time in proportion to the number of
// sources for an event about one: rows live in a map, the order is an array of ids kept sorted,
// counts by state and the filtered view are updated row by row.

import type { DoppelEvent, IngestReport, Source, SourceState } from "../api";

export type Progress = { phase: "reading" | "embedding"; done: number; total: number };

export type Background = { label: string; done?: number; total?: number; error?: boolean } | null;

export type Counts = Record<SourceState, number>;

function basename(path: string): string {
  const trimmed = path.replace(/[\\/]+$/, "");
  const i = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  return i >= 0 ? trimmed.slice(i + 1) || trimmed : trimmed;
}

/** The index of `id` in an ascending array, or where it would go (as a negative `-(at + 1)`). */
function search(ids: number[], id: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = ids[mid]!;
    if (v === id) return mid;
    if (v < id) lo = mid + 1;
    else hi = mid;
  }
  return -(lo + 1);
}

function insertId(ids: number[], id: number) {
  const at = search(ids, id);
  if (at >= 0) return;
  const pos = -at - 1;
  // Ids grow: a new source nearly always goes at the end.
  if (pos === ids.length) ids.push(id);
  else ids.splice(pos, 0, id);
}

function removeId(ids: number[], id: number) {
  const at = search(ids, id);
  if (at >= 0) ids.splice(at, 1);
}

/** Whether a row matches the filter box (by title, path or state label). */
export type RowFilter = (s: Source) => boolean;

/**
 * The sources of the current twin. Mutated in place; `version` grows with every change, and
 * subscribers are told (once per batch of changes).
 */
export class SourceStore {
  private byId = new Map<number, Source>();
  /** Source ids, ascending (the list shows them newest first). */
  private ids: number[] = [];
  private filter: RowFilter | null = null;
  /** Ids matching `filter`, ascending; null without a filter. */
  private matching: number[] | null = null;

  counts: Counts = { queued: 0, processing: 0, ready: 0, failed: 0 };
  /** Live progress of sources being processed. */
  progress = new Map<number, Progress>();
  /** Which source each known job fills. */
  jobSource = new Map<number, number>();
  /** The active (queued or running) job of a source, for "Cancel". */
  activeJob = new Map<number, number>();
  /** When a failed job will be tried again, by source. */
  retryAt = new Map<number, number>();
  /** Background work that is not one source's: re-embedding, index rebuilds. */
  background: Background = null;
  /** Whether the first full load arrived. */
  loaded = false;
  /** Where the next `sources_changed` starts. */
  cursor = 0;
  /** Set when an event told of a change the events alone do not carry (titles, counts, new rows). */
  stale = false;
  /**
   * Counts the events that changed a row's state or made the store stale: a reload clears
   * `stale` only if none arrived while it read, and a row whose state such an event set keeps
   * it over an older one the reload brings (see `applyChanges`).
   */
  marks = 0;
  private markedAt = new Map<number, number>();
  version = 0;
  private listeners = new Set<() => void>();

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed() {
    this.version++;
    for (const l of this.listeners) l();
  }

  get total(): number {
    return this.ids.length;
  }

  /** How many rows the list shows (all of them, or those matching the filter). */
  get shown(): number {
    return (this.matching ?? this.ids).length;
  }

  /** The row shown at `index`, newest first. */
  at(index: number): Source | undefined {
    const ids = this.matching ?? this.ids;
    const id = ids[ids.length - 1 - index];
    return id === undefined ? undefined : this.byId.get(id);
  }

  /** Where the row of `id` is shown, or -1. */
  indexOf(id: number): number {
    const ids = this.matching ?? this.ids;
    const at = search(ids, id);
    return at < 0 ? -1 : ids.length - 1 - at;
  }

  get(id: number): Source | undefined {
    return this.byId.get(id);
  }

  /** Shows only rows for which `filter` holds (computed once here, then row by row). */
  setFilter(filter: RowFilter | null) {
    this.filter = filter;
    this.matching = filter ? this.ids.filter((id) => filter(this.byId.get(id)!)) : null;
    this.changed();
  }

  /** Everything anew (the first load, a twin switch). */
  reset() {
    this.byId.clear();
    this.ids = [];
    this.matching = this.filter ? [] : null;
    this.counts = { queued: 0, processing: 0, ready: 0, failed: 0 };
    this.progress.clear();
    this.jobSource.clear();
    this.activeJob.clear();
    this.retryAt.clear();
    this.markedAt.clear();
    this.background = null;
    this.loaded = false;
    this.cursor = 0;
    this.stale = false;
    this.changed();
  }

  /** Puts a row in (or replaces it), keeping counts and the filtered view in step. */
  private put(row: Source) {
    const old = this.byId.get(row.id);
    if (old) this.counts[old.state]--;
    else insertId(this.ids, row.id);
    this.counts[row.state]++;
    this.byId.set(row.id, row);
    if (this.matching && this.filter) {
      if (this.filter(row)) insertId(this.matching, row.id);
      else removeId(this.matching, row.id);
    }
    // Progress only means something while a source is processed.
    if (row.state !== "processing") this.progress.delete(row.id);
  }

  private drop(id: number) {
    const old = this.byId.get(id);
    if (!old) return;
    this.counts[old.state]--;
    this.byId.delete(id);
    removeId(this.ids, id);
    if (this.matching) removeId(this.matching, id);
    this.progress.delete(id);
    this.activeJob.delete(id);
    this.retryAt.delete(id);
    this.markedAt.delete(id);
  }

  private patch(id: number, patch: Partial<Source>): boolean {
    const old = this.byId.get(id);
    if (!old) return false;
    this.put({ ...old, ...patch });
    return true;
  }

  /** Marks a row's state as set by an event (see `marks`). */
  private mark(id: number) {
    this.markedAt.set(id, ++this.marks);
  }

  private markStale() {
    this.stale = true;
    this.marks++;
  }

  /**
   * Rows read by `sources_changed`; `marks` is `this.marks` when that read began. A row whose
   * state an event set since then keeps that state (a ready row must not fall back to
   * "processing"), and the store stays stale so that it is read once more.
   */
  applyChanges(sources: Source[], cursor: number, marks: number, jobs?: { id: number; sourceId: number | null; state: string }[]) {
    for (const row of sources) {
      const markedAt = this.markedAt.get(row.id);
      const known = this.byId.get(row.id);
      if (known && markedAt !== undefined && markedAt > marks) {
        this.put({ ...row, state: known.state, error: known.error });
      } else {
        this.put(row);
      }
    }
    if (jobs) {
      for (const j of jobs) {
        if (j.sourceId == null) continue;
        this.jobSource.set(j.id, j.sourceId);
        if (j.state === "queued" || j.state === "running") this.activeJob.set(j.sourceId, j.id);
      }
    }
    this.cursor = Math.max(this.cursor, cursor);
    this.loaded = true;
    // Marks older than this read are settled; anything newer is read once more.
    for (const [id, at] of this.markedAt) if (at <= marks) this.markedAt.delete(id);
    this.stale = this.marks !== marks;
    this.changed();
  }

  /** Files just queued: each appears at once, named after its file, until it is read. */
  ingested(report: IngestReport, twin: number, now: number) {
    for (const q of report.queued) {
      this.jobSource.set(q.jobId, q.sourceId);
      this.activeJob.set(q.sourceId, q.jobId);
      if (this.byId.has(q.sourceId)) {
        this.patch(q.sourceId, { state: "queued", error: null });
      } else {
        this.put({
          id: q.sourceId,
          twinId: twin,
          kind: "file",
          origin: q.origin,
          title: basename(q.origin),
          mediaType: null,
          byteSize: null,
          state: "queued",
          error: null,
          chunkCount: 0,
          createdAt: now,
          updatedAt: now,
        });
      }
      this.mark(q.sourceId);
    }
    this.markStale();
    this.changed();
  }

  /** A source forgotten through the window. */
  removed(id: number) {
    this.drop(id);
    this.changed();
  }

  /** Events that arrived together: one change for subscribers. */
  events(events: DoppelEvent[]) {
    for (const ev of events) this.apply(ev);
    this.changed();
  }

  private setState(id: number, state: SourceState, extra: Partial<Source> = {}) {
    if (!this.patch(id, { state, ...extra })) {
      this.markStale();
      return;
    }
    this.mark(id);
  }

  private apply(ev: DoppelEvent) {
    switch (ev.type) {
      case "jobQueued":
        this.jobSource.set(ev.job, ev.source);
        this.activeJob.set(ev.source, ev.job);
        this.setState(ev.source, "queued");
        return;
      case "jobStarted":
        if (ev.source == null) return;
        this.jobSource.set(ev.job, ev.source);
        this.activeJob.set(ev.source, ev.job);
        this.retryAt.delete(ev.source);
        this.setState(ev.source, "processing");
        this.progress.set(ev.source, { phase: "reading", done: 0, total: 0 });
        return;
      case "jobProgress":
      case "jobEmbedding": {
        const source = this.jobSource.get(ev.job);
        if (source === undefined) {
          this.markStale();
          return;
        }
        const row = this.byId.get(source);
        if (row && row.state !== "processing") this.setState(source, "processing");
        this.progress.set(source, { phase: ev.type === "jobProgress" ? "reading" : "embedding", done: ev.done, total: ev.total });
        return;
      }
      case "jobDone": {
        const source = ev.source ?? this.jobSource.get(ev.job);
        if (source != null) {
          this.progress.delete(source);
          this.activeJob.delete(source);
        }
        this.markStale();
        return;
      }
      case "jobFailed": {
        const source = ev.source ?? this.jobSource.get(ev.job);
        if (source == null) return;
        this.progress.delete(source);
        const row = this.byId.get(source);
        if (!row) {
          this.markStale();
          return;
        }
        if (ev.retryAt != null) {
          // It will be tried again: it waits in the queue with the reason shown.
          this.retryAt.set(source, ev.retryAt);
          this.setState(source, "queued", { error: ev.message });
          return;
        }
        this.activeJob.delete(source);
        this.retryAt.delete(source);
        if (row.state === "ready" || row.chunkCount > 0) {
          // A failed update keeps the last good content; the shell tells the exact state.
          this.setState(source, row.state, { error: ev.message });
          this.markStale();
          return;
        }
        this.setState(source, "failed", { error: ev.message });
        return;
      }
      case "jobCancelled": {
        const source = this.jobSource.get(ev.job);
        if (source !== undefined) {
          this.progress.delete(source);
          this.activeJob.delete(source);
        }
        this.markStale();
        return;
      }
      case "sourceChanged":
        if (ev.state === "ready" || ev.state === "failed") this.activeJob.delete(ev.source);
        this.setState(ev.source, ev.state, ev.state === "ready" ? { error: null } : {});
        // A ready source has a new title, passage count and dates: read its row again.
        if (ev.state === "ready" || ev.state === "failed") this.markStale();
        return;
      case "sourceDeleted":
        this.drop(ev.source);
        return;
      case "watchChanged":
        this.markStale();
        return;
      case "indexRebuild":
        this.background =
          ev.done >= ev.total ? null : { label: "Rebuilding the search index", done: ev.done, total: ev.total };
        return;
      case "backfill": {
        // `embedded` counts the passages of this step; the bar shows the whole re-embedding.
        const prev = this.background && !this.background.error ? this.background : null;
        const total = Math.max(prev?.total ?? 0, (prev?.done ?? 0) + ev.embedded + ev.remaining);
        this.background =
          ev.remaining === 0
            ? null
            : {
                label: `Learning passages by meaning: ${ev.remaining.toLocaleString()} to go`,
                done: total - ev.remaining,
                total,
              };
        return;
      }
      case "backfillStalled":
        this.background = { label: `Embedding paused: ${ev.reason}`, error: true };
        return;
    }
  }
}

/** Progress as a whole percentage, or null while the total is not known. */
export function percent(p: Progress | undefined): number | null {
  if (!p || p.total <= 0) return null;
  return Math.max(0, Math.min(100, Math.round((p.done / p.total) * 100)));
}

/**
 * A coalescing reload: a burst of requests causes one call, and never two run at once. The first
 * request after a quiet spell reloads at once (a source added from elsewhere, by the CLI or a
 * watched folder, shows without delay); later ones wait until `waitMs` after the last call began.
 */
export function debounced(fn: () => Promise<void>, waitMs: number) {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let running = false;
  let again = false;
  let lastRun = -Infinity;
  const run = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    lastRun = Date.now();
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  // A request while one is pending joins it (the wait is not restarted, so a steady stream of
  // events still reloads every `waitMs`); a request while one runs causes one more run after it.
  // Requests in the same task join the same call even after a quiet spell.
  const schedule = () => {
    if (timer) return;
    timer = setTimeout(() => void run(), Math.max(0, lastRun + waitMs - Date.now()));
  };
  return {
    schedule,
    /** Runs now (used at start and after a twin switch). */
    now: () => {
      if (timer) clearTimeout(timer);
      return run();
    },
    cancel: () => {
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
