// Server spans for GrpcHttp2Server, through the same observer seam as the grpc_server_* metrics:
// a call's span starts at dispatch from the caller's `traceparent` (and `tracestate`) header and ends with the
// call's status; handlers read its context with traceContextOf(call) and pass it on (the
// member's proposal, the gateway's upstream call). Only installed when tracing is on.

import type { CallKind, GrpcCallObserver, GrpcMethodObserver, ServerCall } from "@etcd-ts/api";
import type { Metadata } from "@grpc/grpc-js";
import { type Attributes, type Span, SpanKind, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api";
import { contextFromTraceparent, startSpanRecording, type TraceContext, tracing } from "./tracing.js";

interface TracedCall {
  /** undefined: not recorded (the sampler's decision, or the caller's when the sampler follows it). */
  span: Span | undefined;
  context: TraceContext;
}

/** The trace context of a call a GrpcServerTracing observer saw; undefined when not traced. */
export function traceContextOf(call: ServerCall): TraceContext | undefined {
  return (call.observerState as TracedCall | undefined)?.context;
}

/** OpenTelemetry's rpc.* attributes of a gRPC method path ("/pkg.Service/Method"). */
export function rpcSpanAttributes(path: string): Attributes {
  const slash = path.lastIndexOf("/");
  return { "rpc.system": "grpc", "rpc.service": path.slice(1, slash), "rpc.method": path.slice(slash + 1) };
}

/**
 * A server call's span, continuing the caller's W3C headers. A caller that decided not to
 * sample gets no span (the SDK would make a non-recording one, ~2 us): only its decision is kept,
 * which is what the call passes on.
 */
function startServerSpan(
  path: string,
  attributes: Attributes,
  traceparent: string | undefined,
  tracestate: string | undefined,
): TracedCall {
  const parent = contextFromTraceparent(traceparent, tracestate);
  const remote = trace.getSpanContext(parent);
  if (remote !== undefined && (remote.traceFlags & TraceFlags.SAMPLED) === 0 && tracing.parentDecides) {
    return { span: undefined, context: parent };
  }
  const span = startSpanRecording(path.slice(1), { kind: SpanKind.SERVER }, attributes, parent);
  // A span the sampler dropped still names the request's trace (its context goes upstream, the
  // unsampled decision with it) but has nothing to end.
  return { span: span.isRecording() ? span : undefined, context: trace.setSpan(parent, span) };
}

class TracedMethod implements GrpcMethodObserver {
  private readonly attributes: Attributes;

  constructor(private readonly path: string) {
    this.attributes = rpcSpanAttributes(path);
  }

  started(call: ServerCall): void {
    call.observerState = startServerSpan(
      this.path,
      this.attributes,
      call.header("traceparent"),
      call.header("tracestate"),
    ) satisfies TracedCall;
  }

  received(): void {}
  sent(): void {}

  handled(code: number, _seconds: number, call: ServerCall): void {
    const traced = call.observerState as TracedCall | undefined;
    if (traced?.span === undefined) return;
    traced.span.setAttribute("rpc.grpc.status_code", code);
    if (code !== 0) traced.span.setStatus({ code: SpanStatusCode.ERROR });
    traced.span.end();
  }
}

/**
 * Server spans for unary and server-streaming calls. A bidi stream (Watch, LeaseKeepAlive)
 * lives as long as its client: its deliveries and expiries get spans of their own instead.
 */
export class GrpcServerTracing implements GrpcCallObserver {
  method(path: string, kind: CallKind): GrpcMethodObserver {
    return kind === "bidi" ? UNTRACED : new TracedMethod(path);
  }
}

const UNTRACED: GrpcMethodObserver = { started() {}, received() {}, sent() {}, handled() {} };

/** Both observers see every call. */
function bothMethods(a: GrpcMethodObserver, b: GrpcMethodObserver): GrpcMethodObserver {
  return {
    started(call) {
      a.started(call);
      b.started(call);
    },
    received(bytes) {
      a.received(bytes);
      b.received(bytes);
    },
    sent(bytes) {
      a.sent(bytes);
      b.sent(bytes);
    },
    handled(code, seconds, call) {
      a.handled(code, seconds, call);
      b.handled(code, seconds, call);
    },
  };
}

/**
 * What a GrpcHttp2Server should observe: `metrics` alone while tracing is off (the server's
 * calls cost exactly what they did), metrics and server spans once startTracing ran.
 */
export function serverObserver(metrics: GrpcCallObserver): GrpcCallObserver {
  if (!tracing.enabled) return metrics;
  const spans = new GrpcServerTracing();
  return {
    method(path, kind) {
      return bothMethods(spans.method(path, kind), metrics.method(path, kind));
    },
  };
}

/**
 * A unary call on a plain grpc-js server (the member's peer port) as a server span continuing
 * the caller's `traceparent`/`tracestate` metadata; `work` gets the span's context. Plainly,
 * with no context, while tracing is off.
 */
export async function traceGrpcJsUnary<T>(
  path: string,
  metadata: Metadata,
  work: (context: TraceContext | undefined) => Promise<T>,
): Promise<T> {
  if (!tracing.enabled) return work(undefined);
  const header = (key: string) => {
    const value = metadata.get(key)[0];
    return typeof value === "string" ? value : undefined;
  };
  const { span, context } = startServerSpan(
    path,
    rpcSpanAttributes(path),
    header("traceparent"),
    header("tracestate"),
  );
  if (span === undefined) return work(context);
  try {
    return await work(context);
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}
