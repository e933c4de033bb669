// Reading what is not text, in Settings: text recognition in images and scans (Tesseract, on this
// computer; off until the person turns it on) and the speech-to-text server that transcribes
// audio and video. Files that waited for either are read again by the core once it is set.

import { useEffect, useState } from "preact/hooks";
import { api, toAppError, type OcrStatus } from "../api";
import { useApp } from "../app";
import { Icon } from "../components/Icon";
import { ModelServerCard } from "../components/ModelServerCard";

/** The switch's label; the core's `needs_ocr` message names it. */
export const OCR_LABEL = "Read text in images and scans";

/** Tesseract's data that is not a language (orientation and script detection, equations). */
const NOT_LANGUAGES = new Set(["osd", "equ"]);

/** A problem of `ocr_status` split into what is wrong and the command that fixes it. */
export function splitFix(problem: string): { what: string; fix: string | null } {
  const at = problem.lastIndexOf("Fix:");
  const what = (at < 0 ? problem : problem.slice(0, at)).trim();
  const fix = at < 0 ? null : problem.slice(at + "Fix:".length).trim() || null;
  return { what: what.charAt(0).toUpperCase() + what.slice(1), fix };
}

// ---- Text recognition ----

export function TextRecognitionCard() {
  const app = useApp();
  const [status, setStatus] = useState<OcrStatus | null>(null);
  const [languages, setLanguages] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api
      .ocrStatus()
      .then((s) => {
        setStatus(s);
        setLanguages(s.languages);
      })
      .catch(app.fail);
  }, []);

  const toggle = async (on: boolean) => {
    setBusy(true);
    try {
      await api.setOcr(on);
      setStatus(await api.ocrStatus());
      app.toast(on ? "Text recognition on: images and scans that waited are read again" : "Text recognition off", "success");
    } catch (err) {
      app.fail(err);
    } finally {
      setBusy(false);
    }
  };

  const saveLanguages = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      await api.setOcrLanguages(languages.trim());
      const s = await api.ocrStatus();
      setStatus(s);
      setLanguages(s.languages);
      setError(null);
      app.toast("Languages saved", "success");
    } catch (err) {
      setError(toAppError(err).message);
    } finally {
      setBusy(false);
    }
  };

  if (!status) return null;
  const installed = status.installed.filter((l) => !NOT_LANGUAGES.has(l));
  const changed = languages.trim() !== status.languages;
  return (
    <section class="card" data-testid="ocr-card">
      <h2>Read text in images and scans</h2>
      <p class="muted small">
        Photos, screenshots and scanned PDF pages are read with Tesseract, on this computer. It is slow: a long scan
        can take minutes. Off, they wait until it is turned on.
      </p>
      <label class="check">
        <input
          type="checkbox"
          role="switch"
          data-testid="ocr-enabled"
          checked={status.enabled}
          disabled={busy}
          onChange={(e) => void toggle((e.target as HTMLInputElement).checked)}
        />
        {OCR_LABEL}
      </label>
      {/* A live region from the start, so that problems found on turning it on are read out. */}
      <div class="ocr-status" aria-live="polite" data-testid="ocr-status">
        {status.tesseract ? (
          <p class="model-state ready" data-testid="ocr-tesseract">
            <Icon name="check" size={16} />
            <span>
              <strong>Found:</strong> Tesseract {status.tesseract}
            </span>
          </p>
        ) : (
          !status.enabled && (
            <p class="model-state" data-testid="ocr-tesseract">
              <Icon name="x" size={16} />
              <span>Tesseract is not installed on this computer.</span>
            </p>
          )
        )}
        {status.enabled &&
          status.problems.map((p) => {
            const { what, fix } = splitFix(p);
            return (
              <div key={p} class="model-state warn" data-testid="ocr-problem">
                <Icon name="alert" size={16} />
                <div>
                  <p>{what}</p>
                  {fix && (
                    <p class="small fix" data-testid="ocr-fix">
                      Fix: <code>{fix}</code>
                    </p>
                  )}
                </div>
              </div>
            );
          })}
      </div>
      <form class="form" onSubmit={saveLanguages}>
        <label class="field">
          <span>Languages</span>
          <input
            data-testid="ocr-languages"
            spellcheck={false}
            autocomplete="off"
            placeholder="eng"
            value={languages}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "ocr-languages-help ocr-languages-error" : "ocr-languages-help"}
            onInput={(e) => {
              setLanguages((e.target as HTMLInputElement).value);
              setError(null);
            }}
          />
        </label>
        <p id="ocr-languages-help" class="muted small" data-testid="ocr-installed">
          Tesseract's codes joined by +, such as eng+fra.{" "}
          {installed.length > 0
            ? `Installed here: ${installed.join(", ")}.`
            : status.tesseract
              ? "No language is installed."
              : ""}
        </p>
        {error && (
          <p id="ocr-languages-error" class="field-error" role="alert" data-testid="ocr-languages-error">
            {error}
          </p>
        )}
        <div class="actions">
          <button type="submit" class="btn" data-testid="ocr-languages-save" disabled={!changed || !languages.trim() || busy}>
            Save languages
          </button>
        </div>
      </form>
    </section>
  );
}

// ---- Transcription ----

export function TranscriptionCard() {
  return (
    <ModelServerCard
      role="transcriber"
      title="Transcription"
      about={
        <>
          Audio and video files are turned into text by a speech-to-text server you choose (any OpenAI-compatible{" "}
          <code>/v1/audio/transcriptions</code>, such as a Whisper server). Each recording is sent to it; without one,
          recordings wait.
        </>
      }
      off="Off: no recording is sent anywhere; audio and video files wait until a server is set."
      modelPlaceholder="whisper-1"
      savedToast="Transcription server saved: recordings that waited are read again"
      offToast="Transcription turned off"
    />
  );
}
