import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GrpcHttp2Server, type ServerCall } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import {
  type Attributes,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { Registry } from "prom-client";
import { GrpcServerMetrics } from "./grpc-server-metrics.js";
import { GrpcServerTracing, serverObserver, traceContextOf } from "./grpc-server-tracing.js";
import {
  decodeSpanContext,
  encodeSpanContext,
  PooledIdGenerator,
  parseTraceparent,
  plainTraceparent,
  SPAN_CONTEXT_BYTES,
  sampledSpan,
  setTraceHeaders,
  startSpanRecording,
  startTracing,
  tracing,
  tracingEndpoint,
} from "./tracing.js";

describe("tracing off (no endpoint, or OTEL_SDK_DISABLED)", () => {
  it("is off unless an OTLP endpoint is configured and the SDK is not disabled", async () => {
    assert.equal(tracingEndpoint({}), undefined);
    assert.equal(tracingEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: "  " }), undefined);
    assert.equal(
      tracingEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_SDK_DISABLED: "TRUE" }),
      undefined,
    );
    assert.equal(
      tracingEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_TRACES_EXPORTER: "none" }),
      undefined,
    );
    assert.equal(
      tracingEndpoint({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://h:4318/v1/traces" }),
      "http://h:4318/v1/traces",
    );
    assert.equal(
      await startTracing("t", { OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://x" }),
      undefined,
    );
    assert.equal(tracing.enabled, false);
  });

  it("adds nothing to a server's calls", () => {
    const metrics = new GrpcServerMetrics(new Registry());
    // The very same observer: a call runs exactly the metrics' code, no span, no context.
    assert.equal(serverObserver(metrics), metrics);
  });
});

/** Serves one unary call with `observer` and reports what the handler saw. */
async function serveOnce(
  observer: ConstructorParameters<typeof GrpcHttp2Server>[0],
  traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
): Promise<ServerCall> {
  let seen: ServerCall | undefined;
  const server = new GrpcHttp2Server(observer);
  server.register("/etcdserverpb.KV/Range", {
    kind: "unary",
    handle: (call) => {
      seen = call;
      call.sendMessage(Buffer.from("answer"));
      call.finish({ code: grpc.status.OK });
    },
  });
  const port = await server.listen("127.0.0.1:0");
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("traceparent", traceparent);
  try {
    await new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(
        "/etcdserverpb.KV/Range",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        metadata,
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  } finally {
    client.close();
    await server.close(100);
  }
  assert.ok(seen);
  return seen;
}

describe("a served call", () => {
  it("starts no span and keeps no trace state while tracing is off; one span with the server tracer", async () => {
    const real = tracing.tracer;
    let started = 0;
    const counting = trace.getTracer("count");
    tracing.tracer = {
      startSpan: (...args: Parameters<Tracer["startSpan"]>) => {
        started++;
        return counting.startSpan(...args);
      },
      startActiveSpan: counting.startActiveSpan.bind(counting),
    } as Tracer;
    try {
      const off = await serveOnce({ observer: serverObserver(new GrpcServerMetrics(new Registry())) });
      assert.equal(started, 0);
      assert.equal(off.observerState, undefined);
      assert.equal(traceContextOf(off), undefined);
      // The same call seen by the tracer that startTracing would add: one server span.
      const on = await serveOnce({ observer: new GrpcServerTracing() });
      assert.equal(started, 1);
      assert.ok(sampledSpan(traceContextOf(on)));
      // A caller that decided not to sample, with a parent-based sampler: no span, the decision kept.
      tracing.parentDecides = true;
      const unsampled = await serveOnce(
        { observer: new GrpcServerTracing() },
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
      );
      assert.equal(started, 1);
      const kept = traceContextOf(unsampled);
      assert.ok(kept);
      assert.equal(sampledSpan(kept), undefined);
      assert.equal(trace.getSpanContext(kept)?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
    } finally {
      tracing.tracer = real;
      tracing.parentDecides = false;
    }
  });
});

describe("W3C traceparent", () => {
  const id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const span = "00f067aa0ba902b7";
  it("parses version 00 and keeps the sampled flag", () => {
    assert.deepEqual(parseTraceparent(`00-${id}-${span}-01`), {
      traceId: id,
      spanId: span,
      traceFlags: 1,
      isRemote: true,
    });
    assert.equal(parseTraceparent(`00-${id}-${span}-00`)?.traceFlags, 0);
    // A later version may append fields; version 00 may not.
    assert.equal(parseTraceparent(`01-${id}-${span}-01-extra`)?.traceId, id);
    assert.equal(parseTraceparent(`00-${id}-${span}-01-extra`), undefined);
  });
  it("refuses all-zero IDs, version ff, and malformed values", () => {
    assert.equal(parseTraceparent(undefined), undefined);
    assert.equal(parseTraceparent(`00-${"0".repeat(32)}-${span}-01`), undefined);
    assert.equal(parseTraceparent(`00-${id}-${"0".repeat(16)}-01`), undefined);
    assert.equal(parseTraceparent(`ff-${id}-${span}-01`), undefined);
    assert.equal(parseTraceparent(`00-${id.toUpperCase()}-${span}-01`), undefined);
    assert.equal(parseTraceparent(`00-${id}-${span}`), undefined);
  });
  it("keeps the caller's tracestate and writes it on with the traceparent", () => {
    const parent = parseTraceparent(`00-${id}-${span}-01`, "vendor=opaque,other=1");
    assert.equal(parent?.traceState?.serialize(), "vendor=opaque,other=1");
    assert.equal(parseTraceparent(`00-${id}-${span}-01`)?.traceState, undefined);
    const headers = new Map<string, string>();
    setTraceHeaders(trace.wrapSpanContext(parent!), (key, value) => headers.set(key, value));
    assert.deepEqual(Object.fromEntries(headers), {
      traceparent: `00-${id}-${span}-01`,
      tracestate: "vendor=opaque,other=1",
    });
  });
  it("writes what the propagator's own inject writes", () => {
    const propagator = new W3CTraceContextPropagator();
    const setter = { set: (m: Map<string, string>, k: string, v: string) => void m.set(k, v) };
    for (const [flags, state] of [
      [0, undefined],
      [1, undefined],
      [3, "vendor=opaque"],
    ] as const) {
      const sc = {
        traceId: id,
        spanId: span,
        traceFlags: flags,
        traceState: parseTraceparent(`00-${id}-${span}-01`, state)?.traceState,
      };
      const ours = new Map<string, string>();
      setTraceHeaders(trace.wrapSpanContext(sc), (key, value) => ours.set(key, value));
      const theirs = new Map<string, string>();
      propagator.inject(trace.setSpanContext(ROOT_CONTEXT, sc), theirs, setter);
      assert.deepEqual(ours, theirs);
    }
    const none = new Map<string, string>();
    setTraceHeaders(trace.wrapSpanContext(INVALID_SPAN_CONTEXT), (key, value) => none.set(key, value));
    assert.equal(none.size, 0, "an invalid span context names no parent");
  });
  it("reads a plain version-00 traceparent exactly as the propagator does, and leaves it every other form", () => {
    const plain = [
      `00-${id}-${span}-01`,
      `00-${id}-${span}-00`,
      `00-${id}-${span}-ff`,
      `00-${id}-${span}-a3`,
    ];
    for (const tp of plain) assert.deepEqual(plainTraceparent(tp), parseTraceparent(tp), tp);
    const others = [
      `01-${id}-${span}-01-extra`,
      `00-${id}-${span}-01-extra`,
      `00-${"0".repeat(32)}-${span}-01`,
      `00-${id}-${"0".repeat(16)}-01`,
      `ff-${id}-${span}-01`,
      `00-${id.toUpperCase()}-${span}-01`,
      `00-${id}-${span}`,
      `00-${id}-${span}-0g`,
      `00_${id}-${span}-01`,
      ` 00-${id}-${span}-01`,
    ];
    for (const tp of others) assert.equal(plainTraceparent(tp), undefined, tp);
  });
  it("a span context round-trips through the 25 bytes a Raft entry carries", () => {
    const bytes = encodeSpanContext({ traceId: id, spanId: span, traceFlags: 1 });
    assert.equal(bytes.length, SPAN_CONTEXT_BYTES);
    assert.deepEqual(decodeSpanContext(bytes), { traceId: id, spanId: span, traceFlags: 1, isRemote: true });
    assert.throws(() => decodeSpanContext(bytes.subarray(1)), RangeError);
  });
});

describe("PooledIdGenerator", () => {
  it("cuts distinct, valid, lowercase hex trace and span IDs across pool refills", () => {
    const ids = new PooledIdGenerator();
    const traces = new Set<string>();
    const spans = new Set<string>();
    // 4 KiB of random bytes makes 8192 hex characters: 500 of each spans a few refills.
    for (let i = 0; i < 500; i++) {
      const t = ids.generateTraceId();
      const s = ids.generateSpanId();
      assert.match(t, /^[0-9a-f]{32}$/);
      assert.match(s, /^[0-9a-f]{16}$/);
      assert.ok(isSpanContextValid({ traceId: t, spanId: s, traceFlags: 0 }));
      traces.add(t);
      spans.add(s);
    }
    assert.equal(traces.size, 500);
    assert.equal(spans.size, 500);
  });
});

describe("startSpanRecording", () => {
  it("hands the attributes to a span only once the sampler recorded it", () => {
    const real = tracing.tracer;
    const given: SpanOptions[] = [];
    const set: Attributes[] = [];
    let record = false;
    tracing.tracer = {
      startSpan: (_name: string, options: SpanOptions = {}) => {
        given.push(options);
        const span = trace.wrapSpanContext({
          traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
          spanId: "00f067aa0ba902b7",
          traceFlags: record ? TraceFlags.SAMPLED : TraceFlags.NONE,
        });
        return Object.assign(span, {
          isRecording: () => record,
          setAttributes: (a: Attributes) => {
            set.push(a);
            return span;
          },
        }) as Span;
      },
    } as Tracer;
    try {
      const attributes = { "rpc.method": "Put" };
      startSpanRecording("unsampled", { root: true }, attributes);
      record = true;
      startSpanRecording("sampled", { root: true }, attributes);
      assert.deepEqual(
        given.map((o) => o.attributes),
        [undefined, undefined],
        "the SDK never validates attributes before sampling",
      );
      assert.deepEqual(given[0], { root: true });
      assert.deepEqual(set, [attributes]);
    } finally {
      tracing.tracer = real;
    }
  });
});
