// The fields every model server choice shares (embedding, chat, speech-to-text, reranking): its address,
// its model name, and an API key written once, of which only a masked hint is ever shown again.

import { useState } from "preact/hooks";
import { toAppError } from "../api";
import { Icon } from "./Icon";

/** A model server's address and model name, each a labelled field. */
export function ServerFields(props: {
  prefix: string;
  kind: string;
  url: string;
  model: string;
  setUrl: (v: string) => void;
  setModel: (v: string) => void;
  /** What the model field suggests when empty (by default an embedding or a chat model). */
  modelPlaceholder?: string;
}) {
  return (
    <div class="grid2">
      <label class="field">
        <span>Server URL</span>
        <input
          type="url"
          data-testid={`${props.prefix}-url`}
          placeholder={props.kind === "ollama" ? "http://localhost:11434" : "http://localhost:8080/v1"}
          value={props.url}
          onInput={(e) => props.setUrl((e.target as HTMLInputElement).value)}
        />
      </label>
      <label class="field">
        <span>Model</span>
        <input
          data-testid={`${props.prefix}-model`}
          placeholder={props.modelPlaceholder ?? (props.prefix === "embedder" ? "nomic-embed-text" : "llama3.2")}
          value={props.model}
          onInput={(e) => props.setModel((e.target as HTMLInputElement).value)}
        />
      </label>
    </div>
  );
}

/**
 * A key is written once and never read back: after saving, the field is emptied and only the
 * masked hint the shell returns is shown.
 */
export function KeyField(props: {
  prefix: string;
  hint: string | null;
  onSave: (key: string) => Promise<unknown>;
  onDelete: () => Promise<unknown>;
}) {
  const [value, setValue] = useState("");
  const [replacing, setReplacing] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const showInput = !props.hint || replacing;

  const save = async (e: Event) => {
    e.preventDefault();
    const key = value.trim();
    if (!key) return;
    setBusy(true);
    try {
      await props.onSave(key);
      setValue("");
      setReplacing(false);
      setError(null);
    } catch (err) {
      setValue("");
      setError(toAppError(err).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="key-field" data-testid={`${props.prefix}-key`}>
      <span class="field-label">API key</span>
      {props.hint && !replacing && (
        <div class="key-saved">
          <span class="key-hint" data-testid={`${props.prefix}-key-hint`}>
            <Icon name="check" size={14} />
            Saved in the system keychain: <code>{props.hint}</code>
          </span>
          <button type="button" class="btn ghost sm" data-testid={`${props.prefix}-key-replace`} onClick={() => setReplacing(true)}>
            Replace
          </button>
          <button
            type="button"
            class="btn ghost sm danger-ghost"
            data-testid={`${props.prefix}-key-delete`}
            onClick={() => props.onDelete().catch((err) => setError(toAppError(err).message))}
          >
            Remove
          </button>
        </div>
      )}
      {showInput && (
        <form class="key-form" onSubmit={save}>
          <input
            type="password"
            autocomplete="off"
            spellcheck={false}
            aria-label="API key"
            placeholder="Paste the key; it goes to the keychain"
            data-testid={`${props.prefix}-key-input`}
            value={value}
            onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          />
          <button type="submit" class="btn" data-testid={`${props.prefix}-key-save`} disabled={busy || !value.trim()}>
            Save key
          </button>
          {replacing && (
            <button type="button" class="btn ghost" onClick={() => { setReplacing(false); setValue(""); }}>
              Cancel
            </button>
          )}
        </form>
      )}
      {error && (
        <span class="field-error" role="alert">
          {error}
        </span>
      )}
      {!props.hint && !error && <span class="muted small">Optional. Kept only in the system keychain, never in a file.</span>}
    </div>
  );
}
