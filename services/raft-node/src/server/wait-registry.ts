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

export class WaitRegistry<C> {
  private readonly waiters = new Map<number, Waiter<C>>();
  private nextSeq = 1;

  constructor(private readonly timeoutMs: number) {}

  get size(): number {
    return this.waiters.size;
  }

  /** A fresh sequence number and the promise its apply will settle. */
  register<T>(context: C, now: number): { seq: number; done: Promise<T> } {
    const seq = this.nextSeq++;
    let waiter!: Waiter<C>;
    const done = new Promise<T>((resolve, reject) => {
      waiter = { context, deadline: now + this.timeoutMs, resolve: resolve as (v: unknown) => void, reject };
    });
    this.waiters.set(seq, waiter);
    return { seq, done };
  }

  get(seq: number): Waiter<C> | undefined {
    return this.waiters.get(seq);
  }

  resolve(seq: number, value: unknown): boolean {
    const waiter = this.waiters.get(seq);
    if (waiter === undefined) return false;
    this.waiters.delete(seq);
    waiter.resolve(value);
    return true;
  }

  reject(seq: number, error: Error): boolean {
    const waiter = this.waiters.get(seq);
    if (waiter === undefined) return false;
    this.waiters.delete(seq);
    waiter.reject(error);
    return true;
  }

  /** Rejects every waiter whose deadline is at or before `now`; returns how many. */
  expire(now: number, error: () => Error): number {
    let expired = 0;
    for (const [seq, waiter] of this.waiters) {
      if (waiter.deadline > now) break;
      this.waiters.delete(seq);
      waiter.reject(error());
      expired++;
    }
    return expired;
  }

  rejectAll(error: () => Error): void {
    const all = [...this.waiters.values()];
    this.waiters.clear();
    for (const waiter of all) waiter.reject(error());
  }
}
