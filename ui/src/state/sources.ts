// The sources list as the person sees it, for any number of sources. The page holds only the
// rows in view and a few pages around them (read with `source_page`, newest first), the twin's
// counts by state, and the live state of the sources background events speak of. After events
// it reads only the rows that changed since its last read (`sources_changed`) and patches those it
// holds; when rows come or go, it reads the pages in view again. Nothing here costs time or
// memory in proportion to the number of sources.

import type { DoppelEvent, IngestReport, Source, SourceState } from "../api";

/**
 * How far a source being processed is: pages read by text recognition (or a recording being
 * transcribed), passages read, then passages embedded.
 */
export type Progress = { phase: "recognising" | "reading" | "embedding"; done: number; total: number };

export type Background = { label: string; done?: number; total?: number; error?: boolean } | null;

export type Counts = Record<SourceState, number>;

/** Which rows the list shows: a piece of their title or path, or one state. */
export type ListQuery = { text?: string; state?: SourceState };

/** Rows read at a time. */
export const PAGE_SIZE = 100;
/** Pages kept at most; the others are read again when they come back into view. */
const PAGES_KEPT = 12;

/** What `source_page` answers. */
export type PageResult = { total: number; counts: Counts; sources: Source[]; cursor: number };

const NO_COUNTS: Counts = { queued: 0, processing: 0, ready: 0, failed: 0 };

/**
 * The sources of the current twin, as far as the list needs them. Mutated in place; `version`
 * grows with every change, and subscribers are told (once per batch of changes).
 */
export class SourceStore {
  /** Rows of the list by page (a Map keeps the least recently used first). */
  private pages = new Map<number, Source[]>();
  /** Pages read before rows came or went: shown until their fresh reading arrives. */
  private former = new Map<number, Source[]>();
  /** The page each held row is on. */
  private where = new Map<number, number>();
  /** Pages the list asked for that are not held. */
  private wanted = new Set<number>();
  /** Grows when held pages become out of date; a page read before that is read again. */
  generation = 0;

  /** How many rows the list shows (those matching the query). */
  total = 0;
  /** The twin's sources by state, all of them. */
  counts: Counts = { ...NO_COUNTS };
  query: ListQuery = {};
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
  /** Whether the first page arrived. */
  loaded = false;
  /** Where the next `sources_changed` starts. */
  cursor = 0;
  /** Set when an event told of a change the events alone do not carry (titles, counts). */
  stale = false;
  /**
   * Counts the events that changed a row's state or made the store stale: a read clears
   * `stale` only if none arrived while it ran, and a row whose state such an event set keeps
   * it over an older one the read brings (see `applyChanges`).
   */
  marks = 0;
  /** The state events gave rows, and when (in `marks`), until a later read settles them. */
  private marked = new Map<number, { at: number; state: SourceState; error: string | null }>();
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

  /** How many sources the twin has, whatever the query. */
  get sourceCount(): number {
    return this.counts.queued + this.counts.processing + this.counts.ready + this.counts.failed;
  }

  /** The row shown at `index` (newest first), or undefined while its page is being read. */
  at(index: number): Source | undefined {
    const page = Math.floor(index / PAGE_SIZE);
    const rows = this.pages.get(page);
    if (!rows) {
      this.wanted.add(page);
      return this.former.get(page)?.[index % PAGE_SIZE];
    }
    return rows[index % PAGE_SIZE];
  }

  /** Asks for the pages of rows `first` to `last` (clamped to the list) ahead of their use. */
  prefetch(first: number, last: number) {
    const from = Math.max(0, Math.floor(first / PAGE_SIZE));
    const to = Math.min(Math.ceil(this.total / PAGE_SIZE) - 1, Math.floor(last / PAGE_SIZE));
    for (let p = from; p <= to; p++) if (!this.pages.has(p)) this.wanted.add(p);
  }

  /** The pages the list asked for since the last call, to be read. */
  takeWanted(): number[] {
    const pages = [...this.wanted].filter((p) => !this.pages.has(p));
    this.wanted.clear();
    return pages;
  }

  /** A held row. */
  get(id: number): Source | undefined {
    const page = this.where.get(id);
    return page === undefined ? undefined : this.pages.get(page)?.find((r) => r.id === id);
  }

  /** Shows the rows matching `query` (read anew). */
  setQuery(query: ListQuery) {
    this.query = query;
    this.former.clear();
    this.dropPages(false);
    this.wanted.add(0);
    this.changed();
  }

  /** Held pages are out of date (rows came or went): they show until read again. */
  invalidate() {
    this.dropPages(true);
    this.changed();
  }

  private dropPages(keepShowing: boolean) {
    if (keepShowing) for (const [p, rows] of this.pages) this.former.set(p, rows);
    this.pages.clear();
    this.where.clear();
    this.generation++;
  }

  /** Everything anew (a twin switch). */
  reset() {
    this.former.clear();
    this.dropPages(false);
    this.wanted.clear();
    this.total = 0;
    this.counts = { ...NO_COUNTS };
    this.query = {};
    this.progress.clear();
    this.jobSource.clear();
    this.activeJob.clear();
    this.retryAt.clear();
    this.marked.clear();
    this.background = null;
    this.loaded = false;
    this.cursor = 0;
    this.stale = false;
    this.wanted.add(0);
    this.changed();
  }

  /** Everything read anew with the same query (a restore replaced every source). */
  reload() {
    const query = this.query;
    this.reset();
    this.query = query;
  }

  /** A row as a read brought it, with the state an event gave it since the read began. */
  private settled(row: Source, marks: number): Source {
    const m = this.marked.get(row.id);
    return m && m.at > marks ? { ...row, state: m.state, error: m.error } : row;
  }

  /**
   * A page read by `source_page` for `generation` (dropped if pages were dropped since), that
   * began when `marks` was the store's.
   */
  loadPage(page: number, generation: number, marks: number, result: PageResult) {
    if (generation !== this.generation) return;
    const rows = result.sources.map((r) => this.settled(r, marks));
    this.pages.delete(page);
    this.pages.set(page, rows);
    this.former.delete(page);
    for (const r of rows) this.where.set(r.id, page);
    while (this.pages.size > PAGES_KEPT) {
      const [oldest, gone] = this.pages.entries().next().value as [number, Source[]];
      this.pages.delete(oldest);
      for (const r of gone) if (this.where.get(r.id) === oldest) this.where.delete(r.id);
    }
    this.total = result.total;
    this.counts = result.counts;
    // Changes after this page was read are asked for from here (see `source_page`).
    if (!this.loaded) this.cursor = Math.max(this.cursor, result.cursor);
    this.loaded = true;
    this.changed();
  }

  /** The queued and running jobs, read once: which source each fills, for "Cancel". */
  applyJobs(jobs: { id: number; sourceId: number | null; state: string }[]) {
    for (const j of jobs) {
      if (j.sourceId == null) continue;
      this.jobSource.set(j.id, j.sourceId);
      if (j.state === "queued" || j.state === "running") this.activeJob.set(j.sourceId, j.id);
    }
    this.changed();
  }

  /** Replaces a held row (a changed row that is not held is not shown: nothing to do). */
  private replace(row: Source): boolean {
    const page = this.where.get(row.id);
    const rows = page === undefined ? undefined : this.pages.get(page);
    const i = rows ? rows.findIndex((r) => r.id === row.id) : -1;
    if (!rows || i < 0) return false;
    rows[i] = row;
    // Progress only means something while a source is processed.
    if (row.state !== "processing") this.progress.delete(row.id);
    return true;
  }

  /**
   * Rows read by `sources_changed`, with the twin's counts; `marks` is `this.marks` when that
   * read began. Held rows are replaced; when the number of sources changed, the pages in view
   * are read again (rows came or went). `more` says too many changed to be listed (a drop of
   * thousands of files): then the pages in view are read again instead.
   */
  applyChanges(sources: Source[], cursor: number, counts: Counts, marks: number, more = false) {
    const before = this.sourceCount;
    let unheld = more;
    for (const row of sources) if (!this.replace(this.settled(row, marks))) unheld = true;
    this.counts = counts;
    this.cursor = Math.max(this.cursor, cursor);
    // Marks older than this read are settled; anything newer is read once more.
    for (const [id, m] of this.marked) if (m.at <= marks) this.marked.delete(id);
    this.stale = this.marks !== marks;
    // Rows came or went, or a filtered list may have gained or lost some: read it again.
    const filtered = this.query.text !== undefined || this.query.state !== undefined;
    if (more || this.sourceCount !== before || (filtered && unheld)) {
      this.dropPages(true);
      // Unfiltered, the list is every source; filtered, its length comes with its first page.
      if (filtered) this.wanted.add(0);
      else this.total = this.sourceCount;
    }
    this.changed();
  }

  /** Files just queued: the list is read again, with them on top. */
  ingested(report: IngestReport) {
    for (const q of report.queued) {
      this.jobSource.set(q.jobId, q.sourceId);
      this.activeJob.set(q.sourceId, q.jobId);
      if (this.where.has(q.sourceId)) this.setState(q.sourceId, "queued", { error: null });
    }
    if (report.queued.length > 0) this.dropPages(true);
    this.markStale();
    this.changed();
  }

  /** A source forgotten through the window. */
  removed(id: number) {
    this.forget(id);
    this.dropPages(true);
    this.changed();
  }

  /** Takes a row out of what is shown at once, until its pages are read again. */
  private forget(id: number) {
    for (const pages of [this.pages, this.former]) {
      for (const rows of pages.values()) {
        const i = rows.findIndex((r) => r.id === id);
        if (i >= 0) rows.splice(i, 1);
      }
    }
    this.where.delete(id);
    this.progress.delete(id);
    this.activeJob.delete(id);
    this.retryAt.delete(id);
    this.marked.delete(id);
  }

  /** Events that arrived together: one change for subscribers. */
  events(events: DoppelEvent[]) {
    for (const ev of events) this.apply(ev);
    this.changed();
  }

  /** Marks a row's state as set by an event (see `marks`). */
  private setState(id: number, state: SourceState, extra: Partial<Source> = {}) {
    const row = this.get(id);
    const error = extra.error !== undefined ? extra.error : (row?.error ?? null);
    this.marked.set(id, { at: ++this.marks, state, error });
    if (!row) {
      this.markStale();
      return;
    }
    if (row.state !== state) {
      this.counts = { ...this.counts, [row.state]: this.counts[row.state] - 1, [state]: this.counts[state] + 1 };
    }
    this.replace({ ...row, ...extra, state });
  }

  private markStale() {
    this.stale = true;
    this.marks++;
  }

  private apply(ev: DoppelEvent) {
    switch (ev.type) {
      case "jobQueued":
        this.jobSource.set(ev.job, ev.source);
        this.activeJob.set(ev.source, ev.job);
        // A source not held may be new: the counts (and the list, if so) are read again.
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
      case "jobPages":
      case "jobProgress":
      case "jobEmbedding": {
        const source = this.jobSource.get(ev.job);
        if (source === undefined) return;
        const row = this.get(source);
        if (row && row.state !== "processing") this.setState(source, "processing");
        this.progress.set(source, { phase: PHASES[ev.type], done: ev.done, total: ev.total });
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
        if (ev.retryAt != null) {
          // It will be tried again: it waits in the queue with the reason shown.
          this.retryAt.set(source, ev.retryAt);
          this.setState(source, "queued", { error: ev.message });
          return;
        }
        this.activeJob.delete(source);
        this.retryAt.delete(source);
        const row = this.get(source);
        if (row && (row.state === "ready" || row.chunkCount > 0)) {
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
        this.forget(ev.source);
        this.markStale();
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

const PHASES: Record<"jobPages" | "jobProgress" | "jobEmbedding", Progress["phase"]> = {
  jobPages: "recognising",
  jobProgress: "reading",
  jobEmbedding: "embedding",
};

/**
 * Progress as a whole percentage, or null while it cannot be told: the total is not known, or
 * the one step is under way (an image read, a recording transcribed), which may take minutes.
 */
export function percent(p: Progress | undefined): number | null {
  if (!p || p.total <= 0) return null;
  if (p.phase === "recognising" && p.total === 1 && p.done < 1) return null;
  return Math.max(0, Math.min(100, Math.round((p.done / p.total) * 100)));
}

/** The endings of the recordings the core sends to a speech-to-text server. */
const RECORDING = /\.(mp3|m4a|wav|ogg|oga|opus|flac|mp4|m4v|mkv|webm)$/i;

/**
 * Whether a source is a recording, whose one "page" is its transcript. A file read for the first
 * time has no media type yet: its name tells.
 */
export function isRecording(s: Pick<Source, "mediaType" | "origin" | "title">): boolean {
  if (s.mediaType) return /^(audio|video)\//.test(s.mediaType);
  return RECORDING.test(s.origin ?? s.title);
}

/** The line under a source being processed, for its progress. */
export function progressLine(s: Pick<Source, "mediaType" | "origin" | "title">, p: Progress | undefined): string {
  if (!p || p.total === 0) return "Reading…";
  if (p.phase === "recognising") {
    if (isRecording(s)) return p.done < p.total ? "Transcribing the recording…" : "Reading the transcript…";
    // An image, or a scan of one page: no page count worth showing.
    if (p.total === 1) return "Recognising text…";
    return `Reading text: page ${Math.min(p.done + 1, p.total)} of ${p.total}`;
  }
  return p.phase === "embedding"
    ? `Learning meanings: ${p.done} of ${p.total} passages`
    : `Reading: ${p.done} of ${p.total} passages`;
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
