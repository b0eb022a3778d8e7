// A snapshot shares the member's one event loop with the writes it serves: encoding a chunk of
// rows holds the loop for milliseconds, and a streamed snapshot of a large store does that for
// seconds on end. While writes are being applied, the view pauses after each chunk for `factor`
// times as long as its reader took over the chunk, so the writes get most of the loop (factor 4:
// about a fifth for the snapshot). With no writes it runs at full speed.
import { setTimeout as sleep } from "node:timers/promises";
import type { StoreView } from "../mvcc/mod.js";

/** Writes applied so far (any counter that moves when one is applied). */
export type WriteCounter = () => number;

export const SNAPSHOT_YIELD_FACTOR = 4;

export function pacedView(view: StoreView, writes: WriteCounter, factor = SNAPSHOT_YIELD_FACTOR): StoreView {
  let seen = writes();
  return {
    async *rows(column, chunkRows) {
      for await (const chunk of view.rows(column, chunkRows)) {
        const handed = performance.now();
        yield chunk;
        const busy = performance.now() - handed;
        const now = writes();
        if (now !== seen) {
          seen = now;
          await sleep(Math.min(busy * factor, 1000));
        }
      }
    },
    close: () => view.close(),
  };
}
