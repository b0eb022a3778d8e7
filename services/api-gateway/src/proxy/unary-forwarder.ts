// Forwards one unary call to the member its route calls for, as raw bytes, retrying on
// another member when the failure allows it. The client sees the member's answer, or its
// error, exactly as the member sent them.

import { EtcdError, etcdserverpb, WireWriter } from "@etcd-ts/api";
import { eventTrace, type TraceContext, traceLogFields } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import {
  TOKEN_UNREAD_METHODS,
  type TokenGate,
  type TokenVerdict,
  tokenOf,
  tokenRefusal,
} from "../auth/token-gate.js";
import type { RangeCacheTicket } from "../cache/range-cache.js";
import type { RangeCacheFeed, RangeCaller } from "../cache/range-cache-feed.js";
import { ReadBarrier } from "../cache/read-barrier.js";
import {
  type MemberChannel,
  PARTS_MIN_BYTES,
  RANGE_PATH,
  type ResponseRelay,
  type UnaryResult,
} from "../cluster/member-channel.js";
import type { MemberDirectory } from "../cluster/member-directory.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import {
  endUpstream,
  passUnsampled,
  recordRoute,
  sampledParent,
  startUpstream,
} from "../observability/gateway-tracing.js";
import { judgeFailure, mayRetry, retryDelayMs } from "../routing/failure-policy.js";
import { type RoundRobin, selectMember, type Target } from "../routing/member-selection.js";
import { METHOD_BY_PATH, type MethodRoute, splitMethodPath } from "../routing/method-table.js";
import {
  classifyTxn,
  decodeAuthStatus,
  peekResponseRevision,
  rangeIsSerializable,
} from "../wire/etcd-messages.js";
import { AUTHENTICATE_PATH, type AuthServiceForwarder } from "./auth-service-forwarder.js";

/** Metadata a caller sets to address a per-member RPC to one member (hex ID). */
export const TARGET_MEMBER_METADATA = "gateway-member-id";

// Headers grpc-js sets itself on the upstream call, and the gateway's own routing header.
const NOT_FORWARDED = new Set(["user-agent", "host", ":authority", TARGET_MEMBER_METADATA]);

/**
 * Lets the caller abandon a forwarded call (its client went away). A plain flag and one
 * callback: an AbortController would allocate a DOMException on every abort.
 */
export class CallCancellation {
  cancelled = false;
  private cancelUpstream: (() => void) | undefined;

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.cancelUpstream?.();
  }

  track(cancelUpstream: (() => void) | undefined): void {
    this.cancelUpstream = cancelUpstream;
  }
}

export interface ForwarderOptions {
  /** Upper bound on attempts per call, the first included. */
  maxAttempts: number;
  /** Upper bound on time spent retrying when the caller set no deadline. */
  retryBudgetMs: number;
}

export type UnaryOutcome = UnaryResult;

/**
 * Where a call goes and whether it may be sent again. `smallAnswer`: its answer is known to be
 * small (the read barrier's probe), so it may share the member's Forward stream.
 */
export interface CallTarget {
  target: Target;
  idempotent: boolean;
  smallAnswer?: boolean;
}

/**
 * Calls whose success a client may take as "my write is in": reads through this gateway
 * must then not be answered from before it. Compact changes no key.
 */
const KEY_WRITES = new Set([
  "/etcdserverpb.KV/Put",
  "/etcdserverpb.KV/DeleteRange",
  "/etcdserverpb.Lease/LeaseRevoke",
  "/v3electionpb.Election/Campaign",
  "/v3electionpb.Election/Proclaim",
  "/v3electionpb.Election/Resign",
  "/v3lockpb.Lock/Lock",
  "/v3lockpb.Lock/Unlock",
]);

const SERIALIZABLE_RANGE = {
  target: { kind: "serializable", learners: true },
  idempotent: true,
} as const satisfies CallTarget;

const LINEARIZABLE_RANGE = {
  target: { kind: "linearizable" },
  idempotent: true,
} as const satisfies CallTarget;

const AUTH_ENABLE_PATH = "/etcdserverpb.Auth/AuthEnable";
const AUTH_STATUS_PATH = "/etcdserverpb.Auth/AuthStatus";
/** Auth calls that change nothing: every other Auth call may change who may read what. */
const AUTH_READS = new Set([
  AUTHENTICATE_PATH,
  AUTH_STATUS_PATH,
  "/etcdserverpb.Auth/UserGet",
  "/etcdserverpb.Auth/UserList",
  "/etcdserverpb.Auth/RoleGet",
  "/etcdserverpb.Auth/RoleList",
]);
const AUTH_OLD_REVISION = new EtcdError("AuthOldRevision").details;
const EMPTY = Buffer.alloc(0);
/** Failures after which a change may or may not have been applied (etcd's refusals change nothing). */
const UNKNOWN_OUTCOME: ReadonlySet<number> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
  grpc.status.ABORTED,
]);

/**
 * The read barrier's probe: a linearizable count of the single key "\0", as small an answer
 * as a linearizable read has. Sent to the leader, which confirms its ReadIndex itself (a
 * follower would ask the leader: one more hop), over the leader's Forward stream (a header and
 * a count come back): no HTTP/2 stream of its own to open, encode and answer at either end.
 */
const READ_BARRIER_PROBE = new WireWriter()
  .bytesField(1, new Uint8Array([0]))
  .varintField(9, true)
  .finish();
const LEADER_READ = {
  target: { kind: "leader" },
  idempotent: true,
  smallAnswer: true,
} as const satisfies CallTarget;
/** How long a linearizable read waits for the cache's watch to deliver its read revision. */
const WATCH_CATCH_UP_MS = 50;

function carriesAuth(metadata: grpc.Metadata | undefined): boolean {
  if (metadata === undefined) return false;
  return metadata.get("token").length > 0 || metadata.get("authorization").length > 0;
}

/**
 * The client's metadata as the member should see it. grpc-js overwrites user-agent on the
 * upstream call itself, so the common case (nothing else to strip) forwards the incoming
 * object as it is, without a copy on the hot path.
 */
export function forwardableMetadata(incoming: grpc.Metadata): grpc.Metadata {
  const map = incoming.getMap();
  let clean = true;
  for (const key in map) {
    if (key !== "user-agent" && (NOT_FORWARDED.has(key) || key.startsWith("grpc-"))) {
      clean = false;
      break;
    }
  }
  if (clean) return incoming;
  const out = new grpc.Metadata();
  for (const [key, value] of Object.entries(map)) {
    if (NOT_FORWARDED.has(key) || key.startsWith("grpc-")) continue;
    out.set(key, value);
  }
  return out;
}

/** The target a call needs, from its route and (for Range and Txn) a peek at its body. */
export function targetFor(
  route: MethodRoute,
  request: Uint8Array,
  metadata: grpc.Metadata | undefined,
): CallTarget {
  switch (route.route) {
    case "range":
      return rangeIsSerializable(request) ? SERIALIZABLE_RANGE : LINEARIZABLE_RANGE;
    case "txn": {
      const kind = classifyTxn(request);
      if (kind === "write") return { target: { kind: "leader" }, idempotent: false };
      if (kind === "serializable-read")
        return { target: { kind: "serializable", learners: false }, idempotent: true };
      return { target: { kind: "linearizable" }, idempotent: true };
    }
    case "read":
      return { target: { kind: "linearizable" }, idempotent: route.idempotent };
    case "per-member": {
      const named = metadata?.get(TARGET_MEMBER_METADATA)[0];
      if (typeof named === "string" && named !== "") {
        return {
          target: { kind: "member", id: named.toLowerCase().replace(/^0x/, "") },
          idempotent: route.idempotent,
        };
      }
      return { target: { kind: "leader" }, idempotent: route.idempotent };
    }
    default:
      return { target: { kind: "leader" }, idempotent: route.idempotent };
  }
}

export class UnaryForwarder {
  private readonly rr: RoundRobin = { next: 0 };
  private knownLeader: string | undefined;
  /** Calls waiting before a retry (backoff or refresh), woken when a new leader becomes known. */
  private readonly backingOff = new Set<() => void>();
  /** Linearizable reads answered from the cache share one leader round per batch. */
  private readonly readBarrier = new ReadBarrier(() => this.probeReadRevision());

  constructor(
    private readonly members: MemberDirectory,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly options: ForwarderOptions,
    private readonly rangeCache: RangeCacheFeed | undefined = undefined,
    /** Authenticate goes to services/auth when set; to a member (etcd's own) otherwise. */
    private readonly authService: AuthServiceForwarder | undefined = undefined,
    /** Refuses bad JWTs before any member sees them; absent: every token goes to a member. */
    private readonly tokenGate: TokenGate | undefined = undefined,
  ) {
    this.knownLeader = members.snapshot().leaderId;
    members.onChange((snapshot) => {
      if (snapshot.leaderId === this.knownLeader) return;
      this.knownLeader = snapshot.leaderId;
      if (snapshot.leaderId === undefined) return;
      for (const wake of [...this.backingOff]) wake();
    });
  }

  /**
   * Waits for `work` (a refresh) or `ms` (a backoff), whichever is given, but no longer than
   * until a leader other than `sawLeader` is known: a leader announced over NATS, or found by
   * another call's probe, is used at once. Returns at once if that already happened.
   */
  private waitUnlessNewLeader(
    sawLeader: string | undefined,
    wait: { ms: number } | { work: Promise<void> },
  ): Promise<void> {
    if (this.knownLeader !== undefined && this.knownLeader !== sawLeader) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.backingOff.delete(wake);
        resolve();
      };
      this.backingOff.add(wake);
      if ("ms" in wait) timer = setTimeout(wake, wait.ms);
      else wait.work.then(wake, wake);
    });
  }

  /**
   * A Range's cached answer for a call that carries no token (`header` reads the call's request
   * headers): what `forward` would answer from the cache, without its promises, cancellation and
   * metadata object. A serializable read's comes at once; a linearizable read's (its entry held)
   * as a promise, after its read barrier, resolving to undefined when the cache could not
   * answer after all: the caller then calls `forward` with `cacheTried`, so the read goes to a
   * member without a second barrier round. undefined: not cached, or the call needs `forward`
   * (a token to judge).
   */
  cachedRange(
    route: MethodRoute,
    request: Buffer,
    header: (name: string) => string | undefined,
  ): Buffer | Promise<Buffer | undefined> | undefined {
    if (this.rangeCache === undefined || route.route !== "range") return undefined;
    // A token is judged (and a caller's permissions checked) in `forward`.
    if (header("token") !== undefined || header("authorization") !== undefined) return undefined;
    const started = performance.now();
    let ticket: RangeCacheTicket | undefined;
    try {
      ticket = this.rangeCache.ticketFor(request, undefined);
    } catch {
      return undefined;
    }
    if (ticket === undefined) return undefined;
    if (!ticket.range.serializable) {
      // Not held: `forward` counts the miss and asks a member, with no barrier round.
      if (!this.rangeCache.cache.holds(ticket)) return undefined;
      return this.linearizableFromCache(ticket).then((cached) => {
        if (cached !== undefined)
          this.metrics.answered(route.method, "cache", grpc.status.OK, (performance.now() - started) / 1000);
        return cached;
      });
    }
    const cached = this.rangeCache.lookup(ticket, undefined);
    if (cached !== undefined)
      this.metrics.answered(route.method, "cache", grpc.status.OK, (performance.now() - started) / 1000);
    return cached;
  }

  /**
   * Sends `request` upstream until a member answers or retrying is no longer safe.
   * `cancellation` is cancelled when the client goes away. `trace`: the call's server span
   * context when tracing is on.
   * `clientAddress` (the caller's IP) reaches the auth service for its per-address budget.
   * `relay`: the client's call, when a large Range answer may go to it as it arrives (gRPC
   * clients; the JSON gateway converts whole answers): above the size the cache would take.
   * `cacheTried`: `cachedRange` already asked the cache for this linearizable read (and ran its
   * barrier): it goes to a member, and its answer is still offered to the cache.
   * `incoming`: the client's metadata, undefined when it sent none (a gRPC call of a client
   * without a token: no Metadata object made for it, nor forwarded).
   */
  async forward(
    route: MethodRoute,
    request: Buffer,
    incoming: grpc.Metadata | undefined,
    deadline: grpc.Deadline | undefined,
    cancellation: CallCancellation | undefined,
    trace?: TraceContext,
    clientAddress?: string,
    relay?: Pick<ResponseRelay, "start">,
    cacheTried = false,
  ): Promise<UnaryOutcome> {
    const started = performance.now();
    const method = route.method;
    // The server span's context when the call is traced and sampled: the gateway's spans' parent.
    const traced = sampledParent(trace);
    if (this.authService !== undefined && route.path === AUTHENTICATE_PATH) {
      const metadata = incoming === undefined ? new grpc.Metadata() : forwardableMetadata(incoming).clone();
      if (trace !== undefined && traced === undefined) passUnsampled(trace, metadata);
      const upstream =
        traced === undefined ? undefined : startUpstream(traced, route.path, "auth-service", metadata);
      const outcome = await this.authService.forward(
        request,
        metadata,
        clientAddress,
        deadlineToMs(deadline),
        cancellation,
      );
      const code = outcome.error?.code ?? grpc.status.OK;
      if (upstream !== undefined) endUpstream(upstream, code);
      this.metrics.answered(method, "auth-service", code, (performance.now() - started) / 1000);
      return outcome;
    }
    let verdict: TokenVerdict | undefined;
    // Authenticate is how a client replaces a bad token: never refused for carrying one.
    if (
      this.tokenGate !== undefined &&
      route.path !== AUTHENTICATE_PATH &&
      !TOKEN_UNREAD_METHODS.has(route.path)
    ) {
      const judged = this.tokenGate.judge(incoming === undefined ? undefined : tokenOf(incoming), {
        method,
        client: clientAddress,
        trace,
      });
      verdict = judged instanceof Promise ? await judged : judged;
      if (!verdict.pass) {
        const refusal = tokenRefusal(route.path);
        this.metrics.answered(method, "gateway", refusal.code, (performance.now() - started) / 1000);
        return {
          error: { code: refusal.code, details: refusal.details, metadata: new grpc.Metadata() },
          response: undefined,
          trailers: undefined,
        };
      }
    }
    // A verified token at R proves the auth store reached R: older permission memos go.
    if (verdict?.claims !== undefined) this.rangeCache?.authRevisionSeen(verdict.claims.revision);
    let ticket: RangeCacheTicket | undefined;
    let caller: RangeCaller;
    if (this.rangeCache !== undefined && route.route === "range") {
      caller = carriesAuth(incoming) ? { claims: verdict?.claims } : undefined;
      try {
        ticket = this.rangeCache.ticketFor(request, caller);
      } catch {
        // Malformed: the member answers it with etcd's own error, uncached.
      }
      const cached =
        ticket === undefined
          ? undefined
          : ticket.range.serializable
            ? this.rangeCache.lookup(ticket, caller)
            : cacheTried
              ? undefined
              : await this.linearizableFromCache(ticket);
      if (cached !== undefined) {
        if (traced !== undefined) {
          recordRoute(traced, started, {
            target: ticket!.range.serializable ? "serializable" : "linearizable",
            member: undefined,
            attempt: 0,
            cached: true,
          });
        }
        this.metrics.answered(method, "cache", grpc.status.OK, (performance.now() - started) / 1000);
        return { error: undefined, response: cached, trailers: undefined };
      }
    }
    let peeked: CallTarget;
    try {
      // A ticket already says what kind of Range it is: no second peek at the body.
      peeked =
        ticket === undefined
          ? targetFor(route, request, incoming)
          : ticket.range.serializable
            ? SERIALIZABLE_RANGE
            : LINEARIZABLE_RANGE;
    } catch {
      // A body the peek cannot parse is the member's to reject, with etcd's own error.
      peeked = { target: { kind: "leader" }, idempotent: false };
    }
    let metadata = incoming === undefined ? undefined : forwardableMetadata(incoming);
    if (trace !== undefined && traced === undefined) {
      metadata ??= new grpc.Metadata();
      passUnsampled(trace, metadata);
    }
    const deadlineMs = deadlineToMs(deadline) ?? Date.now() + this.options.retryBudgetMs;
    const responseRelay: ResponseRelay | undefined =
      relay === undefined || route.route !== "range"
        ? undefined
        : {
            minBytes:
              ticket === undefined
                ? PARTS_MIN_BYTES
                : Math.max(PARTS_MIN_BYTES, this.rangeCache!.cache.maxEntryBytes + 1),
            start: relay.start,
          };
    const { last, memberLabel } = await this.sendWithRetries(
      route.path,
      request,
      metadata,
      peeked,
      deadline,
      deadlineMs,
      cancellation,
      traced,
      trace,
      responseRelay,
    );

    const result = last ?? unavailable("etcd-ts gateway: call cancelled");
    if (
      ticket !== undefined &&
      result.error === undefined &&
      // An answer in pieces larger than the whole cache is not joined only to be refused.
      (result.parts === undefined || result.parts.length <= this.rangeCache!.cache.maxEntryBytes) &&
      result.response !== undefined
    ) {
      // A member behind a write this gateway acknowledged answers from before it, as a
      // lagging etcd member would for a serializable read; the cache takes the answer but
      // serves it only once its watch has passed that write (RangeCache.lookup), and to a
      // linearizable read only once it shows the read's barrier revision.
      const revision = peekResponseRevision(result.response);
      if (revision !== undefined) this.rangeCache!.answered(ticket, caller, result.response, revision);
    } else if (this.rangeCache !== undefined && result.response !== undefined && result.error === undefined) {
      // Auth enabled through this gateway: no cached answer from now on, not a probe later.
      if (route.path === AUTH_ENABLE_PATH) this.rangeCache.setAuthEnabled(true);
      if (KEY_WRITES.has(route.path) || (route.route === "txn" && peeked.target.kind === "leader")) {
        const revision = peekResponseRevision(result.response);
        if (revision !== undefined) this.rangeCache.cache.acknowledgeWrite(revision);
      }
    }
    if (this.rangeCache !== undefined) {
      // Who may read what changed, or may have: no permission learnt before is used again.
      if (route.path.startsWith("/etcdserverpb.Auth/") && !AUTH_READS.has(route.path)) {
        if (result.error === undefined) {
          this.rangeCache.authChangeAcknowledged();
          void this.settleAuthChange(memberLabel);
        } else if (UNKNOWN_OUTCOME.has(result.error.code)) {
          this.rangeCache.authChanged();
        }
      } else if (verdict?.claims !== undefined && result.error?.details === AUTH_OLD_REVISION)
        this.rangeCache.authRevisionSeen(verdict.claims.revision + 1);
    }
    this.metrics.answered(
      method,
      memberLabel,
      result.error?.code ?? grpc.status.OK,
      (performance.now() - started) / 1000,
    );
    return result;
  }

  /**
   * The auth revision of the member that answered an auth change (it applied the change before
   * answering), for the Range cache's permissions; undefined when it cannot be read.
   */
  private async settleAuthChange(memberId: string): Promise<void> {
    const channel = this.members.channelFor(memberId);
    let revision: number | undefined;
    if (channel !== undefined) {
      const { result } = channel.call(AUTH_STATUS_PATH, EMPTY, new grpc.Metadata(), Date.now() + 2_000);
      const outcome = await result;
      if (outcome.error === undefined && outcome.response !== undefined)
        revision = decodeAuthStatus(outcome.response).revision;
    }
    this.rangeCache?.authChangeSettled(revision);
  }

  /**
   * A token for `name` (the Range cache's own watch under auth), from Authenticate as a client's
   * goes: to services/auth when configured, else to a member. Rejects with the refusal's message.
   */
  async authenticate(name: string, password: string): Promise<string> {
    const request = Buffer.from(etcdserverpb.AuthenticateRequest.encode({ name, password }).finish());
    const outcome = await this.forward(
      METHOD_BY_PATH.get(AUTHENTICATE_PATH)!,
      request,
      new grpc.Metadata(),
      Date.now() + this.options.retryBudgetMs,
      undefined,
    );
    if (outcome.error !== undefined || outcome.response === undefined)
      throw new Error(outcome.error?.details ?? "Authenticate answered nothing");
    return etcdserverpb.AuthenticateResponse.decode(outcome.response).token;
  }

  /**
   * Sends `request` to the member `peeked` calls for until one answers or retrying is no
   * longer safe. The last outcome (undefined if no attempt was made) and the member label.
   */
  private async sendWithRetries(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata | undefined,
    peeked: CallTarget,
    deadline: grpc.Deadline | undefined,
    deadlineMs: number,
    cancellation: CallCancellation | undefined,
    traced: TraceContext | undefined,
    trace: TraceContext | undefined,
    relay?: ResponseRelay,
  ): Promise<{ last: UnaryOutcome | undefined; memberLabel: string }> {
    const method = splitMethodPath(path)[1];
    // A traced call's upstream spans put their traceparent in the metadata it sends.
    if (traced !== undefined) metadata ??= new grpc.Metadata();
    const failed = new Set<string>();
    let last: UnaryOutcome | undefined;
    let memberLabel = "none";
    const started = performance.now();

    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt++) {
      if (cancellation?.cancelled) break;
      const snapshot = this.members.snapshot();
      const sawLeader = snapshot.leaderId;
      const routeStarted = traced === undefined ? 0 : performance.now();
      const member = selectMember(peeked.target, snapshot, this.rr, failed);
      if (traced !== undefined) {
        recordRoute(traced, attempt === 1 ? started : routeStarted, {
          target: peeked.target.kind,
          member: member?.id,
          attempt,
        });
      }
      const client = member === undefined ? undefined : this.members.channelFor(member.id);
      if (member === undefined || client === undefined) {
        if (peeked.target.kind === "member") {
          last = unavailable(`etcd-ts gateway: member ${peeked.target.id} is not known`);
          break;
        }
        last ??= unavailable("etcd-ts gateway: no member available");
        // Everyone failed once: start over after a refresh rather than give up at once.
        failed.clear();
        await this.waitUnlessNewLeader(sawLeader, { work: this.members.refresh() });
      } else {
        memberLabel = member.id;
        const upstream =
          traced === undefined || metadata === undefined
            ? undefined
            : startUpstream(traced, path, member.id, metadata);
        eventTrace?.add("G.up");
        const outcome = await this.callOnce(
          client,
          path,
          request,
          metadata,
          deadline,
          cancellation,
          relay,
          peeked.smallAnswer === true,
        );
        eventTrace?.add("G.up.done");
        if (upstream !== undefined) endUpstream(upstream, outcome.error?.code ?? grpc.status.OK);
        // The client has part of a relayed answer: nothing can be sent to it again.
        if (outcome.error === undefined || outcome.relayed) {
          last = outcome;
          break;
        }
        last = outcome;
        const { code, details } = outcome.error;
        this.metrics.upstreamError(member.id, code);
        const verdict = judgeFailure(code, details);
        if (verdict.memberDown) this.members.markDown(member.id);
        if (verdict.refresh) void this.members.refresh();
        if (!mayRetry(verdict, peeked.idempotent) || attempt === this.options.maxAttempts) break;
        if (verdict.memberDown || peeked.target.kind !== "leader") failed.add(member.id);
        this.logger.debug(
          { method, member: member.id, code, details, attempt, ...traceLogFields(trace) },
          "retrying on another member",
        );
      }
      const delay = retryDelayMs(attempt);
      if (Date.now() + delay >= deadlineMs) break;
      this.metrics.retried(method);
      await this.waitUnlessNewLeader(sawLeader, { ms: delay });
    }
    return { last, memberLabel };
  }

  /**
   * A linearizable read answered from the cache: after a read barrier round, if the cache's
   * watch delivers the barrier's revision within WATCH_CATCH_UP_MS and the entry is still
   * there. Undefined sends the read to a member (a miss, a failed probe, a watch behind).
   */
  private async linearizableFromCache(ticket: RangeCacheTicket): Promise<Buffer | undefined> {
    const cache = this.rangeCache!.cache;
    if (!cache.holds(ticket)) {
      cache.misses++;
      return undefined;
    }
    let readRevision: number;
    try {
      readRevision = await this.readBarrier.afterNow();
    } catch {
      cache.misses++;
      return undefined;
    }
    if (cache.watchedRevision < readRevision) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        cache.delivered(readRevision),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, WATCH_CATCH_UP_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    return cache.lookupLinearizable(ticket, readRevision);
  }

  /** The read barrier's probe: its header revision, once the leader confirmed its ReadIndex. */
  private async probeReadRevision(): Promise<number> {
    this.metrics.readBarrierProbes.inc();
    const { last } = await this.sendWithRetries(
      RANGE_PATH,
      READ_BARRIER_PROBE,
      new grpc.Metadata(),
      LEADER_READ,
      undefined,
      Date.now() + this.options.retryBudgetMs,
      undefined,
      undefined,
      undefined,
    );
    const revision =
      last?.response === undefined || last.error !== undefined
        ? undefined
        : peekResponseRevision(last.response);
    if (revision === undefined) throw new Error(last?.error?.details ?? "read barrier probe failed");
    return revision;
  }

  private async callOnce(
    channel: MemberChannel,
    path: string,
    request: Buffer,
    metadata: grpc.Metadata | undefined,
    deadline: grpc.Deadline | undefined,
    cancellation: CallCancellation | undefined,
    relay: ResponseRelay | undefined,
    smallAnswer: boolean,
  ): Promise<UnaryOutcome> {
    const { result, cancel } = channel.call(
      path,
      request,
      metadata,
      deadlineToMs(deadline),
      relay,
      smallAnswer,
    );
    cancellation?.track(cancel);
    try {
      return await result;
    } finally {
      cancellation?.track(undefined);
    }
  }
}

function unavailable(details: string): UnaryOutcome {
  return {
    error: { code: grpc.status.UNAVAILABLE, details, metadata: new grpc.Metadata() },
    response: undefined,
    trailers: undefined,
  };
}

function deadlineToMs(deadline: grpc.Deadline | undefined): number | undefined {
  if (deadline === undefined) return undefined;
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}
