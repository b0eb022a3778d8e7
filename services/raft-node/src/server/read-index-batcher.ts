// Linearizable reads, batched as etcd's linearizableReadLoop batches them: every read that
// arrives while no ReadIndex round is in flight starts one; reads arriving during a round wait
// for the next. One round (one Raft readIndex, one heartbeat quorum) serves every read in it.
// When Raft answers with the read index, the round's reads wait until this member has applied
// that index, then run locally. A round Raft never answers (leader change, lost message) is
// retried after `retryMs`; a read not served by its deadline fails.
//
// Pure: Raft and the clock are injected; the member feeds it read states, applied indexes and
// ticks.

interface PendingRead {
  deadline: number;
  /** Told the read index when Raft answers (tracing splits the round from the wait for apply). */
  indexKnown?: ((index: number) => void) | undefined;
  resolve(): void;
  reject(error: Error): void;
}

interface Round {
  ctx: Uint8Array;
  key: string;
  startedAt: number;
  reads: PendingRead[];
}

export interface ReadIndexBatcherOptions {
  /** Asks Raft for a read index with this unique context; may throw (no leader...). */
  requestIndex(ctx: Uint8Array): void;
  appliedIndex(): number;
  now(): number;
  timeoutMs: number;
  retryMs: number;
  timeoutError(): Error;
}

export class ReadIndexBatcher {
  private queued: PendingRead[] = [];
  private round: Round | undefined;
  /** Groups of reads holding a read index, waiting for the applied index to reach it. */
  private waitingApply: { index: number; reads: PendingRead[] }[] = [];
  private counter = 0;
  /** Rounds started, for tests and metrics. */
  rounds = 0;

  constructor(private readonly options: ReadIndexBatcherOptions) {}

  get pending(): number {
    let n = this.queued.length + (this.round?.reads.length ?? 0);
    for (const group of this.waitingApply) n += group.reads.length;
    return n;
  }

  /** Resolves once a linearizable read may run against local state. */
  wait(indexKnown?: (index: number) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queued.push({
        deadline: this.options.now() + this.options.timeoutMs,
        resolve,
        reject,
        indexKnown,
      });
      if (this.round === undefined) this.startRound();
    });
  }

  /**
   * Resolves once this member has applied `index` (etcd's indexWaiter, which a simple token
   * naming a later entry waits on); rejects with the timeout error like a read.
   */
  waitApplied(index: number): Promise<void> {
    if (this.options.appliedIndex() >= index) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waitingApply.push({
        index,
        reads: [{ deadline: this.options.now() + this.options.timeoutMs, resolve, reject }],
      });
    });
  }

  /** A ReadState from Raft's Ready. */
  onReadState(ctx: Uint8Array, index: number): void {
    const round = this.round;
    if (round === undefined || Buffer.from(ctx).toString("hex") !== round.key) return;
    this.round = undefined;
    for (const read of round.reads) read.indexKnown?.(index);
    if (this.options.appliedIndex() >= index) for (const read of round.reads) read.resolve();
    else this.waitingApply.push({ index, reads: round.reads });
    if (this.queued.length > 0) this.startRound();
  }

  /** Called after every apply. */
  onApplied(applied: number): void {
    if (this.waitingApply.length === 0) return;
    const still: { index: number; reads: PendingRead[] }[] = [];
    for (const group of this.waitingApply) {
      if (group.index <= applied) for (const read of group.reads) read.resolve();
      else still.push(group);
    }
    this.waitingApply = still;
  }

  /** Called periodically: retries a silent round, fails reads past their deadline. */
  tick(): void {
    const now = this.options.now();
    this.queued = this.expire(this.queued, now);
    for (const group of this.waitingApply) group.reads = this.expire(group.reads, now);
    this.waitingApply = this.waitingApply.filter((g) => g.reads.length > 0);
    const round = this.round;
    if (round !== undefined) {
      round.reads = this.expire(round.reads, now);
      if (now - round.startedAt >= this.options.retryMs) {
        // Raft drops a read request it cannot serve without telling anyone: ask again.
        this.round = undefined;
        this.queued = round.reads.concat(this.queued);
      }
    }
    if (this.round === undefined && this.queued.length > 0) this.startRound();
  }

  rejectAll(error: () => Error): void {
    const all = [...this.queued, ...(this.round?.reads ?? [])];
    for (const group of this.waitingApply) all.push(...group.reads);
    this.queued = [];
    this.round = undefined;
    this.waitingApply = [];
    for (const read of all) read.reject(error());
  }

  private startRound(): void {
    const ctx = Buffer.alloc(8);
    ctx.writeUInt32BE(Math.floor(++this.counter / 2 ** 32), 0);
    ctx.writeUInt32BE(this.counter % 2 ** 32, 4);
    const round: Round = {
      ctx,
      key: ctx.toString("hex"),
      startedAt: this.options.now(),
      reads: this.queued,
    };
    this.queued = [];
    this.round = round;
    this.rounds++;
    try {
      this.options.requestIndex(ctx);
    } catch {
      // No leader right now: the round stays open and tick() retries it until the deadline.
    }
  }

  private expire(reads: PendingRead[], now: number): PendingRead[] {
    if (reads.length === 0) return reads;
    const kept: PendingRead[] = [];
    for (const read of reads) {
      if (read.deadline <= now) read.reject(this.options.timeoutError());
      else kept.push(read);
    }
    return kept;
  }
}
