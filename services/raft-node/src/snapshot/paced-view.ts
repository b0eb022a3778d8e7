// Sending a snapshot shares the member's one event loop with the writes it serves (the file is
// encoded on a worker thread, but the call's stream is this thread's): each chunk sent holds the
// loop for a while, and a large snapshot does that for seconds on end. While writes are being
// applied, the sender pauses after each chunk for `factor` times as long as the chunk took, so
// the writes get most of the loop (factor 4: about a fifth for the snapshot). With no writes it
// runs at full speed.
import { setTimeout as sleep } from "node:timers/promises";

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
