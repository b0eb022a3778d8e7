// A service's own spans around its steps (the backup service's backup.take, the auth service's
// credential lookup and password check), and the `traceparent` its outgoing calls carry so the
// callee's server span joins the trace.
import type { Metadata } from "@grpc/grpc-js";
import { type Attributes, ROOT_CONTEXT, type Span, SpanStatusCode, trace } from "@opentelemetry/api";
import { setTraceHeaders, startSpanRecording, type TraceContext, tracing } from "./tracing.js";

/**
 * Runs `work` inside a span named `name` (a child of `parent`, a root without one), handing it
 * the span and its context; plainly, with neither, when tracing is off.
 */
export async function traced<T>(
  name: string,
  attributes: Attributes,
  parent: TraceContext | undefined,
  work: (span: Span | undefined, context: TraceContext | undefined) => Promise<T>,
): Promise<T> {
  if (!tracing.enabled) return work(undefined, undefined);
  const span = startSpanRecording(name, { root: parent === undefined }, attributes, parent);
  try {
    return await work(span, trace.setSpan(parent ?? ROOT_CONTEXT, span));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Adds the W3C headers (`traceparent`, `tracestate`) of `context`'s span to an outgoing call's metadata. */
export function withTraceparent(metadata: Metadata, context: TraceContext | undefined): Metadata {
  const span = context === undefined ? undefined : trace.getSpan(context);
  if (span !== undefined) setTraceHeaders(span, (key, value) => metadata.set(key, value));
  return metadata;
}
