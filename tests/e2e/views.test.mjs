// End-to-end tests of the views over a twin as a whole, through the real window: Knowledge with a
// failed and a skipped file, Retry, "Why isn't this found?"; Search with a filter; the queue
// paused and resumed across a restart; the notification at the end of a long ingest; 50,000
// sources in a list that renders only what is in view; every view checked by axe-core and
// photographed at three sizes in light and dark. Run by scripts/e2e after ui.test.mjs, on the
// same data directory, in a twin of its own.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { App, byTestId, env, poll } from "./app.mjs";

const AXE = new URL("../../ui/node_modules/axe-core/axe.min.js", import.meta.url);
const FILL = new URL("./fill-sources.py", import.meta.url).pathname;

/** Chooses the twin named `name` in the sidebar's switcher, as a person picks an option. */
async function chooseTwin(app, name) {
  await app.element(byTestId("twin-switcher"));
  await app.session.execute(
    `const select = document.querySelector('[data-testid="twin-switcher"]');
     const option = [...select.options].find((o) => o.textContent === arguments[0]);
     select.value = option.value;
     select.dispatchEvent(new Event("change", { bubbles: true }));
     return null;`,
    [name],
  );
  await app.waitFor(`the twin ${name}`, byTestId("twin-switcher"), (found) => found.some((s) => s.value && s.shown) && found);
}

/** A worker round trip: had the worker claimed a queued job, this would wait for that job's end. */
async function roundTrip(app, twin, name) {
  await app.invoke("rename_twin", { twin, name });
}

/** The axe-core violations of the page as it is, serious or critical only. */
async function seriousViolations(app) {
  const loaded = await app.session.execute("return typeof window.axe === 'object'");
  if (!loaded) await app.session.execute(readFileSync(AXE, "utf8") + "\nreturn null;");
  const result = await app.session.executeAsync(
    `const done = arguments[0];
     window.axe.run(document, { resultTypes: ["violations"] }).then(
       (r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
         nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }))),
       (e) => done({ error: String(e) }));`,
  );
  assert.ok(Array.isArray(result), JSON.stringify(result));
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

async function setTheme(app, theme) {
  await poll(`the ${theme} theme`, async () => {
    const now = await app.session.execute("return document.documentElement.dataset.theme ?? 'system'");
    if (now === theme) return true;
    await app.click(byTestId("theme-toggle"));
    return false;
  });
}

describe("the window over a twin as a whole", () => {
  let app;
  let twin;
  const docs = mkdtempSync(join(tmpdir(), "doppel-e2e-views-"));
  const notes = join(docs, "notes");
  const sub = join(notes, "coast");
  mkdirSync(sub, { recursive: true });
  const orchard = join(notes, "orchard.md");
  const ledger = join(notes, "ledger.json");
  const lighthouse = join(sub, "lighthouse.html");
  writeFileSync(orchard, "# Orchard\n\nAunt Wilhelmina planted the quince orchard in 1987, twelve trees along the brook.\n");
  writeFileSync(join(notes, "chutney.txt"), "Damson chutney simmers for three hours in the copper pan.\n");
  writeFileSync(lighthouse, "<title>Lighthouse</title><p>The keeper of the Skerryvore light wound the clockwork every four hours.</p>");
  writeFileSync(join(notes, "empty.txt"), "   \n");
  writeFileSync(ledger, '{"broken": ');

  before(async () => {
    app = await App.start();
    twin = (await app.invoke("create_twin", { name: "Keeper" })).id;
    await app.session.execute("location.reload(); return null;");
    await app.element(byTestId("nav-sources"));
    await chooseTwin(app, "Keeper");
  });

  after(async () => {
    await app?.quit();
    rmSync(docs, { recursive: true, force: true });
  });

  it("shows what the twin knows, each failure and skip with its reason, and Retry learns a mended file", async () => {
    await app.click(byTestId("nav-sources"));
    await app.session.executeAsync("const [paths, done] = arguments; window.doppelDrop(paths).then(() => done(null));", [[notes]]);
    await app.waitFor("the files to be read", byTestId("source-row"), (rows) =>
      rows.length === 5 && rows.every((r) => ["ready", "failed"].includes(r.attributes["data-state"])) && rows,
      { timeoutMs: 120_000 },
    );
    await app.click(byTestId("nav-coverage"));
    const count = async (state) =>
      Number((await app.elements(byTestId("coverage-state", { "data-state": state })))[0]?.text.match(/[\d,]+/)?.[0].replace(/,/g, ""));
    await poll("the counts", async () => (await count("ready")) === 3 && (await count("failed")) === 1 && (await count("skipped")) === 1);
    const broken = await app.waitFor("the failure", byTestId("coverage-problem", { "data-code": "malformed" }));
    assert.match(broken[0].text, /ledger\.json/);
    assert.match(broken[0].text, /malformed/);
    const empty = await app.waitFor("the skip", byTestId("coverage-problem", { "data-code": "empty" }));
    assert.equal(empty[0].attributes["data-kind"], "skipped");
    assert.equal((await app.elements(`${byTestId("coverage-problem", { "data-code": "empty" })} ${byTestId("coverage-retry")}`)).length, 0, "nothing to retry in an empty file");
    const embedded = await app.elements(byTestId("coverage-embedded"));
    assert.match(embedded[0].text, /of \d+ passages/, "the model in use and what it embedded");
    await app.screenshot("views-01-knowledge");

    writeFileSync(ledger, '{"ledger": "Bought twelve quince saplings from the Dunmore nursery."}');
    await app.click(`${byTestId("coverage-problem", { "data-code": "malformed" })} ${byTestId("coverage-retry")}`);
    await poll("the mended file to be learnt", async () => (await count("failed")) === 0 && (await count("ready")) === 4, { timeoutMs: 120_000 });
  });

  it("says why a word is not found, and where one that is found is", async () => {
    await app.click(byTestId("nav-coverage"));
    await app.type(byTestId("why-input"), "zeppelin", { clear: true });
    await app.click(byTestId("why-submit"));
    const missing = await app.waitFor("the answer for a missing word", byTestId("why-result"), (r) => r[0]?.text.includes("zeppelin") && r);
    assert.equal(missing[0].attributes["data-found"] === "true", (await app.elements(byTestId("why-meaning-hit"))).length > 0);
    assert.match((await app.elements(byTestId("why-word", { "data-word": "zeppelin" })))[0].text, /no passage/);
    assert.equal((await app.elements(byTestId("why-named-none"))).length, 1);

    await app.type(byTestId("why-input"), "planting", { clear: true });
    await app.click(byTestId("why-submit"));
    const word = await app.waitFor("the word's passages", byTestId("why-word", { "data-word": "planting" }));
    assert.equal(word[0].attributes["data-passages"], "1");
    const hits = await app.elements(byTestId("why-keyword-hit"));
    assert.match(hits[0].text, /Orchard/);
    // The embedding model is there in the tests: search by meaning runs and says what it found.
    assert.equal((await app.elements(byTestId("why-meaning-problem"))).length, 0);
    await app.screenshot("views-02-why");
  });

  it("searches with a folder filter, marks the words, and opens a hit as a citation", async () => {
    await app.click(byTestId("nav-search"));
    await app.type(byTestId("search-input"), "orchard keeper clockwork", { clear: true });
    // The radio button itself is drawn by its label, which is what a person clicks.
    await app.click(`label:has(> ${byTestId("search-mode-keyword")})`);
    await app.click(byTestId("search-submit"));
    const all = await app.waitFor("hits in every folder", byTestId("search-hit-title"), (found) => found.length >= 2 && found);
    assert.ok(all.some((h) => h.text === "Orchard") && all.some((h) => h.text === "Lighthouse"), JSON.stringify(all));

    await app.click(byTestId("search-filters-toggle"));
    await app.waitFor("the folder choices", `${byTestId("search-folder")} option`, (o) => o.some((x) => x.value === sub) && o);
    await app.session.execute(
      `const select = document.querySelector('[data-testid="search-folder"]');
       select.value = arguments[0];
       select.dispatchEvent(new Event("change", { bubbles: true }));
       return null;`,
      [sub],
    );
    await app.click(byTestId("search-submit"));
    const narrowed = await app.waitFor("only the folder's hit", byTestId("search-hit-title"), (found) =>
      found.length === 1 && found[0].text === "Lighthouse" && found,
    );
    assert.equal(narrowed.length, 1);
    const marked = await app.elements(`${byTestId("search-hit")} ${byTestId("marked-word")}`);
    assert.deepEqual(marked.map((m) => m.text.toLowerCase()).sort(), ["clockwork", "keeper"]);
    await app.screenshot("views-03-search");

    await app.click(byTestId("search-hit"));
    const panel = await app.waitFor("the hit's passage", byTestId("passage-panel"));
    assert.match(panel[0].text, /Skerryvore/);
    assert.equal((await app.elements(byTestId("passage-origin")))[0].text, lighthouse);
    assert.ok((await app.elements(`${byTestId("passage-quote")} ${byTestId("marked-word")}`)).length >= 2);
    await app.click(byTestId("passage-close"));
  });

  it("keeps the queue paused across a restart, and Resume lets it go on", async () => {
    await app.click(byTestId("nav-sources"));
    await app.click(byTestId("queue-pause"));
    await app.waitFor("the paused queue", byTestId("queue-status", { "data-paused": "true" }));
    const plan = join(docs, "plan.md");
    writeFileSync(plan, "# Plan\n\nSow the broad beans in November, after the quinces are picked.\n");
    await app.session.executeAsync("const [paths, done] = arguments; window.doppelDrop(paths).then(() => done(null));", [[plan]]);
    await roundTrip(app, twin, "Keeper");
    const queued = await app.waitFor("the new file, waiting", byTestId("source-row"), (rows) => rows.find((r) => r.text.includes("plan.md")));
    assert.equal(queued.attributes["data-state"], "queued");
    await app.screenshot("views-04-paused");

    await app.quit();
    app = await App.start();
    await app.element(byTestId("nav-sources"));
    await chooseTwin(app, "Keeper");
    await app.waitFor("the queue still paused", byTestId("queue-status", { "data-paused": "true" }));
    await roundTrip(app, twin, "Keeper");
    const still = await app.waitFor("the file still waiting", byTestId("source-row"), (rows) => rows.find((r) => r.text.includes("plan.md")));
    assert.equal(still.attributes["data-state"], "queued");

    await app.click(byTestId("queue-resume"));
    await app.waitFor("the file learnt", byTestId("source-row"), (rows) =>
      rows.some((r) => /Plan/.test(r.text) && r.attributes["data-state"] === "ready"),
      { timeoutMs: 120_000 },
    );
    await app.waitFor("the queue running", byTestId("queue-status", { "data-paused": "false" }));
  });

  it("sends a desktop notification when an ingest ends while the window is in the background", async () => {
    const log = join(docs, "notifications.txt");
    // A monitor of the session bus sees the notification as the desktop's notification server
    // would receive it (there is none under Xvfb: the call itself is what is checked).
    const monitor = spawn("dbus-monitor", ["--session", "interface='org.freedesktop.Notifications'"], { stdio: ["ignore", "pipe", "ignore"] });
    let seen = "";
    monitor.stdout.on("data", (d) => {
      seen += d;
      writeFileSync(log, seen);
    });
    try {
      await poll("the bus monitor", () => seen.includes("NameAcquired"));
      // The run before this one has ended, as the window saw it.
      await app.click(byTestId("nav-sources"));
      await app.waitFor("an idle queue", byTestId("queue-status"), (found) => found.some((q) => /Nothing waiting/.test(q.text)) && found);
      // The threshold of a long ingest comes down to nothing, and the window loses the focus
      // (no window manager runs here to take it away: the page is told as the system tells it).
      await app.session.execute("window.doppelLongRunMs = 0; window.dispatchEvent(new Event('blur')); return null;");
      const harvest = join(docs, "harvest.md");
      writeFileSync(harvest, "# Harvest\n\nThe quinces were picked on the third of October.\n");
      await app.session.executeAsync("const [paths, done] = arguments; window.doppelDrop(paths).then(() => done(null));", [[harvest]]);
      await poll("the notification", () => seen.includes("Doppel finished learning"), { timeoutMs: 120_000 });
      assert.match(seen, /1 file read and learnt/);
    } finally {
      monitor.kill();
      await app.session.execute("window.dispatchEvent(new Event('focus')); delete window.doppelLongRunMs; return null;");
    }
  });

  it("shows 50,000 sources by rendering only the rows in view", async () => {
    await app.quit();
    const big = execFileSync("python3", [FILL, join(env.dataDir, "doppel.sqlite3"), "Archive", "50000"]).toString().trim();
    app = await App.start();
    await app.element(byTestId("nav-sources"));
    await chooseTwin(app, "Archive");
    const list = await app.waitFor("the list of 50,000", byTestId("source-list"), (l) => l[0]?.attributes["data-count"] === "50000" && l);
    assert.ok(list[0].shown);
    const rows = await app.elements(byTestId("source-row"));
    assert.ok(rows.length > 5 && rows.length < 80, `${rows.length} rows in the page`);
    assert.match((await app.elements(byTestId("sources-summary")))[0].text, /42,?500 sources ready/);
    // The last row is reached by keyboard: End on a row brings the oldest source into view.
    await app.session.execute("document.querySelector('[data-testid=\"source-row\"] button').focus(); return null;");
    await app.session.sendKeys(await app.session.execute("return document.activeElement"), "\uE010");
    await app.waitFor("the oldest source in view", byTestId("source-row"), (found) => found.some((r) => /Note 00000 of the archive/.test(r.text) && r.shown));
    assert.ok((await app.elements(byTestId("source-row"))).length < 80);
    const scrolled = await app.session.execute("return document.querySelector('.source-scroller').scrollTop");
    assert.ok(scrolled > 50_000 * 60, `the list is scrolled to its end (${scrolled} px)`);
    await app.screenshot("views-05-50000-sources");
    assert.ok(Number(big) > 1);
  });

  it("passes axe-core's checks and is photographed in every view at three sizes, light and dark", async () => {
    await chooseTwin(app, "Keeper");
    const views = ["sources", "coverage", "search", "chat", "twin", "settings"];
    const sizes = [[640, 480], [1100, 760], [1920, 1080]];
    const problems = [];
    for (const theme of ["light", "dark"]) {
      await setTheme(app, theme);
      for (const [width, height] of sizes) {
        await app.session.setWindowRect(width, height);
        await poll(`a window of ${width}×${height}`, async () => {
          const inner = await app.session.execute("return [window.innerWidth, window.innerHeight]");
          return Math.abs(inner[0] - width) <= 40 && Math.abs(inner[1] - height) <= 80;
        });
        for (const view of views) {
          await app.click(byTestId(`nav-${view}`));
          await app.waitFor(`the ${view} view`, byTestId(`view-${view}`));
          if (width !== 1920) {
            for (const v of await seriousViolations(app)) problems.push({ theme, view, ...v });
          }
          await app.screenshot(`views-${theme}-${width}x${height}-${view}`);
        }
      }
    }
    await setTheme(app, "system");
    assert.deepEqual(problems, [], JSON.stringify(problems, null, 2));
  });
});
