// Forwards one unary call to the member its route calls for, as raw bytes, retrying on
// another member when the failure allows it. The client sees the member's answer, or its
// error, exactly as the member sent them.

import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { unaryCall } from "../cluster/upstream-client.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import { judgeFailure, mayRetry, retryDelayMs } from "../routing/failure-policy.js";
import { type RoundRobin, selectMember, type Target } from "../routing/member-selection.js";
import { type MethodRoute, splitMethodPath } from "../routing/method-table.js";
import { classifyTxn, rangeIsSerializable } from "../wire/etcd-messages.js";
import type { MemberDirectory } from "./member-directory.js";

/** Metadata a caller sets to address a per-member RPC to one member (hex ID). */
export const TARGET_MEMBER_METADATA = "gateway-member-id";

// Headers grpc-js sets itself on the upstream call; copying the client's would duplicate them.
const NOT_FORWARDED = new Set(["user-agent", "host", ":authority", TARGET_MEMBER_METADATA]);

export interface ForwarderOptions {
  /** Upper bound on attempts per call, the first included. */
  maxAttempts: number;
  /** Upper bound on time spent retrying when the caller set no deadline. */
  retryBudgetMs: number;
}

export interface UnaryOutcome {
  error: grpc.StatusObject | undefined;
  response: Buffer | undefined;
  trailers: grpc.Metadata | undefined;
}

export function forwardableMetadata(incoming: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [key, value] of Object.entries(incoming.getMap())) {
    if (NOT_FORWARDED.has(key) || key.startsWith("grpc-")) continue;
    out.set(key, value);
  }
  return out;
}

/** The target a call needs, from its route and (for Range and Txn) a peek at its body. */
export function targetFor(
  route: MethodRoute,
  request: Uint8Array,
  metadata: grpc.Metadata,
): { target: Target; idempotent: boolean } {
  switch (route.route) {
    case "range":
      return rangeIsSerializable(request)
        ? { target: { kind: "serializable", learners: true }, idempotent: true }
        : { target: { kind: "linearizable" }, idempotent: true };
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
      const named = metadata.get(TARGET_MEMBER_METADATA)[0];
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

  constructor(
    private readonly members: MemberDirectory,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly options: ForwarderOptions,
  ) {}

  /**
   * Sends `request` upstream until a member answers or retrying is no longer safe.
   * `signal` aborts when the client goes away.
   */
  async forward(
    route: MethodRoute,
    request: Buffer,
    incoming: grpc.Metadata,
    deadline: grpc.Deadline | undefined,
    signal: AbortSignal | undefined,
  ): Promise<UnaryOutcome> {
    const started = performance.now();
    const method = splitMethodPath(route.path)[1];
    let peeked: { target: Target; idempotent: boolean };
    try {
      peeked = targetFor(route, request, incoming);
    } catch {
      // A body the peek cannot parse is the member's to reject, with etcd's own error.
      peeked = { target: { kind: "leader" }, idempotent: false };
    }
    const metadata = forwardableMetadata(incoming);
    const deadlineMs = deadlineToMs(deadline) ?? Date.now() + this.options.retryBudgetMs;
    const failed = new Set<string>();
    let last: UnaryOutcome | undefined;
    let memberLabel = "none";

    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt++) {
      if (signal?.aborted) break;
      const member = selectMember(peeked.target, this.members.snapshot(), this.rr, failed);
      const client = member === undefined ? undefined : this.members.clientFor(member.id);
      if (member === undefined || client === undefined) {
        if (peeked.target.kind === "member") {
          last = unavailable(`etcd-ts gateway: member ${peeked.target.id} is not known`);
          break;
        }
        last ??= unavailable("etcd-ts gateway: no member available");
        // Everyone failed once: start over after a refresh rather than give up at once.
        failed.clear();
        await this.members.refresh();
      } else {
        memberLabel = member.id;
        const outcome = await this.callOnce(client, route.path, request, metadata, deadline, signal);
        if (outcome.error === undefined) {
          last = outcome;
          break;
        }
        last = outcome;
        const { code, details } = outcome.error;
        this.metrics.upstreamErrors.inc({ member: member.id, code: grpc.status[code] ?? String(code) });
        const verdict = judgeFailure(code, details);
        if (verdict.memberDown) this.members.markDown(member.id);
        if (verdict.refresh) void this.members.refresh();
        if (!mayRetry(verdict, peeked.idempotent) || attempt === this.options.maxAttempts) break;
        if (verdict.memberDown || peeked.target.kind !== "leader") failed.add(member.id);
        this.logger.debug(
          { method, member: member.id, code, details, attempt },
          "retrying on another member",
        );
      }
      const delay = retryDelayMs(attempt);
      if (Date.now() + delay >= deadlineMs) break;
      this.metrics.retries.inc({ method });
      await sleep(delay);
    }

    const result = last ?? unavailable("etcd-ts gateway: call cancelled");
    const code = result.error?.code ?? grpc.status.OK;
    this.metrics.requests.inc({ method, member: memberLabel, code: grpc.status[code] ?? String(code) });
    this.metrics.latency.observe({ method }, (performance.now() - started) / 1000);
    return result;
  }

  private callOnce(
    client: grpc.Client,
    path: string,
    request: Buffer,
    metadata: grpc.Metadata,
    deadline: grpc.Deadline | undefined,
    signal: AbortSignal | undefined,
  ): Promise<UnaryOutcome> {
    return new Promise((resolve) => {
      let result: UnaryOutcome | undefined;
      const options: grpc.CallOptions =
        deadline === undefined || deadline === Number.POSITIVE_INFINITY ? {} : { deadline };
      const call = unaryCall(client, path, request, metadata, options, (err, response) => {
        result = err
          ? {
              error: { code: err.code, details: err.details, metadata: err.metadata ?? new grpc.Metadata() },
              response: undefined,
              trailers: err.metadata,
            }
          : { error: undefined, response, trailers: undefined };
      });
      // grpc-js calls back first and emits the status (with trailers) right after.
      call.on("status", (status: grpc.StatusObject) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(
          result === undefined
            ? { error: status, response: undefined, trailers: status.metadata }
            : { ...result, trailers: status.metadata },
        );
      });
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
    });
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
