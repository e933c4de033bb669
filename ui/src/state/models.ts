// What the window says about models: the problems of `model_status` phrased for the window, the
// banner's text, which catalogue model is in use or already on disk, and the better model to
// offer on first run. Pure functions; the views and `useModels` call them.

import type { Catalogue, CatalogueModel, ChatModel, DownloadProgress, ModelProblem, ModelStatus } from "../api";

/**
 * The default chat model's place inside a model folder (the core's `models::DEFAULT_CHAT_MODEL`);
 * a local choice without a path of its own means this file.
 */
export const DEFAULT_CHAT_FILE = "smollm2/model.gguf";

/** Where "Not now" on the better-model offer is remembered. */
export const OFFER_DISMISSED_KEY = "doppel.modelOfferDismissed";

export function fileName(path: string): string {
  return path.split(/[\\/]/).pop() || path;
}

/** The file name a catalogue model is stored under: the last part of its URL's path. */
export function catalogueFileName(m: CatalogueModel): string {
  const path = m.url.split(/[?#]/)[0] ?? m.url;
  return path.split("/").pop() ?? path;
}

/**
 * A model's size as catalogues and download pages state it, in decimal units ("1.1 GB",
 * "98 MB"), so that the numbers match what people read elsewhere.
 */
export function formatModelSize(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(bytes >= 1e10 ? 0 : 1)} GB`;
  if (bytes >= 1e6) return `${Math.round(bytes / 1e6)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} KB`;
  return `${bytes} B`;
}

/** A download's percentage, or null while its size is not known. */
export function downloadPercent(p: DownloadProgress | null): number | null {
  if (!p || !p.total) return null;
  return Math.min(100, Math.floor((p.done / p.total) * 100));
}

/**
 * The fix of a problem for a person in the window (the core phrases it for the terminal).
 * `inSettings`: said in Settings, where the catalogue is below; elsewhere it points there.
 */
export function windowFix(p: ModelProblem, inSettings = true): string {
  const where = inSettings ? "below" : "in Settings";
  switch (p.part) {
    case "embedder":
    case "runtime":
      return "Reinstall Doppel, or run “doppel models install-defaults” in a terminal.";
    case "chat":
      return p.problem.includes("default chat model")
        ? `Reinstall Doppel, or download a chat model ${where}.`
        : `Choose another model file, or download a chat model ${where}.`;
  }
}

/** The banner on Sources and Chat: the first problem's sentence, and how many more there are. */
export function bannerText(status: ModelStatus | null): string | null {
  const problems = status?.problems ?? [];
  const first = problems[0];
  if (!first) return null;
  const more = problems.length - 1;
  return more > 0 ? `${first.problem} (${more} more model ${more === 1 ? "problem" : "problems"} in Settings.)` : first.problem;
}

/** The problems about `part`s of the local embedding model (itself and its runtime). */
export function embedderProblems(status: ModelStatus | null): ModelProblem[] {
  return (status?.problems ?? []).filter((p) => p.part === "embedder" || p.part === "runtime");
}

export function chatProblem(status: ModelStatus | null): ModelProblem | null {
  return status?.problems.find((p) => p.part === "chat") ?? null;
}

/** The catalogue model whose file `path` is, if any. */
export function catalogueModelOf(path: string | null, catalogue: Catalogue | null): CatalogueModel | null {
  if (!path || !catalogue) return null;
  const name = fileName(path);
  if (path.replace(/\\/g, "/").endsWith(`/${DEFAULT_CHAT_FILE}`)) return catalogue.chat.find((m) => m.demo) ?? null;
  return catalogue.chat.find((m) => catalogueFileName(m) === name) ?? null;
}

/**
 * How Settings names the chat model in use. It never names a file that is not there: with a
 * chat problem the model is "Not installed".
 */
export function chatModelLabel(
  cm: ChatModel | null,
  status: ModelStatus | null,
  catalogue: Catalogue | null,
): { state: "ready" | "missing" | "server" | "off"; label: string } {
  if (!cm) return { state: "off", label: "…" };
  if (cm.kind === "off") return { state: "off", label: "Off: answers are the passages' own sentences, each cited" };
  if (cm.kind !== "local") return { state: "server", label: `${cm.model ?? "A model"} on ${cm.url ?? "a server"}` };
  if (chatProblem(status)) return { state: "missing", label: "Not installed" };
  const known = catalogueModelOf(cm.path, catalogue);
  const file = cm.path ? fileName(cm.path) : "";
  return { state: "ready", label: known ? `${known.title} (${file})` : file };
}

/** Whether a catalogue model is the chat model in use (and its file is there). */
export function inUse(m: CatalogueModel, cm: ChatModel | null, status: ModelStatus | null, catalogue: Catalogue | null): boolean {
  if (!cm || cm.kind !== "local" || chatProblem(status)) return false;
  return catalogueModelOf(cm.path, catalogue)?.name === m.name;
}

/** A downloaded file (of `chat_models`) that is this catalogue model, if any. */
export function downloadedFile(m: CatalogueModel, files: string[]): string | null {
  const name = catalogueFileName(m);
  return files.find((f) => fileName(f) === name) ?? null;
}

/**
 * The better chat model to offer on first run: the catalogue's first model that is not a demo,
 * unless the person already uses a model that is not a demo (theirs, a server's, or one of the
 * catalogue), or said "Not now".
 */
export function offeredModel(
  catalogue: Catalogue | null,
  cm: ChatModel | null,
  status: ModelStatus | null,
  dismissed: boolean,
): CatalogueModel | null {
  if (dismissed || !catalogue || !cm) return null;
  if (cm.kind === "ollama" || cm.kind === "openai") return null;
  if (cm.kind === "local" && !chatProblem(status)) {
    const current = catalogueModelOf(cm.path, catalogue);
    if (!current || !current.demo) return null;
  }
  return catalogue.chat.find((m) => !m.demo) ?? null;
}
