// OpenTelemetry tracing, configured only by the standard OTEL_* variables. With no OTLP endpoint
// (or OTEL_SDK_DISABLED=true) the SDK is never imported and `tracing.enabled` stays false: call
// sites test that one field before touching the API, so a request allocates no span, context
// or closure when tracing is off. The API package itself is loaded (it is small and inert).
//
// Contexts are passed explicitly (a call's TraceContext travels with the call), never through
// an active-context manager: Node 20's AsyncLocalStorage, once used, makes every await in the
// process about twice as slow (~190 -> ~400-500 ns, bench/src/telemetry/tracing-cost.ts's
// notes), which would cost the members far more than 5% even at 1% sampling.

import { randomBytes } from "node:crypto";
import {
  type Attributes,
  type Context,
  INVALID_SPANID,
  INVALID_TRACEID,
  ROOT_CONTEXT,
  type Sampler,
  SamplingDecision,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  type TextMapGetter,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { isTracingSuppressed, W3CTraceContextPropagator } from "@opentelemetry/core";

/** A request's trace context (its server span), passed along explicitly. */
export type TraceContext = Context;

export interface TracingState {
  /** True once startTracing installed the SDK; read on hot paths before any other tracing work. */
  enabled: boolean;
  /** The sampler is parentbased_*: a caller's unsampled `traceparent` means no recording here. */
  parentDecides: boolean;
  /** The process's tracer (the API's no-op tracer until startTracing succeeds). */
  tracer: Tracer;
}

export const tracing: TracingState = {
  enabled: false,
  parentDecides: false,
  tracer: trace.getTracer("etcd-ts"),
};

export interface TracingHandle {
  /** Exports the spans still buffered (for at most `timeoutMs`, default 2 s), then stops the SDK. */
  shutdown(timeoutMs?: number): Promise<void>;
}

type Env = Record<string, string | undefined>;

/** The OTLP endpoint tracing exports to, or undefined when tracing is off. */
export function tracingEndpoint(env: Env = process.env): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return undefined;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none") return undefined;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return endpoint === "" ? undefined : endpoint;
}

/**
 * Installs the SDK when the environment asks for it: a tracer provider with a batch span
 * processor and an OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf, the default,
 * http/json or grpc), the sampler named by OTEL_TRACES_SAMPLER/_ARG (default parentbased_always_on),
 * and service.name from OTEL_SERVICE_NAME or `serviceName`.
 * Resolves undefined, having loaded nothing, when tracing is off.
 */
export async function startTracing(
  serviceName: string,
  env: Env = process.env,
): Promise<TracingHandle | undefined> {
  if (tracing.enabled) throw new Error("tracing is already started in this process");
  if (tracingEndpoint(env) === undefined) return undefined;
  const protocol = (
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ??
    env.OTEL_EXPORTER_OTLP_PROTOCOL ??
    "http/protobuf"
  )
    .trim()
    .toLowerCase();
  const [sdk, resources] = await Promise.all([
    import("@opentelemetry/sdk-trace"),
    import("@opentelemetry/resources"),
  ]);
  const exporter = await exporterFor(protocol, tracesUrl(env, protocol));
  const sampler = samplerFrom(sdk, env);
  const detected = resources.detectResources({ detectors: [resources.envDetector] });
  const resource = resources
    .resourceFromAttributes({ "service.name": serviceName })
    .merge(detected)
    .merge(
      env.OTEL_SERVICE_NAME?.trim()
        ? resources.resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME.trim() })
        : null,
    );
  const ids = new PooledIdGenerator();
  const delay = positiveNumber(env.OTEL_BSP_SCHEDULE_DELAY);
  const queue = positiveNumber(env.OTEL_BSP_MAX_QUEUE_SIZE);
  const provider = new sdk.TracerProvider({
    resource,
    sampler,
    idGenerator: ids,
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter,
        ...(delay === undefined ? {} : { scheduledDelayMillis: delay }),
        ...(queue === undefined ? {} : { maxQueueSize: queue }),
      }),
    ],
  });
  trace.setGlobalTracerProvider(provider);
  tracing.tracer = provider.getTracer("etcd-ts");
  tracing.parentDecides = (env.OTEL_TRACES_SAMPLER ?? "parentbased_always_on")
    .trim()
    .toLowerCase()
    .startsWith("parentbased_");
  roots = { sampler, ids };
  tracing.enabled = true;
  return {
    async shutdown(timeoutMs = 2_000) {
      tracing.enabled = false;
      roots = undefined;
      // An unreachable collector must not hold a stopping process for the exporter's 30 s.
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => {}), waited]);
      clearTimeout(timer);
    },
  };
}

/**
 * The specification's rule: a signal-specific endpoint is used as is, the generic one gets
 * /v1/traces over HTTP; over gRPC both name the server (the method is the service's path).
 */
function tracesUrl(env: Env, protocol: string): string {
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (specific) return specific;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() ?? "";
  return protocol === "grpc" ? base : `${base.replace(/\/+$/, "")}/v1/traces`;
}

async function exporterFor(protocol: string, url: string) {
  switch (protocol) {
    case "http/protobuf": {
      const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
      return new OTLPTraceExporter({ url });
    }
    case "http/json": {
      // The same OTLP/HTTP delegate the protobuf exporter uses, with the JSON serializer: the
      // JSON exporter package of this release pins an older SDK.
      const [base, http, transformer] = await Promise.all([
        import("@opentelemetry/otlp-exporter-base"),
        import("@opentelemetry/otlp-exporter-base/node-http"),
        import("@opentelemetry/otlp-transformer"),
      ]);
      return new base.OTLPExporterBase(
        http.createOtlpHttpExportDelegate(
          http.convertLegacyHttpOptions({ url }, "TRACES", "v1/traces", {
            "Content-Type": "application/json",
          }),
          transformer.JsonTraceSerializer,
          "otlp_http_span_exporter",
          transformer.TraceExporterMetricsHelper,
          undefined,
        ),
      );
    }
    case "grpc": {
      // An http:// endpoint is plaintext, https:// TLS (OTEL_EXPORTER_OTLP_INSECURE and the
      // certificate variables are read by the exporter itself).
      const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-grpc");
      return new OTLPTraceExporter({ url });
    }
    default:
      throw new Error(
        `OTEL_EXPORTER_OTLP_PROTOCOL=${protocol}: etcd-ts exports traces over OTLP as grpc, http/protobuf or http/json`,
      );
  }
}

type Sdk = typeof import("@opentelemetry/sdk-trace");

/** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, as the specification names them. */
function samplerFrom(sdk: Sdk, env: Env) {
  const name = (env.OTEL_TRACES_SAMPLER ?? "parentbased_always_on").trim().toLowerCase();
  const arg = env.OTEL_TRACES_SAMPLER_ARG === undefined ? Number.NaN : Number(env.OTEL_TRACES_SAMPLER_ARG);
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  switch (name) {
    case "always_on":
      return new sdk.AlwaysOnSampler();
    case "always_off":
      return new sdk.AlwaysOffSampler();
    case "traceidratio":
      return new sdk.TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_on":
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
    case "parentbased_always_off":
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio) });
    default:
      throw new Error(`OTEL_TRACES_SAMPLER=${name} is not a sampler etcd-ts knows`);
  }
}

function positiveNumber(value: string | undefined): number | undefined {
  const n = value === undefined ? Number.NaN : Number(value);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * Trace and span IDs cut from a string of random hex made 4 KiB of random bytes at a time. The
 * SDK's own generator makes each ID with Math.random and a Buffer-to-hex call, ~1 us for the two
 * IDs of every root span: at 1% sampling the gateway pays that for each of the 99% of requests it
 * does not record (their IDs still travel upstream in `traceparent`).
 */
export class PooledIdGenerator {
  private pool = "";
  private at = 0;
  private preset: string | undefined;

  generateTraceId(): string {
    const preset = this.preset;
    if (preset !== undefined) {
      this.preset = undefined;
      return preset;
    }
    return this.next(32, "00000000000000000000000000000000");
  }

  /**
   * The trace ID the next generateTraceId returns (once): a root span the sampler was already
   * asked about (startSpanRecording) gets the very ID it was sampled on. `undefined` clears it.
   */
  presetTraceId(traceId: string | undefined): void {
    this.preset = traceId;
  }

  generateSpanId(): string {
    return this.next(16, "0000000000000000");
  }

  private next(chars: number, invalid: string): string {
    for (;;) {
      if (this.at + chars > this.pool.length) {
        this.pool = randomBytes(4096).toString("hex");
        this.at = 0;
      }
      const id = this.pool.slice(this.at, this.at + chars);
      this.at += chars;
      // All zeros is W3C's invalid ID (a 2^-64 chance for a span ID): cut the next one instead.
      if (id !== invalid) return id;
    }
  }
}

// ---- propagation ------------------------------------------------------------------------------

// W3C Trace Context (traceparent and tracestate) through OpenTelemetry's own propagator: its
// validation is the specification's, and a caller's tracestate travels on unchanged.
const w3c = new W3CTraceContextPropagator();

/** The W3C headers a call carries, as read from it. */
export interface TraceHeaders {
  traceparent: string | undefined;
  tracestate?: string | undefined;
}

const headerGetter: TextMapGetter<TraceHeaders> = {
  get: (carrier, key) =>
    key === "traceparent" ? carrier.traceparent : key === "tracestate" ? carrier.tracestate : undefined,
  keys: () => ["traceparent", "tracestate"],
};

/**
 * A W3C `traceparent` (with its `tracestate`, if any) as a remote span context, or undefined
 * if absent or malformed.
 */
export function parseTraceparent(
  traceparent: string | undefined,
  tracestate?: string,
): SpanContext | undefined {
  if (traceparent === undefined) return undefined;
  return trace.getSpanContext(w3c.extract(ROOT_CONTEXT, { traceparent, tracestate }, headerGetter));
}

/**
 * The context a server span starts from: the caller's `traceparent` (the propagator's own
 * context, holding it as a remote span), or the root context when absent or malformed.
 */
export function contextFromTraceparent(traceparent: string | undefined, tracestate?: string): TraceContext {
  if (traceparent === undefined) return ROOT_CONTEXT;
  const plain = tracestate === undefined ? plainTraceparent(traceparent) : undefined;
  if (plain !== undefined) return trace.setSpanContext(ROOT_CONTEXT, plain);
  return w3c.extract(ROOT_CONTEXT, { traceparent, tracestate }, headerGetter);
}

const isLowerHex = (c: number) => (c >= 48 && c <= 57) || (c >= 97 && c <= 102);

/**
 * A `traceparent` in the exact form version 00 prescribes (55 chars, lowercase hex, nonzero IDs),
 * read without the propagator's regular expression (~1 us, paid by every call a member serves
 * behind a gateway); undefined for anything else, which the propagator then judges. It accepts
 * a subset of what the propagator accepts, with the same result (tracing.test.ts compares them).
 */
export function plainTraceparent(tp: string): SpanContext | undefined {
  if (tp.length !== 55 || tp.charCodeAt(0) !== 48 || tp.charCodeAt(1) !== 48) return undefined;
  if (tp.charCodeAt(2) !== 45 || tp.charCodeAt(35) !== 45 || tp.charCodeAt(52) !== 45) return undefined;
  for (let i = 3; i < 55; i++) {
    if (i !== 35 && i !== 52 && !isLowerHex(tp.charCodeAt(i))) return undefined;
  }
  const traceId = tp.slice(3, 35);
  const spanId = tp.slice(36, 52);
  if (traceId === INVALID_TRACEID || spanId === INVALID_SPANID) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(tp.slice(53, 55), 16), isRemote: true };
}

/** A context whose parent is `sc` (a span context carried in a Raft entry, say). */
export function contextWithParent(sc: SpanContext): TraceContext {
  return trace.setSpanContext(ROOT_CONTEXT, sc);
}

/** The installed sampler and ID generator, for root spans (startSpanRecording); set by startTracing. */
let roots: { sampler: Sampler; ids: PooledIdGenerator } | undefined;

/**
 * Starts a span whose attributes are given to it only once the sampler chose to record it. The
 * SDK validates a span's attributes before it samples (~4 us for a server span's four), so at 1%
 * sampling that would be paid by the 99% of calls never recorded; the samplers configured here
 * (always, never, trace ID ratio, parent-based) do not look at attributes.
 *
 * A root span (no valid parent: a request the gateway receives without `traceparent`, a lease
 * expiry) asks the configured sampler first, on a trace ID drawn here: when it says no, the span
 * is the context-only span the SDK would return, made without the SDK's span start (~6 us a call
 * by profile at the gateway, paid by the 99% of requests not recorded at 1%). When it says yes,
 * the SDK starts the span on that same trace ID, so its own sampler call agrees.
 */
export function startSpanRecording(
  name: string,
  options: Omit<SpanOptions, "attributes">,
  attributes: Attributes,
  parent: TraceContext = ROOT_CONTEXT,
): Span {
  const r = roots;
  if (r !== undefined && !isTracingSuppressed(parent)) {
    const ctx = options.root ? trace.deleteSpan(parent) : parent;
    const sc = trace.getSpanContext(ctx);
    if (sc === undefined || !trace.isSpanContextValid(sc)) {
      const traceId = r.ids.generateTraceId();
      const kind = options.kind ?? SpanKind.INTERNAL;
      const decided = r.sampler.shouldSample(ctx, traceId, name, kind, {}, options.links ?? []);
      if (decided.decision === SamplingDecision.NOT_RECORD) {
        const unsampled: SpanContext = {
          traceId,
          spanId: r.ids.generateSpanId(),
          traceFlags: TraceFlags.NONE,
        };
        if (decided.traceState !== undefined) unsampled.traceState = decided.traceState;
        return trace.wrapSpanContext(unsampled);
      }
      r.ids.presetTraceId(traceId);
      try {
        return recording(tracing.tracer.startSpan(name, options, parent), attributes);
      } finally {
        r.ids.presetTraceId(undefined);
      }
    }
  }
  return recording(tracing.tracer.startSpan(name, options, parent), attributes);
}

function recording(span: Span, attributes: Attributes): Span {
  if (span.isRecording()) span.setAttributes(attributes);
  return span;
}

/** The span of `ctx` when it is sampled (recorded and exported), else undefined. */
export function sampledSpan(ctx: TraceContext | undefined): Span | undefined {
  const span = ctx === undefined ? undefined : trace.getSpan(ctx);
  return span !== undefined && isSampled(span) ? span : undefined;
}

/**
 * Writes the W3C headers naming `span` as the parent (`traceparent`, and `tracestate` when the
 * trace carries one) with `set`: into gRPC metadata, HTTP headers. Formatted here rather than
 * by the propagator's inject (a context, a carrier setter and two regex validations per call,
 * paid by every unsampled request the gateway passes on): a span's context comes from the SDK
 * or from `traceparent` the propagator validated, so it is well formed.
 */
export function setTraceHeaders(span: Span, set: (key: string, value: string) => void): void {
  const sc = span.spanContext();
  if (sc.traceId === INVALID_TRACEID) return; // a suppressed-tracing span names no parent
  set("traceparent", `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`);
  const state = sc.traceState?.serialize();
  if (state) set("tracestate", state);
}

export function isSampled(span: Span): boolean {
  return (span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0;
}

/** Bytes of a span context carried inside a Raft entry: trace ID, span ID, flags. */
export const SPAN_CONTEXT_BYTES = 25;

export function encodeSpanContext(sc: SpanContext): Uint8Array {
  const out = Buffer.allocUnsafe(SPAN_CONTEXT_BYTES);
  out.write(sc.traceId, 0, 16, "hex");
  out.write(sc.spanId, 16, 8, "hex");
  out[24] = sc.traceFlags & 0xff;
  return out;
}

export function decodeSpanContext(bytes: Uint8Array): SpanContext {
  if (bytes.length !== SPAN_CONTEXT_BYTES) throw new RangeError(`span context of ${bytes.length} bytes`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    traceId: b.toString("hex", 0, 16),
    spanId: b.toString("hex", 16, 24),
    traceFlags: b[24]!,
    isRemote: true,
  };
}

/**
 * Fields for a log line written while serving a traced request: pino gets them as the line's
 * trace_id and span_id. Empty when the request is not traced.
 */
export function traceLogFields(ctx: TraceContext | undefined): { trace_id?: string; span_id?: string } {
  const span = ctx === undefined ? undefined : trace.getSpan(ctx);
  if (span === undefined) return {};
  const sc = span.spanContext();
  return { trace_id: sc.traceId, span_id: sc.spanId };
}
