// A bounded put load against a member's client URL: `clients` concurrent callers over
// `connections` gRPC channels, `count` puts in all; prints p50/p99 latency and throughput.
// Answers are not decoded, so real etcd (64-bit IDs) is measured the same way.
// Usage: node --import tsx put-latency.ts <host:port> [count] [clients] [connections] [valueBytes]

import { etcdserverpb } from "@etcd-ts/api";
import { Client, credentials } from "@grpc/grpc-js";

export interface PutLoad {
  count: number;
  clients?: number;
  connections?: number;
  valueBytes?: number;
}

export async function measurePuts(
  target: string,
  load: PutLoad,
): Promise<{ p50: number; p99: number; opsPerSec: number }> {
  const clients = load.clients ?? 1;
  const channels = Array.from(
    { length: load.connections ?? 1 },
    (_, i) => new Client(target, credentials.createInsecure(), { "grpc.channel_id": i }),
  );
  const value = Buffer.alloc(load.valueBytes ?? 256, 120);
  const encode = (req: etcdserverpb.PutRequest) => Buffer.from(etcdserverpb.PutRequest.encode(req).finish());
  const put = (client: Client, key: Buffer) =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(
        "/etcdserverpb.KV/Put",
        encode,
        (bytes: Buffer) => bytes,
        etcdserverpb.PutRequest.fromPartial({ key, value }),
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  for (const c of channels) await put(c, Buffer.from("warmup"));
  const times: number[] = [];
  let issued = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, w) => {
      const client = channels[w % channels.length]!;
      while (issued < load.count) {
        const i = issued++;
        const t0 = performance.now();
        await put(client, Buffer.from(`key${String(i % 10_000).padStart(5, "0")}`));
        times.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = performance.now() - start;
  for (const c of channels) c.close();
  times.sort((a, b) => a - b);
  return {
    p50: times[Math.floor(times.length / 2)]!,
    p99: times[Math.floor(times.length * 0.99)]!,
    opsPerSec: (load.count * 1000) / elapsed,
  };
}

if (process.argv[1]?.endsWith("put-latency.ts") || process.argv[1]?.endsWith("put-latency.js")) {
  const [target, count = "500", clients = "1", connections = "1", size = "256"] = process.argv.slice(2);
  if (target === undefined) {
    process.stderr.write("usage: put-latency <host:port> [count] [clients] [connections] [valueBytes]\n");
    process.exit(2);
  }
  const r = await measurePuts(target, {
    count: Number(count),
    clients: Number(clients),
    connections: Number(connections),
    valueBytes: Number(size),
  });
  process.stdout.write(
    `puts x${clients}: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.opsPerSec.toFixed(0)} ops/s\n`,
  );
}
