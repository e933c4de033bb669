// Sources: what the twin has learnt, each with its live state, and the ways to add more.

import { memo } from "preact/compat";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, type Chunk, type Source, type SourceDetail } from "../api";
import { useApp, useSourcesVersion } from "../app";
import { Icon } from "../components/Icon";
import { measure } from "../measure";
import { ProgressBar } from "../components/Progress";
import { formatBytes, formatDate, formatRelative, plural } from "../format";
import { PAGE_SIZE, percent, progressLine, type Counts, type Progress } from "../state/sources";
import { rowStyle, VirtualList } from "../components/VirtualList";
import { ModelBanner, ModelOffer, WelcomeModels } from "./Models";
import { QueueStatus } from "./Queue";
import { AddUrlDialog, PasteTextDialog } from "./AddDialogs";

/** Where closing the first-question tip (or visiting Chat) is remembered. */
export const FIRST_QUESTION_KEY = "doppel.firstQuestionSeen";

/** The User Timing mark set when the sources list first shows rows after the page loaded. */
export const SHOWN_MARK = "doppel:sources-shown";

/** How long the filter waits for typing to pause before the list is read again. */
const FILTER_WAIT_MS = 150;

/** The height of a row of the sources list, in pixels (every row has it: see `VirtualList`). */
const ROW_HEIGHT = 66;

const STATE_LABEL: Record<Source["state"], string> = {
  queued: "Queued",
  processing: "Learning",
  ready: "Ready",
  failed: "Failed",
};

export function SourcesView() {
  const rendering = performance.now();
  // Read by bench/ui-latency, to tell what held the page: each render of the view, to its layout.
  useLayoutEffect(() => void measure("doppel:render sources", rendering));
  const app = useApp();
  const version = useSourcesVersion();
  const store = app.sources;
  const { progress, activeJob, retryAt } = store;
  const [filter, setFilter] = useState("");
  const [selected, setSelected] = useState<number | null>(null);
  const [dialog, setDialog] = useState<"text" | "url" | null>(null);

  // The filter is the core's: by a piece of the title or path, or by a state's name. Typing is
  // given a moment before the list is read again.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const timer = setTimeout(() => {
      const f = filter.trim();
      const state = (Object.keys(STATE_LABEL) as Source["state"][]).find(
        (k) => STATE_LABEL[k].toLowerCase() === f.toLowerCase(),
      );
      store.setQuery(state ? { state } : f ? { text: f } : {});
    }, FILTER_WAIT_MS);
    return () => clearTimeout(timer);
  }, [filter, store]);

  // Pages the list asked for in this render are read now.
  useEffect(() => app.readPages());

  const counts = store.counts;
  const total = store.sourceCount;
  // The last state seen of the selected source, while its row is out of the held pages.
  const lastSelected = useRef<Source | null>(null);
  // The moment the list first shows rows, for bench/ui-scale (a User Timing mark, nothing more).
  useEffect(() => {
    if (total > 0 && app.view === "sources" && performance.getEntriesByName(SHOWN_MARK).length === 0) {
      requestAnimationFrame(() => performance.mark(SHOWN_MARK));
    }
  }, [total > 0, app.view]);
  const held = selected === null ? null : (store.get(selected) ?? null);
  if (held) lastSelected.current = held;
  const current = selected === null ? null : (held ?? (lastSelected.current?.id === selected ? lastSelected.current : null));

  const forget = async (s: Source) => {
    const ok = await app.confirm({
      title: `Forget “${s.title}”?`,
      body: (
        <>
          <p>
            Your twin will forget everything it learnt from this source: its passages, their vectors and keyword
            entries are removed for good.
          </p>
          <p class="muted">
            Answers that used it keep none of its words (they show “[…]”) and their citations show “source
            deleted”. Verified answers drawn from it are removed. The original file on your disk is not touched.
          </p>
        </>
      ),
      confirm: "Forget",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.deleteSource(s.id);
      store.removed(s.id);
      if (selected === s.id) setSelected(null);
      app.toast(`Forgot “${s.title}”`, "success");
    } catch (e) {
      app.fail(e);
    }
  };

  const reingest = async (s: Source) => {
    try {
      const enq = await api.reingestSource(s.id);
      await app.queued({ queued: [enq], skipped: [] });
    } catch (e) {
      app.fail(e);
    }
  };

  const cancel = async (s: Source) => {
    const job = activeJob.get(s.id);
    if (job === undefined) return;
    try {
      await api.cancelJob(job);
      app.reloadSources();
    } catch (e) {
      app.fail(e);
    }
  };

  return (
    <div class="sources-layout">
      <div class="pane sources-pane">
        <header class="view-head">
          <div>
            <h1>Sources</h1>
            <p class="muted small" data-testid="sources-summary">
              {summary(counts)}
            </p>
          </div>
          <div class="actions">
            <button type="button" class="btn primary" data-testid="add-files" onClick={() => void app.addFiles()}>
              <Icon name="file" />
              Add files
            </button>
            <button type="button" class="btn" data-testid="add-folder" onClick={() => void app.addFolder()}>
              <Icon name="folder" />
              Add folder
            </button>
            <button type="button" class="btn" data-testid="paste-text" onClick={() => setDialog("text")}>
              <Icon name="text" />
              Paste text
            </button>
            <button type="button" class="btn" data-testid="add-url" onClick={() => setDialog("url")}>
              <Icon name="link" />
              Add URL
            </button>
          </div>
        </header>

        {(total > 0 || app.queue?.paused) && <QueueStatus />}
        {total > 0 && <ModelBanner />}
        {total === 0 ? (
          <div class="welcome-scroll">
            <Welcome />
          </div>
        ) : (
          <>
            {counts.ready > 0 && <FirstQuestion />}
            <div class="filter">
              <Icon name="search" />
              <input
                type="search"
                placeholder="Filter by name, path or state"
                aria-label="Filter sources"
                data-testid="source-filter"
                value={filter}
                onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
              />
            </div>
            {store.loaded && store.total === 0 && <p class="muted pad list-empty">No source matches “{filter}”.</p>}
            {/* Only the rows in view are rendered, however many sources there are. */}
            <VirtualList
              count={store.total}
              rowHeight={ROW_HEIGHT}
              version={version}
              label={`Sources, ${store.total.toLocaleString()} shown`}
              testid="source-list"
              class="source-scroller"
              onRendered={(first, last) => {
                // The pages half a page beyond the view are read ahead of the scroll.
                store.prefetch(first - PAGE_SIZE / 2, last + PAGE_SIZE / 2);
                app.readPages();
              }}
              row={(index) => {
                const s = store.at(index);
                // A row whose page is being read holds its place.
                if (!s) return <PendingRow key={`pending-${index}`} index={index} count={store.total} />;
                return (
                  <SourceRow
                    key={s.id}
                    index={index}
                    count={store.total}
                    source={s}
                    progress={progress.get(s.id)}
                    retryAt={retryAt.get(s.id)}
                    selected={s.id === selected}
                    onSelect={() => setSelected((now) => (now === s.id ? null : s.id))}
                  />
                );
              }}
            />
          </>
        )}
      </div>

      {current && (
        <SourceDetails
          source={current}
          progress={progress.get(current.id)}
          canCancel={activeJob.has(current.id)}
          onClose={() => setSelected(null)}
          onForget={() => void forget(current)}
          onReingest={() => void reingest(current)}
          onCancel={() => void cancel(current)}
        />
      )}

      {dialog === "text" && <PasteTextDialog onClose={() => setDialog(null)} />}
      {dialog === "url" && <AddUrlDialog onClose={() => setDialog(null)} />}
    </div>
  );
}

function summary(c: Counts): string {
  const busy = c.queued + c.processing;
  const parts = [
    c.ready ? `${plural(c.ready, "source")} ready` : "",
    busy ? `${busy} in progress` : "",
    c.failed ? `${c.failed} failed` : "",
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : "Nothing learnt yet";
}

/** First run: what Doppel does, that it stays local, whether the models are ready, and a way in. */
function Welcome() {
  const app = useApp();
  return (
    <div class="empty welcome" data-testid="welcome">
      <div class="empty-art" aria-hidden="true">
        <Icon name="download" size={36} />
      </div>
      <h2>Teach {app.twin?.name ?? "your twin"} what you know</h2>
      <p>
        Doppel learns from your notes and documents, then answers questions about them in your words, citing
        the passages it used.
      </p>
      <ul class="welcome-facts">
        <li class="welcome-local" data-testid="welcome-local">
          <Icon name="check" size={16} />
          <span>Everything stays on this computer: files are read, kept and searched here, and nothing is uploaded.</span>
        </li>
        <WelcomeModels />
      </ul>
      <p>
        Drag files or whole folders anywhere onto this window, or choose <strong>Add files</strong>. Notes, PDFs,
        Word and e-book files, web pages, e-mail, subtitles, spreadsheets and code all work.
      </p>
      <div class="actions center">
        <button type="button" class="btn primary" data-testid="welcome-add-files" onClick={() => void app.addFiles()}>
          <Icon name="file" />
          Add files
        </button>
        <button type="button" class="btn" data-testid="welcome-add-folder" onClick={() => void app.addFolder()}>
          <Icon name="folder" />
          Add folder
        </button>
      </div>
      <ModelOffer />
    </div>
  );
}

function seen(): boolean {
  try {
    return localStorage.getItem(FIRST_QUESTION_KEY) === "1";
  } catch {
    return false;
  }
}

export function markFirstQuestionSeen() {
  try {
    localStorage.setItem(FIRST_QUESTION_KEY, "1");
  } catch {
    // Storage may be unavailable: the tip shows again next time.
  }
}

/** Once something is learnt: an invitation to ask the first question (until Chat was opened). */
function FirstQuestion() {
  const app = useApp();
  const [hidden, setHidden] = useState(seen);
  if (hidden) return null;
  const close = () => {
    markFirstQuestionSeen();
    setHidden(true);
  };
  return (
    <div class="first-question" data-testid="first-question">
      <Icon name="chat" />
      <div class="first-question-text">
        <strong>{app.twin?.name ?? "Your twin"} has something to go on.</strong>
        <span class="muted small">Try a first question, such as “What did I write about …?”</span>
        <ModelOffer compact />
      </div>
      <button
        type="button"
        class="btn primary sm"
        data-testid="first-question-ask"
        onClick={() => {
          close();
          app.setView("chat");
        }}
      >
        Ask a question
      </button>
      <button
        type="button"
        class="btn ghost sm icon-only"
        data-testid="first-question-dismiss"
        aria-label="Close the tip"
        onClick={close}
      >
        <Icon name="x" />
      </button>
    </div>
  );
}

function stateLine(s: Source, p: Progress | undefined, retryAt: number | undefined): string {
  if (s.state === "processing") return progressLine(s, p);
  if (s.state === "queued") {
    if (retryAt) return `Will try again ${new Date(retryAt).toLocaleTimeString()}`;
    return "Waiting in the queue";
  }
  if (s.state === "ready") return `${plural(s.chunkCount, "passage")} · ${formatBytes(s.byteSize)}`;
  return "Could not be learnt";
}

type SourceRowProps = {
  index: number;
  count: number;
  source: Source;
  progress: Progress | undefined;
  retryAt: number | undefined;
  selected: boolean;
  onSelect: () => void;
};

/**
 * A row renders again only when what it shows changed: during a large ingest, events arrive
 * many times a second and nearly all of them concern one row. (`onSelect` is a new closure at
 * every render, but does the same while `selected` and the source are the same.)
 */
const SourceRow = memo(
  SourceRowView,
  (a: SourceRowProps, b: SourceRowProps) =>
    a.source === b.source &&
    a.progress === b.progress &&
    a.retryAt === b.retryAt &&
    a.selected === b.selected &&
    a.index === b.index &&
    a.count === b.count,
);

function SourceRowView(props: SourceRowProps) {
  const { source: s, progress: p } = props;
  return (
    <li
      class={`source-row ${props.selected ? "selected" : ""}`}
      data-testid="source-row"
      data-state={s.state}
      data-source-id={s.id}
      data-index={props.index}
      aria-setsize={props.count}
      aria-posinset={props.index + 1}
      style={rowStyle(props.index, ROW_HEIGHT)}
    >
      <button type="button" class="source-main" aria-expanded={props.selected} onClick={props.onSelect}>
        <span class={`kind-icon ${s.state}`} aria-hidden="true">
          <Icon name={s.kind === "url" ? "link" : s.kind === "text" ? "text" : "file"} />
        </span>
        <span class="source-text">
          <span class="source-title" data-testid="source-title">
            {s.title}
          </span>
          {/* While it is read again, its progress says more than the last attempt's error. */}
          {s.error && s.state !== "processing" ? (
            <span class="source-error small" data-testid="source-error" title={s.error}>
              {s.error}
            </span>
          ) : (
            <span class="source-sub muted small">{stateLine(s, p, props.retryAt)}</span>
          )}
          {s.state === "processing" && (
            <ProgressBar value={percent(p)} label={`Progress of ${s.title}`} testid="source-progress" />
          )}
        </span>
        <span class={`badge ${s.state}`} data-testid="source-state">
          {STATE_LABEL[s.state]}
        </span>
      </button>
    </li>
  );
}

/** The place of a row whose page is being read. */
function PendingRow(props: { index: number; count: number }) {
  return (
    <li
      class="source-row pending"
      data-index={props.index}
      aria-setsize={props.count}
      aria-posinset={props.index + 1}
      aria-busy="true"
      style={rowStyle(props.index, ROW_HEIGHT)}
    >
      <span class="source-main">
        <span class="muted small">Loading…</span>
      </span>
    </li>
  );
}

function SourceDetails(props: {
  source: Source;
  progress: Progress | undefined;
  canCancel: boolean;
  onClose: () => void;
  onForget: () => void;
  onReingest: () => void;
  onCancel: () => void;
}) {
  const s = props.source;
  const [detail, setDetail] = useState<SourceDetail | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    setLoadError(null);
    api
      .sourceDetail(s.id)
      .then((d) => live && setDetail(d))
      .catch((e) => live && setLoadError(String((e as Error).message)));
    return () => {
      live = false;
    };
  }, [s.id, s.state, s.updatedAt]);

  const chunks: Chunk[] = detail && detail.source.id === s.id ? detail.chunks : [];
  const active = s.state === "queued" || s.state === "processing";

  return (
    <aside class="pane detail-pane" aria-label={`Details of ${s.title}`} data-testid="source-detail">
      <header class="detail-head">
        <div class="detail-title">
          <span class={`badge ${s.state}`}>{STATE_LABEL[s.state]}</span>
          <h2>{s.title}</h2>
        </div>
        <button type="button" class="btn icon-only ghost" aria-label="Close details" onClick={props.onClose}>
          <Icon name="x" />
        </button>
      </header>
      {s.state === "processing" && (
        <ProgressBar value={percent(props.progress)} label={`Progress of ${s.title}`} testid="detail-progress" />
      )}
      {s.error && (
        <p class="callout error" data-testid="detail-error">
          <Icon name="alert" />
          <span>{s.error}</span>
        </p>
      )}
      <dl class="meta">
        <dt>Passages</dt>
        <dd data-testid="detail-chunks">{s.chunkCount.toLocaleString()}</dd>
        <dt>Size</dt>
        <dd>{formatBytes(s.byteSize)}</dd>
        <dt>Type</dt>
        <dd>{s.mediaType ?? s.kind}</dd>
        <dt>Added</dt>
        <dd title={formatDate(s.createdAt)}>{formatRelative(s.createdAt)}</dd>
        <dt>Updated</dt>
        <dd title={formatDate(s.updatedAt)}>{formatRelative(s.updatedAt)}</dd>
        {s.origin && (
          <>
            <dt>Origin</dt>
            <dd class="origin" title={s.origin}>
              {s.origin}
            </dd>
          </>
        )}
      </dl>
      <div class="actions">
        {active && props.canCancel && (
          <button type="button" class="btn" data-testid="cancel-job" onClick={props.onCancel}>
            <Icon name="stop" />
            Cancel
          </button>
        )}
        {!active && (
          <button type="button" class="btn" data-testid="reingest-source" onClick={props.onReingest}>
            <Icon name="refresh" />
            Read again
          </button>
        )}
        <button type="button" class="btn danger-ghost" data-testid="delete-source" onClick={props.onForget}>
          <Icon name="trash" />
          Forget
        </button>
      </div>
      <h3 class="section-title">Passages</h3>
      {loadError && <p class="muted small">{loadError}</p>}
      {chunks.length === 0 && !loadError && (
        <p class="muted small">{active ? "Passages appear when it is ready." : "No passages."}</p>
      )}
      <ol class="passages" data-testid="passage-list">
        {chunks.map((c) => (
          <li key={c.id} class="passage" data-testid="passage-item" data-chunk-id={c.id}>
            <div class="passage-loc small">
              <span class="loc">{c.location.label || `Passage ${c.ordinal + 1}`}</span>
              {c.location.page != null && <span class="muted"> · page {c.location.page}</span>}
              {c.location.lineStart != null && (
                <span class="muted">
                  {" "}
                  · lines {c.location.lineStart}–{c.location.lineEnd ?? c.location.lineStart}
                </span>
              )}
            </div>
            <p class="passage-text">{c.text}</p>
          </li>
        ))}
      </ol>
    </aside>
  );
}
