import { emit } from "@tauri-apps/api/event";
import { act } from "preact/test-utils";
import { afterEach, describe, expect, it } from "vitest";
import type { Catalogue, CatalogueModel, ChatModel, ModelStatus } from "../src/api";
import { App } from "../src/app";
import { OFFER_DISMISSED_KEY } from "../src/state/models";
import { $, $$, baseHandlers, click, fakeShell, mount, resetShell, settle, tid, until } from "./helpers";

afterEach(resetShell);

const smol: CatalogueModel = {
  name: "smollm2-135m", title: "SmolLM2 135M Instruct", parameters: "135M", quantisation: "Q4_1",
  size: 98_362_432, memory: 300_000_000, licence: "Apache-2.0",
  url: "https://hf.example/SmolLM2-135M-Instruct.Q4_1.gguf", sha256: null, goodFor: "A tiny demo.", demo: true,
};
const qwen: CatalogueModel = {
  ...smol, name: "qwen2.5-1.5b", title: "Qwen2.5 1.5B Instruct", parameters: "1.5B", quantisation: "Q4_K_M",
  size: 1_120_000_000, memory: 2_000_000_000, url: "https://hf.example/qwen2.5-1.5b-instruct-q4_k_m.gguf",
  goodFor: "Answers from passages well.", demo: false,
};
const catalogue: Catalogue = {
  chat: [smol, qwen],
  embedding: [
    { name: "all-minilm-l6-v2", server: "built in", model: "all-MiniLM-L6-v2", languages: "English only", goodFor: "Built in." },
    { name: "bge-m3", server: "ollama", model: "bge-m3", languages: "100+ languages", goodFor: "Many languages." },
  ],
};
const defaultModel: ChatModel = { kind: "local", path: "/cache/smollm2/model.gguf", url: null, model: null, keyHint: null };
const ok: ModelStatus = { problems: [], dirs: [{ origin: "user", path: "/data/models" }] };
const missing: ModelStatus = {
  problems: [
    {
      part: "chat",
      problem: "The default chat model (SmolLM2-135M) is not installed: answers are made of the passages' own sentences instead.",
      fix: "run `doppel models install-defaults`",
    },
  ],
  dirs: [{ origin: "user", path: "/data/models" }],
};

function handlers(status: () => ModelStatus, chat: () => ChatModel = () => defaultModel) {
  return {
    ...baseHandlers(),
    model_status: status,
    catalogue: () => catalogue,
    chat_model: chat,
  };
}

describe("models in the window", () => {
  it("shows a banner on Chat when a model is missing, and its button opens Settings that says Not installed", async () => {
    fakeShell(handlers(() => missing));
    await mount(<App initialView="chat" />);
    await until(() => $(tid("model-banner")));
    expect($(tid("model-banner-text")).textContent).toBe(missing.problems[0]!.problem);
    await click($(tid("model-banner-open")));
    await until(() => $(tid("chat-model-status")));
    expect($(tid("view-settings")).hidden).toBe(false);
    expect(document.activeElement).toBe($(tid("settings-models")));
    const status = $(tid("chat-model-status"));
    expect(status.dataset.state).toBe("missing");
    expect(status.textContent).toContain("Not installed");
    expect(status.textContent).toContain("Reinstall Doppel, or download a chat model below.");
    // The missing file is never named as if it were there.
    expect($$(tid("chat-model-name"))).toHaveLength(0);
    const option = ($(tid("chat-model-select")) as HTMLSelectElement).selectedOptions[0]!;
    expect(option.textContent).toBe("Not installed (the file is missing)");
    expect($(tid("chat-model-card")).textContent).not.toContain("model.gguf");
  });

  it("has no banner and names the model when it is there", async () => {
    fakeShell(handlers(() => ok));
    await mount(<App initialView="settings" />);
    await until(() => $(tid("chat-model-status")));
    expect($$(tid("model-banner"))).toHaveLength(0);
    expect($(tid("chat-model-status")).dataset.state).toBe("ready");
    expect($(tid("chat-model-name")).textContent).toBe("SmolLM2 135M Instruct (model.gguf)");
    expect($(tid("embedder-status")).dataset.state).toBe("ready");
    expect($(tid("embedder-status")).textContent).toContain("English only");
  });

  it("lists the catalogue with facts and the demo badge, and the embedding models with their languages", async () => {
    fakeShell(handlers(() => ok));
    await mount(<App initialView="settings" />);
    await until(() => $$(tid("catalogue-model")).length === 2);
    const [first, second] = $$(tid("catalogue-model"));
    expect(first!.dataset.name).toBe("smollm2-135m");
    expect($$(tid("demo-badge"), first!)).toHaveLength(1);
    expect($$(tid("demo-badge"), second!)).toHaveLength(0);
    expect($(tid("catalogue-in-use"), first!).textContent).toBe("In use");
    expect(second!.textContent).toContain("1.5B");
    expect(second!.textContent).toContain("Q4_K_M");
    expect($(tid("catalogue-size"), second!).textContent).toBe("1.1 GB");
    expect(second!.textContent).toContain("2.0 GB");
    expect(second!.textContent).toContain("Apache-2.0");
    expect(second!.textContent).toContain("Answers from passages well.");
    expect($(tid("catalogue-download"), second!).getAttribute("aria-label")).toBe("Download Qwen2.5 1.5B Instruct, 1.1 GB");
    const languages = $$(tid("embedding-languages")).map((e) => e.textContent);
    expect(languages).toEqual(["English only", "100+ languages"]);
  });

  it("downloads a catalogue model with progress, then shows it in use", async () => {
    let chosen = defaultModel;
    let finish: (v: ChatModel) => void = () => undefined;
    const shell = fakeShell({
      ...handlers(() => ok, () => chosen),
      get_catalogue_model: () =>
        new Promise<ChatModel>((resolve) => {
          finish = resolve;
        }),
    });
    await mount(<App initialView="settings" />);
    await until(() => $$(tid("catalogue-download")).length === 1);
    await click($(tid("catalogue-download")));
    expect(shell.called("get_catalogue_model")[0]!.args).toEqual({ name: "qwen2.5-1.5b" });
    await act(async () => {
      await emit("doppel://download", { done: 560_000_000, total: 1_120_000_000 });
    });
    await until(() => $(tid("catalogue-progress")).getAttribute("aria-valuenow") === "50");
    expect($(tid("catalogue-progress-text")).textContent).toBe("50% · 560 MB of 1.1 GB");
    expect($(tid("catalogue-cancel"))).toBeTruthy();
    chosen = { ...defaultModel, path: "/data/models/chat/qwen2.5-1.5b-instruct-q4_k_m.gguf" };
    await act(async () => finish(chosen));
    await settle();
    await until(() => $(`${tid("catalogue-model")}[data-name="qwen2.5-1.5b"] ${tid("catalogue-in-use")}`));
    expect($$(tid("catalogue-progress"))).toHaveLength(0);
    expect($(tid("chat-model-name")).textContent).toBe("Qwen2.5 1.5B Instruct (qwen2.5-1.5b-instruct-q4_k_m.gguf)");
  });

  it("cancels a download through cancel_download, and says why a download failed", async () => {
    const shell = fakeShell({
      ...handlers(() => ok),
      get_catalogue_model: () => new Promise((_, reject) => setTimeout(() => reject({ code: "download", message: "not enough free space: 1.1 GB needed, 200 MB free" }), 0)),
      cancel_download: () => null,
    });
    await mount(<App initialView="settings" />);
    await until(() => $$(tid("catalogue-download")).length === 1);
    await click($(tid("catalogue-download")));
    await until(() => $(tid("catalogue-error")));
    expect($(tid("catalogue-error")).textContent).toBe("not enough free space: 1.1 GB needed, 200 MB free");
    expect($(tid("catalogue-error")).getAttribute("role")).toBe("alert");
    expect(shell.called("model_status").length).toBeGreaterThan(1);
  });

  it("welcomes a first run: local, models ready, and a better model offered until Not now", async () => {
    fakeShell(handlers(() => ok));
    await mount(<App />);
    await until(() => $(tid("model-offer")));
    expect($(tid("welcome-local")).textContent).toContain("stays on this computer");
    expect($(tid("welcome-models")).dataset.state).toBe("ready");
    expect($(tid("model-offer")).textContent).toContain("Answers are better with a larger model: Qwen2.5 1.5B Instruct, 1.1 GB.");
    // No banner on the welcome: it says the same itself.
    expect($$(tid("model-banner"))).toHaveLength(0);
    await click($(tid("model-offer-dismiss")));
    expect($$(tid("model-offer"))).toHaveLength(0);
    expect(localStorage.getItem(OFFER_DISMISSED_KEY)).toBe("1");
  });

  it("says on the welcome what is missing and opens Settings from there", async () => {
    fakeShell(handlers(() => missing));
    await mount(<App />);
    await until(() => $(tid("welcome-models")));
    const line = $(tid("welcome-models"));
    expect(line.dataset.state).toBe("missing");
    expect(line.textContent).toContain("download a chat model in Settings");
    await click($(tid("welcome-open-models")));
    await until(() => $(tid("view-settings")).hidden === false);
  });

  it("invites a first question once a source is ready, and not again after Chat was opened", async () => {
    const ready = {
      id: 3, twinId: 1, kind: "file", origin: "/docs/notes.md", title: "notes.md", mediaType: "text/markdown",
      byteSize: 20, state: "ready", error: null, chunkCount: 1, createdAt: 0, updatedAt: 0,
    };
    fakeShell({ ...handlers(() => missing), sources: () => [ready] });
    await mount(<App />);
    await until(() => $(tid("first-question")));
    // With sources, the banner takes over from the welcome.
    expect($(tid("model-banner"))).toBeTruthy();
    await click($(tid("first-question-ask")));
    expect($(tid("view-chat")).hidden).toBe(false);
    await click($(tid("nav-sources")));
    expect($$(tid("first-question"))).toHaveLength(0);
  });
});
