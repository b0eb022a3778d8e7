// The backup service's spans (when tracing is on): backup.take with its steps (choosing the
// member, streaming its snapshot, retention) and backup.verify; the member's Maintenance.Snapshot
// server span joins the trace through the `traceparent` the snapshot call carries.
import { type TraceContext, traceparentOf, tracing } from "@etcd-ts/telemetry";
import type { Metadata } from "@grpc/grpc-js";
import { type Attributes, ROOT_CONTEXT, type Span, SpanStatusCode, trace } from "@opentelemetry/api";

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
  const span = tracing.tracer.startSpan(name, { attributes, root: parent === undefined }, parent);
  try {
    return await work(span, trace.setSpan(parent ?? ROOT_CONTEXT, span));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Adds the `traceparent` of `context`'s span to an outgoing call's metadata. */
export function withTraceparent(metadata: Metadata, context: TraceContext | undefined): Metadata {
  const span = context === undefined ? undefined : trace.getSpan(context);
  if (span !== undefined) metadata.set("traceparent", traceparentOf(span));
  return metadata;
}
