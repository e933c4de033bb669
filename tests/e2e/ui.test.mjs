// End-to-end tests through the real window: what a person does (drop files, type a question,
// press Stop or Esc, forget a source, save a key) and what they then see, asserted through the
// page's data-testid attributes (ui/TESTING.md). Commands are invoked directly only where the
// window has no way in that WebDriver can drive (the folder picker) or to check a result
// behind the screen (search, the keychain). Run by scripts/e2e after desktop.test.mjs, on the
// same data directory.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { App, byTestId, env, Keys, poll } from "./app.mjs";

const TWIN = 1;

function filesUnder(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** The source row titled `title`, as the person sees it, or undefined. */
async function row(app, title) {
  const rows = await app.elements(byTestId("source-row"));
  return rows.find((r) => r.text.includes(title));
}

/**
 * A loopback chat server that speaks Ollama's /api/chat: it streams one NDJSON piece at a time,
 * slowly, and never ends by itself, so that an answer can be stopped while it streams.
 */
function slowOllama() {
  const requests = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (d) => (body += d));
    request.on("end", () => {
      requests.push({ url: request.url, body });
      response.writeHead(200, { "content-type": "application/x-ndjson" });
      let n = 0;
      const piece = () => {
        n += 1;
        const content = n === 1 ? "The quince orchard" : ` word${n}`;
        response.write(`${JSON.stringify({ message: { role: "assistant", content }, done: false })}\n`);
      };
      piece();
      const timer = setInterval(piece, 150);
      response.on("close", () => clearInterval(timer));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve({ server, requests, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

describe("the window, driven as a person uses it", () => {
  let app;
  const docs = mkdtempSync(join(tmpdir(), "doppel-e2e-ui-"));
  const watched = mkdtempSync(join(tmpdir(), "doppel-e2e-watched-"));
  const orchard = join(docs, "orchard.md");
  const recipes = join(docs, "recipes.txt");
  const broken = join(docs, "broken.pdf");
  writeFileSync(
    orchard,
    "# The orchard\n\n## Quinces\n\nAunt Wilhelmina planted the quince orchard in 1987, " +
      "twelve trees along the brook, and pressed the first membrillo in 1991.\n",
  );
  writeFileSync(
    recipes,
    "Grandmother's damson chutney: two pounds of damsons, one onion, brown sugar, " +
      "cider vinegar, simmered for three hours in the copper pan.\n",
  );
  // Not a PDF at all: the parser must refuse it, and the others must still be learnt.
  writeFileSync(broken, Buffer.concat([Buffer.from("%PDF-1.7\n"), Buffer.alloc(4096, 0xa7), Buffer.from("garbage")]));
  let conversationId = null;
  let orchardId = null;

  before(async () => {
    assert.ok(env.dataDir, "DOPPEL_DATA_DIR names the test's data directory");
    app = await App.start();
    await app.element(byTestId("nav-sources"));
  });

  after(async () => {
    await app?.quit();
    rmSync(docs, { recursive: true, force: true });
    rmSync(watched, { recursive: true, force: true });
  });

  it("shows dropped files at once, learns them, and says why a broken one failed", async () => {
    await app.click(byTestId("nav-sources"));
    // Every state each row shows, in order, recorded in the page as it changes.
    await app.session.execute(
      `const seen = (window.__e2eStates = {});
       const record = () => {
         for (const row of document.querySelectorAll('[data-testid="source-row"]')) {
           const states = (seen[row.getAttribute("data-source-id")] ??= []);
           const state = row.getAttribute("data-state");
           if (states[states.length - 1] !== state) states.push(state);
         }
       };
       new MutationObserver(record).observe(document.body, { subtree: true, childList: true, attributes: true });
       record();
       return null;`,
    );
    const shownAtOnce = await app.session.executeAsync(
      `const [paths, done] = arguments;
       window.doppelDrop(paths).then(() => setTimeout(() => done(
         [...document.querySelectorAll('[data-testid="source-row"]')].map((r) => [
           r.querySelector('[data-testid="source-title"]')?.textContent,
           r.getAttribute("data-state"), r.getAttribute("data-source-id")])), 0));`,
      [[orchard, recipes, broken]],
    );
    // Each file is listed at once, under its file name until it is read, waiting its turn.
    const ids = {};
    for (const name of ["orchard.md", "recipes.txt", "broken.pdf"]) {
      const listed = shownAtOnce.find(([title]) => title === name);
      assert.ok(listed, `${name} is listed at once: ${JSON.stringify(shownAtOnce)}`);
      assert.ok(["queued", "processing", "ready", "failed"].includes(listed[1]), JSON.stringify(listed));
      ids[name] = listed[2];
    }

    const settled = await app.waitFor("the dropped files to be ready or failed", byTestId("source-row"), (rows) => {
      const of = (name) => rows.find((r) => r.attributes["data-source-id"] === ids[name])?.attributes["data-state"];
      return of("orchard.md") === "ready" && of("recipes.txt") === "ready" && of("broken.pdf") === "failed" && rows;
    }, { timeoutMs: 120_000 });
    const reason = await app.elements(`${byTestId("source-row", { "data-source-id": ids["broken.pdf"] })} ${byTestId("source-error")}`);
    assert.equal(reason.length, 1, "the failed row says why");
    assert.ok(reason[0].text.length > 0 && reason[0].shown, JSON.stringify(reason));
    orchardId = Number(ids["orchard.md"]);
    // Once read, a file is listed under its own title.
    await app.waitFor("the orchard under its own title", byTestId("source-row", { "data-source-id": ids["orchard.md"] }), (rows) =>
      rows.some((r) => /The orchard/.test(r.text) && /\b[1-9]\d* passages?\b/.test(r.text)),
    );

    const states = await app.session.execute("return window.__e2eStates");
    const order = ["queued", "processing", "ready", "failed"];
    for (const [name, end] of [["orchard.md", "ready"], ["recipes.txt", "ready"], ["broken.pdf", "failed"]]) {
      const seen = states[ids[name]] ?? [];
      assert.ok(["queued", "processing"].includes(seen[0]), `${name} started waiting: ${seen}`);
      assert.equal(seen[seen.length - 1], end, `${name}: ${seen}`);
      const ranks = seen.map((s) => order.indexOf(s));
      assert.ok(ranks.every((r, i) => i === 0 || r > ranks[i - 1]), `${name} only moved forward: ${seen}`);
    }
    const summary = await app.elements(byTestId("sources-summary"));
    assert.match(summary[0].text, /ready/);
    assert.match(summary[0].text, /1 failed/);
    await app.screenshot("ui-01-sources");

    await app.click(byTestId("source-row", { "data-source-id": orchardId }));
    const detail = await app.waitFor("the source's details", byTestId("source-detail"));
    assert.match(detail[0].text, /orchard/);
    const passages = await app.waitFor("the source's passages", byTestId("passage-item"));
    assert.match(passages.map((p) => p.text).join(" "), /Wilhelmina/);
    await app.screenshot("ui-02-source-details");
  });

  it("answers a typed question with a cited passage when no chat model is configured", async () => {
    await app.invoke("set_chat_model", { kind: "off" });
    await app.click(byTestId("nav-chat"));
    await app.click(byTestId("new-chat"));
    await app.type(byTestId("composer"), "Who planted the quince orchard?");
    await app.type(byTestId("composer"), Keys.ENTER);
    const question = await app.waitFor("the question in the conversation", byTestId("message", { "data-role": "user" }));
    assert.match(question.at(-1).text, /quince orchard/);
    const answer = await app.waitFor(
      "the answer to be complete",
      byTestId("message", { "data-role": "assistant" }),
      (found) => found.at(-1)?.attributes["data-state"] === "complete" && found.at(-1),
      { timeoutMs: 120_000 },
    );
    assert.match(answer.text, /Wilhelmina/);
    const notes = await app.elements(byTestId("message-note"));
    assert.ok(notes.some((n) => /no (chat |language )?model/i.test(n.text)), JSON.stringify(notes));
    const chips = await app.elements(byTestId("citation-chip"));
    assert.ok(chips.length >= 1, "the answer cites a passage");

    await app.click(byTestId("citation-chip"));
    const panel = await app.waitFor("the passage panel", byTestId("passage-panel"));
    assert.equal(panel[0].attributes["data-number"], chips[0].attributes["data-number"]);
    const quote = await app.waitFor("the passage's quote", byTestId("passage-quote"));
    const source = await app.elements(byTestId("passage-source"));
    assert.match(quote[0].text, /\S/);
    assert.ok(source[0].text.length > 0);
    assert.match(source[0].text, /orchard/, "the answer's sentence comes from the orchard note");
    assert.match(quote[0].text, /Wilhelmina/);
    // The citation names its file, and Open hands that file (a source of the twin) to the
    // system's opener.
    const origin = await app.elements(byTestId("passage-origin"));
    assert.equal(origin[0].text, orchard);
    await app.click(byTestId("open-source"));
    await poll("the file handed to the system's opener", () =>
      existsSync(env.opened) && readFileSync(env.opened, "utf8").split("\n").includes(orchard),
    );
    const current = await app.waitFor("the conversation in the list", byTestId("conversation-item", { "aria-current": "true" }));
    conversationId = current[0].attributes["data-conversation-id"];
    assert.ok(conversationId);
    await app.screenshot("ui-03-chat-answer");

    await app.click(byTestId("theme-toggle"));
    await poll("the dark theme", async () => {
      const dark = await app.session.execute(
        "return document.documentElement.dataset.theme === 'dark' || document.documentElement.classList.contains('dark')",
      );
      if (!dark) await app.click(byTestId("theme-toggle"));
      return dark;
    });
    await app.screenshot("ui-04-chat-dark");
    await poll("the theme back to following the system", async () => {
      const label = (await app.elements(byTestId("theme-toggle")))[0].text;
      if (label === "System") return true;
      await app.click(byTestId("theme-toggle"));
      return false;
    });
  });

  it("streams from a chat server, and Stop or Esc keep what was written", async () => {
    const ollama = await slowOllama();
    try {
      await app.invoke("set_chat_model", { kind: "ollama", url: ollama.url, model: "e2e-slow" });
      for (const how of ["stop button", "Esc"]) {
        await app.click(byTestId("new-chat"));
        await app.type(byTestId("composer"), "When was the quince orchard planted?");
        await app.type(byTestId("composer"), Keys.ENTER);
        const streaming = await app.waitFor(
          "the answer to stream a few pieces",
          byTestId("message", { "data-role": "assistant" }),
          (found) => {
            const last = found.at(-1);
            return last?.attributes["data-state"] === "streaming" && /word3/.test(last.text) && last;
          },
          { timeoutMs: 60_000 },
        );
        assert.match(streaming.text, /^The quince orchard/);
        if (how === "Esc") {
          await app.type(byTestId("composer"), Keys.ESCAPE);
        } else {
          await app.click(byTestId("stop"));
        }
        const stopped = await app.waitFor(
          `the answer to be stopped by the ${how}`,
          byTestId("message", { "data-role": "assistant" }),
          (found) => found.at(-1)?.attributes["data-state"] === "cancelled" && found.at(-1),
        );
        assert.match(stopped.text, /The quince orchard word2 word3/);
        const badge = await app.elements(byTestId("message-state"));
        assert.ok(badge.some((b) => /stopped/i.test(b.text)), JSON.stringify(badge));
        const stop = await app.elements(byTestId("stop"));
        assert.ok(!stop.some((s) => s.shown), "Stop is gone once the answer ended");
      }
      assert.ok(ollama.requests.length >= 2 && ollama.requests.every((r) => r.url === "/api/chat"));
    } finally {
      await app.invoke("set_chat_model", { kind: "local" });
      ollama.server.closeAllConnections();
      ollama.server.close();
    }
  });

  it("forgets a source through the window, and its citation then says so", async () => {
    await app.click(byTestId("nav-sources"));
    const selector = byTestId("source-row", { "data-source-id": orchardId });
    if (!(await app.elements(byTestId("source-detail"))).some((d) => d.shown && d.text.includes("orchard"))) {
      await app.click(selector);
    }
    await app.click(byTestId("delete-source"));
    await app.waitFor("the confirmation", byTestId("confirm-dialog"));
    await app.click(byTestId("confirm-ok"));
    await app.waitFor("the row to go", byTestId("source-row"), (rows) =>
      rows.length > 0 && !rows.some((r) => r.attributes["data-source-id"] === String(orchardId)),
    );
    const found = await app.invoke("search", { twin: TWIN, query: "Wilhelmina quince orchard", topK: 5 });
    assert.ok(!found.hits.some((h) => h.sourceId === orchardId), JSON.stringify(found.hits));

    await app.click(byTestId("nav-chat"));
    await app.click(byTestId("new-chat"));
    await app.click(byTestId("conversation-item", { "data-conversation-id": conversationId }));
    const answer = await app.waitFor(
      "the earlier answer",
      byTestId("message", { "data-role": "assistant" }),
      (found) => found.length === 1 && found[0].attributes["data-state"] === "complete" && found,
    );
    // Forgetting a source forgets its words in the answers that quoted them too.
    assert.doesNotMatch(answer[0].text, /Wilhelmina/, "the forgotten passage is not shown any more");
    const chips = await app.elements(byTestId("citation-chip"));
    const gone = chips.filter((c) => /source deleted/.test(c.attributes["aria-label"] ?? ""));
    assert.ok(gone.length >= 1, JSON.stringify(chips));
    await app.click(byTestId("citation-chip", { "data-number": gone[0].attributes["data-number"] }));
    const notice = await app.waitFor("the source deleted notice", byTestId("passage-deleted"));
    assert.match(notice[0].text, /forgotten/);
    assert.equal((await app.elements(byTestId("passage-quote"))).length, 0, "no passage is shown");
    await app.click(byTestId("passage-close"));
  });

  it("keeps a chat key typed in Settings in the keychain only, and shows it masked", async () => {
    const url = "http://127.0.0.1:9/v1";
    const key = `sk-e2e-ui-${process.pid}-${Date.now()}-3c5e`;
    await app.invoke("set_chat_model", { kind: "openai", url, model: "e2e-model" });
    try {
      await app.click(byTestId("nav-settings"));
      await app.waitFor("the chat model card", byTestId("chat-model-card"));
      await app.type(byTestId("chat-key-input"), key);
      await app.click(byTestId("chat-key-save"));
      const hint = await app.waitFor("the masked hint", byTestId("chat-key-hint"));
      assert.match(hint[0].text, /3c5e/);
      assert.ok(!hint[0].text.includes(key));
      const page = await app.session.execute(
        "return document.documentElement.outerHTML + [...document.querySelectorAll('input,textarea')].map((e) => e.value).join(' ')",
      );
      assert.ok(!page.includes(key), "the key is nowhere on the page");
      const stored = execFileSync("secret-tool", ["lookup", "service", "doppel", "username", `api-key ${url}`]);
      assert.equal(stored.toString().trim(), key);
      for (const file of filesUnder(env.dataDir)) {
        assert.ok(!readFileSync(file).includes(key), `the key is in ${file}`);
      }
      await app.screenshot("ui-05-settings");
    } finally {
      await app.invoke("delete_chat_key");
      await app.invoke("set_chat_model", { kind: "local" });
    }
  });

  it("learns a file that appears in a watched folder, and forgets it when it goes", async () => {
    const folder = await app.invoke("watch_folder", { twin: TWIN, path: watched });
    try {
      await app.click(byTestId("nav-sources"));
      const path = join(watched, "lighthouse.md");
      writeFileSync(path, "# Lighthouse\n\nThe keeper of the Skerryvore light wound the clockwork every four hours.\n");
      await app.waitFor("the new file to be ready", byTestId("source-row"), (rows) =>
        rows.some((r) => /Lighthouse/.test(r.text) && r.attributes["data-state"] === "ready"),
        { timeoutMs: 120_000 },
      );
      unlinkSync(path);
      await app.waitFor("the removed file to go", byTestId("source-row"), (rows) =>
        rows.length > 0 && !rows.some((r) => /Lighthouse/.test(r.text)),
        { timeoutMs: 120_000 },
      );
    } finally {
      await app.invoke("unwatch_folder", { folder: folder.id });
    }
  });

  it("shows the same sources, conversations and messages after a restart", async () => {
    await app.click(byTestId("nav-sources"));
    const before = (await app.elements(byTestId("source-row"))).map((r) => [r.attributes["data-source-id"], r.attributes["data-state"]]);
    await app.click(byTestId("nav-chat"));
    await app.click(byTestId("conversation-item", { "data-conversation-id": conversationId }));
    const conversationsBefore = (await app.elements(byTestId("conversation-item"))).map((c) => c.attributes["data-conversation-id"]);
    const messagesBefore = await app.waitFor("the conversation's messages", byTestId("message"), (m) => m.length === 2 && m);
    const bodiesBefore = await app.elements(byTestId("message-body"), byTestId("message-list"));
    const chipsBefore = await app.elements(byTestId("citation-chip"), byTestId("message-list"));

    await app.quit();
    app = await App.start();

    await app.click(byTestId("nav-sources"));
    await app.waitFor("the same sources", byTestId("source-row"), (rows) =>
      JSON.stringify(rows.map((r) => [r.attributes["data-source-id"], r.attributes["data-state"]])) === JSON.stringify(before),
    );
    assert.equal((await row(app, "recipes.txt"))?.attributes["data-state"], "ready");
    assert.equal((await row(app, "broken.pdf"))?.attributes["data-state"], "failed");
    await app.click(byTestId("nav-chat"));
    await app.waitFor("the same conversations", byTestId("conversation-item"), (items) =>
      JSON.stringify(items.map((c) => c.attributes["data-conversation-id"])) === JSON.stringify(conversationsBefore),
    );
    await app.click(byTestId("conversation-item", { "data-conversation-id": conversationId }));
    const messages = await app.waitFor("the same messages", byTestId("message"), (m) => m.length === 2 && m);
    assert.deepEqual(
      messages.map((m) => [m.attributes["data-role"], m.attributes["data-state"] ?? null]),
      messagesBefore.map((m) => [m.attributes["data-role"], m.attributes["data-state"] ?? null]),
    );
    // The words and the citations; an answer's notes are for the session it was given in.
    const bodies = await app.elements(byTestId("message-body"), byTestId("message-list"));
    assert.deepEqual(bodies.map((b) => b.text), bodiesBefore.map((b) => b.text));
    const chips = await app.elements(byTestId("citation-chip"), byTestId("message-list"));
    assert.deepEqual(
      chips.map((c) => c.attributes["aria-label"]),
      chipsBefore.map((c) => c.attributes["aria-label"]),
    );
    await app.screenshot("ui-08-chat-after-restart");
  });

  it("shows the twin and settings views", async () => {
    await app.click(byTestId("nav-twin"));
    const name = await app.waitFor("the twin's name", byTestId("twin-name"));
    assert.ok(name[0].text.length > 0);
    await app.waitFor("the persona form", byTestId("persona-form"));
    await app.screenshot("ui-06-twin");
    await app.click(byTestId("nav-settings"));
    const about = await app.waitFor("the about card", byTestId("about-card"));
    assert.ok(about[0].text.includes(env.dataDir), about[0].text);
    const drawing = await app.waitFor("how the window draws", byTestId("about-rendering"));
    assert.match(drawing[0].text, /compositing|GPU/, drawing[0].text);
    await app.screenshot("ui-07-settings-after-restart");
  });

  it("shows what Doppel measured in Diagnostics, and copies a report with none of the documents' words", async () => {
    await app.click(byTestId("nav-settings"));
    const jobs = await app.waitFor("the jobs' times by format", byTestId("metric-job_ms-markdown"));
    assert.match(jobs[0].text, /Jobs/);
    const failures = await app.waitFor("the failures by reason", byTestId("diagnostics-failures"));
    assert.match(failures[0].text, /malformed \d/);
    await app.waitFor("the index's health", byTestId("diagnostics-health"), (h) => /agrees with the database/.test(h[0].text) && h);
    await app.click(byTestId("copy-report"));
    await app.waitFor("the report", byTestId("diagnostic-report"));
    const report = await app.session.execute(`return document.querySelector('[data-testid="diagnostic-report"]').value`);
    assert.match(report, /# Doppel diagnostic report/);
    assert.match(report, /failures by code: malformed/);
    for (const needle of ["Wilhelmina", "quince", "damson", "orchard", "broken.pdf", "recipes", docs, env.dataDir]) {
      assert.ok(!report.toLowerCase().includes(needle.toLowerCase()), `${needle} is in the report`);
    }
    await app.screenshot("ui-08-diagnostics");
  });
});
