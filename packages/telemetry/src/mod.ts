// What every etcd-ts process shares to be observed: one Prometheus registry with the process
// metrics, its /metrics answer, go-grpc-prometheus's server metrics for GrpcHttp2Server, and
// OpenTelemetry tracing (set up from the OTEL_* variables, off unless an endpoint is given).

import { fileURLToPath } from "node:url";

export { traced, withTraceparent } from "./child-spans.js";
export {
  CountingHistogram,
  type CountingHistogramChild,
  type CountingHistogramOptions,
} from "./counting-histogram.js";
export { eventTrace } from "./event-trace.js";
export { parseExposition, type Sample, sampleValue } from "./exposition.js";
export { GRPC_CODE_NAMES, GrpcServerMetrics, type GrpcServerMetricsOptions } from "./grpc-server-metrics.js";
export {
  GrpcServerTracing,
  rpcSpanAttributes,
  serverObserver,
  traceContextOf,
  traceGrpcJsUnary,
} from "./grpc-server-tracing.js";
export { OtlpReceiver, type OtlpReceiverOptions } from "./otlp/otlp-receiver.js";
export { type OtlpReceiverProcess, startOtlpReceiverProcess } from "./otlp/otlp-receiver-process.js";
export {
  type AttributeValue,
  decodeTraceRequestJson,
  decodeTraceRequestProtobuf,
  type ReceivedSpan,
} from "./otlp/otlp-trace-decoding.js";
export { collectProcessMetrics, processRegistry, writeMetrics } from "./registry.js";
export { stopOnSignals } from "./service-lifecycle.js";
export {
  contextFromTraceparent,
  contextWithParent,
  decodeSpanContext,
  encodeSpanContext,
  isSampled,
  parseTraceparent,
  SPAN_CONTEXT_BYTES,
  sampledSpan,
  setTraceHeaders,
  startSpanRecording,
  startTracing,
  type TraceContext,
  type TraceHeaders,
  type TracingHandle,
  type TracingState,
  traceLogFields,
  tracing,
  tracingEndpoint,
} from "./tracing.js";

/** The otlp-receiver process's entry file (run it with process.execPath and process.execArgv). */
export const OTLP_RECEIVER_MAIN = fileURLToPath(
  new URL(`./otlp-receiver-main.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`, import.meta.url),
);
