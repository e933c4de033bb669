// The queue as a whole: one bar for the current run (files, passages, the time left) and the
// button that pauses or resumes every file waiting. In the sidebar (compact) and on Sources.

import { useApp } from "../app";
import { Icon } from "../components/Icon";
import { ProgressBar } from "../components/Progress";

/** "about 3 min left" for a time estimate in milliseconds. */
export function timeLeft(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `about ${Math.max(1, s)} s left`;
  if (s < 90 * 60) return `about ${Math.round(s / 60)} min left`;
  return `about ${(s / 3600).toFixed(1)} h left`;
}

export function QueueStatus(props: { compact?: boolean }) {
  const app = useApp();
  const q = app.queue;
  // The sidebar speaks only of a run or a pause; Sources always offers to pause (before a big drop).
  if (!q || (props.compact && q.total === 0 && !q.paused)) return null;
  const busy = q.total > 0;
  const value = busy ? Math.round((q.ended / q.total) * 100) : null;
  const files = busy ? `${q.ended.toLocaleString()} of ${q.total.toLocaleString()} files` : "Nothing waiting";
  const when = q.paused
    ? "paused: no file is read until you resume"
    : !busy
      ? "files you add are read at once"
      : q.timeLeftMs != null
        ? timeLeft(q.timeLeftMs)
        : "estimating the time left";
  const passages = `${q.passages.toLocaleString()} passage${q.passages === 1 ? "" : "s"}`;
  const label = q.paused ? "Queue paused" : busy ? "Learning" : "Queue";
  return (
    <div
      class={`queue-status ${props.compact ? "compact" : ""} ${q.paused ? "paused" : ""}`}
      data-testid={props.compact ? "queue-status-compact" : "queue-status"}
      data-paused={q.paused ? "true" : "false"}
      role="group"
      aria-label="Queue"
    >
      <div class="queue-line">
        <span class="queue-label">{label}</span>
        {q.paused ? (
          <button
            type="button"
            class="btn sm"
            data-testid={props.compact ? "queue-resume-compact" : "queue-resume"}
            onClick={() => void app.resumeQueue()}
          >
            <Icon name="play" size={14} />
            Resume
          </button>
        ) : (
          <button
            type="button"
            class="btn sm ghost"
            data-testid={props.compact ? "queue-pause-compact" : "queue-pause"}
            onClick={() => void app.pauseQueue()}
            title="Pause: no further file is read until you resume (the file being read finishes)"
          >
            <Icon name="pause" size={14} />
            Pause
          </button>
        )}
      </div>
      {busy && <ProgressBar value={value} label={`Files learnt: ${files}`} testid={props.compact ? undefined : "queue-progress"} />}
      <span class="queue-text small" data-testid={props.compact ? undefined : "queue-text"}>
        {props.compact || !busy ? `${files} · ${when}` : `${files} · ${passages} · ${when}`}
      </span>
    </div>
  );
}
