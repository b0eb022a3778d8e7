import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  context,
  isSpanContextValid,
  ROOT_CONTEXT,
  SamplingDecision,
  SpanKind,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { SimpleSpanProcessor, TraceIdRatioBasedSampler, TracerProvider } from "@opentelemetry/sdk-trace";
import { pino } from "pino";
import {
  isSampled,
  startSpanRecording,
  startTracing,
  type TracingHandle,
  traceLogFields,
  tracing,
} from "../tracing.js";
import { OtlpReceiver } from "./otlp-receiver.js";

let receiver: OtlpReceiver;
let port: number;

before(async () => {
  receiver = new OtlpReceiver();
  port = await receiver.listen(0);
});
after(() => receiver.close());

test("the SDK's OTLP/HTTP protobuf exporter: spans, attributes, parents, links and status decode", async () => {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": "proto-test" }),
    spanProcessors: [
      new SimpleSpanProcessor({
        exporter: new OTLPTraceExporter({ url: `http://127.0.0.1:${port}/v1/traces` }),
      }),
    ],
  });
  const tracer = provider.getTracer("t");
  const linked = tracer.startSpan("linked");
  linked.end();
  const parent = tracer.startSpan("parent", { kind: SpanKind.SERVER });
  const child = tracer.startSpan(
    "child",
    {
      attributes: { s: "v", i: 42, d: 1.5, b: true, a: ["x", "y"] },
      links: [{ context: linked.spanContext() }],
    },
    trace.setSpan(context.active(), parent),
  );
  child.addEvent("committed");
  child.setStatus({ code: 2 });
  child.end();
  parent.end();
  await provider.forceFlush();
  await provider.shutdown();

  const spans = receiver.received(parent.spanContext().traceId);
  const byName = new Map(spans.map((s) => [s.name, s]));
  const p = byName.get("parent")!;
  const c = byName.get("child")!;
  assert.equal(p.service, "proto-test");
  assert.equal(p.kind, 2);
  assert.equal(p.parentSpanId, "");
  assert.equal(c.parentSpanId, parent.spanContext().spanId);
  assert.deepEqual(c.attributes, { s: "v", i: 42, d: 1.5, b: true, a: ["x", "y"] });
  assert.deepEqual(c.links, [{ traceId: linked.spanContext().traceId, spanId: linked.spanContext().spanId }]);
  assert.deepEqual(
    c.events.map((e) => e.name),
    ["committed"],
  );
  assert.equal(c.statusCode, 2);
  assert.ok(BigInt(c.endTimeUnixNano) >= BigInt(c.startTimeUnixNano));
  assert.ok(BigInt(c.startTimeUnixNano) > 1_600_000_000_000_000_000n);
});

test("startTracing from OTEL_* variables (http/json), and the query API", async () => {
  let handle: TracingHandle | undefined;
  assert.equal(
    await startTracing("x", {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_SDK_DISABLED: "true",
    }),
    undefined,
  );
  assert.equal(await startTracing("x", {}), undefined);
  assert.equal(tracing.enabled, false);
  try {
    handle = await startTracing("default-name", {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "json-test",
      OTEL_TRACES_SAMPLER: "always_on",
    });
    assert.ok(handle);
    assert.equal(tracing.enabled, true);
    const span = tracing.tracer.startSpan("json-span", { attributes: { n: 7 } });
    // A log line written while serving the traced request carries its IDs; others carry none.
    const lines: string[] = [];
    const logger = pino({ base: null }, { write: (line: string) => lines.push(line) });
    logger.info(traceLogFields(trace.setSpan(ROOT_CONTEXT, span)), "inside");
    logger.info(traceLogFields(undefined), "outside");
    const [inside, outside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(inside!.trace_id, span.spanContext().traceId);
    assert.equal(inside!.span_id, span.spanContext().spanId);
    assert.equal(outside!.trace_id, undefined);
    span.end();
    await handle.shutdown();
    handle = undefined;
    const res = await fetch(`http://127.0.0.1:${port}/api/traces/${span.spanContext().traceId}`);
    const body = (await res.json()) as { spans: { name: string; service: string; attributes: object }[] };
    assert.equal(body.spans.length, 1);
    assert.equal(body.spans[0]!.name, "json-span");
    assert.equal(body.spans[0]!.service, "json-test");
    assert.deepEqual(body.spans[0]!.attributes, { n: 7 });
  } finally {
    await handle?.shutdown();
  }
});

test("a root span is sampled once, on the trace ID it keeps, and exported only then (traceidratio 0.5)", async () => {
  const handle = await startTracing("roots", {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_TRACES_SAMPLER: "traceidratio",
    OTEL_TRACES_SAMPLER_ARG: "0.5",
  });
  assert.ok(handle);
  try {
    const ratio = new TraceIdRatioBasedSampler(0.5);
    // Fewer than the batch processor's queue (2048) holds, so every sampled span is exported.
    const spans = Array.from({ length: 2000 }, (_, i) => startSpanRecording("root", { root: true }, { i }));
    for (const span of spans) {
      const sc = span.spanContext();
      assert.ok(isSpanContextValid(sc));
      assert.equal(span.isRecording(), isSampled(span));
      const decision = ratio.shouldSample(ROOT_CONTEXT, sc.traceId).decision;
      assert.equal(decision === SamplingDecision.RECORD_AND_SAMPLED, isSampled(span), sc.traceId);
      span.end();
    }
    assert.equal(new Set(spans.map((s) => s.spanContext().traceId)).size, spans.length);
    // Asking the sampler on one ID and letting the SDK draw another would sample a quarter.
    const sampled = spans.filter(isSampled);
    assert.ok(sampled.length > 900 && sampled.length < 1100, `${sampled.length} of 2000 sampled`);
    // A child of a sampled root stays in its trace.
    const child = startSpanRecording("child", {}, {}, trace.setSpan(ROOT_CONTEXT, sampled[0]!));
    assert.equal(child.spanContext().traceId, sampled[0]!.spanContext().traceId);
    child.end();
    await handle.shutdown();
    const exported = receiver.received().filter((s) => s.service === "roots" && s.name === "root");
    assert.deepEqual(
      exported.map((s) => s.traceId).sort(),
      sampled.map((s) => s.spanContext().traceId).sort(),
    );
    assert.ok(exported.every((s) => typeof s.attributes.i === "number"));
  } finally {
    await handle.shutdown();
  }
});

test("undecodable or unknown bodies are refused and store nothing", async () => {
  const before = receiver.received().length;
  const bad = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/x-protobuf" },
    body: new Uint8Array([0x0a, 0x05, 0x01]),
  });
  assert.equal(bad.status, 400);
  const other = await fetch(`http://127.0.0.1:${port}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "hello",
  });
  assert.equal(other.status, 415);
  assert.equal(receiver.received().length, before);
});

test("OTLP/gRPC on the same port: startTracing with OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports there", async () => {
  let handle: TracingHandle | undefined;
  try {
    handle = await startTracing("grpc-name", {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_TRACES_SAMPLER: "always_on",
    });
    assert.ok(handle);
    const parent = tracing.tracer.startSpan("grpc-parent", { kind: SpanKind.SERVER });
    const child = tracing.tracer.startSpan(
      "grpc-child",
      { attributes: { n: 9 } },
      trace.setSpan(ROOT_CONTEXT, parent),
    );
    child.end();
    parent.end();
    await handle.shutdown();
    handle = undefined;
    const spans = receiver.received(parent.spanContext().traceId);
    assert.deepEqual(spans.map((s) => s.name).sort(), ["grpc-child", "grpc-parent"]);
    const c = spans.find((s) => s.name === "grpc-child")!;
    assert.equal(c.service, "grpc-name");
    assert.equal(c.parentSpanId, parent.spanContext().spanId);
    assert.deepEqual(c.attributes, { n: 9 });
  } finally {
    await handle?.shutdown();
  }
});

test("an undecodable OTLP/gRPC export is refused with INVALID_ARGUMENT and stores nothing", async () => {
  const grpc = await import("@grpc/grpc-js");
  const before = receiver.received().length;
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const err = await new Promise<{ code?: number; details?: string } | null>((resolve) =>
      client.makeUnaryRequest(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0x05, 0x01]),
        (e) => resolve(e),
      ),
    );
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err?.details ?? "", /undecodable export request/);
  } finally {
    client.close();
  }
  assert.equal(receiver.received().length, before);
});
