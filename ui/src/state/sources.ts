// The sources list as the person sees it: the shell's rows, updated at once by background events,
// and reconciled by a (debounced) reload whenever an event says more changed than it carries.

import type { DoppelEvent, IngestReport, Job, Source, SourceState } from "../api";

export type Progress = { phase: "reading" | "embedding"; done: number; total: number };

export type SourcesState = {
  /** Rows by id, in the order the shell listed them (new ones first). */
  rows: Source[];
  /** Which source each known job fills. */
  jobSource: Record<number, number>;
  /** The active (queued or running) job of a source, for "Cancel". */
  activeJob: Record<number, number>;
  /** Live progress of sources being processed. */
  progress: Record<number, Progress>;
  /** When a failed job will be tried again, by source. */
  retryAt: Record<number, number>;
  /** Background work that is not one source's: re-embedding, index rebuilds. */
  background: { label: string; done?: number; total?: number; error?: boolean } | null;
  /** Set when an event told of a change the state cannot apply by itself. */
  stale: boolean;
  /**
   * How many times the state was marked stale: a reload clears `stale` only if no event marked
   * it again while the reload ran (its rows may predate that event's change).
   */
  marks: number;
};

export const initialSources: SourcesState = {
  rows: [],
  jobSource: {},
  activeJob: {},
  progress: {},
  retryAt: {},
  background: null,
  stale: false,
  marks: 0,
};

export type SourcesAction =
  /** `marks`: the state's `marks` when the reload began. */
  | { type: "loaded"; sources: Source[]; jobs?: Job[]; marks?: number }
  | { type: "ingested"; report: IngestReport; twin: number; now: number }
  | { type: "event"; event: DoppelEvent }
  /** Events that arrived together (a large folder queues thousands at once): one state, one render. */
  | { type: "events"; events: DoppelEvent[] }
  | { type: "removed"; source: number }
  | { type: "reset" };

function basename(path: string): string {
  const trimmed = path.replace(/[\\/]+$/, "");
  const i = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  return i >= 0 ? trimmed.slice(i + 1) || trimmed : trimmed;
}

function without<T>(rec: Record<number, T>, key: number | null | undefined): Record<number, T> {
  if (key == null || !(key in rec)) return rec;
  const next = { ...rec };
  delete next[key];
  return next;
}

function patchRow(rows: Source[], id: number, patch: Partial<Source>): Source[] {
  return rows.map((r) => (r.id === id ? { ...r, ...patch } : r));
}

function setState(s: SourcesState, id: number, state: SourceState, extra: Partial<Source> = {}): SourcesState {
  if (!s.rows.some((r) => r.id === id)) return { ...s, stale: true };
  return { ...s, rows: patchRow(s.rows, id, { state, ...extra }) };
}

export function sourcesReducer(s: SourcesState, a: SourcesAction): SourcesState {
  const next = reduce(s, a);
  if (a.type !== "loaded" && a.type !== "reset" && next.stale && next !== s) {
    return { ...next, marks: s.marks + 1 };
  }
  return next;
}

function reduce(s: SourcesState, a: SourcesAction): SourcesState {
  switch (a.type) {
    case "reset":
      return { ...initialSources, marks: s.marks };
    case "loaded": {
      const ids = new Set(a.sources.map((r) => r.id));
      const keep = <T>(rec: Record<number, T>) =>
        Object.fromEntries(Object.entries(rec).filter(([k]) => ids.has(Number(k)))) as Record<number, T>;
      let jobSource = s.jobSource;
      let activeJob = keep(s.activeJob);
      if (a.jobs) {
        jobSource = { ...s.jobSource };
        activeJob = {};
        for (const j of a.jobs) {
          if (j.sourceId == null) continue;
          jobSource[j.id] = j.sourceId;
          if (j.state === "queued" || j.state === "running") activeJob[j.sourceId] = j.id;
        }
      }
      // Progress only means something while a source is processed.
      const progress = Object.fromEntries(
        Object.entries(s.progress).filter(([k]) => {
          const row = a.sources.find((r) => r.id === Number(k));
          return row && row.state === "processing";
        }),
      );
      // Overtaken by events: its rows may be older than the states those events set, which are
      // kept (a ready row must not fall back to "processing"); the next reload settles the rest.
      const stale = a.marks !== undefined && a.marks !== s.marks;
      let rows = a.sources;
      if (stale) {
        const known = new Map(s.rows.map((r) => [r.id, r]));
        rows = rows.map((r) => {
          const k = known.get(r.id);
          return k ? { ...r, state: k.state, error: k.error } : r;
        });
      }
      return { ...s, rows, jobSource, activeJob, progress, retryAt: keep(s.retryAt), stale };
    }
    case "ingested": {
      // Every queued file appears at once; the reload that follows fills in the details.
      let rows = s.rows;
      const jobSource = { ...s.jobSource };
      const activeJob = { ...s.activeJob };
      const fresh: Source[] = [];
      for (const q of a.report.queued) {
        jobSource[q.jobId] = q.sourceId;
        activeJob[q.sourceId] = q.jobId;
        if (rows.some((r) => r.id === q.sourceId)) {
          rows = patchRow(rows, q.sourceId, { state: "queued", error: null });
        } else if (!fresh.some((r) => r.id === q.sourceId)) {
          fresh.push({
            id: q.sourceId,
            twinId: a.twin,
            kind: "file",
            origin: q.origin,
            title: basename(q.origin),
            mediaType: null,
            byteSize: null,
            state: "queued",
            error: null,
            chunkCount: 0,
            createdAt: a.now,
            updatedAt: a.now,
          });
        }
      }
      return { ...s, rows: [...fresh, ...rows], jobSource, activeJob, stale: true };
    }
    case "removed":
      return {
        ...s,
        rows: s.rows.filter((r) => r.id !== a.source),
        progress: without(s.progress, a.source),
        activeJob: without(s.activeJob, a.source),
      };
    case "event":
      return applyEvent(s, a.event);
    case "events":
      return a.events.reduce(applyEvent, s);
  }
}

function applyEvent(s: SourcesState, ev: DoppelEvent): SourcesState {
  switch (ev.type) {
    case "jobQueued": {
      const next = {
        ...s,
        jobSource: { ...s.jobSource, [ev.job]: ev.source },
        activeJob: { ...s.activeJob, [ev.source]: ev.job },
      };
      return next.rows.some((r) => r.id === ev.source) ? setState(next, ev.source, "queued") : { ...next, stale: true };
    }
    case "jobStarted": {
      if (ev.source == null) return s;
      const next = {
        ...s,
        jobSource: { ...s.jobSource, [ev.job]: ev.source },
        activeJob: { ...s.activeJob, [ev.source]: ev.job },
        progress: { ...s.progress, [ev.source]: { phase: "reading" as const, done: 0, total: 0 } },
        retryAt: without(s.retryAt, ev.source),
      };
      return setState(next, ev.source, "processing");
    }
    case "jobProgress":
    case "jobEmbedding": {
      const source = s.jobSource[ev.job];
      if (source === undefined) return { ...s, stale: true };
      const phase: Progress["phase"] = ev.type === "jobProgress" ? "reading" : "embedding";
      const next: SourcesState = { ...s, progress: { ...s.progress, [source]: { phase, done: ev.done, total: ev.total } } };
      const row = s.rows.find((r) => r.id === source);
      return row && row.state !== "processing" ? setState(next, source, "processing") : next;
    }
    case "jobDone": {
      const source = ev.source ?? s.jobSource[ev.job];
      const next = {
        ...s,
        progress: without(s.progress, source),
        activeJob: without(s.activeJob, source),
        stale: true,
      };
      return next;
    }
    case "jobFailed": {
      const source = ev.source ?? s.jobSource[ev.job];
      if (source == null) return s;
      let next: SourcesState = { ...s, progress: without(s.progress, source) };
      const row = s.rows.find((r) => r.id === source);
      if (!row) return { ...next, stale: true };
      if (ev.retryAt != null) {
        // It will be tried again: it waits in the queue with the reason shown.
        next = { ...next, retryAt: { ...next.retryAt, [source]: ev.retryAt } };
        return setState(next, source, "queued", { error: ev.message });
      }
      next = { ...next, activeJob: without(next.activeJob, source), retryAt: without(next.retryAt, source) };
      if (row.state === "ready" || row.chunkCount > 0) {
        // A failed update keeps the last good content; the shell tells the exact state.
        return { ...setState(next, source, row.state, { error: ev.message }), stale: true };
      }
      return setState(next, source, "failed", { error: ev.message });
    }
    case "jobCancelled": {
      const source = s.jobSource[ev.job];
      return { ...s, progress: without(s.progress, source), activeJob: without(s.activeJob, source), stale: true };
    }
    case "sourceChanged": {
      let next = s;
      if (ev.state !== "processing") next = { ...next, progress: without(next.progress, ev.source) };
      if (ev.state === "ready" || ev.state === "failed") next = { ...next, activeJob: without(next.activeJob, ev.source) };
      next = setState(next, ev.source, ev.state, ev.state === "ready" ? { error: null } : {});
      // A ready source has a new chunk count and dates: fetch them.
      return ev.state === "ready" || ev.state === "failed" ? { ...next, stale: true } : next;
    }
    case "sourceDeleted":
      return sourcesReducer(s, { type: "removed", source: ev.source });
    case "watchChanged":
      return { ...s, stale: true };
    case "indexRebuild":
      return {
        ...s,
        background: ev.done >= ev.total ? null : { label: "Rebuilding the search index", done: ev.done, total: ev.total },
      };
    case "backfill":
      return {
        ...s,
        background:
          ev.remaining === 0
            ? null
            : {
                label: `Learning passages by meaning: ${ev.remaining.toLocaleString()} to go`,
                done: ev.embedded,
                total: ev.embedded + ev.remaining,
              },
      };
    case "backfillStalled":
      return { ...s, background: { label: `Embedding paused: ${ev.reason}`, error: true } };
  }
  return s;
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
