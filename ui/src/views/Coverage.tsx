// "What does my twin know?": the twin's sources by state, format and folder, its passages and how
// many search by meaning can find, the space they take, every failure and skip with its reason
// (and a Retry where reading again may help), and "Why isn't this found?".

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, type Coverage, type Explanation, type Hit, type Problem } from "../api";
import { useApp, useSourcesVersion } from "../app";
import { Icon } from "../components/Icon";
import { ProgressBar } from "../components/Progress";
import { debounced } from "../state/sources";
import { formatBytes, formatRelative, plural } from "../format";

/** Problems listed before "Show all". */
const PROBLEMS_AT_ONCE = 100;

const STATES: { key: keyof Coverage["states"]; label: string; help: string }[] = [
  { key: "ready", label: "Ready", help: "learnt and searchable" },
  { key: "queued", label: "Queued", help: "waiting to be read" },
  { key: "processing", label: "Being read", help: "read right now" },
  { key: "failed", label: "Failed", help: "could not be read" },
  { key: "skipped", label: "Skipped", help: "passed over: not text, empty, too large, or a copy" },
];

export function CoverageView() {
  const app = useApp();
  const twin = app.twin;
  const [coverage, setCoverage] = useState<Coverage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const twinRef = useRef(twin?.id ?? null);
  twinRef.current = twin?.id ?? null;

  // Read at once, then again (at most every two seconds) while sources change.
  const loader = useMemo(
    () =>
      debounced(async () => {
        const id = twinRef.current;
        if (id === null) return;
        try {
          const c = await api.coverage(id);
          if (twinRef.current === id) {
            setCoverage(c);
            setError(null);
          }
        } catch (e) {
          setError((e as Error).message);
        }
      }, 2000),
    [],
  );
  useEffect(() => {
    setCoverage(null);
    void loader.now();
    return () => loader.cancel();
  }, [twin?.id]);
  const version = useSourcesVersion();
  useEffect(() => {
    loader.schedule();
  }, [version]);

  const retry = async (p: Problem) => {
    try {
      const enq = await api.reingestSource(p.sourceId);
      await app.queued({ queued: [enq], skipped: [] });
      app.toast(`Reading “${p.title}” again`, "success");
      loader.schedule();
    } catch (e) {
      app.fail(e);
    }
  };

  const retryAll = async (problems: Problem[]) => {
    for (const p of problems) await retry(p);
  };

  return (
    <div class="page coverage-page">
      <header class="view-head">
        <div>
          <h1>What does {twin?.name ?? "your twin"} know?</h1>
          <p class="muted small">Everything it has read, what it could not read, and why.</p>
        </div>
        <div class="actions">
          <button type="button" class="btn" data-testid="coverage-refresh" onClick={() => void loader.now()}>
            <Icon name="refresh" />
            Refresh
          </button>
        </div>
      </header>
      {error && (
        <p class="callout error card-width" role="alert">
          <Icon name="alert" />
          <span>{error}</span>
        </p>
      )}
      {!coverage && !error && <p class="muted card-width">Counting…</p>}
      {coverage && (
        <>
          <section class="card" aria-labelledby="coverage-sources-title" data-testid="coverage-card">
            <h2 id="coverage-sources-title">Sources</h2>
            <ul class="state-chips" data-testid="coverage-states">
              {STATES.map((s) => (
                <li key={s.key} class={`state-chip ${s.key}`} data-testid="coverage-state" data-state={s.key} title={s.help}>
                  <span class="state-count">{coverage.states[s.key].toLocaleString()}</span>
                  <span class="state-label">{s.label}</span>
                </li>
              ))}
            </ul>
            <Facts coverage={coverage} />
          </section>
          <WhyNotFound />
          <Problems coverage={coverage} onRetry={(p) => void retry(p)} onRetryAll={(ps) => void retryAll(ps)} />
          <Groups coverage={coverage} />
        </>
      )}
    </div>
  );
}

function Facts(props: { coverage: Coverage }) {
  const c = props.coverage;
  const embedded = c.passages > 0 ? Math.round((c.embedded / c.passages) * 100) : null;
  return (
    <dl class="meta coverage-facts">
      <dt>Passages</dt>
      <dd data-testid="coverage-passages">{c.passages.toLocaleString()}</dd>
      <dt>Found by meaning</dt>
      <dd data-testid="coverage-embedded">
        {c.model ? (
          <>
            <span>
              {c.embedded.toLocaleString()} of {c.passages.toLocaleString()} passages, by {c.model}
            </span>
            {c.passages > 0 && <ProgressBar value={embedded} label="Passages found by meaning" />}
          </>
        ) : (
          <span class="warn-text">None: {c.modelProblem ?? "no embedding model"}. Search uses keywords only.</span>
        )}
      </dd>
      <dt>Documents</dt>
      <dd data-testid="coverage-content">{formatBytes(c.contentBytes)} read</dd>
      <dt>On disk</dt>
      <dd data-testid="coverage-disk">{formatBytes(c.diskBytes)} (database and search index)</dd>
    </dl>
  );
}

function Problems(props: { coverage: Coverage; onRetry: (p: Problem) => void; onRetryAll: (ps: Problem[]) => void }) {
  const [all, setAll] = useState(false);
  const problems = props.coverage.problems;
  const shown = all ? problems : problems.slice(0, PROBLEMS_AT_ONCE);
  const retryable = problems.filter((p) => p.retryable);
  return (
    <section class="card" aria-labelledby="coverage-problems-title" data-testid="coverage-problems">
      <div class="card-head">
        <h2 id="coverage-problems-title">Failed and skipped ({problems.length.toLocaleString()})</h2>
        {retryable.length > 1 && (
          <button type="button" class="btn sm" data-testid="coverage-retry-all" onClick={() => props.onRetryAll(retryable)}>
            <Icon name="refresh" size={14} />
            Retry all {retryable.length.toLocaleString()}
          </button>
        )}
      </div>
      {problems.length === 0 ? (
        <p class="muted" data-testid="coverage-no-problems">
          Nothing failed or was passed over.
        </p>
      ) : (
        <ul class="problem-list">
          {shown.map((p) => (
            <li
              key={`${p.kind}:${p.sourceId}:${p.origin ?? p.title}`}
              class={`problem ${p.kind}`}
              data-testid="coverage-problem"
              data-kind={p.kind}
              data-code={p.code}
              data-source-id={p.sourceId}
            >
              <span class={`badge ${p.kind === "skipped" ? "queued" : "failed"}`}>
                {p.kind === "failed" ? "Failed" : p.kind === "skipped" ? "Skipped" : "Update failed"}
              </span>
              <div class="problem-text">
                <strong class="problem-title">{p.title}</strong>
                {p.origin && p.origin !== p.title && (
                  <span class="problem-origin small muted" title={p.origin}>
                    {p.origin}
                  </span>
                )}
                <span class="problem-reason small" data-testid="coverage-reason">
                  {p.reason}
                </span>
                <span class="small muted">{formatRelative(p.at)}</span>
              </div>
              {p.retryable && (
                <button
                  type="button"
                  class="btn sm"
                  data-testid="coverage-retry"
                  aria-label={`Retry ${p.title}`}
                  onClick={() => props.onRetry(p)}
                >
                  <Icon name="refresh" size={14} />
                  Retry
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      {problems.length > shown.length && (
        <button type="button" class="btn ghost" onClick={() => setAll(true)}>
          Show all {problems.length.toLocaleString()}
        </button>
      )}
    </section>
  );
}

function Groups(props: { coverage: Coverage }) {
  const c = props.coverage;
  return (
    <section class="card" aria-labelledby="coverage-groups-title">
      <h2 id="coverage-groups-title">By format and folder</h2>
      <div class="grid2">
        <table class="group-table" data-testid="coverage-formats">
          <caption class="sr-only">Sources by format</caption>
          <thead>
            <tr>
              <th scope="col">Format</th>
              <th scope="col" class="num">Sources</th>
              <th scope="col" class="num">Passages</th>
            </tr>
          </thead>
          <tbody>
            {c.formats.map((g) => (
              <tr key={g.name} data-testid="coverage-format" data-name={g.name}>
                <td>{g.name}</td>
                <td class="num">{g.sources.toLocaleString()}</td>
                <td class="num">{g.passages.toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <table class="group-table" data-testid="coverage-folders">
          <caption class="sr-only">Sources by folder</caption>
          <thead>
            <tr>
              <th scope="col">Folder</th>
              <th scope="col" class="num">Sources</th>
              <th scope="col" class="num">Passages</th>
            </tr>
          </thead>
          <tbody>
            {c.folders.map((g) => (
              <tr key={g.name} data-testid="coverage-folder" data-name={g.name}>
                <td class="folder-name" title={g.name}>
                  {g.name}
                </td>
                <td class="num">{g.sources.toLocaleString()}</td>
                <td class="num">{g.passages.toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {c.otherFolders > 0 && <p class="muted small">and {plural(c.otherFolders, "more folder")}</p>}
    </section>
  );
}

/** "Why isn't this found?": type a word or a file name, see what the twin holds of it. */
function WhyNotFound() {
  const app = useApp();
  const [text, setText] = useState("");
  const [asked, setAsked] = useState<string | null>(null);
  const [result, setResult] = useState<Explanation | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const t = text.trim();
    if (!t || !app.twin) return;
    setBusy(true);
    try {
      setResult(await api.whyNotFound(app.twin.id, t));
      setAsked(t);
    } catch (err) {
      app.fail(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card" aria-labelledby="why-title" data-testid="why-card">
      <h2 id="why-title">Why isn’t this found?</h2>
      <p class="muted small">
        Type a word or a file name: see whether a source has that name, which passages hold its words, and what search by
        meaning finds.
      </p>
      <form class="why-form" onSubmit={submit}>
        <label class="sr-only" for="why-input">
          A word or a file name
        </label>
        <input
          id="why-input"
          type="search"
          data-testid="why-input"
          placeholder="e.g. quince, or budget-2024.pdf"
          value={text}
          onInput={(e) => setText((e.target as HTMLInputElement).value)}
        />
        <button type="submit" class="btn primary" data-testid="why-submit" disabled={busy || !text.trim()}>
          Check
        </button>
      </form>
      {result && asked && <WhyResult text={asked} result={result} />}
    </section>
  );
}

function WhyResult(props: { text: string; result: Explanation }) {
  const r = props.result;
  const found = r.words.some((w) => w.passages > 0) || (r.meaning?.length ?? 0) > 0;
  return (
    <div class="why-result" data-testid="why-result" data-found={found ? "true" : "false"}>
      <h3 class="section-title">By name</h3>
      {r.named.length === 0 ? (
        <p data-testid="why-named-none">
          No source is named like “{props.text}”. In folders, hidden files and images, audio, video and archives are
          passed over; add such a file by itself to be told why.
        </p>
      ) : (
        <ul class="why-list">
          {r.named.map((s) => (
            <li key={s.id} data-testid="why-named" data-state={s.state}>
              <strong>{s.title}</strong> <span class={`badge ${s.state}`}>{s.state}</span>
              {s.error && <span class="source-error small"> {s.error}</span>}
            </li>
          ))}
        </ul>
      )}
      <h3 class="section-title">By keywords</h3>
      {r.words.length === 0 && <p>It has no word to search for.</p>}
      <ul class="why-list">
        {r.words.map((w) => (
          <li key={w.word} data-testid="why-word" data-word={w.word} data-passages={w.passages}>
            {w.passages === 0 ? (
              <>
                “{w.word}” is in <strong>no passage</strong>.
              </>
            ) : (
              <>
                “{w.word}” is in {plural(w.passages, "passage")} of {plural(w.sources, "source")}.
              </>
            )}
          </li>
        ))}
      </ul>
      <HitList hits={r.keyword} testid="why-keyword-hit" />
      <h3 class="section-title">By meaning</h3>
      {r.meaning === null ? (
        <p data-testid="why-meaning-problem">Not available now: {r.meaningProblem}.</p>
      ) : r.meaning.length === 0 ? (
        <p data-testid="why-meaning-none">No passage is close enough in meaning.</p>
      ) : (
        <HitList hits={r.meaning} testid="why-meaning-hit" />
      )}
    </div>
  );
}

function HitList(props: { hits: Hit[]; testid: string }) {
  if (props.hits.length === 0) return null;
  return (
    <ul class="why-hits">
      {props.hits.map((h) => (
        <li key={h.chunkId} data-testid={props.testid}>
          <strong>{h.sourceTitle}</strong>
          {h.location.label && <span class="muted"> · {h.location.label}</span>}
          <p class="small">
            <Snippet text={h.snippet} />
          </p>
        </li>
      ))}
    </ul>
  );
}

/** A keyword snippet, its matched words (between `[` and `]`) marked. */
function Snippet(props: { text: string }) {
  const pieces = props.text.split(/\[([^\]]*)\]/);
  return <>{pieces.map((piece, i) => (i % 2 === 1 ? <mark key={i}>{piece}</mark> : piece))}</>;
}
