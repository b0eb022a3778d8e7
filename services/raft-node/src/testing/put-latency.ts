// A bounded single-client put loop against a member's client URL: prints p50/p99 latency and
// throughput. Usage: node --import tsx put-latency.ts <host:port> [count] [valueBytes]

import { etcdserverpb } from "@etcd-ts/api";
import { Client, credentials } from "@grpc/grpc-js";

export async function measurePuts(
  target: string,
  count: number,
  valueBytes = 256,
): Promise<{ p50: number; p99: number; opsPerSec: number }> {
  // Answers are not decoded: real etcd's 64-bit member IDs do not fit a JS number, and the
  // probe must measure real etcd the same way for a fair comparison.
  const client = new Client(target, credentials.createInsecure());
  const value = Buffer.alloc(valueBytes, 120);
  const encode = (req: etcdserverpb.PutRequest) => Buffer.from(etcdserverpb.PutRequest.encode(req).finish());
  const put = (key: Buffer) =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(
        "/etcdserverpb.KV/Put",
        encode,
        (bytes: Buffer) => bytes,
        etcdserverpb.PutRequest.fromPartial({ key, value }),
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  await put(Buffer.from("warmup"));
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await put(Buffer.from(`key${String(i % 1000).padStart(5, "0")}`));
    times.push(performance.now() - t0);
  }
  const elapsed = performance.now() - start;
  client.close();
  times.sort((a, b) => a - b);
  return {
    p50: times[Math.floor(times.length / 2)]!,
    p99: times[Math.floor(times.length * 0.99)]!,
    opsPerSec: (count * 1000) / elapsed,
  };
}

if (process.argv[1]?.endsWith("put-latency.ts") || process.argv[1]?.endsWith("put-latency.js")) {
  const [target, count = "500", size = "256"] = process.argv.slice(2);
  if (target === undefined) {
    process.stderr.write("usage: put-latency <host:port> [count] [valueBytes]\n");
    process.exit(2);
  }
  const r = await measurePuts(target, Number(count), Number(size));
  process.stdout.write(
    `puts: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.opsPerSec.toFixed(0)} ops/s\n`,
  );
}
