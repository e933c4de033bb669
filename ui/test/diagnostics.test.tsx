// Settings' Diagnostics: the figures the core measured, the failures by reason, the index's
// health, the charts, and the report copied for a bug report.

import { afterEach, describe, expect, it } from "vitest";
import { App } from "../src/app";
import { $, baseHandlers, click, fakeShell, mount, resetShell, tid, until } from "./helpers";

afterEach(resetShell);

const stats = {
  days: 30,
  keepDays: 30,
  metrics: [
    { metric: "job_ms", label: "html", count: 12, sum: 3000, p50: 210, p95: 1400, p99: 2100, max: 2100 },
    { metric: "job_failed", label: "malformed", count: 3, sum: 3, p50: 1, p95: 1, p99: 1, max: 1 },
    { metric: "answer_cancelled", label: "", count: 2, sum: 2, p50: 1, p95: 1, p99: 1, max: 1 },
  ],
  hours: [
    { startMs: 0, jobs: 10, meanJobMs: 200, failures: 1 },
    { startMs: 3_600_000, jobs: 5, meanJobMs: 300, failures: 2 },
  ],
  health: {
    passages: 300,
    indexEntries: 300,
    indexMemoryBytes: 600_000,
    indexFileBytes: 580_000,
    databaseBytes: 2_000_000,
    indexProblem: null,
    duplicateVectors: 0,
    queuedJobs: 0,
  },
};

describe("Diagnostics in Settings", () => {
  it("shows job times by format, failures by reason, the index's health and charts per hour", async () => {
    fakeShell({ ...baseHandlers(), stats: () => stats });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("metric-job_ms-html")));
    const row = $(tid("metric-job_ms-html")).textContent ?? "";
    expect(row).toContain("12");
    expect(row).toContain("210 ms");
    expect(row).toContain("2.1 s");
    expect($(tid("diagnostics-failures")).textContent).toContain("malformed 3");
    expect($(tid("diagnostics-failures")).textContent).toContain("Answers cancelled: 2");
    expect($(tid("diagnostics-health")).textContent).toContain("it agrees with the database");
    expect($(tid("chart-jobs")).querySelectorAll(".bar").length).toBe(2);
    expect($(tid("chart-jobs")).textContent).toContain("last hour: 5");
  });

  it("copies the diagnostic report and shows it", async () => {
    fakeShell({ ...baseHandlers(), stats: () => stats, diagnostic_report: () => "# Doppel diagnostic report\nfailures by code: malformed 3\n" });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("copy-report")));
    await click($(tid("copy-report")));
    await until(() => $(tid("diagnostic-report")));
    expect(($(tid("diagnostic-report")) as HTMLTextAreaElement).value).toContain("failures by code: malformed 3");
  });
});
