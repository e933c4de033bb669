// The Sources view of the real window with 50,000 sources (SOURCES): started by bench/ui-scale
// inside scripts/e2e's setting. The rows are written into the real database file by
// tests/e2e/fill-sources.py while the app is closed; everything measured is then the app itself:
//
// - open, cold: the page loads with Sources open; the time from the navigation's start to the
//   first rows on screen (the `doppel:sources-shown` mark the view sets), median of RUNS;
// - open, warm: a click on Sources from Chat until its rows are painted, median of RUNS;
// - scrolling: the list scrolled by 400 px a frame for SCROLL_MS, frames counted by
//   requestAnimationFrame (frames per second, and the longest frame);
// - memory: the resident size (RSS and PSS) of the page's WebKitWebProcess, after scrolling.

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { App, byTestId, env, poll } from "../tests/e2e/app.mjs";

const SOURCES = Number(process.env.SOURCES ?? 50_000);
const RUNS = Number(process.env.RUNS ?? 5);
const SCROLL_MS = Number(process.env.SCROLL_MS ?? 4000);
const FILL = new URL("../tests/e2e/fill-sources.py", import.meta.url).pathname;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Processes whose command line names `needle`, with their parent's pid. */
function processes() {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
        return { pid: Number(pid), ppid, cmd };
      } catch {
        return null;
      }
    })
    .filter(Boolean);
}

/** RSS and PSS in MB of the web process of the doppel-desktop started for this run. */
function pageMemory() {
  const all = processes();
  const app = all.find((p) => p.cmd.startsWith(env.application));
  const web = all.filter((p) => p.ppid === app?.pid && /WebKitWebProcess/.test(p.cmd));
  return web.map((p) => {
    const status = readFileSync(`/proc/${p.pid}/status`, "utf8");
    const rollup = readFileSync(`/proc/${p.pid}/smaps_rollup`, "utf8");
    const kb = (text, key) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"))?.[1] ?? 0);
    return { pid: p.pid, rssMb: kb(status, "VmRSS") / 1024, pssMb: kb(rollup, "Pss") / 1024 };
  });
}

let app = await App.start();
try {
  await app.element(byTestId("nav-sources"));
  await app.quit();
  const twin = execFileSync("python3", [FILL, join(env.dataDir, "doppel.sqlite3"), "Archive", String(SOURCES)]).toString().trim();
  app = await App.start();
  await app.element(byTestId("nav-sources"));
  await app.session.execute(`localStorage.setItem("doppel.twin", arguments[0]); return null;`, [twin]);

  const cold = [];
  for (let i = 0; i < RUNS; i++) {
    await app.session.execute("location.reload(); return null;");
    const at = await poll("the rows after a reload", () =>
      app.session.execute(`return performance.getEntriesByName("doppel:sources-shown")[0]?.startTime ?? null`),
    );
    const count = await app.session.execute(`return document.querySelector('[data-testid="source-list"]')?.dataset.count`);
    if (Number(count) !== SOURCES) throw new Error(`the list holds ${count} rows, not ${SOURCES}`);
    cold.push(at);
  }

  const warm = [];
  for (let i = 0; i < RUNS; i++) {
    await app.click(byTestId("nav-chat"));
    warm.push(
      await app.session.executeAsync(
        `const done = arguments[0];
         const start = performance.now();
         document.querySelector('[data-testid="nav-sources"]').click();
         const check = () => {
           const row = document.querySelector('[data-testid="view-sources"]:not([hidden]) [data-testid="source-row"]');
           if (row && row.getClientRects().length > 0) requestAnimationFrame(() => done(performance.now() - start));
           else requestAnimationFrame(check);
         };
         requestAnimationFrame(check);`,
      ),
    );
  }

  const scroll = await app.session.executeAsync(
    `const [duration, done] = arguments;
     const scroller = document.querySelector('.source-scroller');
     const frames = [];
     const start = performance.now();
     const step = (t) => {
       frames.push(t);
       scroller.scrollTop += 400;
       if (scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight) scroller.scrollTop = 0;
       if (t - start < duration) requestAnimationFrame(step);
       else {
         const gaps = frames.slice(1).map((f, i) => f - frames[i]);
         const rows = document.querySelectorAll('[data-testid="source-row"]').length;
         done({ frames: frames.length, ms: t - start, longest: Math.max(...gaps), over20: gaps.filter((g) => g > 20).length, rows });
       }
     };
     requestAnimationFrame(step);`,
    [SCROLL_MS],
  );

  const memory = pageMemory();
  const fps = (scroll.frames - 1) / (scroll.ms / 1000);
  console.log(`\n${SOURCES.toLocaleString()} sources in the twin; ${RUNS} runs each`);
  console.log("\n| measure | value | goal |\n|---|---:|---|");
  console.log(`| Sources view, cold (page load to rows shown), median | ${median(cold).toFixed(0)} ms (${cold.map((x) => x.toFixed(0)).join(", ")}) | under 500 ms |`);
  console.log(`| Sources view, warm (click to rows painted), median | ${median(warm).toFixed(0)} ms (${warm.map((x) => x.toFixed(0)).join(", ")}) | under 500 ms |`);
  console.log(`| scrolling, 400 px a frame for ${SCROLL_MS / 1000} s | ${fps.toFixed(1)} frames/s; longest frame ${scroll.longest.toFixed(1)} ms; ${scroll.over20} frames over 20 ms; ${scroll.rows} rows in the page | 60 frames/s |`);
  for (const m of memory) {
    console.log(`| page memory (WebKitWebProcess ${m.pid}) | RSS ${m.rssMb.toFixed(0)} MB, PSS ${m.pssMb.toFixed(0)} MB | under 200 MB |`);
  }
} finally {
  await app.quit();
}
