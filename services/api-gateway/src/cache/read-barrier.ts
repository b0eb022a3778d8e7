// One linearizable round to the cluster for every linearizable read waiting at once.
//
// A probe is a linearizable read the leader confirms (Raft's ReadIndex) before answering; its
// header revision R is then at least the revision of every write acknowledged to anyone before
// the probe was sent. A read may rely on a probe only if the probe was sent after the read
// arrived: a read arriving while a probe is in flight waits for the next one, which starts as
// soon as the one in flight ends and serves every read that arrived meanwhile. Under load that
// is one round per round-trip time, however many reads wait; alone, a read costs one round, as
// a read sent to a member would. Pure: the probe is given. The same rule serves any
// linearizable fetch whose callers need a result newer than themselves (the gateway's list of
// published JWT keys, re-read when a token names a key it does not know).

export class ReadBarrier<T = number> {
  private inFlight: Promise<T> | undefined;
  private next: Promise<T> | undefined;
  /** Probes sent so far. */
  probes = 0;

  constructor(private readonly probe: () => Promise<T>) {}

  /**
   * The result of a probe sent after this call (for the read barrier, a revision at or above
   * that of every write acknowledged before it). Rejects when the probe fails: the caller then
   * sends its read to a member instead.
   */
  afterNow(): Promise<T> {
    if (this.inFlight === undefined) return this.send();
    if (this.next !== undefined) return this.next;
    const next: Promise<T> = this.inFlight.then(
      () => this.sendNext(next),
      () => this.sendNext(next),
    );
    this.next = next;
    return next;
  }

  private sendNext(next: Promise<T>): Promise<T> {
    if (this.next === next) this.next = undefined;
    return this.send();
  }

  private send(): Promise<T> {
    this.probes++;
    const sent = this.probe();
    this.inFlight = sent;
    const settle = () => {
      if (this.inFlight === sent) this.inFlight = undefined;
    };
    sent.then(settle, settle);
    return sent;
  }
}
