// Chat: conversations with the twin, answers streamed token by token with numbered citations that
// open the passage they quote.

import { useEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { api, newId, toAppError, type Citation, type Conversation, type Message, type Unsupported } from "../api";
import { useApp } from "../app";
import { ModelBanner } from "./Models";
import { Icon } from "../components/Icon";
import { formatRelative } from "../format";
import { pickSavePath } from "../pickers";
import { blocks, inlines, type Inline } from "../markdown";
import { chatReducer, isBusy, newChat, noteText, splitCitations, type Turn } from "../state/chat";
import { PassagePanel } from "../components/PassagePanel";

type OpenCitation = { citation: Citation; message: number };

/** Where hiding the conversations list is remembered. */
const CONVERSATIONS_HIDDEN_KEY = "doppel.conversationsHidden";

function storedHidden(): boolean {
  try {
    return localStorage.getItem(CONVERSATIONS_HIDDEN_KEY) === "1";
  } catch {
    return false;
  }
}

export function ChatView() {
  const app = useApp();
  const twin = app.twin;
  const [state, dispatch] = useReducer(chatReducer, newChat(newId()));
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [draft, setDraft] = useState("");
  const [cite, setCite] = useState<OpenCitation | null>(null);
  const [revised, setRevised] = useState<Record<number, string>>({});
  const [listHidden, setListHidden] = useState(storedHidden);
  const toggleList = () => {
    const hidden = !listHidden;
    setListHidden(hidden);
    try {
      localStorage.setItem(CONVERSATIONS_HIDDEN_KEY, hidden ? "1" : "0");
    } catch {
      // Storage may be unavailable: the choice holds for this session.
    }
  };
  const composer = useRef<HTMLTextAreaElement>(null);
  const bottom = useRef<HTMLDivElement>(null);
  const busy = isBusy(state);
  const turn = state.turn && state.turn.conversation === state.conversation ? state.turn : null;

  const loadConversations = async () => {
    if (!twin) return;
    try {
      setConversations(await api.conversations(twin.id));
    } catch (e) {
      app.fail(e);
    }
  };

  const startNew = () => {
    dispatch({ type: "open", conversation: newId(), messages: [] });
    setCite(null);
    setDraft("");
    composer.current?.focus();
  };

  // A new twin starts on a new chat with its own conversations.
  useEffect(() => {
    startNew();
    void loadConversations();
  }, [twin?.id]);

  useEffect(() => {
    if (app.newChatSignal > 0) {
      startNew();
      setTimeout(() => composer.current?.focus(), 0);
    }
  }, [app.newChatSignal]);

  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: "end" });
  }, [state.messages.length, turn?.content.length, turn?.status]);

  const open = async (c: Conversation) => {
    setCite(null);
    try {
      const messages = await api.messages(c.id);
      dispatch({ type: "open", conversation: c.id, messages });
    } catch (e) {
      app.fail(e);
    }
  };

  const send = async () => {
    const question = draft.trim();
    if (!question || busy || !twin) return;
    const requestId = newId();
    const conversation = state.conversation;
    dispatch({ type: "start", requestId, question, now: Date.now() });
    setDraft("");
    try {
      const answer = await api.ask({ requestId, twin: twin.id, conversation, question }, (text) =>
        dispatch({ type: "token", requestId, text }),
      );
      const messages = await api.messages(answer.conversation).catch(() => null);
      dispatch({ type: "answered", requestId, answer, messages });
      void loadConversations();
    } catch (e) {
      dispatch({ type: "failed", requestId, error: toAppError(e) });
    }
  };

  const stop = () => {
    const t = state.turn;
    if (!t || t.status !== "streaming") return;
    dispatch({ type: "stopping", requestId: t.requestId });
    api.cancelAsk(t.requestId).catch(app.fail);
  };

  // Esc stops the answer from anywhere in the chat view.
  const stopRef = useRef(stop);
  stopRef.current = stop;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Escape" || e.defaultPrevented || app.view !== "chat") return;
      if (document.querySelector("[aria-modal='true']")) return;
      stopRef.current();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [app.view]);

  const onComposerKey = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void send();
    } else if (e.key === "Escape") {
      e.preventDefault();
      stop();
    }
  };

  const current = conversations.find((c) => c.id === state.conversation) ?? null;

  const exportMd = async () => {
    if (!current) return;
    try {
      const safe = current.title.replace(/[\\/:*?"<>|]+/g, " ").trim().slice(0, 60) || "conversation";
      const path = await pickSavePath(`${safe}.md`);
      if (!path) return;
      await api.exportConversation(current.id, path);
      app.toast("Conversation exported", "success");
    } catch (e) {
      app.fail(e);
    }
  };

  const copyMd = async () => {
    if (!current) return;
    try {
      await navigator.clipboard.writeText(await api.conversationMarkdown(current.id));
      app.toast("Conversation copied as Markdown", "success");
    } catch (e) {
      app.fail(e);
    }
  };

  const approve = async (m: Message, text?: string) => {
    try {
      await api.verifyMessage(state.conversation, m.id, text);
      dispatch({ type: "patch", message: m.id, patch: { verified: true } });
      if (text !== undefined) setRevised((r) => ({ ...r, [m.id]: text }));
      app.toast(text === undefined ? "Approved: the twin will prefer this answer" : "Revision saved as verified", "success");
      return true;
    } catch (e) {
      app.fail(e);
      return false;
    }
  };

  const empty = state.messages.length === 0 && !turn;

  return (
    <div class={`chat-layout ${cite ? "with-panel" : ""} ${listHidden ? "no-conversations" : ""}`}>
      <aside class="pane conv-pane" id="conversations" aria-label="Conversations" hidden={listHidden}>
        <button type="button" class="btn primary block" data-testid="new-chat" onClick={startNew} title="Ctrl+N">
          <Icon name="plus" />
          New chat
        </button>
        <ul class="conv-list" data-testid="conversation-list">
          {conversations.map((c) => (
            <li key={c.id}>
              <button
                type="button"
                class={`conv-item ${c.id === state.conversation ? "active" : ""}`}
                aria-current={c.id === state.conversation ? "true" : undefined}
                data-testid="conversation-item"
                data-conversation-id={c.id}
                onClick={() => void open(c)}
              >
                <span class="conv-title">{c.title || "Untitled"}</span>
                <span class="muted small">{formatRelative(c.updatedAt)}</span>
              </button>
            </li>
          ))}
          {conversations.length === 0 && <li class="muted small pad">No conversations yet.</li>}
        </ul>
      </aside>

      <div class="pane chat-main">
        <header class="chat-head">
          <button
            type="button"
            class="btn ghost icon-only"
            data-testid="toggle-conversations"
            aria-controls="conversations"
            aria-expanded={!listHidden}
            aria-label={listHidden ? "Show the conversations" : "Hide the conversations"}
            title={listHidden ? "Show the conversations" : "Hide the conversations"}
            onClick={toggleList}
          >
            <Icon name="panel" />
          </button>
          <h1 class="chat-title">{current?.title || "New chat"}</h1>
          {listHidden && (
            <button type="button" class="btn ghost icon-only" data-testid="new-chat-head" aria-label="New chat (Ctrl+N)" title="New chat (Ctrl+N)" onClick={startNew}>
              <Icon name="plus" />
            </button>
          )}
          {current && (
            <div class="actions">
              <button type="button" class="btn ghost" data-testid="copy-conversation" onClick={() => void copyMd()}>
                <Icon name="copy" />
                Copy
              </button>
              <button type="button" class="btn ghost" data-testid="export-conversation" onClick={() => void exportMd()}>
                <Icon name="download" />
                Export
              </button>
            </div>
          )}
        </header>

        <ModelBanner />
        <div class="messages" data-testid="message-list" aria-live="polite" aria-label="Messages" role="log" tabIndex={0}>
          {empty && (
            <div class="empty" data-testid="empty-chat">
              <div class="empty-art" aria-hidden="true">
                <Icon name="chat" size={36} />
              </div>
              <h2>Ask {twin?.name ?? "your twin"} anything</h2>
              <p>
                Answers come from your sources, in your voice, with numbered citations you can open.
                {app.sources.sourceCount === 0 && " Add a few documents first so there is something to draw on."}
              </p>
            </div>
          )}
          {state.messages.map((m) =>
            m.role === "user" ? (
              <UserMessage key={m.id} content={m.content} />
            ) : (
              <AssistantMessage
                key={m.id}
                message={m}
                notes={state.notes[m.id] ?? []}
                revised={revised[m.id]}
                activeCite={cite?.message === m.id ? cite.citation.number : null}
                onCite={(c) => setCite({ citation: c, message: m.id })}
                onCopy={() =>
                  navigator.clipboard
                    .writeText(m.content)
                    .then(() => app.toast("Answer copied", "success"))
                    .catch(app.fail)
                }
                onApprove={(text) => approve(m, text)}
              />
            ),
          )}
          {turn && <PendingTurn turn={turn} />}
          <div ref={bottom} />
        </div>

        <form
          class="composer"
          onSubmit={(e) => {
            e.preventDefault();
            void send();
          }}
        >
          <label class="sr-only" for="composer">
            Ask your twin
          </label>
          <textarea
            id="composer"
            ref={composer}
            data-testid="composer"
            rows={1}
            placeholder={twin ? `Ask ${twin.name}…` : "Ask…"}
            value={draft}
            onInput={(e) => {
              const el = e.target as HTMLTextAreaElement;
              setDraft(el.value);
              el.style.height = "auto";
              el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
            }}
            onKeyDown={onComposerKey}
          />
          {busy ? (
            <button
              type="button"
              class="btn danger send"
              data-testid="stop"
              aria-label="Stop the answer (Esc)"
              onClick={stop}
              disabled={state.turn?.status === "stopping"}
            >
              <Icon name="stop" />
              <span>Stop</span>
            </button>
          ) : (
            <button
              type="submit"
              class="btn primary send"
              data-testid="send"
              aria-label="Send (Enter)"
              disabled={!draft.trim() || !twin}
            >
              <Icon name="send" />
              <span>Send</span>
            </button>
          )}
        </form>
        <p class="composer-hint muted small">Enter sends · Shift+Enter new line · Esc stops</p>
      </div>

      {cite && (
        <PassagePanel
          passage={cite.citation}
          opened={`${cite.message}:${cite.citation.number}`}
          onClose={() => setCite(null)}
        />
      )}
    </div>
  );
}

function UserMessage(props: { content: string }) {
  return (
    <article class="msg user" data-testid="message" data-role="user">
      <div class="msg-body" data-testid="message-body">
        {props.content}
      </div>
    </article>
  );
}

type TextProps = {
  content: string;
  citations: Citation[];
  unsupported?: Unsupported[];
  activeCite: number | null;
  onCite: (c: Citation) => void;
};

/** An answer rendered from its Markdown (as data, never as HTML), with citation chips and its
 * unsupported sentences marked. */
function AnswerText(props: TextProps) {
  const parsed = useMemo(() => blocks(props.content), [props.content]);
  return (
    <div class="md">
      {parsed.map((b, i) => {
        switch (b.kind) {
          case "code":
            return (
              <pre key={i}>
                <code>{b.code}</code>
              </pre>
            );
          case "h":
            return (
              <p key={i} class="md-h">
                <RichText {...props} content={b.source} />
              </p>
            );
          case "ul":
          case "ol": {
            const List = b.kind;
            return (
              <List key={i}>
                {b.items.map((item, j) => (
                  <li key={j}>
                    <RichText {...props} content={item} />
                  </li>
                ))}
              </List>
            );
          }
          default:
            return (
              <p key={i}>
                <RichText {...props} content={b.source} />
              </p>
            );
        }
      })}
    </div>
  );
}

/** A run of text: its unsupported sentences marked, its inline Markdown and citations rendered. */
function RichText(props: TextProps) {
  const spans = useMemo(() => markUnsupported(props.content, props.unsupported ?? []), [props.content, props.unsupported]);
  return (
    <>
      {spans.map((span, i) =>
        span.unsupported ? (
          <mark
            key={i}
            class="unsupported"
            tabIndex={0}
            data-testid="unsupported"
            title={`Not in the cited passages: ${span.unsupported.facts.join(", ")}`}
            aria-label={`Unsupported: ${span.unsupported.facts.join(", ")} is in none of the cited passages`}
          >
            <InlineText {...props} runs={inlines(span.text)} />
          </mark>
        ) : (
          <InlineText key={i} {...props} runs={inlines(span.text)} />
        ),
      )}
    </>
  );
}

function InlineText(props: TextProps & { runs: Inline[] }) {
  return (
    <>
      {props.runs.map((run, i) =>
        "code" in run ? (
          <code key={i}>{run.code}</code>
        ) : "strong" in run ? (
          <strong key={i}>
            <InlineText {...props} runs={run.strong} />
          </strong>
        ) : "em" in run ? (
          <em key={i}>
            <InlineText {...props} runs={run.em} />
          </em>
        ) : (
          <CitedText key={i} {...props} content={run.text} />
        ),
      )}
    </>
  );
}

/** The answer cut into runs, each unsupported sentence a run of its own. */
function markUnsupported(content: string, unsupported: Unsupported[]): { text: string; unsupported?: Unsupported }[] {
  const found = unsupported
    .map((u) => ({ u, at: content.indexOf(u.sentence) }))
    .filter((f) => f.at >= 0)
    .sort((a, b) => a.at - b.at);
  const out: { text: string; unsupported?: Unsupported }[] = [];
  let at = 0;
  for (const f of found) {
    if (f.at < at) continue;
    if (f.at > at) out.push({ text: content.slice(at, f.at) });
    out.push({ text: f.u.sentence, unsupported: f.u });
    at = f.at + f.u.sentence.length;
  }
  if (at < content.length) out.push({ text: content.slice(at) });
  return out;
}

function CitedText(props: {
  content: string;
  citations: Citation[];
  activeCite: number | null;
  onCite: (c: Citation) => void;
}) {
  const byNumber = useMemo(() => new Map(props.citations.map((c) => [c.number, c])), [props.citations]);
  const pieces = useMemo(
    () => splitCitations(props.content, new Set(byNumber.keys())),
    [props.content, byNumber],
  );
  return (
    <>
      {pieces.map((p, i) =>
        "text" in p ? (
          <span key={i}>{p.text}</span>
        ) : (
          <CiteChip
            key={i}
            citation={byNumber.get(p.cite)!}
            active={props.activeCite === p.cite}
            onClick={props.onCite}
          />
        ),
      )}
    </>
  );
}

function CiteChip(props: { citation: Citation; active: boolean; onClick: (c: Citation) => void }) {
  const c = props.citation;
  return (
    <button
      type="button"
      class={`cite ${c.deleted ? "deleted" : ""} ${props.active ? "active" : ""}`}
      data-testid="citation-chip"
      data-number={c.number}
      aria-label={`Citation ${c.number}: ${c.deleted ? "source deleted" : c.sourceTitle}`}
      title={c.deleted ? "Source deleted" : `${c.sourceTitle}${c.location ? ` · ${c.location}` : ""}`}
      onClick={() => props.onClick(c)}
    >
      {c.number}
    </button>
  );
}

const STATE_BADGE: Record<string, string> = { cancelled: "Stopped", failed: "Failed", streaming: "Interrupted" };

function AssistantMessage(props: {
  message: Message;
  notes: string[];
  revised: string | undefined;
  activeCite: number | null;
  onCite: (c: Citation) => void;
  onCopy: () => void;
  onApprove: (revised?: string) => Promise<boolean>;
}) {
  const m = props.message;
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(m.content);
  const badge = STATE_BADGE[m.state];
  return (
    <article class="msg assistant" data-testid="message" data-role="assistant" data-state={m.state} data-message-id={m.id}>
      {editing ? (
        <form
          class="revise"
          onSubmit={async (e) => {
            e.preventDefault();
            if (text.trim() && (await props.onApprove(text.trim()))) setEditing(false);
          }}
        >
          <label class="sr-only" for={`revise-${m.id}`}>
            Revised answer
          </label>
          <textarea
            id={`revise-${m.id}`}
            data-testid="revise-editor"
            rows={6}
            value={text}
            onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
          />
          <div class="actions">
            <button type="button" class="btn ghost" onClick={() => setEditing(false)}>
              Cancel
            </button>
            <button type="submit" class="btn primary" data-testid="revise-save" disabled={!text.trim()}>
              Save as verified
            </button>
          </div>
        </form>
      ) : (
        <div class="msg-body" data-testid="message-body">
          {m.content ? (
            <AnswerText
              content={m.content}
              citations={m.citations}
              unsupported={m.unsupported}
              activeCite={props.activeCite}
              onCite={props.onCite}
            />
          ) : (
            <span class="muted">(no text)</span>
          )}
        </div>
      )}
      {props.revised && (
        <div class="revised" data-testid="revised-text">
          <span class="small muted">Your revision</span>
          <p>{props.revised}</p>
        </div>
      )}
      {(badge || m.verified) && (
        <div class="msg-badges">
          {badge && (
            <span class={`badge ${m.state}`} data-testid="message-state">
              {badge}
              {m.error ? `: ${m.error}` : ""}
            </span>
          )}
          {m.verified && (
            <span class="badge ready" data-testid="verified-badge">
              <Icon name="check" size={14} />
              Verified
            </span>
          )}
        </div>
      )}
      {props.notes
        .filter((n) => n !== m.draftNote)
        .map((n) => (
          <p key={n} class="note small" data-testid="message-note">
            {noteText(n)}
          </p>
        ))}
      {m.draft != null && <Draft draft={m.draft} note={m.draftNote} />}
      {m.citations.length > 0 && (
        <div class="sources-row" aria-label="Sources of this answer">
          {m.citations.map((c) => (
            <button
              type="button"
              key={c.number}
              class={`cite-source ${c.deleted ? "deleted" : ""}`}
              data-testid="citation-source"
              data-number={c.number}
              title={c.deleted ? undefined : c.origin ?? "Pasted text"}
              onClick={() => props.onCite(c)}
            >
              <span class="cite-n">{c.number}</span>
              <span class="cite-title">{c.deleted ? "Source deleted" : c.sourceTitle}</span>
            </button>
          ))}
        </div>
      )}
      {!editing && (
        <div class="msg-actions">
          <button type="button" class="btn ghost sm" data-testid="copy-answer" onClick={props.onCopy}>
            <Icon name="copy" size={15} />
            Copy
          </button>
          {m.state === "complete" && !m.verified && (
            <button type="button" class="btn ghost sm" data-testid="approve-answer" onClick={() => void props.onApprove()}>
              <Icon name="check" size={15} />
              Approve
            </button>
          )}
          {m.state === "complete" && (
            <button
              type="button"
              class="btn ghost sm"
              data-testid="revise-answer"
              onClick={() => {
                setText(props.revised ?? m.content);
                setEditing(true);
              }}
            >
              <Icon name="edit" size={15} />
              Revise
            </button>
          )}
          {m.model && <span class="muted small model-tag">{m.model}</span>}
        </div>
      )}
    </article>
  );
}

function PendingTurn(props: { turn: Turn }) {
  const t = props.turn;
  return (
    <>
      <UserMessage content={t.question} />
      <article class="msg assistant" data-testid="message" data-role="assistant" data-state={t.status}>
        <div class="msg-body" data-testid="message-body">
          {t.content}
          {t.status !== "failed" && <span class="caret" aria-hidden="true" />}
          {!t.content && t.status === "streaming" && <span class="muted thinking">Looking through your sources…</span>}
        </div>
        {t.status === "stopping" && <p class="muted small">Stopping…</p>}
        {t.status === "failed" && (
          <div class="msg-badges">
            <span class="badge failed" data-testid="message-state">
              Failed: {t.error?.message ?? "the answer could not be produced"}
            </span>
          </div>
        )}
      </article>
    </>
  );
}

/** The model's answer that was not shown, behind a toggle, with the reason. */
function Draft(props: { draft: string; note: string | null }) {
  const [open, setOpen] = useState(false);
  return (
    <div class="draft" data-testid="draft">
      <p class="note small" data-testid="draft-note">
        Shown instead of the model's answer{props.note ? `: ${props.note}` : ""}.
      </p>
      <button
        type="button"
        class="btn ghost sm"
        data-testid="draft-toggle"
        aria-expanded={open}
        onClick={() => setOpen(!open)}
      >
        {open ? "Hide the model's answer" : "Show the model's answer"}
      </button>
      {open && (
        <blockquote class="quote" data-testid="draft-text">
          {props.draft}
        </blockquote>
      )}
    </div>
  );
}

