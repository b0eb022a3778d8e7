// Authenticate, as etcd answers it, done by the auth service: the failed-login budgets first
// (nothing is spent on a caller over budget), then the user's hash from a member (after a
// linearizable read there), bcrypt on libuv's pool, and a JWT with etcd's claims signed by the
// active key. The token's `revision` is the auth revision the hash was read at, so a password
// or role change committed after the check makes the token "old" on every member, as in etcd.
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import { type TraceContext, traced } from "@etcd-ts/telemetry";
import bcrypt from "bcrypt";
import type { Logger } from "pino";
import type { SigningKeys } from "../keys/signing-keys.js";
import type { MemberBackend } from "../members/member-backend.js";
import { isMemberError } from "../members/member-backend.js";
import type { FailedLoginLimiter } from "../rate-limit/failed-login-limiter.js";
import type { VerifiedPasswords } from "./verified-passwords.js";

export type AuthenticateResult = "ok" | "failed" | "limited" | "error";

export interface AuthenticatorParts {
  backend: MemberBackend;
  keys: SigningKeys;
  byUser: FailedLoginLimiter;
  byAddress: FailedLoginLimiter;
  logger: Logger;
  /** A bcrypt hash of nothing anyone knows, compared for unknown users (same cost, same time). */
  decoyHash: string;
  /** Recent successful verifications (skips bcrypt for the same user, hash and password). */
  verified: VerifiedPasswords;
  observe?: (result: AuthenticateResult, seconds: number) => void;
  /** Told every failure and success, for the other replicas' budgets (rate-limit/shared-budgets.ts). */
  decided?: (outcome: { user: string; client: string; ok: boolean }) => void;
  now?: () => number;
}

export class Authenticator {
  private readonly now: () => number;

  constructor(private readonly parts: AuthenticatorParts) {
    this.now = parts.now ?? Date.now;
  }

  async authenticate(
    name: string,
    password: string,
    client: string,
    trace?: TraceContext,
  ): Promise<{ token: string; header: etcdserverpb.ResponseHeader | undefined }> {
    const started = performance.now();
    const { byUser, byAddress, logger } = this.parts;
    let result: AuthenticateResult = "error";
    try {
      const now = this.now();
      const wait = Math.max(byUser.retryAfterMs(name, now), byAddress.retryAfterMs(client, now));
      if (wait > 0) {
        result = "limited";
        logger.warn(
          { user: name, client, retryAfterMs: wait },
          "authentication refused: too many failed attempts",
        );
        throw new EtcdError("TooManyFailedLogins");
      }
      let hash: string;
      let revision = 0;
      let header: etcdserverpb.ResponseHeader | undefined;
      let known = true;
      try {
        const c = await traced("auth.credential", { "etcd.user": name }, trace, (_span, context) =>
          this.parts.backend.credential(name, context),
        );
        hash = c.passwordHash.toString("latin1");
        revision = Number(c.authRevision);
        header = c.header;
      } catch (err) {
        // Unknown or password-less user: compare anyway, so timing does not tell which names exist.
        if (!isMemberError(err) || err.details !== new EtcdError("AuthFailed").details) throw err;
        hash = this.parts.decoyHash;
        known = false;
      }
      const matches = await traced("auth.password_check", {}, trace, async (span) => {
        const remembered = known && this.parts.verified.matches(name, hash, password, this.now());
        span?.setAttribute("auth.verification_reused", remembered);
        return remembered || (await bcrypt.compare(password, hash));
      });
      if (!matches || !known) {
        result = "failed";
        byUser.failed(name, this.now());
        byAddress.failed(client, this.now());
        this.parts.decided?.({ user: name, client, ok: false });
        logger.warn(
          { user: name, client, reason: known ? "wrong password" : "no such user or no password" },
          "authentication failed, invalid user ID or password",
        );
        throw new EtcdError("AuthFailed");
      }
      byUser.succeeded(name);
      this.parts.decided?.({ user: name, client, ok: true });
      this.parts.verified.remember(name, hash, password, this.now());
      const token = await traced("auth.sign", {}, trace, () => this.parts.keys.sign(name, revision));
      result = "ok";
      return { token, header };
    } finally {
      this.parts.observe?.(result, (performance.now() - started) / 1000);
    }
  }

  /** A login another replica decided: counted here as if this replica had decided it. */
  heard(outcome: { user: string; client: string; ok: boolean }): void {
    const { byUser, byAddress } = this.parts;
    if (outcome.ok) {
      byUser.succeeded(outcome.user);
      return;
    }
    const now = this.now();
    byUser.failed(outcome.user, now);
    byAddress.failed(outcome.client, now);
  }
}
