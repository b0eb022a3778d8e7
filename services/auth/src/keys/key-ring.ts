// One auth service replica's signing keys and their rotation, as a pure state machine (the
// caller generates keys, publishes them to the members and passes the clock).
//
// A key's life: generated -> `pending` (being published, then announced) -> `active` (signs
// every new token) -> `retiring` (signs nothing; still published so the tokens it signed verify
// until they expire) -> withdrawn. The rules that make rotation invisible to clients: a key
// signs nothing until its publication was committed through Raft (every member has it or waits
// for it) and `publishLeadMs` has passed since (every replica's JWKS, and a JWKS reader's cache,
// has it too); it is withdrawn only once every token it signed has expired. So old and new
// keys overlap for one lead time before the switch and one token TTL after it.
//
// Each replica has keys of its own (private keys never leave the process that made them: none
// is stored or shared), so replicas need no coordination; members and JWKS readers see the
// union. A key published by a replica that died expires on its own at `notAfterMs`.

export interface KeyTimings {
  /** Lifetime of a token (its `exp` is at most this far from its signing). */
  tokenTtlMs: number;
  /** How long a key stays active before the next one replaces it. */
  rotationIntervalMs: number;
  /** Margin for clocks that differ between this service and the members. */
  clockSkewMs: number;
  /** Time between a key's publication and its first signature (JWKS readers catch up). */
  publishLeadMs: number;
}

export type KeyState = "pending" | "active" | "retiring";

export interface RingKey<P> {
  kid: string;
  /** The signing key (opaque here). */
  privateKey: P;
  /** The public JWK as published (kid, alg and use included). */
  publicJwk: Record<string, unknown>;
  createdAtMs: number;
  /** Members refuse its tokens after this, published or not. */
  notAfterMs: number;
  state: KeyState;
  /** pending: when its publication was committed (undefined: not yet). */
  publishedAtMs?: number;
  /** retiring: when its last token has expired and it may be withdrawn. */
  withdrawAtMs?: number;
}

export class KeyRing<P> {
  private readonly keys = new Map<string, RingKey<P>>();

  constructor(readonly timings: KeyTimings) {
    if (
      !(timings.tokenTtlMs > 0) ||
      !(timings.rotationIntervalMs > 0) ||
      !(timings.clockSkewMs >= 0) ||
      !(timings.publishLeadMs >= 0)
    )
      throw new RangeError("key timings must be positive");
  }

  /**
   * A new key's `notAfterMs`: active for one interval, and a whole second interval of slack in
   * case rotation cannot reach the members, plus its last tokens' lifetime.
   */
  notAfterFor(createdAtMs: number): number {
    const t = this.timings;
    return createdAtMs + t.publishLeadMs + 2 * t.rotationIntervalMs + t.tokenTtlMs + t.clockSkewMs;
  }

  /** Adds a freshly generated key, not yet published: it signs nothing yet. */
  addPending(key: Omit<RingKey<P>, "state" | "withdrawAtMs" | "publishedAtMs">): void {
    if (this.keys.has(key.kid)) throw new Error(`duplicate kid ${key.kid}`);
    this.keys.set(key.kid, { ...key, state: "pending" });
  }

  /** Its publication was committed: it signs once the lead time has passed (promote). */
  published(kid: string, nowMs: number): void {
    const key = this.keys.get(kid);
    if (key === undefined || key.state !== "pending") return;
    key.publishedAtMs = nowMs;
    this.promote(nowMs);
  }

  /**
   * A published key whose lead time has passed becomes the signing key; the previous one
   * retires. True when the signing key changed.
   */
  promote(nowMs: number): boolean {
    let next: RingKey<P> | undefined;
    for (const key of this.keys.values()) {
      if (key.state !== "pending" || key.publishedAtMs === undefined) continue;
      // The very first key has no one to overlap with: waiting would only delay the service.
      const lead = this.signingKey() === undefined ? 0 : this.timings.publishLeadMs;
      if (key.publishedAtMs + lead <= nowMs) next = key;
    }
    if (next === undefined) return false;
    for (const other of this.keys.values()) {
      if (other.state !== "active") continue;
      other.state = "retiring";
      other.withdrawAtMs = nowMs + this.timings.tokenTtlMs + this.timings.clockSkewMs;
    }
    next.state = "active";
    return true;
  }

  /** A publication that failed: the key is forgotten (a new one is made next time). */
  abandon(kid: string): void {
    if (this.keys.get(kid)?.state === "pending") this.keys.delete(kid);
  }

  /** The key that signs now; undefined before the first key is published. */
  signingKey(): RingKey<P> | undefined {
    for (const key of this.keys.values()) if (key.state === "active") return key;
    return undefined;
  }

  /** A token signed now expires at this time (ms): never after its key's `notAfterMs`. */
  tokenExpiryMs(key: RingKey<P>, nowMs: number): number {
    return Math.min(nowMs + this.timings.tokenTtlMs, key.notAfterMs - this.timings.clockSkewMs);
  }

  /** Whether a new key should be made and published now. */
  needsRotation(nowMs: number): boolean {
    let active: RingKey<P> | undefined;
    for (const key of this.keys.values()) {
      if (key.state === "pending") return false;
      if (key.state === "active") active = key;
    }
    return active === undefined || nowMs >= active.createdAtMs + this.timings.rotationIntervalMs;
  }

  /** Retiring keys whose every token has expired: withdraw them, then call `withdrawn`. */
  withdrawable(nowMs: number): string[] {
    const due: string[] = [];
    for (const key of this.keys.values()) {
      if (key.state === "retiring" && key.withdrawAtMs !== undefined && key.withdrawAtMs <= nowMs)
        due.push(key.kid);
    }
    return due;
  }

  withdrawn(kid: string): void {
    if (this.keys.get(kid)?.state === "retiring") this.keys.delete(kid);
  }

  /** Keys this replica keeps published (announced, active and retiring), for re-publication checks. */
  publishedKeys(): RingKey<P>[] {
    return [...this.keys.values()].filter((k) => k.state !== "pending" || k.publishedAtMs !== undefined);
  }

  get(kid: string): RingKey<P> | undefined {
    return this.keys.get(kid);
  }
}
