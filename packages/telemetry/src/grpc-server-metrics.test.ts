// go-grpc-prometheus's series, fed by a real GrpcHttp2Server answering grpc-js's client.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { GrpcHttp2Server } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { parseExposition, sampleValue } from "./exposition.js";
import { GrpcServerMetrics } from "./grpc-server-metrics.js";
import { processRegistry, writeMetrics } from "./registry.js";

const pass = (b: Buffer) => b;

/** `series` as PromQL writes it: name{a="x",b="y"}. */
function sample(text: string, series: string): number | undefined {
  const brace = series.indexOf("{");
  const name = brace < 0 ? series : series.slice(0, brace);
  const labels = brace < 0 ? {} : parseExposition(`x{${series.slice(brace + 1, -1)}} 0`)[0]!.labels;
  const samples = parseExposition(text).filter(
    (s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length,
  );
  return sampleValue(samples, name, labels);
}

describe("GrpcServerMetrics", () => {
  const registry = new Registry();
  let server: GrpcHttp2Server;
  let client: grpc.Client;

  before(async () => {
    server = new GrpcHttp2Server({ observer: new GrpcServerMetrics(registry, { etcdClientBytes: true }) });
    server.register("/etcdserverpb.KV/Range", {
      kind: "unary",
      handle: (call) => {
        call.sendMessage(Buffer.from("answer"));
        call.finish({ code: grpc.status.OK });
      },
    });
    server.register("/etcdserverpb.KV/Put", {
      kind: "unary",
      handle: (call) =>
        call.finish({ code: grpc.status.INVALID_ARGUMENT, details: "etcdserver: key is not provided" }),
    });
    server.register("/etcdserverpb.Watch/Watch", {
      kind: "bidi",
      handle: (call) => {
        call.on("message", (m: Buffer) => call.sendMessage(m));
        call.on("halfClose", () => call.finish({ code: grpc.status.OK }));
      },
    });
    // Answers and never ends the call itself: only the client can, by leaving.
    server.register("/etcdserverpb.Lease/LeaseKeepAlive", {
      kind: "bidi",
      handle: (call) => call.on("message", (m: Buffer) => call.sendMessage(m)),
    });
    const port = await server.listen("127.0.0.1:0");
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client.close();
    await server.close(100);
  });

  const unary = (path: string, body: Buffer) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(path, pass, pass, body, (err) => resolve(err)),
    );

  it("creates every method's series at zero, as InitializeMetrics does", async () => {
    const text = await registry.metrics();
    const labels = 'grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"';
    assert.equal(sample(text, `grpc_server_started_total{${labels}}`), 0);
    assert.equal(sample(text, `grpc_server_handled_total{${labels},grpc_code="Unauthenticated"}`), 0);
    assert.equal(sample(text, `grpc_server_handling_seconds_count{${labels}}`), 0);
    assert.equal(
      sample(
        text,
        'grpc_server_msg_received_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}',
      ),
      0,
    );
  });

  it("counts calls, messages, codes (by grpc-go's names), bytes and handling time", async () => {
    assert.equal(await unary("/etcdserverpb.KV/Range", Buffer.from("query")), null);
    assert.equal((await unary("/etcdserverpb.KV/Put", Buffer.alloc(0)))?.code, grpc.status.INVALID_ARGUMENT);
    await new Promise<void>((resolve, reject) => {
      const stream = client.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", pass, pass);
      let got = 0;
      stream.on("data", () => {
        if (++got === 2) stream.end();
      });
      stream.on("status", (s: grpc.StatusObject) =>
        s.code === 0 ? resolve() : reject(new Error(s.details)),
      );
      stream.on("error", () => {});
      stream.write(Buffer.from("a"));
      stream.write(Buffer.from("bc"));
    });
    const text = await registry.metrics();
    const range = 'grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"';
    const put = 'grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"';
    const watch = 'grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"';
    assert.equal(sample(text, `grpc_server_started_total{${range}}`), 1);
    assert.equal(sample(text, `grpc_server_handled_total{${range},grpc_code="OK"}`), 1);
    // Labels in the order etcd (client_golang) prints them: tools match this text verbatim.
    assert.ok(
      text.includes(
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1\n',
      ),
    );
    assert.ok(text.includes(`grpc_server_started_total{${range}} 1\n`));
    assert.equal(sample(text, `grpc_server_msg_received_total{${range}}`), 1);
    assert.equal(sample(text, `grpc_server_msg_sent_total{${range}}`), 1);
    assert.equal(sample(text, `grpc_server_handled_total{${put},grpc_code="InvalidArgument"}`), 1);
    assert.equal(sample(text, `grpc_server_handled_total{${put},grpc_code="OK"}`), 0);
    assert.equal(sample(text, `grpc_server_msg_received_total{${watch}}`), 2);
    assert.equal(sample(text, `grpc_server_msg_sent_total{${watch}}`), 2);
    assert.equal(sample(text, `grpc_server_handled_total{${watch},grpc_code="OK"}`), 1);
    assert.equal(sample(text, `grpc_server_handling_seconds_count{${range}}`), 1);
    // "query" in, "answer" out; the Put's empty body; the Watch's "a", "bc" both ways.
    assert.equal(sample(text, "etcd_network_client_grpc_received_bytes_total"), 5 + 0 + 3);
    assert.equal(sample(text, "etcd_network_client_grpc_sent_bytes_total"), 6 + 3);
  });

  it("counts a call the client abandons as Canceled", async () => {
    await new Promise<void>((resolve) => {
      const stream = client.makeBidiStreamRequest("/etcdserverpb.Lease/LeaseKeepAlive", pass, pass);
      stream.on("error", () => resolve());
      stream.write(Buffer.from("x"));
      stream.on("data", () => stream.cancel());
    });
    const labels = 'grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"';
    for (let i = 0; i < 100; i++) {
      const text = await registry.metrics();
      if (sample(text, `grpc_server_handled_total{${labels},grpc_code="Canceled"}`) === 1) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.fail("the cancelled call was never counted");
  });
});

describe("processRegistry and writeMetrics", () => {
  it("serves process_* metrics in the text format", async () => {
    const registry = processRegistry();
    const server = http.createServer((_req, res) => writeMetrics(registry, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const address = server.address() as { port: number };
      const res = await fetch(`http://127.0.0.1:${address.port}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.match(text, /^process_cpu_seconds_total \d/m);
      assert.match(text, /^process_start_time_seconds \d/m);
      assert.match(text, /^process_resident_memory_bytes \d/m);
    } finally {
      server.close();
    }
  });
});
