// The gateway's spans, under the server span GrpcHttp2Server's observer (or the JSON gateway)
// started: one `gateway.route` per attempt (which member the call's target chose) and one
// client span per call to a member, whose context goes upstream as the `traceparent` (and
// `tracestate`) metadata
// the member's server span starts from. Callers test tracing.enabled first; an unsampled
// request makes no span here, and only passes its "not sampled" decision upstream.

import {
  contextFromTraceparent,
  rpcSpanAttributes,
  sampledSpan,
  setTraceHeaders,
  startSpanRecording,
  type TraceContext,
  tracing,
} from "@etcd-ts/telemetry";
import type grpc from "@grpc/grpc-js";
import { trace as otelTrace, type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";

/** `trace` when its span is sampled: the parent of the gateway's spans. */
export function sampledParent(trace: TraceContext | undefined): TraceContext | undefined {
  return trace !== undefined && sampledSpan(trace) !== undefined ? trace : undefined;
}

/** An unsampled call still tells the members so, or each would sample it on its own. */
export function passUnsampled(trace: TraceContext, metadata: grpc.Metadata): void {
  const span = otelTrace.getSpan(trace);
  if (span !== undefined) setTraceHeaders(span, (key, value) => metadata.set(key, value));
}

/** The routing decision of one attempt, from `startedAt` (performance.now()) to now. */
export function recordRoute(
  parent: TraceContext,
  startedAt: number,
  attributes: { target: string; member: string | undefined; attempt: number; cached?: boolean },
): void {
  tracing.tracer
    .startSpan(
      "gateway.route",
      {
        startTime: startedAt,
        attributes: {
          "etcd.route_target": attributes.target,
          "etcd.member_id": attributes.member ?? "none",
          "etcd.attempt": attributes.attempt,
          ...(attributes.cached === undefined ? {} : { "etcd.cache_hit": attributes.cached }),
        },
      },
      parent,
    )
    // An explicit end: a span given its start time otherwise ends on Date.now(), whole milliseconds.
    .end(performance.now());
}

/** Starts the client span of one upstream call and puts its `traceparent` in `metadata`. */
export function startUpstream(
  parent: TraceContext,
  path: string,
  member: string,
  metadata: grpc.Metadata,
): Span {
  const span = tracing.tracer.startSpan(
    path.slice(1),
    { kind: SpanKind.CLIENT, attributes: { ...rpcSpanAttributes(path), "etcd.member_id": member } },
    parent,
  );
  setTraceHeaders(span, (key, value) => metadata.set(key, value));
  return span;
}

export function endUpstream(span: Span, code: number): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/**
 * The JSON gateway's server span (HTTP/1.1), from the request's `traceparent` and `tracestate`
 * headers; `serve` is given its context. Only called when tracing is on.
 */
export async function traceHttpRequest<T>(
  method: string,
  path: string,
  headers: Record<string, string | string[] | undefined>,
  serve: (trace: TraceContext) => Promise<T>,
  statusOf: () => number,
): Promise<T> {
  const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
  const parent = contextFromTraceparent(first(headers.traceparent), first(headers.tracestate));
  const span = startSpanRecording(
    `${method} ${path}`,
    { kind: SpanKind.SERVER },
    { "http.request.method": method, "url.path": path },
    parent,
  );
  try {
    return await serve(otelTrace.setSpan(parent, span));
  } finally {
    const status = statusOf();
    span.setAttribute("http.response.status_code", status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }
}
