// The JWT verification keys services/auth publishes (proto/internal/auth-backend.proto): public
// keys only, by key ID, each with the time after which nobody trusts it. Members hold them
// through Raft (raft-node's PublishedKeys); gateways hold a copy listed from the members. Both
// check a token with this one class, so a gateway refuses exactly the tokens a member refuses.
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import type { SigningKey } from "../gen/internal/auth-backend.js";
import { etcdClaims, isJwsAlgorithm, type TokenClaims, unverifiedExpiryMs, verifyJws } from "./jws.js";

interface ParsedKey {
  record: SigningKey;
  key: KeyObject;
  /** The JWK's `alg`: a token naming another algorithm is refused (no algorithm confusion). */
  alg: string;
}

/** What a token's check found: who it names, a bad token, or a key not known here. */
export type KeyedTokenCheck = { info: TokenClaims } | { invalid: true } | { unknownKey: string };

/** Tokens verified recently, so a client sending the same token on every call costs one lookup. */
const VERIFIED_CACHE_ENTRIES = 10_000;

interface VerifiedToken {
  kid: string;
  info: TokenClaims;
  /** The token's `exp` in ms (Infinity when it has none). */
  expMs: number;
}

export class VerificationKeys {
  private readonly keys = new Map<string, ParsedKey>();
  private readonly verified = new Map<string, VerifiedToken>();

  get size(): number {
    return this.keys.size;
  }

  has(kid: string): boolean {
    return this.keys.has(kid);
  }

  list(): SigningKey[] {
    return [...this.keys.values()].map((k) => k.record).sort((a, b) => a.kid.localeCompare(b.kid));
  }

  /** Throws when `record` is not a usable public verification key (private material, unknown alg). */
  static validate(record: SigningKey): void {
    parseKey(record);
  }

  /** Adds or replaces a key; false (and nothing changes) when the record does not parse. */
  put(record: SigningKey): boolean {
    let parsed: ParsedKey;
    try {
      parsed = parseKey(record);
    } catch {
      return false;
    }
    this.keys.set(record.kid, parsed);
    this.verified.clear();
    return true;
  }

  /** Withdraws a key; false when it was not known. */
  delete(kid: string): boolean {
    if (!this.keys.delete(kid)) return false;
    this.verified.clear();
    return true;
  }

  /** Replaces the whole set (records that do not parse are skipped, as put skips them). */
  replaceAll(records: Iterable<SigningKey>): void {
    this.keys.clear();
    this.verified.clear();
    for (const record of records) {
      try {
        this.keys.set(record.kid, parseKey(record));
      } catch {
        // Refused when published too: nothing to hold.
      }
    }
  }

  /** Verifies a token whose header names `kid` (jwsKeyId) at `nowMs`. */
  check(token: string, kid: string, nowMs: number): KeyedTokenCheck {
    const published = this.keys.get(kid);
    if (published === undefined) return { unknownKey: kid };
    if (Number(published.record.notAfterMs) <= nowMs) return { invalid: true };
    // The key (still held: withdrawal or replacement drops its entries) vouched for it.
    const hit = this.verified.get(token);
    if (hit !== undefined && hit.kid === kid && hit.expMs > nowMs) return { info: hit.info };
    const checked = verifyWith(token, published, nowMs);
    if ("info" in checked) {
      if (this.verified.size >= VERIFIED_CACHE_ENTRIES) this.verified.clear();
      // Its claims parsed already, so the expiry is there to read (Infinity when it has none).
      const expMs = unverifiedExpiryMs(token) ?? Number.POSITIVE_INFINITY;
      this.verified.set(token, { kid, info: checked.info, expMs });
    }
    return checked;
  }
}

function verifyWith(token: string, published: ParsedKey, nowMs: number): KeyedTokenCheck {
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

function parseKey(record: SigningKey): ParsedKey {
  if (record.kid === "") throw new Error("signing key without a kid");
  const jwk = JSON.parse(record.jwk) as JsonWebKey & { alg?: unknown; d?: unknown };
  // A private member here would mean a private key was published to everyone: refuse it.
  if (jwk.d !== undefined) throw new Error("signing key carries private key material");
  if (!isJwsAlgorithm(jwk.alg)) throw new Error(`signing key with unsupported alg ${String(jwk.alg)}`);
  const key = createPublicKey({ key: jwk, format: "jwk" });
  return { record, key, alg: jwk.alg };
}
