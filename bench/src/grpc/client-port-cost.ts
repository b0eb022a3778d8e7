// What the client port's first-bytes routing costs gRPC (issue 14's goal: <= 5%): the same
// GrpcHttp2Server answering KV/Range with a fixed message, once listening with the routing
// (HTTP/2 or HTTP/1.1 chosen by a connection's first bytes, its first header block read for an
// :authority nghttp2 would refuse; what members and the gateway do) and once handing every
// connection to node:http2 unread. bench/goload drives range-ser at each in alternating rounds
// of one run; this process serves both, so its CPU time per call in a round is the server's.
// The machine is shared: compare the two columns within the run.
//
//   node bench/dist/grpc/client-port-cost.js [--rounds 6] [--total 40000] [--conns 10] [--clients 100]
import { existsSync } from "node:fs";
import { etcdserverpb, GrpcHttp2Server } from "@etcd-ts/api";
import { GOLOAD_BIN, runGoload } from "../goload.js";

const opts = { rounds: 6, total: 40_000, conns: 10, clients: 100 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const flag = argv[i]!.replace(/^--/, "") as keyof typeof opts;
  const value = Number(argv[i + 1]);
  if (!(flag in opts) || !Number.isInteger(value) || value <= 0)
    throw new Error(
      `usage: client-port-cost [--rounds N] [--total N] [--conns N] [--clients N] (bad ${argv[i]})`,
    );
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

const targets = [await serve(true), await serve(false)];
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
const routed = results.get("routed")!;
console.log(
  `\nKV/Range (serializable), ${opts.conns} conns x ${opts.clients} clients, ${opts.total} calls/cell, medians of ${opts.rounds} rounds:\n` +
    `  unrouted (connections straight to node:http2)  ${median(base.ops).toFixed(0)} calls/s, ${median(base.cpu).toFixed(1)} us CPU/call\n` +
    `  routed (first bytes read, HTTP/1.1 possible)   ${median(routed.ops).toFixed(0)} calls/s (${((100 * median(routed.ops)) / median(base.ops)).toFixed(1)}%), ${median(routed.cpu).toFixed(1)} us CPU/call (${((100 * median(routed.cpu)) / median(base.cpu)).toFixed(1)}%)`,
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
