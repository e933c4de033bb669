// The local API's share page in the real browser engine (WebKitGTK through WebKitWebDriver):
// the API switched on through the window's command, a share link made for a token of scope
// `ask`, and the page it opens asking the twin, with the answer's sources, under a content
// security policy that stops inline scripts.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { App, byTestId, env, poll } from "./app.mjs";

const TWIN = 1;
// A fixed port, since a share link names the address the API was set to.
const ADDRESS = "127.0.0.1:18765";

describe("the share page", () => {
  let app;

  before(async () => {
    assert.ok(env.dataDir, "DOPPEL_DATA_DIR names the test's data directory");
    app = await App.start();
  });

  after(async () => {
    // The API is off again for the next test file's window.
    await app?.session.command("POST", "/url", { url: "tauri://localhost/" }).catch(() => undefined);
    await poll("the app's page", () => app.invoke("set_api", { enabled: false }).then(() => true)).catch(() => undefined);
    // Nor does it find this file's note.
    const sources = await app?.invoke("sources", { twin: TWIN }).catch(() => []);
    for (const s of sources ?? []) {
      if (s.title === "Orchard notes") await app.invoke("delete_source", { source: s.id });
    }
    await app?.quit();
  });

  it("answers a question asked on a share link's page, with its sources, and runs no inline script", async () => {
    await app.invoke("add_text", {
      twin: TWIN,
      title: "Orchard notes",
      text: "# Orchard\n\nThe quince tree was pruned in February, before the buds swelled.\n",
    });
    await poll("the orchard notes to be learnt", async () => {
      const sources = await app.invoke("sources", { twin: TWIN });
      return sources.some((s) => s.title === "Orchard notes" && s.state === "ready");
    });
    const status = await app.invoke("set_api", { enabled: true, address: ADDRESS });
    assert.equal(status.url, `http://${ADDRESS}/v1`);
    const made = await app.invoke("create_api_token", { twin: TWIN, name: "share", scope: "ask" });
    assert.match(made.shareLink, /^http:\/\/127\.0\.0\.1:18765\/share#token=dpl_[0-9a-f]{12}_[0-9a-f]{64}$/);
    const tokens = await app.invoke("api_tokens");
    assert.ok(tokens.every((t) => !("secret" in t)), "a listed token never carries its secret");

    await app.session.command("POST", "/url", { url: made.shareLink });
    await app.element(byTestId("share-question"));
    // The token left the address bar.
    assert.equal(await app.session.execute("return location.hash"), "");
    await app.type(byTestId("share-question"), "When was the quince tree pruned?");
    await app.click(byTestId("share-send"));
    const answer = await poll("the answer on the share page", async () => {
      const done = await app.session.execute(
        "const t = document.querySelector('.turn[data-done=true]'); return t && t.textContent",
      );
      return done || null;
    });
    assert.match(answer, /February/);
    const sources = await app.session.text(await app.element(byTestId("share-sources")));
    assert.match(sources, /Orchard notes/);
    await app.screenshot("share-page");

    // The policy stops inline code, as in the window.
    const inlineRan = await app.session.execute(
      "const s = document.createElement('script'); s.textContent = 'window.__inlineRan = true';" +
        "document.head.appendChild(s); return window.__inlineRan === true;",
    );
    assert.equal(inlineRan, false);

    // Without a token, the page says so and asks nothing.
    await app.session.command("POST", "/url", { url: `http://${ADDRESS}/share` });
    const said = await poll("the page's message", async () => {
      const text = await app.session.execute("return document.querySelector('[data-testid=share-status]')?.textContent");
      return text?.includes("no token") ? text : null;
    });
    assert.match(said, /no token/);
  });
});
