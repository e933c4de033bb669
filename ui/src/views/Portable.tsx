// Taking the twin along (back up, restore, export) and the local API (switch, address, tokens
// with their last use, share links). Shown in Settings; the status line of a running API is in
// the sidebar (`ApiStatusLine`).

import { useEffect, useState } from "preact/hooks";
import {
  api,
  onBackupProgress,
  toAppError,
  type ApiScope,
  type ApiStatus,
  type ApiToken,
  type BackupProgress,
  type NewApiToken,
} from "../api";
import { useApp } from "../app";
import { Modal } from "../components/Modal";
import { ProgressBar } from "../components/Progress";
import { formatBytes, formatRelative, plural } from "../format";
import { pickBackupFile, pickBackupSavepath, pickFolder } from "../pickers";

const STAGES: Record<BackupProgress["stage"], string> = {
  snapshot: "Taking a snapshot",
  write: "Writing the backup",
  read: "Reading the backup",
  check: "Checking it",
  index: "Rebuilding the search index",
};

/** Asks for a passphrase in a dialog; resolves to null when cancelled. */
function PassphraseDialog(props: { title: string; choosing: boolean; onDone: (p: string | null) => void }) {
  const [first, setFirst] = useState("");
  const [again, setAgain] = useState("");
  const mismatch = props.choosing && again !== "" && first !== again;
  return (
    <Modal title={props.title} onClose={() => props.onDone(null)} testid="passphrase-dialog">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (!first || mismatch) return;
          props.onDone(first);
        }}
      >
        <label class="field">
          <span>Passphrase</span>
          <input type="password" data-testid="passphrase" value={first} onInput={(e) => setFirst((e.target as HTMLInputElement).value)} />
        </label>
        {props.choosing && (
          <label class="field">
            <span>Passphrase again</span>
            <input type="password" data-testid="passphrase-again" value={again} onInput={(e) => setAgain((e.target as HTMLInputElement).value)} />
          </label>
        )}
        {mismatch && <p class="error small">The two passphrases differ.</p>}
        <div class="actions">
          <button type="button" class="btn ghost" onClick={() => props.onDone(null)}>
            Cancel
          </button>
          <button type="submit" class="btn primary" data-testid="passphrase-ok" disabled={!first || mismatch || (props.choosing && !again)}>
            Go on
          </button>
        </div>
      </form>
    </Modal>
  );
}

export function BackupCard() {
  const app = useApp();
  const [progress, setProgress] = useState<BackupProgress | null>(null);
  const [busy, setBusy] = useState(false);
  const [encrypt, setEncrypt] = useState(false);
  const [asking, setAsking] = useState<{ choosing: boolean; resolve: (p: string | null) => void } | null>(null);
  useEffect(() => {
    let gone = false;
    let unlisten: (() => void) | undefined;
    onBackupProgress(setProgress)
      .then((u) => (gone ? u() : (unlisten = u)))
      .catch(() => undefined);
    return () => {
      gone = true;
      unlisten?.();
    };
  }, []);
  const passphrase = (choosing: boolean) =>
    new Promise<string | null>((resolve) => setAsking({ choosing, resolve }));

  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setProgress(null);
    try {
      await work();
    } catch (e) {
      app.fail(e);
    } finally {
      setBusy(false);
      setProgress(null);
    }
  };

  const backUp = () =>
    run(async () => {
      const path = await pickBackupSavepath();
      if (!path) return;
      const secret = encrypt ? await passphrase(true) : undefined;
      if (secret === null) return;
      const done = await api.backup(path, secret);
      app.toast(`Backed up to ${done.path} (${formatBytes(done.bytes)}${done.encrypted ? ", encrypted" : ""})`, "success");
    });

  const restore = () =>
    run(async () => {
      const path = await pickBackupFile();
      if (!path) return;
      let secret: string | undefined;
      let confirmed = false;
      for (;;) {
        try {
          const done = await api.restore(path, secret, confirmed);
          await app.reloadTwins();
          app.reloadSources();
          app.toast(`Restored: ${plural(done.counts.sources, "source")}, ${plural(done.counts.conversations, "conversation")}`, "success");
          for (const note of done.notes) app.toast(note, "info");
          return;
        } catch (err) {
          const e = toAppError(err);
          if (e.code === "passphrase_needed" || (e.code === "wrong_passphrase" && secret !== undefined)) {
            if (e.code === "wrong_passphrase") app.toast(e.message, "error");
            const p = await passphrase(false);
            if (p === null) return;
            secret = p;
            continue;
          }
          if (e.code === "confirmation_needed" && !confirmed) {
            const ok = await app.confirm({
              title: "Replace this twin with the backup?",
              body: (
                <>
                  <p data-testid="restore-warning">{e.message}.</p>
                  <p class="muted">The current twin is kept aside until the restore has succeeded.</p>
                </>
              ),
              confirm: "Replace it",
              danger: true,
            });
            if (!ok) return;
            confirmed = true;
            continue;
          }
          throw err;
        }
      }
    });

  const exportTwin = () =>
    run(async () => {
      if (!app.twin) return;
      const dir = await pickFolder("Export into an empty folder");
      if (!dir) return;
      const done = await api.exportTwin(app.twin.id, dir);
      app.toast(`Exported ${plural(done.conversations, "conversation")} and ${plural(done.sources, "source")} to ${done.dir}`, "success");
    });

  return (
    <section class="card" data-testid="backup-card">
      <h2>Backups and export</h2>
      <p class="muted small">
        A backup is one file with everything but the models and the search index (rebuilt when restored). API keys stay in
        this computer's keychain.
      </p>
      <label class="check">
        <input type="checkbox" data-testid="backup-encrypt" checked={encrypt} onChange={(e) => setEncrypt((e.target as HTMLInputElement).checked)} />
        Encrypt with a passphrase
      </label>
      {busy && progress && (
        <div data-testid="backup-progress">
          <ProgressBar label={STAGES[progress.stage]} value={progress.total ? Math.round((progress.done / progress.total) * 100) : null} />
          <span class="muted small">{STAGES[progress.stage]}…</span>
          <button type="button" class="btn ghost sm" onClick={() => void api.cancelBackup()}>
            Cancel
          </button>
        </div>
      )}
      <div class="actions">
        <button type="button" class="btn" data-testid="backup-button" disabled={busy} onClick={() => void backUp()}>
          Back up…
        </button>
        <button type="button" class="btn" data-testid="restore-button" disabled={busy} onClick={() => void restore()}>
          Restore…
        </button>
        <button type="button" class="btn" data-testid="export-button" disabled={busy} onClick={() => void exportTwin()}>
          Export…
        </button>
      </div>
      {asking && (
        <PassphraseDialog
          title={asking.choosing ? "Choose a passphrase" : "This backup is encrypted"}
          choosing={asking.choosing}
          onDone={(p) => {
            asking.resolve(p);
            setAsking(null);
          }}
        />
      )}
    </section>
  );
}

export function LocalApiCard() {
  const app = useApp();
  const [status, setStatus] = useState<ApiStatus | null>(null);
  const [address, setAddress] = useState("");
  const [tokens, setTokens] = useState<ApiToken[]>([]);
  const [name, setName] = useState("");
  const [scope, setScope] = useState<ApiScope>("ask");
  const [made, setMade] = useState<NewApiToken | null>(null);
  const load = async () => {
    const s = await api.apiStatus();
    setStatus(s);
    setAddress(s.address);
    setTokens(await api.apiTokens());
  };
  useEffect(() => {
    load().catch(app.fail);
  }, []);

  const switchTo = async (enabled: boolean, confirmed = false) => {
    try {
      setStatus(await api.setApi(enabled, address.trim() || undefined, confirmed));
    } catch (err) {
      const e = toAppError(err);
      if (e.code !== "confirmation_needed") return app.fail(err);
      const ok = await app.confirm({
        title: "Let other computers reach the API?",
        body: <p data-testid="api-address-warning">{e.message}.</p>,
        confirm: "Listen on this address",
        danger: true,
      });
      if (ok) await switchTo(enabled, true);
    }
  };

  const create = async () => {
    if (!app.twin || !name.trim()) return;
    try {
      setMade(await api.createApiToken(app.twin.id, name.trim(), scope));
      setName("");
      setTokens(await api.apiTokens());
    } catch (e) {
      app.fail(e);
    }
  };

  const revoke = async (t: ApiToken) => {
    try {
      await api.revokeApiToken(t.id);
      setTokens(await api.apiTokens());
    } catch (e) {
      app.fail(e);
    }
  };

  const copy = async (text: string, what: string) => {
    try {
      await navigator.clipboard.writeText(text);
      app.toast(`${what} copied`, "success");
    } catch {
      app.toast(`Select the ${what.toLowerCase()} and copy it`, "info");
    }
  };

  if (!status) return null;
  return (
    <section class="card" data-testid="api-card">
      <h2>Local API</h2>
      <p class="muted small">
        Lets other programs, and any OpenAI-compatible client, talk to your twin at <code>/v1</code>. Each needs a token.
      </p>
      <label class="check">
        <input type="checkbox" data-testid="api-enabled" checked={status.enabled} onChange={(e) => void switchTo((e.target as HTMLInputElement).checked)} />
        Serve the local API
      </label>
      <label class="field">
        <span>Address</span>
        <input data-testid="api-address" value={address} onInput={(e) => setAddress((e.target as HTMLInputElement).value)} onBlur={() => status.enabled && address !== status.address && void switchTo(true)} />
      </label>
      <p class="muted small" data-testid="api-url">
        {status.url ? `Listening on ${status.url}` : status.enabled ? "Not listening: the address may be in use." : "Off."}
      </p>
      <h3>Tokens</h3>
      {tokens.length === 0 ? (
        <p class="muted small">No token yet.</p>
      ) : (
        <ul class="token-list">
          {tokens.map((t) => (
            <li key={t.id} data-testid="api-token" data-token-id={t.id}>
              <strong>{t.name}</strong> <span class="muted small">{t.scope} · dpl_{t.prefix}_…</span>{" "}
              <span class="muted small" data-testid="api-token-used">
                {t.revokedAt ? "revoked" : t.lastUsedAt ? `last used ${formatRelative(t.lastUsedAt)}` : "never used"}
              </span>
              {!t.revokedAt && (
                <button type="button" class="btn ghost sm" data-testid="api-token-revoke" onClick={() => void revoke(t)}>
                  Revoke
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      <form
        class="token-form"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <input placeholder="Name, e.g. phone" data-testid="api-token-name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <select data-testid="api-token-scope" value={scope} onChange={(e) => setScope((e.target as HTMLSelectElement).value as ApiScope)}>
          <option value="ask">ask (and share link)</option>
          <option value="read">read</option>
        </select>
        <button type="submit" class="btn" data-testid="api-token-create" disabled={!name.trim()}>
          Make a token
        </button>
      </form>
      {made && (
        <Modal title="Your new token" onClose={() => setMade(null)} testid="api-token-made">
          <p class="muted small">It is shown only now: Doppel keeps only a salted hash of it.</p>
          <code class="secret" data-testid="api-token-secret">{made.secret}</code>
          <div class="actions">
            <button type="button" class="btn" onClick={() => void copy(made.secret, "Token")}>
              Copy token
            </button>
            {made.shareLink && (
              <button type="button" class="btn primary" data-testid="api-share-copy" onClick={() => void copy(made.shareLink!, "Share link")}>
                Copy share link
              </button>
            )}
            <button type="button" class="btn ghost" onClick={() => setMade(null)}>
              Done
            </button>
          </div>
          {made.shareLink && <code class="secret small" data-testid="api-share-link">{made.shareLink}</code>}
        </Modal>
      )}
    </section>
  );
}

/** A line in the sidebar while the local API listens. */
export function ApiStatusLine() {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    const look = () => api.apiStatus().then((s) => setUrl(s.url)).catch(() => setUrl(null));
    void look();
    const every = window.setInterval(look, 5000);
    return () => window.clearInterval(every);
  }, []);
  if (!url) return null;
  return (
    <div class="bg-status" data-testid="api-status-line" role="status" title={url}>
      <span>Local API on</span>
    </div>
  );
}
