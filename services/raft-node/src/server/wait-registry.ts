// Client calls waiting for their proposal to be applied on this member, keyed by the sequence
// number the envelope carries. Deadlines are checked by the member's one periodic timer
// (expire()), not by a timer per request: every waiter gets the same timeout, so insertion
// order is deadline order and a sweep stops at the first waiter still in time.

export interface Waiter<C> {
  /** What the proposer already knows about the request (its decoded form), to skip decoding at apply. */
  context: C;
  deadline: number;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * Waiters in a ring indexed by their sequence number rather than a Map: seqs are handed out in
 * order and mostly settle in order, and a Map's table at ~100 puts in flight was rebuilt every
 * ~100 puts (a new table each time, alive past scavenges at many clients: promoted garbage).
 * A settled waiter leaves a hole until every older one has settled too; expire() bounds how
 * far the oldest lags behind (its timeout), so the ring stays within the puts of one timeout.
 */
export class WaitRegistry<C> {
  private slots: (Waiter<C> | undefined)[] = new Array(64).fill(undefined);
  /** slots.length - 1 (a power of two). */
  private mask = 63;
  /** The oldest seq that may still wait; every seq below it has settled. */
  private first = 1;
  private nextSeq = 1;
  private waiting = 0;

  constructor(private readonly timeoutMs: number) {}

  get size(): number {
    return this.waiting;
  }

  /** A fresh sequence number and the promise its apply will settle. */
  register<T>(context: C, now: number): { seq: number; done: Promise<T> } {
    const seq = this.nextSeq++;
    let waiter!: Waiter<C>;
    const done = new Promise<T>((resolve, reject) => {
      waiter = { context, deadline: now + this.timeoutMs, resolve: resolve as (v: unknown) => void, reject };
    });
    if (seq - this.first > this.mask) this.grow();
    this.slots[seq & this.mask] = waiter;
    this.waiting++;
    return { seq, done };
  }

  get(seq: number): Waiter<C> | undefined {
    if (seq < this.first || seq >= this.nextSeq) return undefined;
    return this.slots[seq & this.mask];
  }

  resolve(seq: number, value: unknown): boolean {
    const waiter = this.take(seq);
    if (waiter === undefined) return false;
    waiter.resolve(value);
    return true;
  }

  reject(seq: number, error: Error): boolean {
    const waiter = this.take(seq);
    if (waiter === undefined) return false;
    waiter.reject(error);
    return true;
  }

  /** Rejects every waiter whose deadline is at or before `now`; returns how many. */
  expire(now: number, error: () => Error): number {
    let expired = 0;
    for (let seq = this.first; seq < this.nextSeq; seq++) {
      const waiter = this.slots[seq & this.mask];
      if (waiter === undefined) continue;
      if (waiter.deadline > now) break;
      this.take(seq);
      waiter.reject(error());
      expired++;
    }
    return expired;
  }

  rejectAll(error: () => Error): void {
    const all: Waiter<C>[] = [];
    for (let seq = this.first; seq < this.nextSeq; seq++) {
      const waiter = this.slots[seq & this.mask];
      if (waiter !== undefined) all.push(waiter);
      this.slots[seq & this.mask] = undefined;
    }
    this.first = this.nextSeq;
    this.waiting = 0;
    for (const waiter of all) waiter.reject(error());
  }

  /** Removes and returns the waiter of `seq`, moving `first` past the settled ones. */
  private take(seq: number): Waiter<C> | undefined {
    const waiter = this.get(seq);
    if (waiter === undefined) return undefined;
    this.slots[seq & this.mask] = undefined;
    this.waiting--;
    if (seq === this.first) {
      let first = seq + 1;
      while (first < this.nextSeq && this.slots[first & this.mask] === undefined) first++;
      this.first = first;
    }
    return waiter;
  }

  /** Twice the slots, each waiting seq moved to its place in them. */
  private grow(): void {
    const slots: (Waiter<C> | undefined)[] = new Array(this.slots.length * 2).fill(undefined);
    const mask = slots.length - 1;
    for (let seq = this.first; seq < this.nextSeq - 1; seq++) slots[seq & mask] = this.slots[seq & this.mask];
    this.slots = slots;
    this.mask = mask;
  }
}
