import { afterEach, describe, expect, it } from "vitest";
import type { Embedder, Setting } from "../src/api";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, key, mount, resetShell, settle, tid, type, until } from "./helpers";

afterEach(resetShell);

const topK: Setting = { key: "top_k", value: "8", default: "8", help: "number of search results returned by default" };

describe("settings", () => {
  it("shows the shell's validation error beside the field, and clears it once a valid value is saved", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      settings: () => [topK],
      set_setting: (a) => {
        if (a.value === "0") throw { code: "invalid_setting", message: "invalid value for top_k: must be between 1 and 200" };
        return [{ ...topK, value: a.value }];
      },
    });
    await mount(<App initialView="settings" />);
    const input = $(`${tid("setting-input")}[data-key="top_k"]`) as HTMLInputElement;
    await type(input, "0");
    await key(input, "Enter");
    const error = $(`${tid("setting-error")}[data-key="top_k"]`);
    expect(error.textContent).toBe("invalid value for top_k: must be between 1 and 200");
    expect(input.getAttribute("aria-invalid")).toBe("true");
    expect(input.getAttribute("aria-describedby")).toBe(error.id);

    await type(input, "12");
    await key(input, "Enter");
    expect(shell.called("set_setting").map((c) => c.args)).toEqual([
      { key: "top_k", value: "0" },
      { key: "top_k", value: "12" },
    ]);
    expect($$(tid("setting-error"))).toHaveLength(0);
    expect(input.getAttribute("aria-invalid")).toBeNull();
    expect($(tid("setting-reset"))).toBeTruthy();
  });

  it("writes an API key once and then shows only the masked hint, never the key", async () => {
    const secret = "sk-live-0123456789abcdefSECRET9876";
    let emb: Embedder = { kind: "openai", url: "https://api.example/v1", model: "text-embed", keyHint: null, pending: 0 };
    const shell = fakeShell({
      ...baseHandlers(),
      embedder: () => emb,
      set_embedder_key: (a) => {
        emb = { ...emb, keyHint: `sk-…${String(a.key).slice(-4)}` };
        return emb;
      },
    });
    await mount(<App initialView="settings" />);
    const input = $(tid("embedder-key-input")) as HTMLInputElement;
    expect(input.type).toBe("password");
    await type(input, secret);
    await click($(tid("embedder-key-save")));
    expect(shell.called("set_embedder_key")[0]!.args).toEqual({ key: secret });
    await until(() => $(tid("embedder-key-hint")));
    expect($(tid("embedder-key-hint")).textContent).toContain("sk-…9876");
    expect($$(tid("embedder-key-input"))).toHaveLength(0);
    // The key is nowhere on the page, not even in an input's value.
    expect(document.body.innerHTML).not.toContain(secret);
    expect($$("input").some((i) => (i as HTMLInputElement).value.includes(secret))).toBe(false);
    // Replacing starts from an empty field.
    await click($(tid("embedder-key-replace")));
    expect(($(tid("embedder-key-input")) as HTMLInputElement).value).toBe("");
    // No command that returns data was asked for the key.
    expect(shell.calls.every((c) => !/get_.*key|read_key/.test(c.cmd))).toBe(true);
  });

  it("chooses a model server that would be sent passages only after a confirmation that counts them", async () => {
    let emb: Embedder = { kind: "local", url: null, model: null, keyHint: null, pending: 0 };
    const shell = fakeShell({
      ...baseHandlers(),
      embedder: () => emb,
      set_embedder: (a) => {
        if (!a.confirmed)
          throw { code: "confirmation_needed", message: "7408 passages (about 912345 tokens) will be sent to https://api.example/v1 to be embedded. A paid API charges for them." };
        emb = { kind: "openai", url: String(a.url), model: String(a.model), keyHint: null, pending: 7408 };
        return emb;
      },
    });
    await mount(<App initialView="settings" />);
    await click($(tid("embedder-kind-openai")));
    await type($(tid("embedder-url")) as HTMLInputElement, "https://api.example/v1");
    await type($(tid("embedder-model")) as HTMLInputElement, "text-embed");
    await click($(tid("embedder-save")));
    expect($(tid("embedder-cost")).textContent).toContain("7408 passages (about 912345 tokens)");
    await click($(tid("confirm-cancel")));
    await settle();
    expect(emb.kind).toBe("local");
    expect($$(tid("embedder-pending"))).toHaveLength(0);

    await click($(tid("embedder-save")));
    await click($(tid("confirm-ok")));
    await until(() => $(tid("embedder-pending")));
    expect(emb.kind).toBe("openai");
    expect(shell.called("set_embedder").map((c) => c.args.confirmed)).toEqual([undefined, undefined, true]);
  });

  it("empties the key field when the keychain refuses it, and shows why", async () => {
    fakeShell({
      ...baseHandlers(),
      chat_model: () => ({ kind: "ollama", path: null, url: "http://localhost:11434", model: "llama3", keyHint: null }),
      set_chat_key: () => {
        throw { code: "keychain", message: "the system keychain is locked" };
      },
    });
    await mount(<App initialView="settings" />);
    const input = $(tid("chat-key-input")) as HTMLInputElement;
    await type(input, "secret-value-1234");
    await click($(tid("chat-key-save")));
    await settle();
    expect(document.body.textContent).toContain("the system keychain is locked");
    expect(input.value).toBe("");
  });

  it("downloads a model with progress and can cancel it", async () => {
    let reject: ((e: unknown) => void) | null = null;
    const shell = fakeShell({
      ...baseHandlers(),
      download_chat_model: () => new Promise((_, r) => (reject = r)),
      cancel_download: () => {
        reject!({ code: "cancelled", message: "cancelled" });
        return null;
      },
    });
    await mount(<App initialView="settings" />);
    await type($(tid("download-url")) as HTMLInputElement, "https://models.example/m.gguf");
    await type($(tid("download-sha256")) as HTMLInputElement, "ab".repeat(32));
    await click($(tid("download-start")));
    expect(shell.called("download_chat_model")[0]!.args).toEqual({ url: "https://models.example/m.gguf", sha256: "ab".repeat(32) });
    const { emit } = await import("@tauri-apps/api/event");
    await emit("doppel://download", { done: 25, total: 100 });
    await until(() => $(tid("download-progress")).getAttribute("aria-valuenow") === "25");
    await click($(tid("download-cancel")));
    expect(shell.called("cancel_download")).toHaveLength(1);
    await until(() => $(tid("download-error")).textContent === "Download cancelled.");
  });

  it("adds and removes watched folders", async () => {
    const shell = fakeShell({
      ...baseHandlers(),
      "plugin:dialog|open": () => "/home/a/Notes",
      watch_folder: (a) => ({ id: 5, twinId: a.twin, path: a.path, createdAt: 0 }),
      unwatch_folder: () => null,
    });
    await mount(<App initialView="settings" />);
    await click($(tid("watch-add")));
    await until(() => $(tid("watched-item")));
    expect(shell.called("watch_folder")[0]!.args).toEqual({ twin: 1, path: "/home/a/Notes" });
    await click($(tid("watch-remove")));
    expect(shell.called("unwatch_folder")[0]!.args).toEqual({ folder: 5 });
    expect($$(tid("watched-item"))).toHaveLength(0);
  });
});
