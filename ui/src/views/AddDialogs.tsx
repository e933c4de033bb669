// The dialogs that add a source without a file: pasted text, and a web page by its address.

import { useState } from "preact/hooks";
import { api } from "../api";
import { useApp } from "../app";
import { Modal } from "../components/Modal";

export function PasteTextDialog(props: { onClose: () => void }) {
  const app = useApp();
  const [title, setTitle] = useState("");
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!app.twin || !text.trim()) return;
    setBusy(true);
    try {
      const t = title.trim() || text.trim().split("\n")[0]!.slice(0, 60);
      const enq = await api.addText(app.twin.id, t, text);
      await app.queued({ queued: [enq], skipped: [] });
      props.onClose();
    } catch (err) {
      app.fail(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title="Paste text" onClose={props.onClose} testid="paste-dialog" wide>
      <form onSubmit={submit} class="form">
        <label class="field">
          <span>Title</span>
          <input
            data-testid="paste-title"
            value={title}
            placeholder="e.g. Notes from the offsite"
            onInput={(e) => setTitle((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="field">
          <span>Text</span>
          <textarea
            data-testid="paste-body"
            rows={10}
            value={text}
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        <div class="modal-actions">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="btn primary" data-testid="paste-submit" disabled={busy || !text.trim()}>
            Add text
          </button>
        </div>
      </form>
    </Modal>
  );
}

export function AddUrlDialog(props: { onClose: () => void }) {
  const app = useApp();
  const [url, setUrl] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!app.twin) return;
    const u = url.trim();
    if (!/^https?:\/\/\S+$/i.test(u)) {
      setError("Enter a web address that starts with http:// or https://");
      return;
    }
    setBusy(true);
    try {
      const report = await api.addUrl(app.twin.id, u);
      await app.queued(report);
      app.showReport(report);
      props.onClose();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title="Add a web page" onClose={props.onClose} testid="url-dialog">
      <form onSubmit={submit} class="form">
        <label class="field">
          <span>Address</span>
          <input
            type="url"
            data-testid="url-input"
            placeholder="https://example.org/article"
            value={url}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "url-error" : undefined}
            onInput={(e) => {
              setUrl((e.target as HTMLInputElement).value);
              setError(null);
            }}
          />
          {error && (
            <span id="url-error" class="field-error" data-testid="url-error">
              {error}
            </span>
          )}
        </label>
        <p class="muted small">The page is fetched once, with a time limit and a size cap, and read like a file.</p>
        <div class="modal-actions">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="btn primary" data-testid="url-submit" disabled={busy || !url.trim()}>
            Add page
          </button>
        </div>
      </form>
    </Modal>
  );
}
