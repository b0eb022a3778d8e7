// Passwords this process verified with bcrypt recently, so a user who logs in again with the same
// password (a client reconnecting, many instances sharing one account) costs a keyed hash instead
// of ~70 ms of bcrypt. Only successes are remembered: a wrong password always pays bcrypt.
//
// An entry is bound to the user's current bcrypt hash, which the caller re-reads from a member on
// every login: a password change or a deleted user is never answered from here. What is kept is
// HMAC-SHA256(per-process random key, password), never the password. Someone who can read this
// process's memory gets those and the key, so could test guesses at HMAC speed for users seen
// within the TTL; but that reader already has the private signing keys (any token, root's
// included) and the plaintext of every login in flight, so the cache opens nothing new.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export interface VerifiedPasswordOptions {
  /** How long a verification is reused; 0 turns the cache off. */
  ttlMs: number;
  maxEntries: number;
}

interface Entry {
  hash: string;
  mac: Buffer;
  expiresAtMs: number;
}

export class VerifiedPasswords {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly options: VerifiedPasswordOptions,
    private readonly key: Buffer = randomBytes(32),
  ) {}

  /** Whether `password` was verified against this very `hash` for `user` within the TTL. */
  matches(user: string, hash: string, password: string, nowMs: number): boolean {
    const entry = this.entries.get(user);
    if (entry === undefined || entry.hash !== hash) return false;
    if (entry.expiresAtMs <= nowMs) {
      this.entries.delete(user);
      return false;
    }
    return timingSafeEqual(entry.mac, this.mac(user, password));
  }

  /** bcrypt said yes: remember it for the TTL. */
  remember(user: string, hash: string, password: string, nowMs: number): void {
    if (this.options.ttlMs <= 0) return;
    this.entries.delete(user);
    if (this.entries.size >= this.options.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(user, { hash, mac: this.mac(user, password), expiresAtMs: nowMs + this.options.ttlMs });
  }

  get size(): number {
    return this.entries.size;
  }

  private mac(user: string, password: string): Buffer {
    return createHmac("sha256", this.key).update(user).update("\0").update(password).digest();
  }
}
