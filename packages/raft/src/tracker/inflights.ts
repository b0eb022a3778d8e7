/**
 * The MsgApps sent to one follower and not yet acknowledged, as a ring buffer of the last
 * entry index each carried. Bounds the pipeline: when full, the leader stops sending
 * entries to that follower until acknowledgements free slots.
 */
export class Inflights {
  private start = 0;
  private count = 0;
  private readonly buffer: Float64Array;
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.buffer = new Float64Array(capacity);
  }

  add(lastIndex: number): void {
    if (this.full()) throw new Error("cannot add into a full inflights");
    let next = this.start + this.count;
    if (next >= this.capacity) next -= this.capacity;
    this.buffer[next] = lastIndex;
    this.count++;
  }

  /** Frees every message whose last index is <= `to` (all acknowledged by one response). */
  freeLE(to: number): void {
    if (this.count === 0 || to < this.buffer[this.start]) return;
    let idx = this.start;
    let i = 0;
    for (; i < this.count; i++) {
      if (to < this.buffer[idx]) break;
      if (++idx >= this.capacity) idx -= this.capacity;
    }
    this.count -= i;
    this.start = this.count === 0 ? 0 : idx;
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  get size(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}
