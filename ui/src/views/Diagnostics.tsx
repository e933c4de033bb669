// Diagnostics, in Settings: what the core measured as it worked (job times by format, failures by
// reason, embedding, search and answer latencies, the index's health), with small charts of
// jobs per hour and time per job, and "Copy a diagnostic report" (no document text, title, path
// or URL; docs/ipc.md `diagnostic_report`).

import { useEffect, useState } from "preact/hooks";
import { api, type HourStats, type MetricSummary, type Stats } from "../api";
import { useApp } from "../app";
import { formatBytes, plural } from "../format";

function ms(value: number): string {
  return value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

function of(stats: Stats, metric: string): MetricSummary[] {
  return stats.metrics.filter((m) => m.metric === metric);
}

function total(stats: Stats, metric: string): number {
  return of(stats, metric).reduce((n, m) => n + m.sum, 0);
}

/** A row of bars, one per hour, scaled to the largest; its text says the same for screen readers. */
function Bars(props: { label: string; hours: HourStats[]; value: (h: HourStats) => number; show: (v: number) => string; testid: string }) {
  const values = props.hours.map(props.value);
  const top = Math.max(0, ...values);
  const last = props.hours.length ? props.show(values[values.length - 1]) : "none";
  return (
    <figure class="bars" data-testid={props.testid}>
      <figcaption class="small">
        {props.label} <span class="muted">(last hour: {last})</span>
      </figcaption>
      <div class="bar-row" role="img" aria-label={`${props.label}, ${props.hours.length} hours, at most ${props.show(top)}`}>
        {values.map((v, i) => (
          <span key={props.hours[i].startMs} class="bar" style={{ height: `${top > 0 ? Math.max(4, (v / top) * 100) : 4}%` }} title={props.show(v)} />
        ))}
      </div>
    </figure>
  );
}

export function DiagnosticsCard() {
  const app = useApp();
  const [stats, setStats] = useState<Stats | null>(null);
  const [report, setReport] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const load = async () => {
    try {
      setStats(await api.stats(30));
    } catch (e) {
      app.fail(e);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const copyReport = async () => {
    setBusy(true);
    try {
      const text = await api.diagnosticReport();
      setReport(text);
      try {
        await navigator.clipboard.writeText(text);
        app.toast("Diagnostic report copied", "success");
      } catch {
        app.toast("Select the report below and copy it", "info");
      }
    } catch (e) {
      app.fail(e);
    } finally {
      setBusy(false);
    }
  };

  const failures = stats ? of(stats, "job_failed") : [];
  const lastDay = stats ? stats.hours.slice(-24) : [];
  return (
    <section class="card" data-testid="diagnostics-card">
      <h2>Diagnostics</h2>
      <p class="muted small">
        Measured on this computer as Doppel works, kept {stats ? plural(stats.keepDays, "day") : "30 days"} (setting{" "}
        <code>metrics_days</code>). No word of your documents is recorded.
      </p>
      {stats && (
        <div data-testid="diagnostics-figures">
          <table class="figures">
            <thead>
              <tr>
                <th scope="col">Work</th>
                <th scope="col">Count</th>
                <th scope="col">Median</th>
                <th scope="col">95%</th>
                <th scope="col">99%</th>
              </tr>
            </thead>
            <tbody>
              {(
                [
                  ["job_ms", "Jobs"],
                  ["search_ms", "Searches"],
                  ["answer_ms", "Answers"],
                  ["first_piece_ms", "First words of an answer"],
                  ["embed_ms", "Embedding batches"],
                ] as const
              ).flatMap(([metric, title]) =>
                of(stats, metric).map((m) => (
                  <tr key={`${metric}-${m.label}`} data-testid={`metric-${metric}-${m.label}`}>
                    <th scope="row">
                      {title} {m.label && <span class="muted">({m.label})</span>}
                    </th>
                    <td>{m.count}</td>
                    <td>{ms(m.p50)}</td>
                    <td>{ms(m.p95)}</td>
                    <td>{ms(m.p99)}</td>
                  </tr>
                )),
              )}
            </tbody>
          </table>
          <p class="small" data-testid="diagnostics-failures">
            {failures.length === 0
              ? "No job failed."
              : `Failed attempts by reason: ${failures.map((f) => `${f.label} ${f.count}`).join(", ")}.`}{" "}
            Answers cancelled: {total(stats, "answer_cancelled")}; replaced because their passages did not support them:{" "}
            {total(stats, "answer_unsupported")}.
          </p>
          <p class="small" data-testid="diagnostics-health">
            Search index: {plural(stats.health.indexEntries, "entry", "entries")} for {plural(stats.health.passages, "passage")},{" "}
            {formatBytes(stats.health.indexMemoryBytes)} in memory, {formatBytes(stats.health.indexFileBytes)} on disk;{" "}
            {stats.health.indexProblem ? `it disagrees with the database: ${stats.health.indexProblem}` : "it agrees with the database"}
            ; {plural(stats.health.duplicateVectors, "duplicate vector")}. Database {formatBytes(stats.health.databaseBytes)};{" "}
            {plural(stats.health.queuedJobs, "job")} queued.
          </p>
          {lastDay.length > 0 && (
            <div class="charts">
              <Bars label="Jobs per hour" hours={lastDay} value={(h) => h.jobs} show={(v) => String(v)} testid="chart-jobs" />
              <Bars label="Time per job" hours={lastDay} value={(h) => h.meanJobMs} show={ms} testid="chart-job-time" />
            </div>
          )}
        </div>
      )}
      <div class="actions">
        <button type="button" class="btn" data-testid="diagnostics-refresh" onClick={() => void load()}>
          Refresh
        </button>
        <button type="button" class="btn" data-testid="copy-report" disabled={busy} onClick={() => void copyReport()}>
          Copy a diagnostic report
        </button>
      </div>
      {report !== null && (
        <textarea class="report" readOnly rows={8} aria-label="Diagnostic report" data-testid="diagnostic-report" value={report} />
      )}
    </section>
  );
}
