// The JWT verification keys services/auth publishes through Raft (proto/internal/auth-backend.proto):
// public keys only, by key ID, each with the time after which members stop trusting it. Every
// member holds the same set (changed only by applied entries, kept in the auth column under
// "k/<kid>"), so a token signed by any auth service replica verifies on any member with no call
// to the auth service. Tokens carry etcd's claims (`username`, `revision`, `exp`) and name their
// key in the JWS header's `kid`; members' own --auth-token jwt tokens have no `kid`.
//
// Not part of etcd's auth store: publishing a key does not bump the auth revision (that would
// make every token already issued "old"), and etcd's snapshot buckets leave these rows out.
import { authBackend, type KeyedTokenCheck, VerificationKeys } from "@etcd-ts/api";
import type { AuthRow } from "./auth-store.js";

export const SIGNING_KEY_PREFIX = "k/";

export type { KeyedTokenCheck };

/** The member's set: @etcd-ts/api's VerificationKeys, kept in the auth column as it changes. */
export class PublishedKeys {
  private readonly keys = new VerificationKeys();

  get size(): number {
    return this.keys.size;
  }

  list(): authBackend.SigningKey[] {
    return this.keys.list();
  }

  /**
   * Checks a proposed key before it is proposed (the apply path must not refuse what every
   * member would refuse alike, but a bad JWK is better refused to its sender).
   */
  static validate(record: authBackend.SigningKey): void {
    VerificationKeys.validate(record);
  }

  /** Apply: adds or replaces a key. A record that does not parse is skipped on every member. */
  put(record: authBackend.SigningKey): AuthRow[] {
    if (!this.keys.put(record)) return [];
    return [{ key: rowKey(record.kid), value: Buffer.from(authBackend.SigningKey.encode(record).finish()) }];
  }

  /** Apply: withdraws a key (nothing to do for an unknown one). */
  delete(kid: string): AuthRow[] {
    return this.keys.delete(kid) ? [{ key: rowKey(kid), value: undefined }] : [];
  }

  /** Rebuilds the set from the auth column's rows (the others are the auth store's). */
  restore(rows: Iterable<{ key: Buffer; value: Buffer }>): void {
    const records: authBackend.SigningKey[] = [];
    for (const { key, value } of rows) {
      if (key.toString("latin1").startsWith(SIGNING_KEY_PREFIX))
        records.push(authBackend.SigningKey.decode(value));
    }
    this.keys.replaceAll(records);
  }

  /** Verifies a token whose header names `kid` (jwsKeyId) at `nowMs`. */
  check(token: string, kid: string, nowMs: number): KeyedTokenCheck {
    return this.keys.check(token, kid, nowMs);
  }
}

function rowKey(kid: string): Buffer {
  return Buffer.from(`${SIGNING_KEY_PREFIX}${kid}`);
}
