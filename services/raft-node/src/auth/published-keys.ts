// The JWT verification keys services/auth publishes through Raft (proto/internal/auth-backend.proto):
// public keys only, by key ID, each with the time after which members stop trusting it. Every
// member holds the same set (changed only by applied entries, kept in the auth column under
// "k/<kid>"), so a token signed by any auth service replica verifies on any member with no call
// to the auth service. Tokens carry etcd's claims (`username`, `revision`, `exp`) and name their
// key in the JWS header's `kid`; members' own --auth-token jwt tokens have no `kid`.
//
// Not part of etcd's auth store: publishing a key does not bump the auth revision (that would
// make every token already issued "old"), and etcd's snapshot buckets leave these rows out.
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { authBackend } from "@etcd-ts/api";
import type { AuthInfo, AuthRow } from "./auth-store.js";
import { etcdClaims, isJwsAlgorithm, verifyJws } from "./jwt-tokens.js";

export const SIGNING_KEY_PREFIX = "k/";

interface PublishedKey {
  record: authBackend.SigningKey;
  key: KeyObject;
  /** The JWK's `alg`: a token naming another algorithm is refused (no algorithm confusion). */
  alg: string;
}

/** What a token's check found: who it names, a bad token, or a key this member does not know. */
export type KeyedTokenCheck = { info: AuthInfo } | { invalid: true } | { unknownKey: string };

/** The `kid` of a JWS whose header names one; undefined for simple tokens and kid-less JWTs. */
export function jwsKeyId(token: string): string | undefined {
  // Every JWS header is base64url of '{"...': it starts with "ey". Most simple tokens stop here,
  // without a failed parse on each request.
  if (!token.startsWith("ey")) return undefined;
  const dot = token.indexOf(".");
  // A simple token is "<16 letters>.<index>": its first part is not a JSON header.
  if (dot <= 0 || token.indexOf(".", dot + 1) < 0) return undefined;
  try {
    const head = JSON.parse(Buffer.from(token.slice(0, dot), "base64url").toString()) as { kid?: unknown };
    return typeof head.kid === "string" && head.kid !== "" ? head.kid : undefined;
  } catch {
    return undefined;
  }
}

/** Tokens verified recently, so a client sending the same token on every call costs one lookup. */
const VERIFIED_CACHE_ENTRIES = 10_000;

interface VerifiedToken {
  kid: string;
  info: AuthInfo;
  /** The token's `exp` in ms (Infinity when it has none). */
  expMs: number;
}

export class PublishedKeys {
  private readonly keys = new Map<string, PublishedKey>();
  private readonly verified = new Map<string, VerifiedToken>();

  get size(): number {
    return this.keys.size;
  }

  list(): authBackend.SigningKey[] {
    return [...this.keys.values()].map((k) => k.record).sort((a, b) => a.kid.localeCompare(b.kid));
  }

  /**
   * Checks a proposed key before it is proposed (the apply path must not refuse what every
   * member would refuse alike, but a bad JWK is better refused to its sender).
   */
  static validate(record: authBackend.SigningKey): void {
    parseKey(record);
  }

  /** Apply: adds or replaces a key. A record that does not parse is skipped on every member. */
  put(record: authBackend.SigningKey): AuthRow[] {
    let parsed: PublishedKey;
    try {
      parsed = parseKey(record);
    } catch {
      return [];
    }
    this.keys.set(record.kid, parsed);
    this.verified.clear();
    return [{ key: rowKey(record.kid), value: Buffer.from(authBackend.SigningKey.encode(record).finish()) }];
  }

  /** Apply: withdraws a key (nothing to do for an unknown one). */
  delete(kid: string): AuthRow[] {
    if (!this.keys.delete(kid)) return [];
    this.verified.clear();
    return [{ key: rowKey(kid), value: undefined }];
  }

  /** Rebuilds the set from the auth column's rows (the others are the auth store's). */
  restore(rows: Iterable<{ key: Buffer; value: Buffer }>): void {
    this.keys.clear();
    this.verified.clear();
    for (const { key, value } of rows) {
      if (!key.toString("latin1").startsWith(SIGNING_KEY_PREFIX)) continue;
      const record = authBackend.SigningKey.decode(value);
      try {
        this.keys.set(record.kid, parseKey(record));
      } catch {
        // Was refused when applied too (put skips it): nothing to restore.
      }
    }
  }

  /** Verifies a token whose header names `kid` (jwsKeyId) at `nowMs`. */
  check(token: string, kid: string, nowMs: number): KeyedTokenCheck {
    const published = this.keys.get(kid);
    if (published === undefined) return { unknownKey: kid };
    if (Number(published.record.notAfterMs) <= nowMs) return { invalid: true };
    // The key (still published: withdrawal or replacement drops its entries) vouched for it.
    const hit = this.verified.get(token);
    if (hit !== undefined && hit.kid === kid && hit.expMs > nowMs) return { info: hit.info };
    const checked = this.verify(token, published, nowMs);
    if ("info" in checked) {
      if (this.verified.size >= VERIFIED_CACHE_ENTRIES) this.verified.clear();
      this.verified.set(token, { kid, info: checked.info, expMs: expiryMs(token) });
    }
    return checked;
  }

  private verify(token: string, published: PublishedKey, nowMs: number): KeyedTokenCheck {
    const parts = token.split(".");
    if (parts.length !== 3) return { invalid: true };
    const [header, claims, signature] = parts as [string, string, string];
    try {
      const head = JSON.parse(Buffer.from(header, "base64url").toString()) as { alg?: unknown };
      if (head.alg !== published.alg) return { invalid: true };
      const signed = `${header}.${claims}`;
      if (!verifyJws(published.alg, published.key, signed, Buffer.from(signature, "base64url")))
        return { invalid: true };
      const info = etcdClaims(claims, nowMs);
      return info === undefined ? { invalid: true } : { info };
    } catch {
      return { invalid: true };
    }
  }
}

/** A verified token's `exp` in ms (its claims parsed already once: this cannot throw). */
function expiryMs(token: string): number {
  const claims = token.slice(token.indexOf(".") + 1, token.lastIndexOf("."));
  const exp = (JSON.parse(Buffer.from(claims, "base64url").toString()) as { exp?: unknown }).exp;
  return typeof exp === "number" ? exp * 1000 : Number.POSITIVE_INFINITY;
}

function parseKey(record: authBackend.SigningKey): PublishedKey {
  if (record.kid === "") throw new Error("signing key without a kid");
  const jwk = JSON.parse(record.jwk) as JsonWebKey & { alg?: unknown; d?: unknown };
  // A private member here would mean a private key was published to every member: refuse it.
  if (jwk.d !== undefined) throw new Error("signing key carries private key material");
  if (!isJwsAlgorithm(jwk.alg)) throw new Error(`signing key with unsupported alg ${String(jwk.alg)}`);
  const key = createPublicKey({ key: jwk, format: "jwk" });
  return { record, key, alg: jwk.alg };
}

function rowKey(kid: string): Buffer {
  return Buffer.from(`${SIGNING_KEY_PREFIX}${kid}`);
}
