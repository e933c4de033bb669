// Search: the twin's passages by keywords, by meaning or both, in the sources a filter allows
// (a source's name, a folder, a format, the documents' dates), each hit with the query's words
// marked; a hit opens its passage as a citation does.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, type Coverage, type Filter, type FindResults, type FoundPassage, type SearchMode } from "../api";
import { useApp } from "../app";
import { Icon } from "../components/Icon";
import { Marked, PassagePanel, type PassageRef } from "../components/PassagePanel";
import { Segmented } from "../components/Segmented";

const MODES: { value: SearchMode; label: string; help: string }[] = [
  { value: "hybrid", label: "Both", help: "keywords and meaning, fused" },
  { value: "keyword", label: "Keywords", help: "the words themselves (and their other forms)" },
  { value: "vector", label: "Meaning", help: "passages close in meaning, whatever their words" },
];

/** Passages asked for. */
const TOP_K = 20;

type Filters = { source: string; folder: string; format: string; from: string; until: string };
const NO_FILTERS: Filters = { source: "", folder: "", format: "", from: "", until: "" };

/** The day's start (local time) of a date input's value, in ms; the day after for `until`. */
function dayStart(value: string, next = false): number | undefined {
  if (!value) return undefined;
  const [y, m, d] = value.split("-").map(Number);
  if (!y || !m || !d) return undefined;
  return new Date(y, m - 1, d + (next ? 1 : 0)).getTime();
}

export function SearchView() {
  const app = useApp();
  const twin = app.twin;
  const [query, setQuery] = useState("");
  const [mode, setMode] = useState<SearchMode>("hybrid");
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [results, setResults] = useState<FindResults | null>(null);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState<FoundPassage | null>(null);
  const [coverage, setCoverage] = useState<Coverage | null>(null);
  const input = useRef<HTMLInputElement>(null);

  // The folders and formats to choose from: those the twin has, read when the view is shown.
  useEffect(() => {
    if (app.view !== "search" || !twin) return;
    let live = true;
    api
      .coverage(twin.id)
      .then((c) => live && setCoverage(c))
      .catch(() => undefined);
    input.current?.focus();
    return () => {
      live = false;
    };
  }, [app.view, twin?.id]);

  useEffect(() => {
    setResults(null);
    setOpen(null);
    setFilters(NO_FILTERS);
  }, [twin?.id]);

  const set = (key: keyof Filters) => (e: Event) =>
    setFilters((f) => ({ ...f, [key]: (e.target as HTMLInputElement | HTMLSelectElement).value }));

  const run = async (e?: Event) => {
    e?.preventDefault();
    const q = query.trim();
    if (!q || !twin) return;
    const filter: Filter = {};
    if (filters.source.trim()) filter.name = filters.source.trim();
    if (filters.folder) filter.folder = filters.folder;
    if (filters.format) filter.format = filters.format;
    const from = dayStart(filters.from);
    const until = dayStart(filters.until, true);
    if (from !== undefined) filter.from = from;
    if (until !== undefined) filter.until = until;
    setBusy(true);
    try {
      setResults(await api.find(twin.id, q, mode, filter, TOP_K));
      setOpen(null);
    } catch (err) {
      app.fail(err);
    } finally {
      setBusy(false);
    }
  };

  const filtered = Object.values(filters).some((v) => v !== "");
  const passage: PassageRef | null = open && {
    number: null,
    chunkId: open.hit.chunkId,
    sourceId: open.hit.sourceId,
    sourceTitle: open.hit.sourceTitle,
    origin: open.hit.origin,
    location: open.hit.location.label,
    quote: null,
    deleted: false,
    parts: open.parts,
  };

  return (
    <div class={`search-layout ${passage ? "with-panel" : ""}`}>
      <div class="pane search-main">
        <header class="view-head">
          <div>
            <h1>Search</h1>
            <p class="muted small">Find passages by their words or by what they mean.</p>
          </div>
        </header>
        <form class="search-form" role="search" onSubmit={(e) => void run(e)}>
          <div class="search-row">
            <div class="filter search-box">
              <Icon name="search" />
              <label class="sr-only" for="search-input">
                Search the passages
              </label>
              <input
                id="search-input"
                ref={input}
                type="search"
                data-testid="search-input"
                placeholder="What are you looking for?"
                value={query}
                onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
              />
            </div>
            <button type="submit" class="btn primary" data-testid="search-submit" disabled={busy || !query.trim()}>
              Search
            </button>
          </div>
          <div class="search-options">
            <Segmented name="search-mode" options={MODES} value={mode} onChange={(v) => setMode(v as SearchMode)} />
            <details class="search-filters" open={filtered}>
              <summary data-testid="search-filters-toggle">Filters{filtered ? " (on)" : ""}</summary>
              <div class="filter-grid">
                <label class="field">
                  <span>Source name</span>
                  <input data-testid="search-source" value={filters.source} onInput={set("source")} placeholder="any" />
                </label>
                <label class="field">
                  <span>Folder</span>
                  <select data-testid="search-folder" value={filters.folder} onChange={set("folder")}>
                    <option value="">Any folder</option>
                    {coverage?.folders.map((g) => (
                      <option key={g.name} value={g.name}>
                        {g.name} ({g.sources.toLocaleString()})
                      </option>
                    ))}
                  </select>
                </label>
                <label class="field">
                  <span>Format</span>
                  <select data-testid="search-format" value={filters.format} onChange={set("format")}>
                    <option value="">Any format</option>
                    {coverage?.formats.map((g) => (
                      <option key={g.name} value={g.name}>
                        {g.name} ({g.sources.toLocaleString()})
                      </option>
                    ))}
                  </select>
                </label>
                <label class="field">
                  <span>Dated from</span>
                  <input type="date" data-testid="search-from" value={filters.from} onInput={set("from")} />
                </label>
                <label class="field">
                  <span>Dated until</span>
                  <input type="date" data-testid="search-until" value={filters.until} onInput={set("until")} />
                </label>
                {filtered && (
                  <button type="button" class="btn ghost sm" data-testid="search-clear-filters" onClick={() => setFilters(NO_FILTERS)}>
                    Clear filters
                  </button>
                )}
              </div>
            </details>
          </div>
        </form>
        <div class="search-results" data-testid="search-results" aria-live="polite" aria-busy={busy}>
          {results?.notes.map((n) => (
            <p key={n} class="callout small" data-testid="search-note">
              <Icon name="alert" />
              <span>{n}</span>
            </p>
          ))}
          {results && results.passages.length === 0 && (
            <p class="muted" data-testid="search-empty">
              Nothing found{filtered ? " in the sources the filters allow" : ""}. “Why isn’t this found?” in Knowledge tells
              more.
            </p>
          )}
          {results && results.passages.length > 0 && (
            <ol class="hit-list" aria-label="Passages found">
              {results.passages.map((p) => (
                <li key={p.hit.chunkId}>
                  <button
                    type="button"
                    class={`hit ${open?.hit.chunkId === p.hit.chunkId ? "active" : ""}`}
                    data-testid="search-hit"
                    data-chunk-id={p.hit.chunkId}
                    data-source-id={p.hit.sourceId}
                    aria-expanded={open?.hit.chunkId === p.hit.chunkId}
                    onClick={() => setOpen(p)}
                  >
                    <span class="hit-head">
                      <strong class="hit-title" data-testid="search-hit-title">
                        {p.hit.sourceTitle}
                      </strong>
                      {p.hit.location.label && <span class="muted small"> · {p.hit.location.label}</span>}
                      <span class="badge ghost small">{retrieverLabel(p.hit.retriever)}</span>
                    </span>
                    <span class="hit-text small">
                      <Marked parts={p.parts} />
                    </span>
                  </button>
                </li>
              ))}
            </ol>
          )}
        </div>
      </div>
      {passage && open && (
        <PassagePanel passage={passage} opened={`search:${open.hit.chunkId}`} onClose={() => setOpen(null)} />
      )}
    </div>
  );
}

function retrieverLabel(r: string): string {
  return r === "keyword" ? "words" : r === "vector" ? "meaning" : r === "hybrid" ? "both" : r;
}
