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

/**
 * Runs a unary handler body and reports its outcome through the grpc-js callback. The body may
 * be a plain function returning a promise (no async frame kept for the call's life: at many
 * clients a put outlives scavenges, and what it holds is promoted); what it throws at once is
 * reported as its rejection would be, a turn later. `answer` makes the result the answer as it
 * is sent (no promise of its own); what it throws is the call's error.
 */
export function unary<Req, Res, Out = Res>(
  body: (request: Req, call: UnaryCall<Req>) => Promise<Res>,
  answer?: (result: Res) => Out,
): (call: UnaryCall<Req>, callback: (err: StatusLike | null, res?: Out) => void) => void {
  return (call, callback) => {
    let result: Promise<Res>;
    try {
      result = body(call.request, call);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      answer === undefined
        ? (res) => callback(null, res as unknown as Out)
        : (res) => {
            let out: Out;
            try {
              out = answer(res);
            } catch (err) {
              callback(toStatus(err));
              return;
            }
            callback(null, out);
          },
      (err: unknown) => callback(toStatus(err)),
    );
  };
}
