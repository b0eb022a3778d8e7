// The I/O around KeyRing: makes keys (jose), publishes them to the members through Raft,
// withdraws them when their tokens have expired, signs tokens with the active one, and keeps
// the cluster's whole published set (every replica's keys) for the JWKS.
import type { authBackend } from "@etcd-ts/api";
import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from "jose";
import type { Logger } from "pino";
import type { MemberBackend } from "../members/member-backend.js";
import { KeyRing, type KeyTimings } from "./key-ring.js";

export interface SigningKeysOptions extends KeyTimings {
  /** JWS algorithm: one etcd's --auth-token jwt knows (ES256 by default: fast to sign and verify). */
  alg: string;
  /** How often the published set is re-read (other replicas' keys, JWKS). */
  refreshIntervalMs: number;
}

export interface PublishedJwk {
  kid: string;
  alg: string;
  use: "sig";
  [member: string]: unknown;
}

/** Thrown by sign() while no key is published yet (members unreachable since start). */
export class NoSigningKeyError extends Error {
  override name = "NoSigningKeyError";
}

export class SigningKeys {
  readonly ring: KeyRing<CryptoKey>;
  private published: authBackend.SigningKey[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastRefreshMs = Number.NEGATIVE_INFINITY;
  rotations = 0;

  constructor(
    private readonly backend: MemberBackend,
    private readonly options: SigningKeysOptions,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.ring = new KeyRing<CryptoKey>(options);
  }

  /** Publishes the first key (retrying until the members take it), then maintains the ring. */
  start(tickMs: number): void {
    const tick = () => {
      this.running ??= this.maintain().finally(() => {
        this.running = undefined;
      });
    };
    tick();
    this.timer = setInterval(tick, tickMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** The first key is published (or failed to be, reported by the log). */
  async ready(): Promise<void> {
    await this.running;
  }

  /** One maintenance round: rotate when due, withdraw expired keys, re-read the published set. */
  async maintain(): Promise<void> {
    const now = this.now();
    try {
      this.promoteDue();
      if (this.ring.needsRotation(now)) await this.rotate();
      for (const kid of this.ring.withdrawable(this.now())) {
        this.published = (await this.backend.deleteSigningKey(kid)).keys;
        this.ring.withdrawn(kid);
        this.logger.info({ kid }, "signing key withdrawn: its last token has expired");
      }
      if (this.now() - this.lastRefreshMs >= this.options.refreshIntervalMs) await this.refresh();
    } catch (err) {
      this.logger.warn(
        { err: String((err as Error).message ?? err) },
        "signing key maintenance failed; retrying",
      );
    }
  }

  /** Makes a key, publishes it, and signs with it once the members have it. */
  async rotate(): Promise<void> {
    const createdAtMs = this.now();
    const { privateKey, publicKey } = await generateKeyPair(this.options.alg);
    const jwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(jwk);
    const publicJwk: PublishedJwk = { ...jwk, kid, alg: this.options.alg, use: "sig" };
    const notAfterMs = this.ring.notAfterFor(createdAtMs);
    this.ring.addPending({ kid, privateKey, publicJwk, createdAtMs, notAfterMs });
    try {
      this.published = (await this.backend.putSigningKey(this.record(kid))).keys;
    } catch (err) {
      this.ring.abandon(kid);
      throw err;
    }
    this.ring.published(kid, this.now());
    this.logger.info({ kid, notAfter: new Date(notAfterMs).toISOString() }, "signing key published");
    this.promoteDue();
  }

  private promoteDue(): void {
    const previous = this.ring.signingKey()?.kid;
    if (!this.ring.promote(this.now())) return;
    this.rotations += 1;
    this.logger.info({ kid: this.ring.signingKey()?.kid, previous }, "signing key rotated");
  }

  /** Re-reads the published set; re-publishes own keys the store lost; withdraws dead keys. */
  async refresh(): Promise<void> {
    let keys = (await this.backend.listSigningKeys()).keys;
    const now = this.now();
    const listed = new Set(keys.map((k) => k.kid));
    for (const own of this.ring.publishedKeys()) {
      // A restore from an etcd snapshot (which carries no keys) lost it: put it back.
      if (!listed.has(own.kid)) keys = (await this.backend.putSigningKey(this.record(own.kid))).keys;
    }
    for (const key of keys) {
      // Keys of a replica that died: expired for members already; tidy the store.
      if (Number(key.notAfterMs) + this.options.clockSkewMs < now && this.ring.get(key.kid) === undefined)
        keys = (await this.backend.deleteSigningKey(key.kid)).keys;
    }
    this.published = keys;
    this.lastRefreshMs = now;
  }

  /** A token with etcd's claims, signed by the active key. */
  async sign(username: string, revision: number): Promise<string> {
    this.promoteDue();
    const key = this.ring.signingKey();
    if (key === undefined) throw new NoSigningKeyError("no signing key published yet");
    const exp = Math.floor(this.ring.tokenExpiryMs(key, this.now()) / 1000);
    return new SignJWT({ username, revision })
      .setProtectedHeader({ alg: this.options.alg, kid: key.kid, typ: "JWT" })
      .setExpirationTime(exp)
      .sign(key.privateKey);
  }

  /** Every published key that members still accept: the JWKS. */
  jwks(): { keys: PublishedJwk[] } {
    const now = this.now();
    return {
      keys: this.published
        .filter((k) => Number(k.notAfterMs) > now)
        .map((k) => JSON.parse(k.jwk) as PublishedJwk),
    };
  }

  private record(kid: string): authBackend.SigningKey {
    const key = this.ring.get(kid)!;
    return { kid, jwk: JSON.stringify(key.publicJwk), notAfterMs: BigInt(key.notAfterMs) };
  }
}
