// Settings' text recognition (Tesseract, off until turned on) and speech-to-text server cards: what
// the person switches, saves and is told, and that an API key never comes back.

import { afterEach, describe, expect, it } from "vitest";
import type { ModelServer, OcrStatus } from "../src/api";
import { App } from "../src/app";
import { $, $$, baseHandlers, click, fakeShell, mount, resetShell, tid, type, until } from "./helpers";

afterEach(resetShell);

const off: OcrStatus = { enabled: false, tesseract: null, pdftoppm: true, languages: "eng", installed: [], problems: [] };

/** The switch, found by its label as a person (or a screen reader) finds it. */
function ocrSwitch(): HTMLInputElement {
  const label = $$("label").find((l) => l.textContent?.trim() === "Read text in images and scans");
  if (!label) throw new Error("no switch labelled “Read text in images and scans”");
  return $("input", label) as HTMLInputElement;
}

describe("text recognition in Settings", () => {
  it("is off at first; turning it on saves ocr=true and shows each problem with its fix", async () => {
    let status = off;
    const shell = fakeShell({
      ...baseHandlers(),
      ocr_status: () => status,
      set_setting: (a) => {
        if (a.key === "ocr" && a.value === "true") {
          status = {
            ...status,
            enabled: true,
            problems: [
              "text recognition is on, but Tesseract is not installed: images and scans cannot be read. Fix: sudo apt install tesseract-ocr",
            ],
          };
        }
        return [];
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => ocrSwitch());
    expect(ocrSwitch().checked).toBe(false);
    expect(ocrSwitch().getAttribute("role")).toBe("switch");
    expect($(tid("ocr-card")).textContent).toMatch(/slow/);
    expect($(tid("ocr-card")).textContent).toMatch(/Tesseract/);
    // Off, nothing is wrong yet: no warning.
    expect($$(tid("ocr-problem"))).toHaveLength(0);

    await click(ocrSwitch());
    expect(shell.called("set_setting").map((c) => c.args)).toEqual([{ key: "ocr", value: "true" }]);
    await until(() => $(tid("ocr-problem")));
    expect(ocrSwitch().checked).toBe(true);
    const problem = $(tid("ocr-problem"));
    expect(problem.textContent).toContain("Text recognition is on, but Tesseract is not installed");
    expect($(tid("ocr-fix"), problem).textContent).toBe("Fix: sudo apt install tesseract-ocr");
    // Announced as it appears.
    expect(problem.closest("[aria-live]")).not.toBeNull();
  });

  it("shows Tesseract's version and the installed languages, and saves the languages chosen", async () => {
    let status: OcrStatus = { ...off, enabled: true, tesseract: "5.3.4", installed: ["eng", "fra", "osd"] };
    const shell = fakeShell({
      ...baseHandlers(),
      ocr_status: () => status,
      set_setting: (a) => {
        if (a.value === "eng+zzz")
          throw { code: "invalid_setting", message: "invalid value for ocr_languages: Tesseract has no data for zzz: install it with `sudo apt install tesseract-ocr-zzz`" };
        status = { ...status, languages: String(a.value) };
        return [];
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("ocr-tesseract")));
    expect($(tid("ocr-tesseract")).textContent).toContain("Tesseract 5.3.4");
    expect($(tid("ocr-installed")).textContent).toContain("Installed here: eng, fra.");
    const field = $(tid("ocr-languages")) as HTMLInputElement;
    expect(field.value).toBe("eng");

    await type(field, "eng+zzz");
    await click($(tid("ocr-languages-save")));
    await until(() => $(tid("ocr-languages-error")));
    expect($(tid("ocr-languages-error")).textContent).toContain("sudo apt install tesseract-ocr-zzz");
    expect(field.getAttribute("aria-invalid")).toBe("true");
    expect(field.getAttribute("aria-describedby")).toContain("ocr-languages-error");

    await type(field, "eng+fra");
    await click($(tid("ocr-languages-save")));
    expect(shell.called("set_setting").map((c) => c.args)).toEqual([
      { key: "ocr_languages", value: "eng+zzz" },
      { key: "ocr_languages", value: "eng+fra" },
    ]);
    await until(() => $$(tid("ocr-languages-error")).length === 0);
    expect(status.languages).toBe("eng+fra");
    expect(field.value).toBe("eng+fra");
    // Saved: nothing left to save.
    expect(($(tid("ocr-languages-save")) as HTMLButtonElement).disabled).toBe(true);
  });

  it("leaves the switch its own: Tuning does not show the setting ocr again", async () => {
    fakeShell({
      ...baseHandlers(),
      settings: () => [
        { key: "ocr", value: "0", default: "0", help: "read text in images" },
        { key: "ocr_dpi", value: "300", default: "300", help: "resolution" },
      ],
    });
    await mount(<App initialView="settings" />);
    await until(() => $(`${tid("setting-row")}[data-key="ocr_dpi"]`));
    expect($$(`${tid("setting-row")}[data-key="ocr"]`)).toHaveLength(0);
  });
});

describe("transcription in Settings", () => {
  it("saves a speech-to-text server with its URL and model, and can turn it off", async () => {
    let t: ModelServer = { kind: "off", url: null, model: null, keyHint: null };
    const shell = fakeShell({
      ...baseHandlers(),
      transcriber: () => t,
      set_transcriber: (a) => {
        t = a.kind === "off" ? { kind: "off", url: null, model: null, keyHint: null } : { kind: "server", url: String(a.url), model: String(a.model), keyHint: null };
        return t;
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("transcriber-card")));
    expect($(tid("transcriber-status")).textContent).toMatch(/^Off/);
    // Nothing to save until both are given.
    expect(($(tid("transcriber-save")) as HTMLButtonElement).disabled).toBe(true);
    // No key before a server is chosen: it would belong to none.
    expect($$(tid("transcriber-key"))).toHaveLength(0);

    await type($(tid("transcriber-url")) as HTMLInputElement, " http://127.0.0.1:8080/v1 ");
    await type($(tid("transcriber-model")) as HTMLInputElement, "whisper-1");
    await click($(tid("transcriber-save")));
    expect(shell.called("set_transcriber")[0]!.args).toEqual({ kind: "server", url: "http://127.0.0.1:8080/v1", model: "whisper-1" });
    await until(() => $(tid("transcriber-status")).dataset.state === "server");
    expect($(tid("transcriber-status")).textContent).toContain("whisper-1 at http://127.0.0.1:8080/v1");

    await click($(tid("transcriber-off")));
    expect(shell.called("set_transcriber")[1]!.args).toEqual({ kind: "off" });
    await until(() => $(tid("transcriber-status")).dataset.state === "off");
    expect(($(tid("transcriber-url")) as HTMLInputElement).value).toBe("");
  });

  it("shows the server's refusal of a choice beside the form", async () => {
    fakeShell({
      ...baseHandlers(),
      set_transcriber: () => {
        throw { code: "invalid_input", message: "not an http(s) URL: ftp://x" };
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("transcriber-card")));
    await type($(tid("transcriber-url")) as HTMLInputElement, "ftp://x");
    await type($(tid("transcriber-model")) as HTMLInputElement, "whisper-1");
    await click($(tid("transcriber-save")));
    await until(() => $(tid("transcriber-error")));
    expect($(tid("transcriber-error")).getAttribute("role")).toBe("alert");
    expect($(tid("transcriber-error")).textContent).toBe("not an http(s) URL: ftp://x");
  });

  it("writes its API key to the keychain once and shows only the masked hint, with Remove", async () => {
    const secret = "sk-whisper-0123456789SECRET4321";
    let t: ModelServer = { kind: "server", url: "https://speech.example/v1", model: "whisper-1", keyHint: null };
    const shell = fakeShell({
      ...baseHandlers(),
      transcriber: () => t,
      set_transcriber_key: (a) => {
        t = { ...t, keyHint: `••••${String(a.key).slice(-4)}` };
        return t;
      },
      delete_transcriber_key: () => {
        t = { ...t, keyHint: null };
        return t;
      },
    });
    await mount(<App initialView="settings" />);
    await until(() => $(tid("transcriber-key-input")));
    const input = $(tid("transcriber-key-input")) as HTMLInputElement;
    expect(input.type).toBe("password");
    await type(input, secret);
    await click($(tid("transcriber-key-save")));
    expect(shell.called("set_transcriber_key")[0]!.args).toEqual({ key: secret });
    await until(() => $(tid("transcriber-key-hint")));
    expect($(tid("transcriber-key-hint")).textContent).toContain("••••4321");
    expect(document.body.innerHTML).not.toContain(secret);
    expect($$("input").some((i) => (i as HTMLInputElement).value.includes(secret))).toBe(false);

    await click($(tid("transcriber-key-delete")));
    expect(shell.called("delete_transcriber_key")).toHaveLength(1);
    await until(() => $(tid("transcriber-key-input")));
    expect($$(tid("transcriber-key-hint"))).toHaveLength(0);
  });
});
