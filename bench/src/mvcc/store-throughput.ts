// MVCC store throughput on RocksDB: applied puts/s (256-byte values, 1 and 256 entries per
// RocksDB batch), ranges/s at the current and at a historical revision, and what 1 million
// keys cost: RSS, V8 heap, disk, and the time to rebuild the key index at open.
//
//   node --conditions=source --import tsx bench/src/mvcc/store-throughput.ts [keys]

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import {
  type ApplyEntry,
  MvccStore,
  putRequest,
  rangeRequest,
} from "../../../services/raft-node/src/mvcc/mod.js";

const KEYS = Number(process.argv[2] ?? 1_000_000);
const SINGLE_PUTS = 30_000;
const VALUE = Buffer.alloc(256, 0x61);
const READS = 100_000;
const HISTORY_KEYS = 100_000;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const keyOf = (i: number) => Buffer.from(`/registry/pods/default/pod-${String(i).padStart(8, "0")}`);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString("en")}/s`;

function memory(): { rss: number; heap: number } {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(process.env.MVCC_BENCH_DIR ?? tmpdir(), "mvcc-bench-"));
  const location = join(dir, "db");
  const results: Record<string, string> = {};
  try {
    const baseline = memory();
    let store = await MvccStore.open(location, { sizeRefreshMs: 0 });
    let index = 0;

    // One entry per RocksDB batch: what a lightly loaded member does per Raft ready.
    let start = performance.now();
    for (let i = 0; i < SINGLE_PUTS; i++) {
      index++;
      await store.applyBatch([
        { index, term: 1, request: { put: putRequest({ key: keyOf(i), value: VALUE }) } },
      ]);
    }
    results["puts/s, 1 per batch"] = rate(SINGLE_PUTS, performance.now() - start);

    // 256 entries per batch, up to KEYS distinct keys.
    start = performance.now();
    for (let i = SINGLE_PUTS; i < KEYS; ) {
      const entries: ApplyEntry[] = [];
      for (let j = 0; j < 256 && i < KEYS; j++, i++) {
        index++;
        entries.push({ index, term: 1, request: { put: putRequest({ key: keyOf(i), value: VALUE }) } });
      }
      await store.applyBatch(entries);
    }
    results["puts/s, 256 per batch"] = rate(KEYS - SINGLE_PUTS, performance.now() - start);

    // History: overwrite some keys so older revisions exist to be read.
    const historicalRevision = store.revision;
    for (let i = 0; i < HISTORY_KEYS; ) {
      const entries: ApplyEntry[] = [];
      for (let j = 0; j < 256 && i < HISTORY_KEYS; j++, i++) {
        index++;
        entries.push({
          index,
          term: 1,
          request: { put: putRequest({ key: keyOf(i), value: Buffer.alloc(256, 0x62) }) },
        });
      }
      await store.applyBatch(entries);
    }

    const loaded = memory();
    results[`RSS with ${KEYS.toLocaleString("en")} keys`] = mb(loaded.rss);
    results["RSS growth"] = mb(loaded.rss - baseline.rss);
    results["V8 heap growth (key index)"] =
      `${mb(loaded.heap - baseline.heap)} (${Math.round((loaded.heap - baseline.heap) / KEYS)} B/key)`;
    results["disk before reopen (SST + WAL)"] = mb(store.backendSize);

    const randomKey = () => keyOf(Math.floor(Math.random() * KEYS));
    const randomOldKey = () => keyOf(Math.floor(Math.random() * HISTORY_KEYS));

    start = performance.now();
    for (let i = 0; i < READS; i++) await store.range(rangeRequest({ key: randomKey() }));
    results["single-key ranges/s, current revision, sequential"] = rate(READS, performance.now() - start);

    start = performance.now();
    for (let i = 0; i < READS; i += 64) {
      await Promise.all(Array.from({ length: 64 }, () => store.range(rangeRequest({ key: randomKey() }))));
    }
    results["single-key ranges/s, current revision, 64 concurrent"] = rate(READS, performance.now() - start);

    start = performance.now();
    for (let i = 0; i < READS; i++) {
      const r = await store.range(rangeRequest({ key: randomOldKey(), revision: historicalRevision }));
      if (r.kvs[0]!.value[0] !== 0x61) throw new Error("historical read returned the current value");
    }
    results["single-key ranges/s, historical revision"] = rate(READS, performance.now() - start);

    const prefixReads = 2_000;
    start = performance.now();
    for (let i = 0; i < prefixReads; i++) {
      const first = Math.floor(Math.random() * (KEYS - 100));
      await store.range(rangeRequest({ key: keyOf(first), rangeEnd: keyOf(first + 100) }));
    }
    results["100-key ranges/s"] = rate(prefixReads, performance.now() - start);

    start = performance.now();
    const all = await store.range(rangeRequest({ key: "\0", rangeEnd: "\0", countOnly: true }));
    results[`count of all ${all.count.toLocaleString("en")} keys`] =
      `${(performance.now() - start).toFixed(0)} ms`;

    start = performance.now();
    await store.range(rangeRequest({ key: "\0", rangeEnd: "\0", limit: 10_000 }));
    results["first 10,000 of all keys (limit, count of all)"] =
      `${(performance.now() - start).toFixed(0)} ms`;

    await store.close();
    start = performance.now();
    store = await MvccStore.open(location, { sizeRefreshMs: 0 });
    results["reopen (rebuild key index from RocksDB)"] = `${(performance.now() - start).toFixed(0)} ms`;
    results["disk after reopen (memtable flushed)"] = mb(store.backendSize);
    const reopened = memory();
    results["RSS after reopen"] = mb(reopened.rss);

    start = performance.now();
    await store.applyBatch([
      { index: index + 1, term: 1, request: { compaction: { revision: store.revision, physical: true } } },
    ]);
    await store.compactionDone();
    results[`compaction of ${HISTORY_KEYS.toLocaleString("en")} superseded revisions`] =
      `${(performance.now() - start).toFixed(0)} ms`;
    start = performance.now();
    const hash = await store.hashKV(0);
    results["HashKV over all revisions"] =
      `${(performance.now() - start).toFixed(0)} ms (0x${hash.hash.toString(16)})`;
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const width = Math.max(...Object.keys(results).map((k) => k.length));
  for (const [name, value] of Object.entries(results)) console.log(`${name.padEnd(width)}  ${value}`);
}

await main();
