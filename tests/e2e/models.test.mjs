// End-to-end tests of the models in the window: the catalogue as Settings lists it, the honest
// status when the chosen chat model's file is gone (banner on Chat, "Not installed" in
// Settings), a catalogue download from a loopback server with its progress and the model then
// chosen, and the welcome of a first run. Run by scripts/e2e on the data directory the other
// test files share: it puts back the chat model and removes every file it made.
//
// scripts/e2e sets DOPPEL_MODEL_CACHE, so the default models are there: a missing model is made
// by choosing an imported file and then deleting it.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { App, byTestId, env, poll } from "./app.mjs";

const TWIN = 1;
const OFFER_DISMISSED_KEY = "doppel.modelOfferDismissed";

/** Bytes that pass for a GGUF file: the magic, then noise. */
function fakeGguf(size) {
  return Buffer.concat([Buffer.from("GGUF"), randomBytes(size - 4)]);
}

/**
 * A loopback server of model files (`files`: path → bytes), each sent in small pieces with
 * pauses, so that the window shows the download while it runs.
 */
function slowFileServer(files) {
  const requests = [];
  const server = createServer((request, response) => {
    requests.push({ url: request.url, range: request.headers.range ?? null });
    const body = files[request.url.split("?")[0]];
    if (!body) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    let at = 0;
    const step = 64 * 1024;
    const timer = setInterval(() => {
      response.write(body.subarray(at, at + step));
      at += step;
      if (at >= body.length) {
        clearInterval(timer);
        response.end();
      }
    }, 25);
    response.on("close", () => clearInterval(timer));
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () =>
      resolve({ server, requests, base: `http://127.0.0.1:${server.address().port}` }),
    );
  });
}

/** Switches the theme until the page is dark (`dark`) or follows the system again. */
async function theme(app, dark) {
  await poll(dark ? "the dark theme" : "the theme back to following the system", async () => {
    const done = dark
      ? await app.session.execute("return document.documentElement.dataset.theme === 'dark'")
      : (await app.elements(byTestId("theme-toggle")))[0].text === "System";
    if (!done) await app.click(byTestId("theme-toggle"));
    return done;
  });
}

/** Scrolls the element matching `selector` to the top of its view, for a screenshot. */
function scrollTo(app, selector) {
  return app.session.execute("document.querySelector(arguments[0])?.scrollIntoView({ block: 'start' }); return null", [
    selector,
  ]);
}

describe("models in the window", () => {
  let app;
  const work = mkdtempSync(join(tmpdir(), "doppel-e2e-models-"));
  const made = [];

  before(async () => {
    assert.ok(env.dataDir, "DOPPEL_DATA_DIR names the test's data directory");
    app = await App.start();
    await app.element(byTestId("nav-sources"));
  });

  after(async () => {
    try {
      await app?.invoke("set_chat_model", { kind: "local" });
      await app?.session.execute("localStorage.removeItem(arguments[0]); return null", [OFFER_DISMISSED_KEY]);
      await app?.session.executeAsync("window.doppelCatalogue(null).then(() => arguments[0](null))");
    } finally {
      await app?.quit();
      for (const file of made) rmSync(file, { force: true });
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("welcomes a first run with the models ready and a better model on offer", async () => {
    // The tests before these share the data directory and left sources in it: a new twin, with
    // none yet, shows what a first run shows. The page opens on it as it would after a choice.
    const fresh = (await app.invoke("create_twin", { name: "First run" })).id;
    const openTwin = async (id) => {
      await app.session.execute(`localStorage.setItem("doppel.twin", arguments[0]); location.reload(); return null;`, [String(id)]);
      await poll(`the page reloaded on twin ${id}`, () =>
        app.session.execute(`return document.querySelector('[data-testid="twin-switcher"]')?.value === arguments[0]`, [String(id)]),
      );
    };
    await openTwin(fresh);
    try {
      await welcomesAFirstRun();
    } finally {
      await openTwin(TWIN);
    }
  });

  async function welcomesAFirstRun() {
    await app.click(byTestId("nav-sources"));
    await app.element(byTestId("welcome"));
    const models = await app.waitFor("the models' line", byTestId("welcome-models"));
    assert.equal(models[0].attributes["data-state"], "ready", models[0].text);
    const local = await app.elements(byTestId("welcome-local"));
    assert.match(local[0].text, /stays on this computer/);
    const offer = await app.waitFor("the offer of a better model", byTestId("model-offer"));
    assert.equal(offer[0].attributes["data-name"], "qwen2.5-1.5b");
    assert.match(offer[0].text, /Answers are better with a larger model: Qwen2\.5 1\.5B Instruct, 1\.1 GB/);
    assert.equal((await app.elements(byTestId("model-banner"))).length, 0, "no banner while all is well");
    await app.screenshot("models-01-welcome");
    await theme(app, true);
    await app.screenshot("models-02-welcome-dark");
    await theme(app, false);

    // "Not now" is remembered: the offer stays away after a reload of the page.
    await app.click(byTestId("model-offer-dismiss"));
    await app.waitFor("the offer to go", byTestId("model-offer"), (found) => found.length === 0);
    await app.session.execute("location.reload(); return null");
    await app.element(byTestId("welcome-models"));
    await app.waitFor("the models' line after a reload", byTestId("welcome-models"));
    assert.equal((await app.elements(byTestId("model-offer"))).length, 0);
  }

  it("lists the catalogue with its facts, the demo badge and the embedding models' languages", async () => {
    await app.click(byTestId("nav-settings"));
    const items = await app.waitFor("the catalogue", byTestId("catalogue-model"), (found) => found.length >= 5 && found);
    const names = items.map((i) => i.attributes["data-name"]);
    assert.ok(names.includes("qwen2.5-1.5b") && names.includes("smollm2-135m"), names.join(", "));
    const demo = await app.elements(byTestId("demo-badge"));
    assert.equal(demo.length, 1, "one demo model");
    const smol = await app.elements(byTestId("demo-badge"), byTestId("catalogue-model", { "data-name": "smollm2-135m" }));
    assert.equal(smol[0].text, "tiny demo model");
    const qwen = items.find((i) => i.attributes["data-name"] === "qwen2.5-1.5b");
    for (const fact of ["1.5B", "Q4_K_M", "1.1 GB", "Apache-2.0"]) assert.ok(qwen.text.includes(fact), `${fact} in ${qwen.text}`);
    const languages = await app.elements(byTestId("embedding-languages"));
    assert.equal(languages[0].text, "English only");
    assert.ok(languages.length >= 3);
    // The default chat model is there (the model cache), so it is named and marked in use.
    const status = await app.waitFor("the chat model's status", byTestId("chat-model-status"));
    assert.equal(status[0].attributes["data-state"], "ready", status[0].text);
    const inUse = await app.elements(byTestId("catalogue-in-use"), byTestId("catalogue-model", { "data-name": "smollm2-135m" }));
    assert.equal(inUse.length, 1);
    await scrollTo(app, byTestId("settings-models"));
    await app.screenshot("models-03-settings");
    await scrollTo(app, byTestId("catalogue-card"));
    await app.screenshot("models-04-catalogue");
    await theme(app, true);
    await app.screenshot("models-05-catalogue-dark");
    await theme(app, false);
  });

  it("says Not installed and shows a banner when the chosen model's file is gone", async () => {
    const file = join(work, "e2e-vanishing.gguf");
    writeFileSync(file, fakeGguf(8192));
    const stored = await app.invoke("import_chat_model", { path: file });
    made.push(stored);
    await app.invoke("set_chat_model", { kind: "local", path: stored });
    unlinkSync(stored);

    const status = await app.invoke("model_status");
    const problem = status.problems.find((p) => p.part === "chat");
    assert.ok(problem, JSON.stringify(status));
    assert.match(problem.problem, /e2e-vanishing\.gguf/);
    assert.ok(status.dirs.some((d) => d.origin === "user"), JSON.stringify(status.dirs));

    // Settings reads the status again when it opens.
    await app.click(byTestId("nav-chat"));
    await app.click(byTestId("nav-settings"));
    const shown = await app.waitFor("Not installed in Settings", byTestId("chat-model-status"), (found) =>
      found.some((e) => e.attributes["data-state"] === "missing") && found,
    );
    assert.match(shown[0].text, /Not installed/);
    assert.match(shown[0].text, /download a chat model below/);
    assert.equal((await app.elements(byTestId("chat-model-name"))).length, 0, "no model named");
    const selected = await app.session.execute(
      `const s = document.querySelector('[data-testid="chat-model-select"]'); return s ? s.selectedOptions[0]?.textContent : null`,
    );
    assert.equal(selected, "Not installed (the file is missing)");
    await scrollTo(app, byTestId("chat-model-card"));
    await app.screenshot("models-06-not-installed");

    await app.click(byTestId("nav-chat"));
    const banner = await app.waitFor("the banner on Chat", byTestId("model-banner"));
    assert.match(banner[0].text, /chat model's file is missing/);
    await app.screenshot("models-07-banner");
    await app.click(byTestId("model-banner-open"));
    await app.waitFor("Settings at its models", byTestId("settings-models"));
    // Focus moves once the view has rendered: waited for, not read at the first look.
    const focused = await poll("focus on Settings' models", async () => {
      const id = await app.session.execute("return document.activeElement?.getAttribute('data-testid')");
      return id === "settings-models" && id;
    });
    assert.equal(focused, "settings-models");

    // Back to the default model: the banner goes.
    await app.invoke("set_chat_model", { kind: "local" });
    await app.click(byTestId("nav-chat"));
    await app.click(byTestId("nav-settings"));
    await app.waitFor("the model ready again", byTestId("chat-model-status", { "data-state": "ready" }));
    await app.click(byTestId("nav-chat"));
    await app.waitFor("no banner", byTestId("model-banner"), (found) => found.length === 0);
  });

  it("downloads a catalogue model from a loopback server with progress, and chooses it", async () => {
    const body = fakeGguf(3 * 1024 * 1024);
    const served = await slowFileServer({ "/models/e2e-tiny.gguf": body, "/models/e2e-bad.gguf": body.subarray(0, 256 * 1024) });
    try {
      const entry = (name, title, size, sha256) => ({
        name,
        title,
        parameters: "1M",
        quantisation: "Q8_0",
        size,
        memory: size * 2,
        licence: "MIT",
        url: `${served.base}/models/${name}.gguf`,
        sha256,
        good_for: "Testing the catalogue's download.",
        demo: false,
      });
      const catalogue = join(work, "catalogue.json");
      writeFileSync(
        catalogue,
        JSON.stringify({
          format: 1,
          defaults: [],
          chat: [
            entry("e2e-bad", "E2E Bad", 256 * 1024, "0".repeat(64)),
            entry("e2e-tiny", "E2E Tiny", body.length, createHash("sha256").update(body).digest("hex")),
          ],
          embedding: [],
        }),
      );
      const listed = await app.invoke("catalogue", { catalogue });
      assert.deepEqual(listed.chat.map((m) => [m.name, m.goodFor]), [
        ["e2e-bad", "Testing the catalogue's download."],
        ["e2e-tiny", "Testing the catalogue's download."],
      ]);
      for (const name of ["e2e-tiny", "e2e-bad"]) {
        const file = join(env.dataDir, "models", "chat", `${name}.gguf`);
        made.push(file, `${file}.part`);
      }

      await app.session.executeAsync("window.doppelCatalogue(arguments[0]).then(() => arguments[1](null))", [catalogue]);
      await app.click(byTestId("nav-chat"));
      await app.click(byTestId("nav-settings"));

      // A file whose checksum is wrong is refused, with the reason, and not chosen.
      const bad = byTestId("catalogue-model", { "data-name": "e2e-bad" });
      await app.click(`${bad} ${byTestId("catalogue-download")}`);
      const refused = await app.waitFor("the checksum's refusal", `${bad} ${byTestId("catalogue-error")}`);
      assert.match(refused[0].text, /checksum mismatch/);
      assert.equal((await app.invoke("chat_model")).path.endsWith("e2e-bad.gguf"), false);
      assert.equal(existsSync(join(env.dataDir, "models", "chat", "e2e-bad.gguf")), false);

      await app.listen("doppel://download");
      const item = byTestId("catalogue-model", { "data-name": "e2e-tiny" });
      await app.click(`${item} ${byTestId("catalogue-download")}`);
      const bar = await app.waitFor("the download's progress bar", `${item} ${byTestId("catalogue-progress")}`);
      assert.ok(bar[0].shown);
      await scrollTo(app, byTestId("catalogue-card"));
      await app.screenshot("models-08-downloading");

      await app.waitFor("the model in use", `${item} ${byTestId("catalogue-in-use")}`, undefined, { timeoutMs: 120_000 });
      const events = await app.received("doppel://download");
      assert.ok(events.length >= 2, `progress events: ${JSON.stringify(events)}`);
      const last = events[events.length - 1];
      assert.deepEqual([last.done, last.total], [body.length, body.length], "progress reaches 100%");
      const chosen = await app.invoke("chat_model");
      assert.equal(chosen.kind, "local");
      assert.match(chosen.path, /e2e-tiny\.gguf$/);
      assert.ok(existsSync(chosen.path));
      const name = await app.waitFor("the chat model named", byTestId("chat-model-name"));
      assert.equal(name[0].text, "E2E Tiny (e2e-tiny.gguf)");
      assert.ok(served.requests.every((r) => r.range === null), JSON.stringify(served.requests));
      await app.screenshot("models-09-downloaded");
    } finally {
      served.server.closeAllConnections?.();
      served.server.close();
    }
  });
});
