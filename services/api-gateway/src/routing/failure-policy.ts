// What a failed upstream call means for the gateway: whether to look at the cluster again
// and whether the call may be sent again. Modelled on etcd clientv3's retry rules
// (isSafeRetryImmutableRPC / isSafeRetryMutableRPC): reads retry on UNAVAILABLE; a
// mutation retries only when the member provably never saw it.

import { status as GrpcStatus } from "@grpc/grpc-js";

export interface FailureVerdict {
  /** The member set or leader may have changed: refresh the cluster view now. */
  readonly refresh: boolean;
  /** The member itself looks down: stop choosing it until a probe says otherwise. */
  readonly memberDown: boolean;
  /** "any": safe for every call; "idempotent": only for calls that can repeat. */
  readonly retry: "any" | "idempotent" | "never";
}

// Errors where etcd refused the request before acting on it.
const REFUSED_BEFORE_ACTING = new Set([
  "etcdserver: not leader",
  "etcdserver: no leader",
  "etcdserver: too many requests",
  "etcdserver: rpc not supported for learner",
  // raft.ErrProposalDropped, relayed by etcd 3.4 as codes.Unknown.
  "raft proposal dropped",
]);

// Errors after which the outcome of a mutation is unknown, but a read can simply go again.
const TRANSIENT_FOR_READS = new Set([
  "etcdserver: leader changed",
  "etcdserver: server stopped",
  "etcdserver: request timed out",
  "etcdserver: request timed out, possibly due to previous leader failure",
  "etcdserver: request timed out, possibly due to connection lost",
  "etcdserver: request timed out, waiting for the applied index took too long",
  "etcdserver: unhealthy cluster",
]);

/**
 * grpc-js fails a call with this prefix when its channel could not connect: the request
 * was never written to any socket.
 */
const NOT_CONNECTED_PREFIX = "No connection established";

export function judgeFailure(code: number, details: string): FailureVerdict {
  if (REFUSED_BEFORE_ACTING.has(details)) {
    const busy = details === "etcdserver: too many requests";
    return { refresh: !busy, memberDown: false, retry: "any" };
  }
  if (TRANSIENT_FOR_READS.has(details)) return { refresh: true, memberDown: false, retry: "idempotent" };
  if (code === GrpcStatus.UNAVAILABLE) {
    const neverSent = details.startsWith(NOT_CONNECTED_PREFIX);
    return { refresh: true, memberDown: true, retry: neverSent ? "any" : "idempotent" };
  }
  return { refresh: false, memberDown: false, retry: "never" };
}

export function mayRetry(verdict: FailureVerdict, idempotent: boolean): boolean {
  return verdict.retry === "any" || (verdict.retry === "idempotent" && idempotent);
}

/** Backoff before retry `attempt` (1-based): short first, since a new leader is often known at once. */
export function retryDelayMs(attempt: number): number {
  return Math.min(25 * 2 ** (attempt - 1), 500);
}
