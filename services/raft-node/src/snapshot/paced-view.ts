// A snapshot shares the member's one event loop with the writes it serves: encoding a chunk of
// rows, or sending a chunk of the file, holds the loop for milliseconds, and a snapshot of a
// large store does that for seconds on end. While writes are being applied, the snapshot pauses
// after each chunk for `factor` times as long as the chunk took, so the writes get most of the
// loop (factor 4: about a fifth for the snapshot). With no writes it runs at full speed.
import { setTimeout as sleep } from "node:timers/promises";
import type { StoreView } from "../mvcc/mod.js";

/** Writes applied so far (any counter that moves when one is applied). */
export type WriteCounter = () => number;

export const SNAPSHOT_YIELD_FACTOR = 4;
const MAX_PAUSE_MS = 1000;

export class WritePacer {
  private seen: number;

  constructor(
    private readonly writes: WriteCounter,
    private readonly factor = SNAPSHOT_YIELD_FACTOR,
  ) {
    this.seen = writes();
  }

  /** After `busyMs` of snapshot work: pauses if writes were applied since the last call. */
  async pause(busyMs: number): Promise<void> {
    const now = this.writes();
    if (now === this.seen) return;
    this.seen = now;
    await sleep(Math.min(busyMs * this.factor, MAX_PAUSE_MS));
  }
}

/** The view, pausing after each chunk its reader took (`pacer.pause` with the reader's time). */
export function pacedView(view: StoreView, pacer: WritePacer): StoreView {
  return {
    async *rows(column, chunkRows) {
      for await (const chunk of view.rows(column, chunkRows)) {
        const handed = performance.now();
        yield chunk;
        await pacer.pause(performance.now() - handed);
      }
    },
    close: () => view.close(),
  };
}
