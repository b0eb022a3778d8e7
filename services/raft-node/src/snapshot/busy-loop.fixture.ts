// An event loop kept busy, for tests of the snapshot's pacing by the member's busy share.

/** Keeps this thread running `busyMs` of every `everyMs` until stopped (bounded: `maxMs`). */
export function keepBusy(busyMs: number, everyMs: number, maxMs = 20_000): () => void {
  const until = performance.now() + maxMs;
  const timer = setInterval(() => {
    const end = Math.min(performance.now() + busyMs, until);
    while (performance.now() < end) {
      // Spinning: the time counts as the event loop's, as a callback's work would.
    }
  }, everyMs);
  return () => clearInterval(timer);
}
