// What GrpcHttp2Server's metrics hook costs per call: unary calls to an in-process server
// without an observer and with @etcd-ts/telemetry's GrpcServerMetrics, in alternating rounds
// of one run (the machine is shared: compare the two columns, not runs), and the observer's
// own work per call measured alone.
// Usage: node --conditions=source --import tsx src/telemetry/grpc-observer-cost.ts [calls] [rounds]

import { GrpcHttp2Server, type ServerCall } from "@etcd-ts/api";
import { GrpcServerMetrics } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";

const calls = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 4);
const concurrency = 32;
const pass = (b: Buffer) => b;
const answer = Buffer.alloc(40, 1);

async function callsPerSecond(observed: boolean): Promise<number> {
  const server = new GrpcHttp2Server(
    observed ? { observer: new GrpcServerMetrics(new Registry(), { etcdClientBytes: true }) } : {},
  );
  server.register("/etcdserverpb.KV/Put", {
    kind: "unary",
    handle: (call) => {
      call.sendMessage(answer);
      call.finish({ code: 0 });
    },
  });
  const port = await server.listen("127.0.0.1:0");
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const request = Buffer.alloc(300, 2);
  const one = () =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest("/etcdserverpb.KV/Put", pass, pass, request, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  let left = calls;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await one();
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  client.close();
  await server.close(100);
  return calls / seconds;
}

/** The observer's own work for one unary call (started, one message each way, handled), in ns. */
function observerNsPerCall(n: number): number {
  const method = new GrpcServerMetrics(new Registry(), { etcdClientBytes: true }).method(
    "/etcdserverpb.KV/Put",
    "unary",
  );
  // The metrics observer never reads the call it is handed (the tracer does).
  const call = {} as ServerCall;
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    method.started(call);
    method.received(300);
    method.sent(40);
    method.handled(0, 0.0004, call);
  }
  return ((performance.now() - started) * 1e6) / n;
}
observerNsPerCall(100_000); // warm-up
console.log(`observer work per unary call: ${observerNsPerCall(1_000_000).toFixed(0)} ns`);

const off: number[] = [];
const on: number[] = [];
await callsPerSecond(false); // warm-up
for (let r = 0; r < rounds; r++) {
  off.push(await callsPerSecond(false));
  on.push(await callsPerSecond(true));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `unary calls/s without observer: ${off.map((x) => x.toFixed(0)).join(" ")} (median ${median(off).toFixed(0)})`,
);
console.log(
  `unary calls/s with metrics:     ${on.map((x) => x.toFixed(0)).join(" ")} (median ${median(on).toFixed(0)})`,
);
console.log(`ratio with/without: ${(median(on) / median(off)).toFixed(3)}`);
