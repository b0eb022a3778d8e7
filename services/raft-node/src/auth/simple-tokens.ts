// etcd's simple tokens (auth/simple_token.go): an opaque random string plus "." and the Raft
// index of the Authenticate entry that created it. Every member records the token when it
// applies that entry, so any member accepts it. A token lives `ttlMs` since it was last used
// (etcd's TTL keeper resets it on every use); deleting a user or changing its password drops its
// tokens, and disabling auth drops them all. The clock is injected: this file does no I/O.
import { randomInt } from "node:crypto";

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LENGTH = 16;

/** etcd's genTokenPrefix: 16 random letters, chosen by the proposer. */
export function simpleTokenPrefix(): string {
  let out = "";
  for (let i = 0; i < PREFIX_LENGTH; i++) out += LETTERS[randomInt(LETTERS.length)];
  return out;
}

export function simpleToken(prefix: string, index: number): string {
  return `${prefix}.${index}`;
}

export class SimpleTokens {
  private readonly tokens = new Map<string, { username: string; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  assign(token: string, username: string): void {
    this.tokens.set(token, { username, expiresAt: this.now() + this.ttlMs });
  }

  /** The token's user, refreshing its TTL; undefined if unknown or expired. */
  userOf(token: string): string | undefined {
    const entry = this.tokens.get(token);
    if (entry === undefined) return undefined;
    const now = this.now();
    if (entry.expiresAt <= now) {
      this.tokens.delete(token);
      return undefined;
    }
    entry.expiresAt = now + this.ttlMs;
    return entry.username;
  }

  invalidateUser(username: string): void {
    for (const [token, entry] of this.tokens) if (entry.username === username) this.tokens.delete(token);
  }

  clear(): void {
    this.tokens.clear();
  }

  /** Drops expired tokens (called from the member's tick, so the table stays bounded). */
  expire(): void {
    const now = this.now();
    for (const [token, entry] of this.tokens) if (entry.expiresAt <= now) this.tokens.delete(token);
  }

  get size(): number {
    return this.tokens.size;
  }
}
