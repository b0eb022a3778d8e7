// The store sync a Raft snapshot waits for (MvccStore.syncToDisk), with its read thread cold
// (started by the sync itself, as when 60 s passed without a Range or sync) and started ahead
// (MvccStore.prepareSync, as the Raft loop does near a snapshot), in alternating rounds: each
// round opens a fresh store (so no thread runs), applies N unsynced 1 KB puts, then syncs.
// Also the process's RSS before and after the thread started (what an idle thread costs).
//
//   npx tsc -b && node bench/dist/mvcc/sync-cold.js [--puts N] [--rounds R]
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { MvccStore, putRequest } from "@etcd-ts/raft-node/mvcc";

const { values } = parseArgs({
  options: { puts: { type: "string", default: "5000" }, rounds: { type: "string", default: "6" } },
});
const puts = Number(values.puts);
const rounds = Number(values.rounds);
const mib = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const value = Buffer.alloc(1000, "x");

const dir = await mkdtemp(join(tmpdir(), "sync-cold-"));
try {
  for (let round = 0; round < rounds; round++) {
    const prepared = round % 2 === 1;
    const store = await MvccStore.open(join(dir, `db${round}`));
    for (let i = 0; i < puts; i++) {
      await store.apply({
        index: i + 1,
        term: 1,
        request: { put: putRequest({ key: Buffer.from(`k${i}`), value }) },
      });
    }
    const before = mib();
    if (prepared) {
      store.prepareSync();
      await sleep(500);
    }
    const started = performance.now();
    await store.syncToDisk();
    const ms = performance.now() - started;
    console.log(
      `round ${round + 1} ${prepared ? "started ahead" : "cold        "}: sync ${ms.toFixed(1)} ms, RSS ${before} -> ${mib()} MiB${prepared ? " (thread started ahead)" : ""}`,
    );
    await store.close();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
