// Fan-out cost of the watch layer: one applied event delivered to N watchers, all synced, as
// when thousands of clients watch the same prefix (Kubernetes informers, service discovery).
// Measures notify() on the apply path plus queueing into each stream, with nothing else running.
//
//   node --conditions=source --import tsx bench/src/watch/fanout.ts [watchers] [streams]
import { MemoryEventLog, WatchableStore, WatchStream } from "@etcd-ts/raft-node/watch";

const watcherCount = Number(process.argv[2] ?? 10_000);
const streamCount = Number(process.argv[3] ?? 100);
const rounds = 50;

function setUp(shape: "same-prefix" | "distinct-keys") {
  const log = new MemoryEventLog();
  const store = new WatchableStore({ history: log, currentRevision: 0 });
  log.onApply = (revision, events) => store.notify(revision, events);
  const streams = Array.from(
    { length: streamCount },
    () => new WatchStream(store, { progressIntervalMs: 0 }),
  );
  for (let i = 0; i < watcherCount; i++) {
    const key = shape === "same-prefix" ? "/registry/pods/" : `/registry/pods/${i}`;
    streams[i % streamCount].create({
      key: Buffer.from(key),
      rangeEnd: Buffer.from(shape === "same-prefix" ? "/registry/pods0" : ""),
      startRevision: 0,
      progressNotify: false,
      filters: [],
      prevKv: false,
      watchId: 0,
      fragment: false,
    });
  }
  for (const stream of streams) while (stream.poll() !== undefined);
  return { log, streams };
}

function measure(shape: "same-prefix" | "distinct-keys", key: (round: number) => string) {
  const { log, streams } = setUp(shape);
  const samples: number[] = [];
  let delivered = 0;
  for (let round = 0; round < rounds; round++) {
    const start = process.hrtime.bigint();
    log.put(key(round), "value-of-some-length-0123456789");
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    // The consumer side (what the gRPC layer would do) is not timed.
    for (const stream of streams) for (let r = stream.poll(); r !== undefined; r = stream.poll()) delivered++;
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)];
  const p90 = samples[Math.floor(samples.length * 0.9)];
  console.log(
    `${shape.padEnd(14)} ${watcherCount} watchers / ${streamCount} streams: ` +
      `median ${median.toFixed(2)} ms, p90 ${p90.toFixed(2)} ms per applied event; ${delivered} responses`,
  );
}

// Every watcher on the prefix receives each event.
measure("same-prefix", (round) => `/registry/pods/p-${round}`);
// One watcher per key: each event reaches exactly one of them through the key map.
measure("distinct-keys", (round) => `/registry/pods/${round}`);
