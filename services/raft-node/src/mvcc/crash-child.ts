// The writer the crash test kills: applies the deterministic workload from where the store
// left off, in batches of random size, and prints each batch's last index once applyBatch has
// returned (the RocksDB write is done; stdout to a pipe is synchronous on Linux, so the line is
// never printed before the write).
// Usage: crash-child <dir> <seed> <maxIndex> <sync|async>, then a line on stdin to start.
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { workloadRequest } from "./crash-workload.js";
import { type ApplyEntry, MvccStore } from "./store.js";

const [dir, seedArg, maxIndexArg, mode] = process.argv.slice(2);
const seed = Number(seedArg);
const maxIndex = Number(maxIndexArg);

// The test starts the next writer while the previous one runs, so that module loading overlaps
// it; the database is only opened on the go-ahead line, once the previous writer is dead.
await new Promise<void>((resolve) => process.stdin.once("data", () => resolve()));
process.stdin.destroy();

const store = await MvccStore.open(dir!, { syncWrites: mode === "sync", compactionSliceKeys: 4 });
let next = store.appliedIndex + 1;
process.stdout.write(`ready ${store.appliedIndex}\n`);
while (next <= maxIndex) {
  const size = 1 + Math.floor(Math.random() * 32);
  const entries: ApplyEntry[] = [];
  for (let i = 0; i < size && next <= maxIndex; i++, next++) {
    entries.push({ index: next, term: 1, request: workloadRequest(seed, next) });
  }
  await store.applyBatch(entries);
  process.stdout.write(`acked ${entries[entries.length - 1]!.index}\n`);
  // Let compaction slices run between batches, as they would between Raft ready rounds.
  await yieldToEventLoop();
}
await store.close();
