// Failed-login budgets per key (a user name, a client address): at most `maxFailures` failures
// in a burst, refilled at `maxFailures` per `windowMs` (GCRA: one timestamp per key, no timers).
// etcd has no such limit; a caller over budget is refused before any bcrypt work, even with the
// right password, so guessing costs the guesser time rather than the service CPU.
//
// Pure: the caller passes the clock. Memory is bounded: keys whose budget is full again are
// forgotten, and past `maxKeys` the least recently failed key is dropped (it then starts over
// with a full budget, which only ever errs towards letting a login through).

export interface FailedLoginLimits {
  maxFailures: number;
  windowMs: number;
  /** Keys tracked at most. */
  maxKeys: number;
}

export class FailedLoginLimiter {
  /** Per key, the theoretical time its budget is full again; insertion order = failure order. */
  private readonly fullAt = new Map<string, number>();
  private readonly intervalMs: number;

  constructor(private readonly limits: FailedLoginLimits) {
    if (!(limits.maxFailures >= 1) || !(limits.windowMs > 0) || !(limits.maxKeys >= 1))
      throw new RangeError("failed-login limits must be positive");
    this.intervalMs = limits.windowMs / limits.maxFailures;
  }

  /** 0 when `key` may try now; otherwise how long until it may. */
  retryAfterMs(key: string, now: number): number {
    const fullAt = this.fullAt.get(key);
    if (fullAt === undefined) return 0;
    // Budget left: (windowMs - (fullAt - now)) / interval failures; none when under one.
    const wait = fullAt - now - (this.limits.windowMs - this.intervalMs);
    return wait > 0 ? Math.ceil(wait) : 0;
  }

  failed(key: string, now: number): void {
    const previous = this.fullAt.get(key);
    const base = previous === undefined || previous < now ? now : previous;
    // Never more than one window ahead: a caller refused while over budget (and so not
    // counted) cannot push its own wait out indefinitely; one that keeps failing stays out.
    const next = Math.min(base + this.intervalMs, now + this.limits.windowMs);
    this.fullAt.delete(key);
    this.fullAt.set(key, next);
    this.evict(now);
  }

  /** A success clears the key's failures (for users: the owner got in). */
  succeeded(key: string): void {
    this.fullAt.delete(key);
  }

  get trackedKeys(): number {
    return this.fullAt.size;
  }

  private evict(now: number): void {
    for (const [key, fullAt] of this.fullAt) {
      if (this.fullAt.size <= this.limits.maxKeys && fullAt > now) break;
      this.fullAt.delete(key);
    }
  }
}
