// Turning what a handler throws into the status a client sees. etcd's own errors carry their
// gRPC code and byte-exact message; anything else is a server fault, reported as UNKNOWN with
// its message (as grpc-go does for a plain error), never dressed up as an etcd error.

import { EtcdError } from "@etcd-ts/api";
import type { TraceContext } from "@etcd-ts/telemetry";
import { type Metadata, type ServiceError, status } from "@grpc/grpc-js";

export type StatusLike = Partial<ServiceError> & { code: status; details: string };

export function toStatus(err: unknown): StatusLike {
  if (err instanceof EtcdError) return { code: err.code, details: err.details, message: err.details };
  if (typeof err === "object" && err !== null && "code" in err && "details" in err) {
    const e = err as { code: unknown; details: unknown };
    if (typeof e.code === "number" && typeof e.details === "string") {
      return { code: e.code as status, details: e.details, message: e.details };
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: status.UNKNOWN, details: message, message };
}

/** The call as a handler body sees it: its metadata carries the caller's token. */
export interface UnaryCall<Req> {
  request: Req;
  metadata?: Metadata;
  /** The call's server span context when tracing is on: handed to what it proposes or reads. */
  traceContext?: TraceContext | undefined;
  /** The bytes `request` was decoded from, when the server keeps them (raw-requests.ts). */
  readonly requestBytes?: Buffer;
}

/** Runs an async unary handler body and reports its outcome through the grpc-js callback. */
export function unary<Req, Res>(
  body: (request: Req, call: UnaryCall<Req>) => Promise<Res>,
): (call: UnaryCall<Req>, callback: (err: StatusLike | null, res?: Res) => void) => void {
  return (call, callback) => {
    body(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toStatus(err)),
    );
  };
}
