// Round trips of the desktop window's commands, as its front end sees them, while a large
// folder ingests, against the same window idle (the anchor), in one run. Started by
// bench/ui-latency inside scripts/e2e's setting (Xvfb, tauri-driver, a throwaway data
// directory); the folders to ingest are its arguments.
//
// Each sample is one `invoke` timed with performance.now() inside the page, so the WebDriver
// hop is not counted. Samples are spaced (SPACING_MS) so that they spread over the ingestion
// instead of queueing behind each other. `ping` is the cheapest command; `jobs` also reads the
// database through the core.
//
// The folders are dropped through the page's own drop handler (window.doppelDrop: `ingest_paths`,
// then the front end reads the list's first page), timed in the page, and `ingest_paths` alone
// by the measure the page takes of it. While the samples run, a heartbeat
// every 10 ms in the page records the longest time it had to wait: a stall of the page's one
// thread, whatever caused it.

import { App } from "../tests/e2e/app.mjs";

const SAMPLES = Number(process.env.SAMPLES ?? 1000);
const SPACING_MS = Number(process.env.SPACING_MS ?? 10);
const folders = process.argv.slice(2);

/** Times `count` calls of `command` in the page, `spacing` ms apart; returns milliseconds. */
function sample(app, command, args, count, spacing) {
  return app.session.executeAsync(
    `const [command, args, count, spacing, done] = arguments;
     const invoke = window.__TAURI_INTERNALS__.invoke;
     const times = [];
     (async () => {
       for (let i = 0; i < count; i++) {
         const start = performance.now();
         await invoke(command, args);
         times.push(performance.now() - start);
         await new Promise((r) => setTimeout(r, spacing));
       }
     })().then(() => done(times), (e) => done({ error: String(e?.message ?? JSON.stringify(e)) }));`,
    [command, args, count, spacing],
  );
}

function stats(times) {
  if (!Array.isArray(times)) throw new Error(JSON.stringify(times));
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { n: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted.at(-1) };
}

function row(label, s) {
  const ms = (x) => x.toFixed(2);
  return `| ${label} | ${s.n} | ${ms(s.p50)} | ${ms(s.p90)} | ${ms(s.p99)} | ${ms(s.max)} |`;
}

const app = await App.start();
try {
  // Warm up: the first calls load the page's IPC path and the core's read connections.
  await sample(app, "ping", {}, 50, 1);
  await sample(app, "jobs", { activeOnly: true }, 20, 1);

  const idlePing = stats(await sample(app, "ping", {}, SAMPLES, SPACING_MS));
  const idleJobs = stats(await sample(app, "jobs", { activeOnly: true }, SAMPLES / 5, SPACING_MS));

  await app.session.execute(
    `window.doppelMeasure = true;
     const beat = (window.__beat = { last: performance.now(), longest: 0, gaps: [] });
     window.__beatTimer = setInterval(() => {
       const now = performance.now();
       const gap = now - beat.last;
       beat.longest = Math.max(beat.longest, gap);
       if (gap > 100) beat.gaps.push({ from: beat.last, to: now });
       beat.last = now;
     }, 10);
     return null;`,
  );
  const drop = await app.session.executeAsync(
    `const [paths, done] = arguments;
     const start = performance.now();
     window.doppelDrop(paths).then(() => done(performance.now() - start), (e) => done({ error: String(e) }));`,
    [folders],
  );
  if (typeof drop !== "number") throw new Error(JSON.stringify(drop));
  const ingestPaths = await app.session.execute(
    `return performance.getEntriesByName("doppel:ingest_paths").at(-1)?.duration ?? null`,
  );
  const queued = await app.session.execute(
    `return Number(document.querySelector('[data-testid="source-list"]')?.dataset.count ?? 0)`,
  );
  // The worker claims the first job at once; the counts below show how far it got meanwhile.
  const loadPing = stats(await sample(app, "ping", {}, SAMPLES, SPACING_MS));
  const loadJobs = stats(await sample(app, "jobs", { activeOnly: true }, SAMPLES / 5, SPACING_MS));
  const stall = await app.session.execute("clearInterval(window.__beatTimer); return window.__beat.longest;");
  // What the page measured of its own work (events applied, changes read) during each long
  // wait of the heartbeat: which of them held the page's thread.
  const gaps = await app.session.execute(
    `const marks = performance.getEntriesByType("measure").filter((m) => m.name.startsWith("doppel:"));
     return window.__beat.gaps
       .sort((a, b) => (b.to - b.from) - (a.to - a.from))
       .slice(0, 5)
       .map((g) => ({
         ms: Math.round(g.to - g.from),
         during: marks
           .filter((m) => m.startTime < g.to && m.startTime + m.duration > g.from)
           .map((m) => m.name + " " + Math.round(m.duration) + " ms"),
       }));`,
  );
  const sources = await app.invoke("sources", { twin: 1 });
  const count = (state) => sources.filter((s) => s.state === state).length;
  const waiting = count("queued") + count("processing");

  console.log(`\n${queued} files queued from ${folders.join(", ")}; while sampling, ${count("ready")} became ready and ${count("failed")} failed; ${waiting} still waiting at the end`);
  if (waiting === 0) console.log("warning: ingestion ended before sampling did; use larger folders");
  console.log("\n| command | samples | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|");
  console.log(row("`ping`, idle (anchor)", idlePing));
  console.log(row("`ping`, while ingesting", loadPing));
  console.log(row("`jobs`, idle (anchor)", idleJobs));
  console.log(row("`jobs`, while ingesting", loadJobs));
  console.log(`\nthe drop of ${queued} files: ingest_paths returned in ${ingestPaths.toFixed(0)} ms (goal: within 1 s: ${ingestPaths < 1000 ? "met" : "NOT met"}); with the list's first page read after it, ${drop.toFixed(0)} ms`);
  console.log(`longest wait of the page's 10 ms heartbeat while ingesting: ${stall.toFixed(0)} ms (goal: no stall over 250 ms: ${stall <= 250 ? "met" : "NOT met"})`);
  for (const g of gaps) console.log(`  a wait of ${g.ms} ms, during: ${g.during.join(", ") || "nothing the page measured"}`);
  console.log(`\ngoal: p99 under 50 ms while ingesting: ping ${loadPing.p99 < 50 ? "met" : "NOT met"}, jobs ${loadJobs.p99 < 50 ? "met" : "NOT met"}`);
} finally {
  await app.quit();
}
