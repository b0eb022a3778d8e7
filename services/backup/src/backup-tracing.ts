// The backup service's spans (when tracing is on): backup.take with its steps (choosing the
// member, streaming its snapshot, retention) and backup.verify; the member's Maintenance.Snapshot
// server span joins the trace through the `traceparent` the snapshot call carries.
import { traceparentOf, tracing } from "@etcd-ts/telemetry";
import type { Metadata } from "@grpc/grpc-js";
import { type Attributes, context, type Span, SpanStatusCode, trace } from "@opentelemetry/api";

/** Runs `work` inside a span named `name` (a child of the active one), or plainly when tracing is off. */
export async function traced<T>(
  name: string,
  attributes: Attributes,
  work: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (!tracing.enabled) return work(undefined);
  const span = tracing.tracer.startSpan(name, { attributes });
  try {
    return await context.with(trace.setSpan(context.active(), span), () => work(span));
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Adds the active span's `traceparent` to an outgoing call's metadata. */
export function withTraceparent(metadata: Metadata): Metadata {
  if (!tracing.enabled) return metadata;
  const span = trace.getSpan(context.active());
  if (span !== undefined) metadata.set("traceparent", traceparentOf(span));
  return metadata;
}
