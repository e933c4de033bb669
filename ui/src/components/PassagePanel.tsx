// The panel that shows one passage as a citation does: its source and file (with Open and Show
// in folder), its place in the source, and the whole passage with the quoted part, or the
// searched words, marked. Chat opens it from a citation, Search from a hit.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, toAppError, type Chunk, type TextPart } from "../api";
import { useApp } from "../app";
import { Icon } from "./Icon";

/** What the panel shows: a citation, or a search hit (no number, its words marked). */
export type PassageRef = {
  number: number | null;
  chunkId: number | null;
  sourceId: number | null;
  sourceTitle: string;
  origin: string | null;
  location: string;
  quote: string | null;
  deleted: boolean;
  /** The passage's text in parts, the searched words marked. */
  parts?: TextPart[];
};

/** "Open" and "Show in folder" for a source; a failure is said in a toast. */
export function OpenButtons(props: { source: number; file: boolean }) {
  const app = useApp();
  const open = (reveal: boolean) => api.openSource(props.source, reveal).catch(app.fail);
  return (
    <div class="actions">
      <button type="button" class="btn ghost sm" data-testid="open-source" onClick={() => void open(false)}>
        Open
      </button>
      {props.file && (
        <button type="button" class="btn ghost sm" data-testid="reveal-source" onClick={() => void open(true)}>
          Show in folder
        </button>
      )}
    </div>
  );
}

/**
 * `opened` changes each time the panel is opened anew (another citation or hit), which moves the
 * focus into it.
 */
export function PassagePanel(props: { passage: PassageRef; opened: string; onClose: () => void }) {
  const c = props.passage;
  const [chunk, setChunk] = useState<Chunk | null>(null);
  const [gone, setGone] = useState(c.deleted);
  const ref = useRef<HTMLElement>(null);

  useEffect(() => {
    setChunk(null);
    setGone(c.deleted);
    if (c.deleted || c.sourceId == null || c.chunkId == null) return;
    let live = true;
    api
      .sourceDetail(c.sourceId)
      .then((d) => {
        if (!live) return;
        const found = d.chunks.find((x) => x.id === c.chunkId) ?? null;
        setChunk(found);
      })
      .catch((e) => {
        if (live && toAppError(e).code === "not_found") setGone(true);
      });
    return () => {
      live = false;
    };
  }, [props.opened, c.chunkId, c.sourceId, c.deleted]);

  useEffect(() => {
    ref.current?.focus();
  }, [props.opened]);

  const label = c.number != null ? `Passage ${c.number}` : `Passage of ${c.sourceTitle}`;
  return (
    <aside
      ref={ref}
      class="pane passage-panel"
      tabIndex={-1}
      aria-label={label}
      data-testid="passage-panel"
      data-number={c.number ?? undefined}
      data-chunk-id={c.chunkId ?? undefined}
      onKeyDown={(e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          props.onClose();
        }
      }}
    >
      <header class="detail-head">
        <div class="detail-title">
          {c.number != null && <span class="cite static">{c.number}</span>}
          <h2 data-testid="passage-source">{gone ? "Source deleted" : c.sourceTitle}</h2>
        </div>
        <button type="button" class="btn icon-only ghost" aria-label="Close passage" data-testid="passage-close" onClick={props.onClose}>
          <Icon name="x" />
        </button>
      </header>
      {gone ? (
        <p class="callout" data-testid="passage-deleted">
          <Icon name="alert" />
          <span>
            This source was forgotten after the answer was written, so the passage is no longer kept.
            {c.sourceTitle && c.sourceTitle !== "Source deleted" ? ` It was “${c.sourceTitle}”.` : ""}
          </span>
        </p>
      ) : (
        <>
          {c.origin && (
            <div class="passage-origin-row">
              <p class="passage-origin small" data-testid="passage-origin" title={c.origin}>
                {c.origin}
              </p>
              {c.sourceId != null && <OpenButtons source={c.sourceId} file={!/^https?:/.test(c.origin)} />}
            </div>
          )}
          {(chunk?.location.label || c.location) && (
            <p class="passage-loc small" data-testid="passage-location">
              {chunk?.location.label || c.location}
              {chunk?.location.page != null && ` · page ${chunk.location.page}`}
              {chunk?.location.lineStart != null &&
                ` · lines ${chunk.location.lineStart}–${chunk.location.lineEnd ?? chunk.location.lineStart}`}
            </p>
          )}
          {c.parts ? (
            <blockquote class="quote" data-testid="passage-quote" data-whole="true">
              <Marked parts={c.parts} />
            </blockquote>
          ) : chunk ? (
            <blockquote class="quote" data-testid="passage-quote" data-whole="true">
              <Highlighted text={chunk.text} part={c.quote} />
            </blockquote>
          ) : (
            c.quote && (
              <blockquote class="quote" data-testid="passage-quote" data-whole="false">
                {c.quote}
              </blockquote>
            )
          )}
        </>
      )}
    </aside>
  );
}

/** Text in parts, the marked ones in `<mark>`. */
export function Marked(props: { parts: TextPart[] }) {
  return (
    <>
      {props.parts.map((p, i) =>
        p.marked ? (
          <mark key={i} data-testid="marked-word">
            {p.text}
          </mark>
        ) : (
          p.text
        ),
      )}
    </>
  );
}

/** The whole passage with the quoted part marked, when the quote is found in it. */
function Highlighted(props: { text: string; part: string | null }) {
  const { text, part } = props;
  const at = part ? text.indexOf(part) : -1;
  if (!part || at < 0 || part.length === text.length) return <>{text}</>;
  return (
    <>
      {text.slice(0, at)}
      <mark>{part}</mark>
      {text.slice(at + part.length)}
    </>
  );
}
