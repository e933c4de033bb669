// A modal dialog with a focus trap, closed by Esc or the backdrop, and a confirmation built on it.

import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export function Modal(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  testid?: string;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    const el = ref.current;
    const first = el?.querySelector<HTMLElement>("[data-autofocus], input, textarea, select, button");
    first?.focus();
    return () => previous?.focus?.();
  }, []);
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      e.preventDefault();
      props.onClose();
      return;
    }
    if (e.key !== "Tab" || !ref.current) return;
    const items = Array.from(
      ref.current.querySelectorAll<HTMLElement>("button, input, textarea, select, a[href], [tabindex='0']"),
    ).filter((x) => !x.hasAttribute("disabled"));
    if (items.length === 0) return;
    const first = items[0]!;
    const last = items[items.length - 1]!;
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  };
  return (
    <div class="backdrop" onMouseDown={(e) => e.target === e.currentTarget && props.onClose()}>
      <div
        ref={ref}
        class={`modal ${props.wide ? "wide" : ""}`}
        role="dialog"
        aria-modal="true"
        aria-label={props.title}
        data-testid={props.testid}
        onKeyDown={onKeyDown}
      >
        <h2 class="modal-title">{props.title}</h2>
        {props.children}
      </div>
    </div>
  );
}

export type ConfirmOptions = {
  title: string;
  body: ComponentChildren;
  confirm: string;
  danger?: boolean;
};

export function ConfirmDialog(props: ConfirmOptions & { onAnswer: (ok: boolean) => void }) {
  return (
    <Modal title={props.title} onClose={() => props.onAnswer(false)} testid="confirm-dialog">
      <div class="modal-body">{props.body}</div>
      <div class="modal-actions">
        <button type="button" class="btn" data-testid="confirm-cancel" onClick={() => props.onAnswer(false)}>
          Cancel
        </button>
        <button
          type="button"
          class={`btn ${props.danger ? "danger" : "primary"}`}
          data-testid="confirm-ok"
          data-autofocus
          onClick={() => props.onAnswer(true)}
        >
          {props.confirm}
        </button>
      </div>
    </Modal>
  );
}
