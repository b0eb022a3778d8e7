// Call deadlines on one timer per process instead of a Node timer per call. Go clients send a
// grpc-timeout on every call (etcd's clientv3 and goload do), and a per-call setTimeout with the
// time left (a different number of ms each call) made Node create and drop a timer list and
// move its priority queue twice per call: the largest of the per-call pieces in the server's
// request side in a --cpu-prof of one client (the gateway arms two per call, the leader one).
//
// Deadlines are grouped by the time they fire, rounded up to a power-of-two number of ms no more
// than 1/32 of the time left (1 ms below 64 ms): a deadline fires at most ~3% of its timeout
// late, never early. That is enough for what a server's deadline is for, which is dropping work
// no one waits for: the client ends the call at its own deadline whatever the server does. A
// group is a Set (a call's removal is a delete), kept while empty until its time comes, so at a
// steady rate of calls only ~32 groups per timeout's span exist; the timer is armed for the
// earliest group and empty ones are dropped when it fires, so an idle process has no timer.
// The timer holds the process open while a deadline waits, as a call's own timer did (a
// gateway's first calls to its members wait on sockets that do not), and not after.

/** What a deadline runs when it passes. */
export interface DeadlineTarget {
  deadlinePassed(): void;
}

/** A group of deadlines that fire together: what `add` returns and `remove` takes. */
export type DeadlineSlot = Set<DeadlineTarget>;

/** setTimeout's largest delay (Node fires a larger one after 1 ms, with a warning). */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class DeadlineTimers {
  /** Groups by the time (ms since the epoch) they fire. */
  private readonly slots = new Map<number, DeadlineSlot>();
  /** A min-heap of the slots' fire times, one entry per slot. */
  private readonly times: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  /** Targets in the groups. */
  private waiting = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * `target.deadlinePassed()` runs at `at` (ms since the epoch) or a little after (see above),
   * unless `remove` came first. A target is added once per deadline.
   */
  add(at: number, target: DeadlineTarget): DeadlineSlot {
    const left = at - this.now();
    let width = 1;
    if (left >= 64) width = 2 ** Math.floor(Math.log2(left / 32));
    const fireAt = Math.ceil(at / width) * width;
    let slot = this.slots.get(fireAt);
    if (slot === undefined) {
      slot = new Set();
      this.slots.set(fireAt, slot);
      this.push(fireAt);
    }
    const had = slot.size;
    slot.add(target);
    if (slot.size > had && this.waiting++ === 0) this.timer?.ref();
    if (fireAt < this.timerAt) this.arm(fireAt);
    return slot;
  }

  /** The deadline will not run (a no-op once it ran). */
  remove(slot: DeadlineSlot, target: DeadlineTarget): void {
    if (slot.delete(target) && --this.waiting === 0) this.timer?.unref();
  }

  /** Deadlines waiting (tests). */
  get size(): number {
    return this.waiting;
  }

  /** Whether a Node timer is armed (tests: an idle process has none). */
  get armed(): boolean {
    return this.timer !== undefined;
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.min(MAX_DELAY_MS, Math.max(1, at - this.now())));
    if (this.waiting === 0) this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = this.now();
    const times = this.times;
    while (times.length > 0) {
      const at = times[0]!;
      const slot = this.slots.get(at)!;
      // An empty group goes even before its time: one added later makes it again.
      if (at > now && slot.size > 0) break;
      this.pop();
      this.slots.delete(at);
      // A target that removes another of this group meanwhile is respected (a Set's iteration
      // skips what was deleted); a deadline a target adds goes in a new group, run by this
      // loop if it is due already.
      for (const target of slot) {
        slot.delete(target);
        this.waiting--;
        target.deadlinePassed();
      }
    }
    if (times.length > 0) this.arm(times[0]!);
  }

  private push(at: number): void {
    const times = this.times;
    let i = times.length;
    times.push(at);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent]! <= at) break;
      times[i] = times[parent]!;
      i = parent;
    }
    times[i] = at;
  }

  private pop(): void {
    const times = this.times;
    const last = times.pop()!;
    if (times.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= times.length) break;
      const right = left + 1;
      const child = right < times.length && times[right]! < times[left]! ? right : left;
      if (times[child]! >= last) break;
      times[i] = times[child]!;
      i = child;
    }
    times[i] = last;
  }
}

/** The deadlines of every call this process serves or forwards. */
export const callDeadlines = new DeadlineTimers();
