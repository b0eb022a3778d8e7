// A snapshot shares the machine with the writes the member serves: the file is encoded on
// worker threads and sent from the member's one event loop, and for a large store each does
// that for seconds on end. While writes are being applied, the snapshot's work pauses after each
// piece for `factor` times as long as the piece took, so the writes keep most of the CPU (at 4,
// puts kept about 0.7-0.8x of their rate). With no writes it runs at full speed. Factor 8 kept
// 0.79-0.98x but is not used: the flag is binary (any write in the last 5 ms), so a cluster with
// a trickle of writes (lease renewals, events) would wait nine times a snapshot's quiet time for
// every backup, as a saturated one does; pacing by how busy the writes are is the better fix. The workers run at nice 19, but that does not cover all of their
// cost: V8 runs their garbage collection and compilation on its helper threads, shared by the
// process at its priority (measured: a fifth to a third of a snapshot's CPU), so they pace
// themselves too, on a flag the member's thread sets.
import { setTimeout as sleep } from "node:timers/promises";

/** Writes applied so far (any counter that moves when one is applied). */
export type WriteCounter = () => number;

/** Whether writes were applied lately (e.g. since the last call: writesSince). */
export type WritesActive = () => boolean;

export const SNAPSHOT_YIELD_FACTOR = 4;
const MAX_PAUSE_MS = 1000;

/** Whether `writes` moved since the previous call (the first call: since this one). */
export function writesSince(writes: WriteCounter): WritesActive {
  let seen = writes();
  return () => {
    const now = writes();
    const moved = now !== seen;
    seen = now;
    return moved;
  };
}

export class WritePacer {
  constructor(
    private readonly active: WritesActive,
    private readonly factor = SNAPSHOT_YIELD_FACTOR,
  ) {}

  /** After `busyMs` of snapshot work: pauses if writes are being applied; whether it did. */
  async pause(busyMs: number): Promise<boolean> {
    if (!this.active()) return false;
    await sleep(Math.min(busyMs * this.factor, MAX_PAUSE_MS));
    return true;
  }
}
