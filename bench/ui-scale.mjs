// The Sources view of the real window with 50,000 sources (SOURCES): started by bench/ui-scale
// inside scripts/e2e's setting. The rows are written into the real database file by
// tests/e2e/fill-sources.py while the app is closed; everything measured is then the app itself:
//
// - open, cold: the app starts with Sources open; the time from the page's navigation to the
//   first rows on screen (the `doppel:sources-shown` mark the view sets), median of RUNS;
// - open, reloaded: the page loaded again while the core stays open, the same mark;
// - open, warm: a click on Sources from Chat until its rows are painted, median of RUNS;
// - scrolling: the list scrolled by 400 px a frame for SCROLL_MS, frames counted by
//   requestAnimationFrame (frames per second, and the longest frame), beside two anchors of the
//   same run: the page idle, and a plain element as tall as the list scrolled the same way
//   (what this machine's rendering allows at all);
// - memory: the resident size (RSS and PSS) of the page's WebKitWebProcess, with no source at all
//   (the anchor), once the list is open, and after scrolling.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { App, byTestId, env, poll, webProcesses } from "../tests/e2e/app.mjs";

const SOURCES = Number(process.env.SOURCES ?? 50_000);
const RUNS = Number(process.env.RUNS ?? 5);
// (Memory is read 3 s after the page settles, so that timers and collections of the start ran.)
const SCROLL_MS = Number(process.env.SCROLL_MS ?? 4000);
const FILL = new URL("../tests/e2e/fill-sources.py", import.meta.url).pathname;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** RSS and PSS in MB of the web process of the doppel-desktop started for this run. */
function pageMemory() {
  return webProcesses().map((pid) => {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (text, key) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"))?.[1] ?? 0);
    return { pid, rssMb: kb(status, "VmRSS") / 1024, pssMb: kb(rollup, "Pss") / 1024 };
  });
}

/** Starts the app and waits until Sources shows its rows; returns the mark's time. */
async function startShown() {
  const app = await App.start();
  const at = await poll("the rows after the start", () =>
    app.session.execute(`return performance.getEntriesByName("doppel:sources-shown")[0]?.startTime ?? null`),
  );
  return { app, at };
}

// The window with no source at all, for the memory it takes by itself.
let app = await App.start();
await app.element(byTestId("nav-sources"));
await app.session.execute("return new Promise((r) => setTimeout(r, 3000)).then(() => null)");
const empty = pageMemory();
const drawing = (await app.invoke("app_info")).rendering;
await app.quit();

const twin = execFileSync("python3", [FILL, join(env.dataDir, "doppel.sqlite3"), "Archive", String(SOURCES)]).toString().trim();
app = await App.start();
await app.session.execute(`localStorage.setItem("doppel.twin", arguments[0]); return null;`, [twin]);
await app.quit();
try {
  // Cold: each start of the app, from the page's navigation to the first rows on screen.
  const cold = [];
  let loadedMemory = [];
  for (let i = 0; i < RUNS; i++) {
    const started = await startShown();
    app = started.app;
    cold.push(started.at);
    const count = await app.session.execute(`return document.querySelector('[data-testid="source-list"]')?.dataset.count`);
    if (Number(count) !== SOURCES) throw new Error(`the list holds ${count} rows, not ${SOURCES}`);
    if (i < RUNS - 1) await app.quit();
  }
  await app.session.execute("return new Promise((r) => setTimeout(r, 3000)).then(() => null)");
  loadedMemory = pageMemory();

  // The page loaded again while the core stays open: the view itself, without the app's start.
  const reload = [];
  for (let i = 0; i < RUNS; i++) {
    await app.session.execute("location.reload(); return null;");
    reload.push(
      await poll("the rows after a reload", () =>
        app.session.execute(`return performance.getEntriesByName("doppel:sources-shown")[0]?.startTime ?? null`),
      ),
    );
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

  // Frames of the page idle, and of a plain element as tall as the list scrolled the same way:
  // what this machine's rendering allows, beside the list itself.
  const frames = (script) => app.session.executeAsync(script, [SCROLL_MS]);
  const idle = await frames(
    `const [duration, done] = arguments; const f = []; const s = performance.now();
     const step = (t) => { f.push(t); if (t - s < duration) requestAnimationFrame(step); else done((f.length - 1) / ((t - s) / 1000)); };
     requestAnimationFrame(step);`,
  );
  const plain = await frames(
    `const [duration, done] = arguments;
     const scroller = document.querySelector('.source-scroller');
     const box = scroller.getBoundingClientRect();
     const d = document.createElement('div');
     d.style.cssText = \`position:fixed;left:\${box.left}px;top:\${box.top}px;width:\${box.width}px;height:\${box.height}px;overflow:auto;z-index:99;background:var(--bg)\`;
     d.innerHTML = '<div style="height:' + scroller.scrollHeight + 'px;background:repeating-linear-gradient(var(--surface) 0 60px, var(--bg) 60px 66px)"></div>';
     document.body.appendChild(d);
     const f = []; const s = performance.now();
     const step = (t) => { f.push(t); d.scrollTop += 400; if (t - s < duration) requestAnimationFrame(step); else { d.remove(); done((f.length - 1) / ((t - s) / 1000)); } };
     requestAnimationFrame(step);`,
  );
  const scroll = await frames(
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
         const pending = document.querySelectorAll('.source-row.pending').length;
         done({ frames: frames.length, ms: t - start, longest: Math.max(...gaps), over20: gaps.filter((g) => g > 20).length, rows, pending });
       }
     };
     requestAnimationFrame(step);`,
  );
  const afterScroll = pageMemory();
  const fps = (scroll.frames - 1) / (scroll.ms / 1000);
  const memoryRow = (label, list) =>
    list.map((m) => `| page memory, ${label} | RSS ${m.rssMb.toFixed(0)} MB, PSS ${m.pssMb.toFixed(0)} MB | under 200 MB |`).join("\n");
  console.log(`\n${SOURCES.toLocaleString()} sources in the twin; ${RUNS} runs each; the window drawn ${drawing}`);
  console.log("\n| measure | value | goal |\n|---|---:|---|");
  console.log(`| Sources view, cold (app start: page navigation to rows shown), median | ${median(cold).toFixed(0)} ms (${cold.map((x) => x.toFixed(0)).join(", ")}) | under 500 ms |`);
  console.log(`| Sources view, page reloaded (core open: navigation to rows shown), median | ${median(reload).toFixed(0)} ms (${reload.map((x) => x.toFixed(0)).join(", ")}) | under 500 ms |`);
  console.log(`| Sources view, warm (click to rows painted), median | ${median(warm).toFixed(0)} ms (${warm.map((x) => x.toFixed(0)).join(", ")}) | under 500 ms |`);
  console.log(`| scrolling the list, 400 px a frame for ${SCROLL_MS / 1000} s | ${fps.toFixed(1)} frames/s; longest frame ${scroll.longest.toFixed(0)} ms; ${scroll.over20} frames over 20 ms; ${scroll.rows} rows in the page at the end | 60 frames/s |`);
  console.log(`| the same scroll of a plain element as tall (anchor) | ${plain.toFixed(1)} frames/s | |`);
  console.log(`| the page idle (anchor) | ${idle.toFixed(1)} frames/s | |`);
  console.log(memoryRow("no source (anchor)", empty));
  console.log(memoryRow(`${SOURCES.toLocaleString()} sources, after opening`, loadedMemory));
  console.log(memoryRow(`${SOURCES.toLocaleString()} sources, after scrolling`, afterScroll));
} finally {
  await app.quit();
}
