// A list of any length that renders only the rows in view (and a few around them): every row is
// `rowHeight` pixels tall, so where each one sits is arithmetic. Arrow keys, Page Up/Down, Home
// and End move the focus from row to row, bringing rows into view as they go, so the whole list
// can be walked by keyboard although most of it is never in the page.

import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

/** Rows rendered beyond each edge of the view. */
const OVERSCAN = 6;
/** The height assumed before the list has been laid out (and where there is no layout). */
const FALLBACK_HEIGHT = 800;

export function VirtualList(props: {
  count: number;
  rowHeight: number;
  /** Changes whenever rows may have changed, so that the rows in view render again. */
  version: number;
  /** The row at `index`: an element with `data-index={index}` and a focusable control inside. */
  row: (index: number) => ComponentChildren;
  label: string;
  testid: string;
  class?: string;
  /** Called after every render with the rows rendered (rows whose data is missing, and those
   * about to come into view, can then be fetched). */
  onRendered?: (first: number, last: number) => void;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(FALLBACK_HEIGHT);
  const focusNext = useRef<number | null>(null);
  const frame = useRef<number | null>(null);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setHeight(el.clientHeight || FALLBACK_HEIGHT);
    measure();
    if (typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  // Scrolling renders at most once a frame.
  const onScroll = () => {
    if (frame.current !== null) return;
    const read = () => {
      frame.current = null;
      if (scroller.current) setTop(scroller.current.scrollTop);
    };
    frame.current = typeof requestAnimationFrame === "function" ? requestAnimationFrame(read) : (read(), null);
  };
  useEffect(
    () => () => {
      if (frame.current !== null && typeof cancelAnimationFrame === "function") cancelAnimationFrame(frame.current);
    },
    [],
  );

  const h = props.rowHeight;
  const first = Math.max(0, Math.floor(top / h) - OVERSCAN);
  const last = Math.min(props.count, Math.ceil((top + height) / h) + OVERSCAN);


  useEffect(() => props.onRendered?.(first, last));

  // A row the keyboard moved to receives the focus once it is rendered.
  useEffect(() => {
    const index = focusNext.current;
    if (index === null) return;
    const el = scroller.current?.querySelector<HTMLElement>(`[data-index="${index}"] button, [data-index="${index}"] [tabindex]`);
    if (el) {
      focusNext.current = null;
      el.focus({ preventScroll: true });
    }
  });

  const moveTo = (index: number) => {
    const el = scroller.current;
    if (!el || props.count === 0) return;
    const target = Math.max(0, Math.min(props.count - 1, index));
    const rowTop = target * h;
    if (rowTop < el.scrollTop) el.scrollTop = rowTop;
    else if (rowTop + h > el.scrollTop + height) el.scrollTop = rowTop + h - height;
    setTop(el.scrollTop);
    focusNext.current = target;
    // Already rendered: focus at once (the effect also covers rows rendered later).
    const row = el.querySelector<HTMLElement>(`[data-index="${target}"] button`);
    if (row) {
      focusNext.current = null;
      row.focus({ preventScroll: true });
    }
  };

  const onKeyDown = (e: KeyboardEvent) => {
    const from = (e.target as HTMLElement).closest<HTMLElement>("[data-index]");
    if (!from) return;
    const index = Number(from.dataset.index);
    const page = Math.max(1, Math.floor(height / h) - 1);
    const to =
      e.key === "ArrowDown" ? index + 1
      : e.key === "ArrowUp" ? index - 1
      : e.key === "PageDown" ? index + page
      : e.key === "PageUp" ? index - page
      : e.key === "Home" ? 0
      : e.key === "End" ? props.count - 1
      : null;
    if (to === null) return;
    e.preventDefault();
    moveTo(to);
  };

  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i++) rows.push(props.row(i));

  return (
    <div class={`virtual-scroller ${props.class ?? ""}`} ref={scroller} onScroll={onScroll}>
      <ul
        class="virtual-list"
        aria-label={props.label}
        data-testid={props.testid}
        data-count={props.count}
        style={{ height: `${props.count * h}px` }}
        onKeyDown={onKeyDown}
      >
        {rows}
      </ul>
    </div>
  );
}

/** The style that puts row `index` in its place. */
export function rowStyle(index: number, rowHeight: number) {
  return { transform: `translateY(${index * rowHeight}px)`, height: `${rowHeight}px` };
}
