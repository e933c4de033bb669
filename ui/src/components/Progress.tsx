// A thin progress bar; without a percentage it shows an indeterminate sweep.

export function ProgressBar(props: { value: number | null; label: string; testid?: string }) {
  const v = props.value;
  return (
    <div
      class={`progress ${v === null ? "indeterminate" : ""}`}
      role="progressbar"
      aria-label={props.label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={v ?? undefined}
      data-testid={props.testid}
      data-value={v ?? ""}
    >
      <div class="progress-fill" style={v === null ? undefined : { width: `${v}%` }} />
    </div>
  );
}
