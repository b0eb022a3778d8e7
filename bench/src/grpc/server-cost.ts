// What one unary gRPC call costs the server's transport: KV/Range answered with a fixed message
// by GrpcHttp2Server (our own HTTP/2) with the client port's first-bytes routing (HTTP/2 or
// HTTP/1.1 on one port; what members and the gateway do), by it without the routing, and by a
// bare responder on node:http2 (what GrpcHttp2Server was built on until 2026-12-06: the floor of
// that transport, with no ServerCall, metadata or deadline work at all). bench/goload drives
// range-ser at each in alternating rounds of one run; this process serves all three, so its CPU
// time per call in a round is the server's. The machine is shared: compare within the run.
//
//   node bench/dist/grpc/server-cost.js [--rounds 6] [--total 40000] [--conns 10] [--clients 100]
import { existsSync } from "node:fs";
import http2 from "node:http2";
import { etcdserverpb, GrpcHttp2Server } from "@etcd-ts/api";
import { GOLOAD_BIN, runGoload } from "../goload.js";

const opts = { rounds: 6, total: 40_000, conns: 10, clients: 100 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const flag = argv[i]!.replace(/^--/, "") as keyof typeof opts;
  const value = Number(argv[i + 1]);
  if (!(flag in opts) || !Number.isInteger(value) || value <= 0)
    throw new Error(`usage: server-cost [--rounds N] [--total N] [--conns N] [--clients N] (bad ${argv[i]})`);
  opts[flag] = value;
}
if (!existsSync(GOLOAD_BIN))
  throw new Error(`${GOLOAD_BIN} missing: run bench/goload/build.sh (or set GOLOAD)`);

const answer = Buffer.from(
  etcdserverpb.RangeResponse.encode(
    etcdserverpb.RangeResponse.fromPartial({
      header: { clusterId: 1n, memberId: 1n, revision: 2n, raftTerm: 2n },
      kvs: [
        {
          key: Buffer.from("foo"),
          value: Buffer.alloc(256, 1),
          createRevision: 2n,
          modRevision: 2n,
          version: 1n,
        },
      ],
      count: 1n,
    }),
  ).finish(),
);

const putAnswer = Buffer.from(
  etcdserverpb.PutResponse.encode(
    etcdserverpb.PutResponse.fromPartial({ header: { revision: 2n } }),
  ).finish(),
);

async function serve(
  routeFirstBytes: boolean,
): Promise<{ name: string; endpoint: string; server: GrpcHttp2Server }> {
  const server = new GrpcHttp2Server({
    routeFirstBytes,
    http1: routeFirstBytes ? (_req, res) => res.end() : undefined,
  });
  server.register("/etcdserverpb.KV/Range", {
    kind: "unary",
    handle: (call) => {
      call.sendMessage(answer);
      call.finish({ code: 0 });
    },
  });
  // goload writes the key it reads first.
  server.register("/etcdserverpb.KV/Put", {
    kind: "unary",
    handle: (call) => {
      call.sendMessage(putAnswer);
      call.finish({ code: 0 });
    },
  });
  const port = await server.listen("127.0.0.1:0");
  return { name: routeFirstBytes ? "routed" : "unrouted", endpoint: `127.0.0.1:${port}`, server };
}

/** The least a node:http2 server can do per gRPC call: headers, one framed message, trailers. */
async function serveNodeHttp2(): Promise<{
  name: string;
  endpoint: string;
  server: { close(ms: number): Promise<void> };
}> {
  const framed = (message: Buffer) => {
    const out = Buffer.alloc(5 + message.length);
    out.writeUInt32BE(message.length, 1);
    message.copy(out, 5);
    return out;
  };
  const range = framed(answer);
  const put = framed(putAnswer);
  const server = http2.createServer({ settings: { initialWindowSize: 8 * 1024 * 1024 } });
  server.on("stream", (stream, headers) => {
    const body = headers[":path"] === "/etcdserverpb.KV/Put" ? put : range;
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    name: "node:http2",
    endpoint: `127.0.0.1:${port}`,
    server: { close: () => new Promise<void>((resolve) => server.close(() => resolve())) },
  };
}

const targets = [await serve(true), await serve(false), await serveNodeHttp2()];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = new Map(targets.map((t) => [t.name, { ops: [] as number[], cpu: [] as number[] }]));
for (const t of targets) await runGoload([...args(t.endpoint, 5_000), "-label", "warmup"]);
for (let round = 0; round < opts.rounds; round++) {
  for (let k = 0; k < targets.length; k++) {
    const t = targets[(k + round) % targets.length]!;
    const before = process.cpuUsage();
    const r = await runGoload([...args(t.endpoint, opts.total), "-label", t.name]);
    const used = process.cpuUsage(before);
    const us = (used.user + used.system) / Math.max(1, r.ok);
    results.get(t.name)!.ops.push(r.ops_per_s);
    results.get(t.name)!.cpu.push(us);
    console.log(
      `round ${round + 1} ${t.name.padEnd(8)} ${r.ops_per_s.toFixed(0)} calls/s, ${us.toFixed(1)} us server CPU/call, errors ${r.errors}`,
    );
  }
}
const base = results.get("unrouted")!;
const line = (label: string, r: { ops: number[]; cpu: number[] }) =>
  `  ${label.padEnd(50)} ${median(r.ops).toFixed(0)} calls/s (${((100 * median(r.ops)) / median(base.ops)).toFixed(1)}%), ${median(r.cpu).toFixed(1)} us CPU/call (${((100 * median(r.cpu)) / median(base.cpu)).toFixed(1)}%)`;
console.log(
  `\nKV/Range (serializable), ${opts.conns} conns x ${opts.clients} clients, ${opts.total} calls/cell, medians of ${opts.rounds} rounds (% of unrouted):\n` +
    `${line("ours, unrouted (connections straight to HTTP/2)", base)}\n` +
    `${line("ours, routed (first bytes read, HTTP/1.1 possible)", results.get("routed")!)}\n` +
    `${line("bare node:http2 responder", results.get("node:http2")!)}`,
);
for (const t of targets) await t.server.close(1_000);

function args(endpoint: string, total: number): string[] {
  return [
    "-endpoints",
    endpoint,
    "-op",
    "range-ser",
    "-conns",
    String(opts.conns),
    "-clients",
    String(opts.clients),
    "-total",
    String(total),
    "-timeout-s",
    "120",
  ];
}
