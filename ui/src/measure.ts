// Timings of the page's own work, for bench/ui-latency: taken only when the bench asks for them
// (`window.doppelMeasure = true`), so that a window open for days keeps no growing list of them.

declare global {
  interface Window {
    doppelMeasure?: boolean;
  }
}

/** Records `name` from `start` (a `performance.now()`) to now, when measuring is on. */
export function measure(name: string, start: number) {
  if (window.doppelMeasure) performance.measure(name, { start });
}
