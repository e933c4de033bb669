// Settings' reranking server card: off by default, chosen only after a confirmation that says what
// each search will send and to whom, turned off without one, and its API key never shown back.

import { afterEach, describe, expect, it } from "vitest";
import type { ModelServer, Setting } from "../src/api";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, mount, resetShell, settle, tid, type, until } from "./helpers";

afterEach(resetShell);

const OFF: ModelServer = { kind: "off", url: null, model: null, keyHint: null };

/** The shell's settings with the reranking ones at `candidates` and `timeout`. */
function rerankSettings(candidates: number, timeout: number): Setting[] {
  return [
    { key: "top_k", value: "8", default: "8", help: "passages per answer" },
    { key: "rerank_candidates", value: String(candidates), default: "30", help: "best passages a reranking server reorders" },
    { key: "rerank_timeout_s", value: String(timeout), default: "5", help: "seconds a reranking server may take" },
    { key: "rerank_retries", value: "1", default: "1", help: "extra tries" },
  ];
}

/** A shell whose reranker is `start`, recording what `set_reranker` is sent. */
function rerankShell(start: ModelServer, settings: () => Setting[] = () => rerankSettings(30, 5)) {
  const state = { reranker: start };
  const shell = fakeShell({
    ...baseHandlers(),
    settings,
    reranker: () => state.reranker,
    set_reranker: (a) => {
      state.reranker = a.kind === "off" ? OFF : { kind: "server", url: String(a.url), model: String(a.model), keyHint: null };
      return state.reranker;
    },
    set_reranker_key: (a) => {
      state.reranker = { ...state.reranker, keyHint: `••••${String(a.key).slice(-4)}` };
      return state.reranker;
    },
    delete_reranker_key: () => {
      state.reranker = { ...state.reranker, keyHint: null };
      return state.reranker;
    },
  });
  return { shell, state };
}

describe("reranking in Settings", () => {
  it("is off at first and says what it is, that it is off by default and that nothing is sent", async () => {
    rerankShell(OFF);
    await mount(<App initialView="settings" />);
    await until(() => $(tid("reranker-card")));
    const card = $(tid("reranker-card"));
    expect($("h2", card).textContent).toBe("Reranking");
    expect(card.textContent).toContain("bge-reranker-v2-m3");
    expect(card.textContent).toContain("POST /v1/rerank");
    expect(card.textContent).toMatch(/Off by default; nothing is sent anywhere while it is off/);
    expect($(tid("reranker-status")).dataset.state).toBe("off");
    expect(($(tid("reranker-save")) as HTMLButtonElement).disabled).toBe(true);
    // No key before a server is chosen: it would belong to none.
    expect($$(tid("reranker-key"))).toHaveLength(0);
  });

  it("asks before saving a server, naming the passages sent, the server and the wait; cancelling sends nothing", async () => {
    let candidates = 30;
    const { shell, state } = rerankShell(OFF, () => rerankSettings(candidates, 7));
    await mount(<App initialView="settings" />);
    await until(() => $(tid("reranker-card")));
    // Changed in Tuning after the card opened: the confirmation says the value now.
    candidates = 45;

    await type($(tid("reranker-url")) as HTMLInputElement, " http://127.0.0.1:8012 ");
    await type($(tid("reranker-model")) as HTMLInputElement, " bge-reranker-v2-m3 ");
    await click($(tid("reranker-save")));
    await until(() => $(tid("confirm-dialog")));
    const cost = $(tid("reranker-cost")).textContent ?? "";
    expect(cost).toContain("Each search and each answer will send the question and its best 45 passages to bge-reranker-v2-m3 at http://127.0.0.1:8012");
    expect(cost).toContain("adds up to 7 seconds to each search; past it, search keeps its own order");

    await click($(tid("confirm-cancel")));
    await settle();
    expect($$(tid("confirm-dialog"))).toHaveLength(0);
    expect(shell.called("set_reranker")).toHaveLength(0);
    expect(state.reranker.kind).toBe("off");
    expect($(tid("reranker-status")).dataset.state).toBe("off");
    // What was typed stays, to be saved again (a URL field drops the spaces itself; the model's stay).
    expect(($(tid("reranker-url")) as HTMLInputElement).value.trim()).toBe("http://127.0.0.1:8012");
    expect(($(tid("reranker-model")) as HTMLInputElement).value).toBe(" bge-reranker-v2-m3 ");

    await click($(tid("reranker-save")));
    await until(() => $(tid("confirm-ok")));
    await click($(tid("confirm-ok")));
    expect(shell.called("set_reranker").map((c) => c.args)).toEqual([
      { kind: "server", url: "http://127.0.0.1:8012", model: "bge-reranker-v2-m3" },
    ]);
    await until(() => $(tid("reranker-status")).dataset.state === "server");
    expect($(tid("reranker-status")).textContent).toContain("bge-reranker-v2-m3 at http://127.0.0.1:8012");
  });

  it("turns off without a confirmation", async () => {
    const { shell } = rerankShell({ kind: "server", url: "http://127.0.0.1:8012", model: "bge-reranker-v2-m3", keyHint: null });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("reranker-off")));
    await click($(tid("reranker-off")));
    expect($$(tid("confirm-dialog"))).toHaveLength(0);
    expect(shell.called("set_reranker").map((c) => c.args)).toEqual([{ kind: "off" }]);
    await until(() => $(tid("reranker-status")).dataset.state === "off");
    expect(($(tid("reranker-url")) as HTMLInputElement).value).toBe("");
  });

  it("shows the server's refusal of a choice beside the form", async () => {
    fakeShell({
      ...baseHandlers(),
      settings: () => rerankSettings(30, 5),
      set_reranker: () => {
        throw { code: "invalid_input", message: "ftp://x: only http and https URLs can be ingested" };
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("reranker-card")));
    await type($(tid("reranker-url")) as HTMLInputElement, "ftp://x");
    await type($(tid("reranker-model")) as HTMLInputElement, "bge-reranker-v2-m3");
    await click($(tid("reranker-save")));
    await until(() => $(tid("confirm-ok")));
    await click($(tid("confirm-ok")));
    await until(() => $(tid("reranker-error")));
    expect($(tid("reranker-error")).getAttribute("role")).toBe("alert");
    expect($(tid("reranker-error")).textContent).toBe("ftp://x: only http and https URLs can be ingested");
  });

  it("writes its API key to the keychain once and shows only the masked hint, with Remove", async () => {
    const secret = "jina_0123456789SECRETrerank4321";
    const { shell } = rerankShell({ kind: "server", url: "https://api.jina.ai/v1", model: "jina-reranker-v2-base-multilingual", keyHint: null });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("reranker-key-input")));
    const input = $(tid("reranker-key-input")) as HTMLInputElement;
    expect(input.type).toBe("password");
    await type(input, secret);
    await click($(tid("reranker-key-save")));
    expect(shell.called("set_reranker_key").map((c) => c.args)).toEqual([{ key: secret }]);
    await until(() => $(tid("reranker-key-hint")));
    expect($(tid("reranker-key-hint")).textContent).toContain("••••4321");
    // The key is nowhere on the page, not even in an input's value.
    expect(document.body.innerHTML).not.toContain(secret);
    expect($$("input").some((i) => (i as HTMLInputElement).value.includes(secret))).toBe(false);
    // Saving a key is not choosing a server: nothing to confirm, nothing else sent.
    expect($$(tid("confirm-dialog"))).toHaveLength(0);
    expect(shell.called("set_reranker")).toHaveLength(0);

    await click($(tid("reranker-key-delete")));
    expect(shell.called("delete_reranker_key")).toHaveLength(1);
    await until(() => $(tid("reranker-key-input")));
    expect($$(tid("reranker-key-hint"))).toHaveLength(0);
  });
});
