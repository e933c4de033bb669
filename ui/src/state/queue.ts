// The queue as a whole, as the window follows it: which events change its progress, and when a
// long ingest ends while the window is in the background, the notification to send.

import type { DoppelEvent, Queue } from "../api";

/** An ingest that ran at least this long is worth a notification when it ends unseen. */
export const LONG_RUN_MS = 30_000;

declare global {
  interface Window {
    /** Overrides `LONG_RUN_MS`, for end-to-end tests that cannot wait half a minute. */
    doppelLongRunMs?: number;
  }
}

export type Notice = { title: string; body: string };

/** Follows runs of the queue; `update` says when one ended that the person should hear of. */
export class QueueTracker {
  private focused = typeof document === "undefined" || document.hasFocus();
  private run: { startedAt: number; total: number; ended: number; failed: number } | null = null;

  setFocused(focused: boolean) {
    this.focused = focused;
  }

  /**
   * Takes an event into account at `now`; returns whether it changes the queue's progress (so
   * that it is read again). A job queued or started begins a run, even one too short to have
   * been seen waiting by a read of the queue.
   */
  observe(ev: DoppelEvent, now: number): boolean {
    switch (ev.type) {
      case "jobQueued":
      case "jobStarted":
        this.run ??= { startedAt: now, total: 0, ended: 0, failed: 0 };
        return true;
      case "jobDone":
      case "jobCancelled":
        if (this.run) this.run.ended++;
        return true;
      case "jobFailed":
        if (this.run && ev.retryAt == null) {
          this.run.ended++;
          this.run.failed++;
        }
        return true;
      default:
        return false;
    }
  }

  /**
   * The queue as just read at `now`. Returns the notice to show when it ends a run that lasted
   * long while the window was not in front; null otherwise.
   */
  update(q: Queue, now: number): Notice | null {
    if (q.total > 0 && q.ended < q.total) {
      const run = this.run;
      this.run = {
        startedAt: Math.min(run?.startedAt ?? now, q.startedAt ?? now),
        total: Math.max(run?.total ?? 0, q.total),
        ended: Math.max(run?.ended ?? 0, q.ended),
        failed: Math.max(run?.failed ?? 0, q.failed),
      };
      return null;
    }
    const run = this.run;
    this.run = null;
    const longRun = window.doppelLongRunMs ?? LONG_RUN_MS;
    if (!run || this.focused || now - run.startedAt < longRun) return null;
    const total = Math.max(run.total, run.ended);
    const files = `${total.toLocaleString()} file${total === 1 ? "" : "s"}`;
    if (run.failed > 0) {
      return {
        title: "Doppel finished learning, with failures",
        body: `${files} read; ${run.failed.toLocaleString()} could not be learnt (see Knowledge for why).`,
      };
    }
    return { title: "Doppel finished learning", body: `${files} read and learnt.` };
  }
}
