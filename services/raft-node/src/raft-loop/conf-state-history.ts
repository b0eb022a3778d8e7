// The configuration (ConfState) as of recent applied indexes. A leader stamps the snapshot it
// sends with the index of the image it actually built (as etcd's createMergedSnapshotMessage
// does), and that image is cut a little while after the applier moved on: the stamp needs the
// configuration at the image's index, not the current one.
import type { ConfState } from "@etcd-ts/raft";

/** How many configurations are kept; an image older than all of them is cut again. */
export const CONF_STATE_HISTORY = 16;

export class ConfStateHistory {
  /** Oldest first; indexes increase. */
  private readonly states: { index: number; confState: ConfState }[];

  constructor(
    index: number,
    confState: ConfState,
    private readonly keep = CONF_STATE_HISTORY,
  ) {
    this.states = [{ index, confState }];
  }

  /** The configuration produced by the entry at `index` (applied in order). */
  record(index: number, confState: ConfState): void {
    const last = this.states.at(-1)!;
    if (index < last.index) throw new Error(`configuration at ${index} recorded after one at ${last.index}`);
    this.states.push({ index, confState });
    if (this.states.length > this.keep) this.states.shift();
  }

  /** Starts over from a snapshot's configuration (a snapshot was installed). */
  reset(index: number, confState: ConfState): void {
    this.states.splice(0, this.states.length, { index, confState });
  }

  /**
   * The configuration in force once the entry at `index` was applied, or undefined when it is
   * older than what is kept. The caller makes sure the applier has reached `index`.
   */
  at(index: number): ConfState | undefined {
    for (let i = this.states.length - 1; i >= 0; i--) {
      const s = this.states[i]!;
      if (s.index <= index) return s.confState;
    }
    return undefined;
  }
}
