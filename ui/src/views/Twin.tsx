// Twin: who the twin is (persona), which twin is open, and the answers the owner verified.

import { useEffect, useState } from "preact/hooks";
import { api, type Persona, type VerifiedAnswer } from "../api";
import { useApp } from "../app";
import { Icon } from "../components/Icon";
import { Modal } from "../components/Modal";
import { formatRelative } from "../format";

const EMPTY: Persona = { name: "", description: "", voice: "", notCovered: "" };

export function TwinView() {
  const app = useApp();
  const twin = app.twin;
  const [persona, setPersona] = useState<Persona>(EMPTY);
  const [saved, setSaved] = useState<Persona>(EMPTY);
  const [verified, setVerified] = useState<VerifiedAnswer[]>([]);
  const [dialog, setDialog] = useState<"create" | "rename" | null>(null);
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    if (!twin) return;
    let live = true;
    Promise.all([api.persona(twin.id), api.verifiedAnswers(twin.id)])
      .then(([p, v]) => {
        if (!live) return;
        setPersona(p);
        setSaved(p);
        setVerified(v);
      })
      .catch(app.fail);
    return () => {
      live = false;
    };
  }, [twin?.id]);

  if (!twin) return <p class="muted pad">Loading…</p>;

  const dirty = (Object.keys(EMPTY) as (keyof Persona)[]).some((k) => persona[k] !== saved[k]);
  const field = (k: keyof Persona) => ({
    value: persona[k],
    onInput: (e: Event) => setPersona({ ...persona, [k]: (e.target as HTMLInputElement).value }),
  });

  const save = async (e: Event) => {
    e.preventDefault();
    setSaving(true);
    try {
      const p = await api.setPersona(twin.id, persona);
      setPersona(p);
      setSaved(p);
      app.toast("Persona saved", "success");
    } catch (err) {
      app.fail(err);
    } finally {
      setSaving(false);
    }
  };

  const remove = async (v: VerifiedAnswer) => {
    const ok = await app.confirm({
      title: "Delete this verified answer?",
      body: <p>The twin will no longer prefer it when a similar question is asked. The conversation stays.</p>,
      confirm: "Delete",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.deleteVerified(v.id);
      setVerified((list) => list.filter((x) => x.id !== v.id));
    } catch (err) {
      app.fail(err);
    }
  };

  return (
    <div class="page">
      <header class="view-head">
        <div>
          <h1 data-testid="twin-name">{twin.name}</h1>
          <p class="muted small">Created {formatRelative(twin.createdAt)}</p>
        </div>
        <div class="actions">
          {app.twins.length > 1 && (
            <label class="inline-select">
              <span class="muted small">Open twin</span>
              <select
                data-testid="twin-select"
                value={twin.id}
                onChange={(e) => app.selectTwin(Number((e.target as HTMLSelectElement).value))}
              >
                {app.twins.map((t) => (
                  <option key={t.id} value={t.id} selected={t.id === twin.id}>
                    {t.name}
                  </option>
                ))}
              </select>
            </label>
          )}
          <button type="button" class="btn" data-testid="rename-twin" onClick={() => setDialog("rename")}>
            <Icon name="edit" />
            Rename
          </button>
          <button type="button" class="btn" data-testid="create-twin" onClick={() => setDialog("create")}>
            <Icon name="plus" />
            New twin
          </button>
        </div>
      </header>

      <section class="card">
        <h2>Persona</h2>
        <p class="muted small">How the twin speaks for you. Documents never change these instructions.</p>
        <form class="form" onSubmit={save} data-testid="persona-form">
          <label class="field">
            <span>Name it answers as</span>
            <input data-testid="persona-name" placeholder="e.g. Ada" {...field("name")} />
          </label>
          <label class="field">
            <span>Who it is</span>
            <textarea
              data-testid="persona-description"
              rows={3}
              placeholder="e.g. A product engineer who wrote most of the team handbook."
              {...field("description")}
            />
          </label>
          <label class="field">
            <span>Voice</span>
            <textarea
              data-testid="persona-voice"
              rows={2}
              placeholder="e.g. Warm, direct, short sentences, British spelling."
              {...field("voice")}
            />
          </label>
          <label class="field">
            <span>When the documents do not cover a question</span>
            <textarea
              data-testid="persona-not-covered"
              rows={2}
              placeholder="e.g. I haven't written about that yet."
              {...field("notCovered")}
            />
          </label>
          <div class="actions">
            <button type="button" class="btn ghost" disabled={!dirty} onClick={() => setPersona(saved)}>
              Discard changes
            </button>
            <button type="submit" class="btn primary" data-testid="persona-save" disabled={!dirty || saving}>
              Save persona
            </button>
          </div>
        </form>
      </section>

      <section class="card">
        <h2>Verified answers</h2>
        <p class="muted small">Answers you approved or revised. They come before document passages when a similar question is asked.</p>
        {verified.length === 0 ? (
          <p class="muted pad" data-testid="verified-empty">
            None yet. Approve or revise an answer in Chat to add one.
          </p>
        ) : (
          <ul class="verified-list" data-testid="verified-list">
            {verified.map((v) => (
              <li key={v.id} class="verified" data-testid="verified-item" data-verified-id={v.id}>
                <div class="verified-text">
                  <p class="verified-q">{v.question}</p>
                  <p class="verified-a">{v.answer}</p>
                  <span class="muted small">{formatRelative(v.createdAt)}</span>
                </div>
                <button
                  type="button"
                  class="btn icon-only ghost"
                  aria-label={`Delete verified answer to “${v.question}”`}
                  data-testid="verified-delete"
                  onClick={() => void remove(v)}
                >
                  <Icon name="trash" />
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>

      {dialog && (
        <TwinNameDialog
          mode={dialog}
          initial={dialog === "rename" ? twin.name : ""}
          onClose={() => setDialog(null)}
          onSave={async (name) => {
            const t = dialog === "rename" ? await api.renameTwin(twin.id, name) : await api.createTwin(name);
            await app.reloadTwins();
            app.selectTwin(t.id);
            setDialog(null);
          }}
        />
      )}
    </div>
  );
}

function TwinNameDialog(props: {
  mode: "create" | "rename";
  initial: string;
  onClose: () => void;
  onSave: (name: string) => Promise<void>;
}) {
  const [name, setName] = useState(props.initial);
  const [error, setError] = useState<string | null>(null);
  return (
    <Modal title={props.mode === "create" ? "New twin" : "Rename twin"} onClose={props.onClose} testid="twin-dialog">
      <form
        class="form"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await props.onSave(name.trim());
          } catch (err) {
            setError((err as Error).message);
          }
        }}
      >
        <label class="field">
          <span>Name</span>
          <input
            data-testid="twin-name-input"
            value={name}
            aria-invalid={error ? true : undefined}
            onInput={(e) => {
              setName((e.target as HTMLInputElement).value);
              setError(null);
            }}
          />
          {error && <span class="field-error">{error}</span>}
        </label>
        {props.mode === "create" && (
          <p class="muted small">A new twin starts empty: its own sources, conversations and persona.</p>
        )}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="btn primary" data-testid="twin-name-save" disabled={!name.trim()}>
            {props.mode === "create" ? "Create" : "Rename"}
          </button>
        </div>
      </form>
    </Modal>
  );
}
