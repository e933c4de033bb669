import { describe, expect, it } from "vitest";
import type { Catalogue, CatalogueModel, ChatModel, ModelStatus } from "../src/api";
import {
  bannerText,
  catalogueFileName,
  catalogueModelOf,
  chatModelLabel,
  downloadPercent,
  downloadedFile,
  formatModelSize,
  inUse,
  offeredModel,
  windowFix,
} from "../src/state/models";

const smol: CatalogueModel = {
  name: "smollm2-135m", title: "SmolLM2 135M Instruct", parameters: "135M", quantisation: "Q4_1",
  size: 98_362_432, memory: 300_000_000, licence: "Apache-2.0",
  url: "https://hf.example/SmolLM2-135M-Instruct.Q4_1.gguf", sha256: null, goodFor: "A tiny demo.", demo: true,
};
const qwen: CatalogueModel = {
  ...smol, name: "qwen2.5-1.5b", title: "Qwen2.5 1.5B Instruct", parameters: "1.5B", quantisation: "Q4_K_M",
  size: 1_120_000_000, memory: 2_000_000_000, url: "https://hf.example/qwen2.5-1.5b-instruct-q4_k_m.gguf?download=1",
  demo: false,
};
const catalogue: Catalogue = { chat: [smol, qwen], embedding: [] };
const local = (path: string): ChatModel => ({ kind: "local", path, url: null, model: null, keyHint: null });
const ok: ModelStatus = { problems: [], dirs: [] };
const chatMissing: ModelStatus = {
  problems: [{ part: "chat", problem: "The chosen chat model's file is missing (/m/x.gguf): answers are made of the passages' own sentences instead.", fix: "run `doppel models local`" }],
  dirs: [],
};
const defaultMissing: ModelStatus = {
  problems: [{ part: "chat", problem: "The default chat model (SmolLM2-135M) is not installed: answers show passages.", fix: "run `doppel models install-defaults`" }],
  dirs: [],
};

describe("model sizes and progress", () => {
  it("states sizes in decimal units, as download pages do", () => {
    expect(formatModelSize(1_120_000_000)).toBe("1.1 GB");
    expect(formatModelSize(98_362_432)).toBe("98 MB");
    expect(formatModelSize(12_400_000_000)).toBe("12 GB");
    expect(formatModelSize(2_500)).toBe("3 KB");
    expect(formatModelSize(12)).toBe("12 B");
  });

  it("gives a percentage only once the size is known, and never more than 100", () => {
    expect(downloadPercent(null)).toBeNull();
    expect(downloadPercent({ done: 10, total: null })).toBeNull();
    expect(downloadPercent({ done: 50, total: 200 })).toBe(25);
    expect(downloadPercent({ done: 199, total: 200 })).toBe(99);
    expect(downloadPercent({ done: 200, total: 200 })).toBe(100);
    expect(downloadPercent({ done: 300, total: 200 })).toBe(100);
  });
});

describe("what the window says about models", () => {
  it("has no banner when all is well, else the first problem and how many more", () => {
    expect(bannerText(null)).toBeNull();
    expect(bannerText(ok)).toBeNull();
    expect(bannerText(chatMissing)).toBe(chatMissing.problems[0]!.problem);
    const three: ModelStatus = {
      problems: [
        { part: "embedder", problem: "The embedding model is not installed.", fix: "" },
        { part: "runtime", problem: "ONNX Runtime is not installed.", fix: "" },
        ...chatMissing.problems,
      ],
      dirs: [],
    };
    expect(bannerText(three)).toBe("The embedding model is not installed. (2 more model problems in Settings.)");
  });

  it("phrases fixes for the window, not the terminal", () => {
    expect(windowFix(defaultMissing.problems[0]!)).toBe("Reinstall Doppel, or download a chat model below.");
    expect(windowFix(defaultMissing.problems[0]!, false)).toBe("Reinstall Doppel, or download a chat model in Settings.");
    expect(windowFix(chatMissing.problems[0]!)).toBe("Choose another model file, or download a chat model below.");
    expect(windowFix({ part: "runtime", problem: "", fix: "" })).toContain("Reinstall Doppel");
  });

  it("never names a chat model whose file is missing", () => {
    const shown = chatModelLabel(local("/m/x.gguf"), chatMissing, catalogue);
    expect(shown).toEqual({ state: "missing", label: "Not installed" });
    expect(chatModelLabel(local("/cache/smollm2/model.gguf"), defaultMissing, catalogue).label).toBe("Not installed");
  });

  it("names a present model by its catalogue title and file", () => {
    expect(chatModelLabel(local("/cache/smollm2/model.gguf"), ok, catalogue)).toEqual({
      state: "ready",
      label: "SmolLM2 135M Instruct (model.gguf)",
    });
    expect(chatModelLabel(local("/d/models/chat/qwen2.5-1.5b-instruct-q4_k_m.gguf"), ok, catalogue).label).toBe(
      "Qwen2.5 1.5B Instruct (qwen2.5-1.5b-instruct-q4_k_m.gguf)",
    );
    expect(chatModelLabel(local("/home/me/mine.gguf"), ok, catalogue).label).toBe("mine.gguf");
    expect(chatModelLabel({ kind: "ollama", path: null, url: "http://127.0.0.1:11434", model: "llama3.2", keyHint: null }, ok, catalogue).state).toBe("server");
  });

  it("knows a catalogue model's file by its URL's last part, without the query", () => {
    expect(catalogueFileName(qwen)).toBe("qwen2.5-1.5b-instruct-q4_k_m.gguf");
    expect(catalogueModelOf("/d/chat/qwen2.5-1.5b-instruct-q4_k_m.gguf", catalogue)?.name).toBe("qwen2.5-1.5b");
    expect(downloadedFile(qwen, ["/d/chat/other.gguf", "/d/chat/qwen2.5-1.5b-instruct-q4_k_m.gguf"])).toBe(
      "/d/chat/qwen2.5-1.5b-instruct-q4_k_m.gguf",
    );
    expect(downloadedFile(smol, ["/d/chat/other.gguf"])).toBeNull();
    expect(inUse(smol, local("/c/smollm2/model.gguf"), ok, catalogue)).toBe(true);
    expect(inUse(smol, local("/c/smollm2/model.gguf"), defaultMissing, catalogue)).toBe(false);
  });

  it("offers a better model over the demo one, and not once dismissed or already better", () => {
    expect(offeredModel(catalogue, local("/c/smollm2/model.gguf"), ok, false)?.name).toBe("qwen2.5-1.5b");
    expect(offeredModel(catalogue, local("/c/smollm2/model.gguf"), defaultMissing, false)?.name).toBe("qwen2.5-1.5b");
    expect(offeredModel(catalogue, local("/c/smollm2/model.gguf"), ok, true)).toBeNull();
    expect(offeredModel(catalogue, local("/d/chat/qwen2.5-1.5b-instruct-q4_k_m.gguf"), ok, false)).toBeNull();
    expect(offeredModel(catalogue, local("/home/me/mine.gguf"), ok, false)).toBeNull();
    expect(offeredModel(catalogue, { kind: "openai", path: null, url: "u", model: "m", keyHint: null }, ok, false)).toBeNull();
    expect(offeredModel(null, local("/c/smollm2/model.gguf"), ok, false)).toBeNull();
  });
});
