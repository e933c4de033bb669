// A Settings card that chooses the model server of one role by its URL and model (speech-to-text,
// reranking): what it is in use, the two fields, Save and Turn off, errors beside the form, and the
// API key written once to the keychain. Roles differ only in their words and in whether saving a
// server is first confirmed.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, toAppError, type ModelServer, type ServerRole } from "../api";
import { useApp } from "../app";
import { Icon } from "./Icon";
import { KeyField, ServerFields } from "./ServerFields";

export type Server = { url: string; model: string };

export type ModelServerCardProps = {
  /** The commands it calls (`<role>`, `set_<role>`, …), and the prefix of its test ids. */
  role: ServerRole;
  title: string;
  /** What the server does and what is sent to it, under the title. */
  about: ComponentChildren;
  /** The status while no server is chosen. */
  off: string;
  modelPlaceholder: string;
  /** The toasts once a server is saved, and once it is turned off. */
  savedToast: string;
  offToast: string;
  /** Asked before a server is chosen; false leaves the choice as it was. */
  confirm?: (server: Server) => Promise<boolean>;
};

export function ModelServerCard(props: ModelServerCardProps) {
  const app = useApp();
  const { role } = props;
  const [saved, setSaved] = useState<ModelServer | null>(null);
  const [url, setUrl] = useState("");
  const [model, setModel] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const take = (s: ModelServer) => {
    setSaved(s);
    setUrl(s.url ?? "");
    setModel(s.model ?? "");
  };
  useEffect(() => {
    api.modelServer(role).then(take).catch(app.fail);
  }, [role]);

  const apply = async (server: Server | null) => {
    setBusy(true);
    setError(null);
    try {
      if (server && props.confirm && !(await props.confirm(server))) return;
      take(await api.setModelServer(role, server));
      app.toast(server ? props.savedToast : props.offToast, "success");
    } catch (err) {
      setError(toAppError(err).message);
    } finally {
      setBusy(false);
    }
  };

  const save = (e: Event) => {
    e.preventDefault();
    void apply({ url: url.trim(), model: model.trim() });
  };

  if (!saved) return null;
  const on = saved.kind === "server";
  const changed = !on || url.trim() !== (saved.url ?? "") || model.trim() !== (saved.model ?? "");
  return (
    <section class="card" data-testid={`${role}-card`}>
      <h2>{props.title}</h2>
      <p class="muted small">{props.about}</p>
      <p class={`model-state ${on ? "server" : ""}`} data-testid={`${role}-status`} data-state={saved.kind}>
        <Icon name={on ? "link" : "x"} size={16} />
        {on ? (
          <span>
            <strong>In use:</strong> {saved.model} at {saved.url}
          </span>
        ) : (
          <span>{props.off}</span>
        )}
      </p>
      <form class="form" onSubmit={save}>
        <ServerFields
          prefix={role}
          kind="openai"
          url={url}
          model={model}
          setUrl={setUrl}
          setModel={setModel}
          modelPlaceholder={props.modelPlaceholder}
        />
        {error && (
          <p class="field-error" role="alert" data-testid={`${role}-error`}>
            {error}
          </p>
        )}
        <div class="actions">
          {on && (
            <button type="button" class="btn ghost" data-testid={`${role}-off`} disabled={busy} onClick={() => void apply(null)}>
              Turn off
            </button>
          )}
          <button
            type="submit"
            class="btn primary"
            data-testid={`${role}-save`}
            disabled={!changed || busy || !url.trim() || !model.trim()}
          >
            Save
          </button>
        </div>
      </form>
      {on && (
        <KeyField
          prefix={role}
          hint={saved.keyHint}
          onSave={async (k) => take(await api.setModelServerKey(role, k))}
          onDelete={async () => take(await api.deleteModelServerKey(role))}
        />
      )}
    </section>
  );
}
