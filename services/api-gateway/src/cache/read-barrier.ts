// One linearizable round to the cluster for every linearizable read waiting at once.
//
// A probe is a linearizable read the leader confirms (Raft's ReadIndex) before answering; its
// header revision R is then at least the revision of every write acknowledged to anyone before
// the probe was sent. A read may rely on a probe only if the probe was sent after the read
// arrived: a read arriving while a probe is in flight waits for the next one, which starts as
// soon as the one in flight ends and serves every read that arrived meanwhile. Under load that
// is one round per round-trip time, however many reads wait; alone, a read costs one round, as
// a read sent to a member would. Pure: the probe is given.

export class ReadBarrier {
  private inFlight: Promise<number> | undefined;
  private next: Promise<number> | undefined;
  /** Probes sent so far. */
  probes = 0;

  constructor(private readonly probe: () => Promise<number>) {}

  /**
   * A revision at or above that of every write acknowledged before this call. Rejects when
   * the probe fails: the caller then sends its read to a member instead.
   */
  revision(): Promise<number> {
    if (this.inFlight === undefined) return this.send();
    if (this.next !== undefined) return this.next;
    const next: Promise<number> = this.inFlight.then(
      () => this.sendNext(next),
      () => this.sendNext(next),
    );
    this.next = next;
    return next;
  }

  private sendNext(next: Promise<number>): Promise<number> {
    if (this.next === next) this.next = undefined;
    return this.send();
  }

  private send(): Promise<number> {
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
