import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { GrpcServerMetrics } from "./grpc-server-metrics.js";
import { serverObserver } from "./grpc-server-tracing.js";
import {
  decodeSpanContext,
  encodeSpanContext,
  parseTraceparent,
  SPAN_CONTEXT_BYTES,
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
  it("a span context round-trips through the 25 bytes a Raft entry carries", () => {
    const bytes = encodeSpanContext({ traceId: id, spanId: span, traceFlags: 1 });
    assert.equal(bytes.length, SPAN_CONTEXT_BYTES);
    assert.deepEqual(decodeSpanContext(bytes), { traceId: id, spanId: span, traceFlags: 1, isRemote: true });
    assert.throws(() => decodeSpanContext(bytes.subarray(1)), RangeError);
  });
});
