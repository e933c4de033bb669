// End-to-end tests of the desktop window: the real app, started by tauri-driver, driven through
// WebKitWebDriver, calling its IPC commands exactly as the front end does. Run by scripts/e2e,
// which builds the app, starts Xvfb, a private D-Bus session with GNOME Keyring, and
// tauri-driver, and sets E2E_APP, E2E_DRIVER_URL and DOPPEL_DATA_DIR.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { App, byTestId, CommandError, env, poll, webProcesses } from "./app.mjs";

const TWIN = 1;

/** Every file under `dir`, recursively. */
function filesUnder(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe("the desktop window", () => {
  let app;
  const notes = mkdtempSync(join(tmpdir(), "doppel-e2e-notes-"));
  const notePath = join(notes, "garden.md");
  writeFileSync(
    notePath,
    "# Garden\n\n## Tomatoes\n\nI planted the zucchetta tomatoes on the twelfth of May, " +
      "against the south wall, after the last frost.\n",
  );

  before(async () => {
    assert.ok(env.dataDir, "DOPPEL_DATA_DIR names the test's data directory");
    app = await App.start();
  });

  after(async () => {
    await app?.quit();
    rmSync(notes, { recursive: true, force: true });
  });

  it("opens its window on the front end", async () => {
    assert.equal(await app.session.title(), "Doppel");
    const path = await app.screenshot("01-window");
    const png = readFileSync(path);
    assert.equal(png.subarray(1, 4).toString(), "PNG");
  });

  it("answers ping through IPC", async () => {
    assert.equal(await app.invoke("ping"), null);
  });

  it("names its data directory in app_info", async () => {
    const info = await app.invoke("app_info");
    assert.equal(info.dataDir, env.dataDir);
    assert.match(info.version, /^\d+\.\d+\.\d+/);
    assert.ok(info.schemaVersion >= 1, JSON.stringify(info));
  });

  it("draws without compositing where no GPU can composite, tells WebKit so, and says it", async () => {
    const gpu = readdirSync("/dev").includes("dri") && readdirSync("/dev/dri").some((n) => n.startsWith("renderD"));
    const own = process.env.WEBKIT_DISABLE_COMPOSITING_MODE;
    const { rendering } = await app.invoke("app_info");
    const expected = own !== undefined ? "as WEBKIT_DISABLE_COMPOSITING_MODE says" : gpu ? "composited on the GPU" : "without compositing (no GPU found)";
    assert.equal(rendering, expected);
    // What reached the page's process: WebKit reads the switch from its environment.
    const [web] = webProcesses();
    assert.ok(web, "the window's WebKitWebProcess is running");
    const environ = readFileSync(`/proc/${web}/environ`, "utf8").split("\0");
    const switched = environ.filter((v) => v.startsWith("WEBKIT_DISABLE_COMPOSITING_MODE="));
    assert.deepEqual(switched, own !== undefined ? [`WEBKIT_DISABLE_COMPOSITING_MODE=${own}`] : gpu ? [] : ["WEBKIT_DISABLE_COMPOSITING_MODE=1"]);
  });

  it("rejects with one {code, message} shape", async () => {
    const missing = await app.invoke("source_detail", { source: 999999 }).catch((e) => e);
    assert.ok(missing instanceof CommandError, String(missing));
    assert.deepEqual(Object.keys(missing.payload).sort(), ["code", "message"]);
    assert.equal(missing.code, "not_found");
    const unnamed = await app.invoke("rename_twin", { twin: TWIN, name: "  " }).catch((e) => e);
    assert.equal(unnamed.code, "invalid_input");
    const bad = await app.invoke("set_setting", { key: "top_k", value: "0" }).catch((e) => e);
    assert.equal(bad.code, "invalid_setting");
  });

  it("ingests a file, shows it ready, finds it, and reports progress as events", async () => {
    await app.listen("doppel://event");
    const report = await app.invoke("ingest_paths", { twin: TWIN, paths: [notePath] });
    assert.equal(report.queued.length, 1, JSON.stringify(report));
    assert.deepEqual(report.skipped, []);
    const { sourceId } = report.queued[0];
    const ready = await poll("the source to be ready", async () => {
      const sources = await app.invoke("sources", { twin: TWIN });
      return sources.find((s) => s.id === sourceId && s.state === "ready");
    });
    assert.equal(ready.origin, notePath);
    assert.ok(ready.chunkCount >= 1, JSON.stringify(ready));
    const events = await poll("the source's ready event", async () => {
      const events = await app.received("doppel://event");
      return events.some((e) => e.type === "sourceChanged" && e.source === sourceId && e.state === "ready") && events;
    });
    assert.ok(events.some((e) => e.type === "jobDone" && e.source === sourceId), JSON.stringify(events));
    const found = await app.invoke("search", { twin: TWIN, query: "zucchetta tomatoes", topK: 3 });
    assert.equal(found.hits[0]?.sourceId, sourceId, JSON.stringify(found));
    const detail = await app.invoke("source_detail", { source: sourceId });
    assert.match(detail.chunks.map((c) => c.text).join(" "), /twelfth of May/);
    // The window's list follows the events, although the file was not added through it.
    await app.waitFor(
      "the ready source in the window's list, under its title, with its passages",
      byTestId("source-row", { "data-source-id": sourceId, "data-state": "ready" }),
      (rows) => rows.some((r) => r.shown && /Garden/.test(r.text) && /\b[1-9]\d* passages?\b/.test(r.text)),
    );
    await app.screenshot("02-source-ready");
  });

  it("keeps the chat key in the keychain only, and shows it masked", async () => {
    const url = "http://127.0.0.1:9/v1";
    const key = `sk-e2e-${process.pid}-${Date.now()}-7a9f`;
    await app.invoke("set_chat_model", { kind: "openai", url, model: "e2e-model" });
    const model = await app.invoke("set_chat_key", { key });
    assert.equal(model.keyHint, "••••7a9f");
    assert.ok(!JSON.stringify(model).includes(key));
    const stored = execFileSync("secret-tool", ["lookup", "service", "doppel", "username", `api-key ${url}`]);
    assert.equal(stored.toString().trim(), key);
    for (const file of filesUnder(env.dataDir)) {
      assert.ok(!readFileSync(file).includes(key), `the key is in ${file}`);
    }
    const deleted = await app.invoke("delete_chat_key");
    assert.equal(deleted.keyHint, null);
    await app.invoke("set_chat_model", { kind: "local" });
  });

  it("streams an answer over a channel, and cancel_ask stops it", async () => {
    const requestId = `e2e-${Date.now()}`;
    await app.startAsk({ requestId, twin: TWIN, question: "When did I plant the tomatoes?" });
    const first = await poll(
      "the first streamed piece or the answer",
      async () => {
        const state = await app.askState();
        return (state.pieces.length > 0 || state.result || state.error) && state;
      },
      { timeoutMs: 120_000 },
    );
    assert.equal(first.error, null, JSON.stringify(first.error));
    if (!first.result) {
      await app.invoke("cancel_ask", { requestId });
    }
    const done = await poll("the answer", async () => {
      const state = await app.askState();
      return (state.result || state.error) && state;
    }, { timeoutMs: 120_000 });
    assert.equal(done.error, null, JSON.stringify(done.error));
    const tokens = done.pieces.filter((p) => p.message).map((p) => p.message);
    assert.ok(tokens.length >= 1 && tokens.every((t) => t.type === "token"), JSON.stringify(done.pieces));
    assert.ok(["cancelled", "complete"].includes(done.result.message.state), JSON.stringify(done.result));
    const messages = await app.invoke("messages", { conversation: done.result.conversation });
    assert.deepEqual(messages.map((m) => m.role), ["user", "assistant"]);
    // The default model is too small to be trusted: the answer is the note's own sentence, and
    // its citation names the file.
    const answer = messages[1];
    if (answer.state === "complete") {
      assert.equal(answer.grounding, "grounded", JSON.stringify(answer));
      assert.match(answer.content, /twelfth of May/);
      assert.equal(answer.citations[0].origin, notePath);
    }
  });

  it("lets a second launch only focus the first window", async () => {
    const second = spawn(env.application, [], { stdio: "ignore" });
    const ended = new Promise((resolve, reject) => {
      second.on("error", reject);
      second.on("exit", (code, signal) => resolve({ code, signal }));
    });
    // Bounded: a second instance that kept running would be stopped and fail the test.
    const guard = setTimeout(() => second.kill(), 60_000);
    const status = await ended.finally(() => clearTimeout(guard));
    assert.deepEqual(status, { code: 0, signal: null });
    assert.equal(await app.invoke("ping"), null);
  });

  it("keeps its sources after a restart", async () => {
    await app.quit();
    app = await App.start();
    const sources = await poll("the sources after the restart", async () => {
      const sources = await app.invoke("sources", { twin: TWIN });
      return sources.length > 0 && sources;
    });
    assert.deepEqual(
      sources.map((s) => [s.origin, s.state]),
      [[notePath, "ready"]],
    );
    assert.equal((await app.invoke("app_info")).dataDir, env.dataDir);
    await app.screenshot("03-after-restart");
  });

  it("opens even while the CLI holds the data directory, and says so", async () => {
    await app.quit();
    app = null;
    // `doppel chat` holds the data directory while it waits for a question on its input.
    const cli = spawn(process.env.E2E_CLI, ["--data-dir", env.dataDir, "chat"], {
      stdio: ["pipe", "ignore", "ignore"],
    });
    try {
      await poll("the CLI to hold the data directory", () =>
        readFileSync(join(env.dataDir, "doppel.lock"), "utf8").trim() === String(cli.pid),
      );
      app = await App.start();
      const refused = await app.invoke("app_info").catch((e) => e);
      assert.equal(refused.code, "already_running", JSON.stringify(refused.payload));
      assert.match(refused.message, new RegExp(`pid ${cli.pid}`));
      const sources = await app.invoke("sources", { twin: TWIN }).catch((e) => e);
      assert.equal(sources.code, "already_running");
      await app.screenshot("04-data-directory-held");
    } finally {
      cli.kill();
    }
  });
});
