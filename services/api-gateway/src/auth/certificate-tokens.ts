// A client certificate's CN as the user through the gateway. etcd takes the CN of a verified
// client certificate as the user of a call that carries no token (--client-cert-auth); the
// gateway terminates the client's TLS, so members see only the gateway's certificate. Here the
// gateway, which verified the client's certificate itself, asks services/auth for a token naming
// that CN (services/auth signs it only for a gateway whose own certificate it trusts, and
// members verify it as any of its tokens) and sends the call on with it. A client cannot choose
// the name: it is read from the certificate the gateway's TLS verified, never from metadata, and
// a call that brings its own token keeps it (etcd: a token wins over the certificate).
import { etcdClaims, unverifiedExpiryMs } from "@etcd-ts/api";

/** Asks services/auth for a token for a CN: the token, or why there is none. */
export type CommonNameTokenSource = (commonName: string) => Promise<{ token: string } | { error: string }>;

interface Held {
  /** undefined: none could be had (the call goes on without one, a member decides). */
  readonly token: string | undefined;
  readonly refreshAtMs: number;
  /** The token's `revision` claim: the auth store's revision it was signed at. */
  readonly revision: number;
}

/** How long a failed ask (auth disabled, service down, gateway not trusted) is remembered. */
const FAILED_ASK_MS = 1_000;
const MAX_HELD = 10_000;

export class CertificateTokens {
  private readonly held = new Map<string, Held>();
  private readonly asking = new Map<string, Promise<string | undefined>>();
  /** The newest auth revision the gateway has seen (probes, events): older tokens are old. */
  private revisionSeen = 0;

  constructor(
    private readonly source: CommonNameTokenSource,
    /** Called when an ask fails (the gateway logs it); at most once per CN per second. */
    private readonly failed: (commonName: string, error: string) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The token for `commonName`: synchronous while one is held and not past half its life, else
   * one ask shared by every call for that CN meanwhile. undefined: none to be had now.
   */
  tokenFor(commonName: string): string | undefined | Promise<string | undefined> {
    const held = this.held.get(commonName);
    if (held !== undefined && held.refreshAtMs > this.now() && held.revision >= this.revisionSeen)
      return held.token;
    const asking = this.asking.get(commonName);
    if (asking !== undefined) return asking;
    const ask = this.source(commonName).then(
      (answer) => this.remember(commonName, answer),
      (err: unknown) => this.remember(commonName, { error: String(err) }),
    );
    this.asking.set(commonName, ask);
    return ask;
  }

  /**
   * The auth store reached `revision` (an AuthStatus probe, an auth event): a token signed
   * before it would be refused as old by every member, so the next call for its CN asks anew
   * (a watch, which the gateway cannot send again, then starts with a current one).
   */
  authRevisionSeen(revision: number): void {
    if (revision > this.revisionSeen) this.revisionSeen = revision;
  }

  /** A member found `token` old (an auth change since): the next call asks for a new one. */
  forget(commonName: string, token: string): void {
    if (this.held.get(commonName)?.token === token) this.held.delete(commonName);
  }

  private remember(commonName: string, answer: { token: string } | { error: string }): string | undefined {
    this.asking.delete(commonName);
    const now = this.now();
    let held: Held;
    if ("token" in answer) {
      // Renewed at half its life: a call never leaves with a token about to expire.
      const exp = unverifiedExpiryMs(answer.token) ?? now;
      let revision = 0;
      try {
        revision = etcdClaims(answer.token.split(".")[1] ?? "", now)?.revision ?? 0;
      } catch {
        // Not a JWT we can read: its members judge it; it is held until half its life.
      }
      // A token asked for after a revision was seen is as new as the auth service could make
      // it (its read is linearizable): held as current for that revision, never asked in a loop.
      held = {
        token: answer.token,
        refreshAtMs: now + Math.max(0, exp - now) / 2,
        revision: Math.max(revision, this.revisionSeen),
      };
    } else {
      this.failed(commonName, answer.error);
      held = { token: undefined, refreshAtMs: now + FAILED_ASK_MS, revision: Number.POSITIVE_INFINITY };
    }
    this.held.delete(commonName);
    if (this.held.size >= MAX_HELD) this.held.delete(this.held.keys().next().value!);
    this.held.set(commonName, held);
    return held.token;
  }
}
