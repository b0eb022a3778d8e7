// The gateway's early refusal of bad tokens: a JWT that names a published key (services/auth's)
// is verified here with the same code members use (@etcd-ts/api's VerificationKeys), and a bad
// or expired one is answered "etcdserver: invalid auth token" without costing a member a call.
// Never more rights than a member gives: a token that passes still goes to a member, which
// checks it and every permission again. Opaque tokens (`--auth-token simple`) and members' own
// kid-less JWTs are the members' to judge, except a kid-less JWT whose `exp` has passed, which
// every member refuses whatever its key (etcd checks `exp`; a simple-token member knows no JWT).
import {
  EtcdError,
  jwsKeyId,
  type TokenClaims,
  unverifiedExpiryMs,
  type VerificationKeys,
} from "@etcd-ts/api";
import type { TraceContext } from "@etcd-ts/telemetry";
import type grpc from "@grpc/grpc-js";

/**
 * Methods that neither etcd 3.4 nor our members read a token on (they answer a forged or
 * expired one as they answer none): the gateway lets their tokens through unjudged, so a
 * client sees what a member would show it. LeaseKeepAlive, a stream, is never judged either.
 */
export const TOKEN_UNREAD_METHODS: ReadonlySet<string> = new Set([
  "/etcdserverpb.Maintenance/Status",
  "/etcdserverpb.Maintenance/MoveLeader",
  "/etcdserverpb.Cluster/MemberList",
  "/etcdserverpb.Lease/LeaseTimeToLive",
  "/etcdserverpb.Lease/LeaseLeases",
]);

/** etcd 3.4's authMaintenanceServer methods: they refuse in its auth package's words, code 2. */
const AUTH_PACKAGE_WORDED_METHODS: ReadonlySet<string> = new Set([
  "/etcdserverpb.Maintenance/Defragment",
  "/etcdserverpb.Maintenance/Hash",
  "/etcdserverpb.Maintenance/HashKV",
  "/etcdserverpb.Maintenance/Snapshot",
]);

/** The gateway's refusal of a bad token on `path`, worded as a member (and etcd 3.4) words it there. */
export function tokenRefusal(path: string): EtcdError {
  return new EtcdError(
    AUTH_PACKAGE_WORDED_METHODS.has(path) ? "AuthPackageInvalidAuthToken" : "InvalidAuthToken",
  );
}

/** Why the gateway refused a token (the metric's and the log line's `reason`). */
export type TokenRefusal = "expired" | "bad signature or claims" | "unknown key" | "key expired";

export type TokenVerdict =
  /** No token, or one only a member can judge. */
  | { readonly pass: true; readonly claims?: undefined }
  /** A JWT verified with a published key: the member checks it again. */
  | { readonly pass: true; readonly claims: TokenClaims }
  | { readonly pass: false; readonly reason: TokenRefusal; readonly claims?: undefined };

const PASS: TokenVerdict = { pass: true };

/** The caller's token as a member reads it (etcd's "token" metadata, else "authorization"). */
export function tokenOf(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get("token")[0] ?? metadata.get("authorization")[0];
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : value.toString();
}

/**
 * The verdict on `token` with the keys held, or `{ unknownKey }` when it names a key not held
 * (the caller lists the keys again and asks once more, `keysFresh`, before refusing).
 */
export function judgeToken(
  keys: VerificationKeys,
  token: string,
  nowMs: number,
  keysFresh: boolean,
): TokenVerdict | { readonly unknownKey: string } {
  const kid = jwsKeyId(token);
  if (kid === undefined) {
    const exp = unverifiedExpiryMs(token);
    return exp !== undefined && exp <= nowMs ? { pass: false, reason: "expired" } : PASS;
  }
  const checked = keys.check(token, kid, nowMs);
  if ("info" in checked) return { pass: true, claims: checked.info };
  if ("unknownKey" in checked) return keysFresh ? { pass: false, reason: "unknown key" } : checked;
  const exp = unverifiedExpiryMs(token);
  if (exp !== undefined && exp <= nowMs) return { pass: false, reason: "expired" };
  const notAfter = keys.list().find((k) => k.kid === kid)?.notAfterMs;
  if (notAfter !== undefined && Number(notAfter) <= nowMs) return { pass: false, reason: "key expired" };
  return { pass: false, reason: "bad signature or claims" };
}

/** Where the gate takes its keys from (PublishedKeyList), and how it asks for a newer list. */
export interface KeySource {
  readonly keys: VerificationKeys;
  /** A list read after this call; rejects when none could be read. */
  refetch(): Promise<void>;
}

/** A refusal as the gateway reports it (metric, log line). */
export interface TokenRefusalReport {
  method: string;
  reason: TokenRefusal;
  /** The client's address. */
  client?: string | undefined;
  trace?: TraceContext | undefined;
}

export class TokenGate {
  constructor(
    private readonly source: KeySource,
    /** Called once per refused call (the gateway counts and logs it). */
    private readonly report: (refusal: TokenRefusalReport) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The verdict on a call's token (tokenOf): synchronous unless the token names a key not held,
   * which costs one list of the published keys (shared by every call waiting for one). When no
   * member answers that list, the token passes: its member decides, as it would without a
   * gateway check.
   */
  judge(
    token: string | undefined,
    call: Omit<TokenRefusalReport, "reason">,
  ): TokenVerdict | Promise<TokenVerdict> {
    if (token === undefined) return PASS;
    const verdict = judgeToken(this.source.keys, token, this.now(), false);
    if (!("unknownKey" in verdict)) return this.reported(verdict, call);
    return this.source.refetch().then(
      () => this.reported(judgeToken(this.source.keys, token, this.now(), true) as TokenVerdict, call),
      () => PASS,
    );
  }

  private reported(verdict: TokenVerdict, call: Omit<TokenRefusalReport, "reason">): TokenVerdict {
    if (!verdict.pass) this.report({ ...call, reason: verdict.reason });
    return verdict;
  }
}
