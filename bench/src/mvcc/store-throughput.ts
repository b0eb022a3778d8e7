// MVCC store throughput on RocksDB: applied puts/s (256-byte values, 1 and 256 entries per
// RocksDB batch), ranges/s at the current and at a historical revision, and what 1 million
// keys cost: RSS, V8 heap, disk, the time to rebuild the key index at open, compaction and
// HashKV. Values are random bytes, so ZSTD cannot flatter the disk numbers.
//
//   node --conditions=source --import tsx bench/src/mvcc/store-throughput.ts [keys]
//   MVCC_BENCH_SMAPS=1 also prints /proc/self/smaps_rollup and the largest mappings once
//   the keys are loaded (where RSS beyond V8's heap and RocksDB's own accounting lives).

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type ApplyEntry, MvccStore, putRequest, rangeRequest } from "@etcd-ts/raft-node/mvcc";

const KEYS = Math.max(Number(process.argv[2] ?? 1_000_000), 20_000);
const SINGLE_PUTS = Math.min(30_000, KEYS / 4);
const HISTORY_KEYS = Math.min(100_000, KEYS / 4);
const READS = 100_000;
const VALUE_BYTES = 256;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const POOL = randomBytes(1 << 20);
/** Value of key i in generation g: a window of the random pool. */
function storedValue(i: number, g: number): Buffer {
  const at = (i * 7919 + g * 104_729) % (POOL.length - VALUE_BYTES);
  return POOL.subarray(at, at + VALUE_BYTES);
}
const keyOf = (i: number) => Buffer.from(`/registry/pods/default/pod-${String(i).padStart(8, "0")}`);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString("en")}/s`;
const since = (start: number) => `${(performance.now() - start).toFixed(0)} ms`;

function memory(): NodeJS.MemoryUsage {
  gc();
  return process.memoryUsage();
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(process.env.MVCC_BENCH_DIR ?? tmpdir(), "mvcc-bench-"));
  const location = join(dir, "db");
  const results: Record<string, string> = {};
  let index = 0;
  const putEntry = (i: number, g: number): ApplyEntry => ({
    index: ++index,
    term: 1,
    request: { put: putRequest({ key: keyOf(i), value: storedValue(i, g) }) },
  });
  try {
    const baseline = memory();
    let store = await MvccStore.open(location, {});

    // One entry per RocksDB batch: what a lightly loaded member does per Raft ready.
    let start = performance.now();
    for (let i = 0; i < SINGLE_PUTS; i++) await store.applyBatch([putEntry(i, 0)]);
    results["puts/s, 1 per batch"] = rate(SINGLE_PUTS, performance.now() - start);

    start = performance.now();
    for (let i = SINGLE_PUTS; i < KEYS; ) {
      const entries: ApplyEntry[] = [];
      for (let j = 0; j < 256 && i < KEYS; j++, i++) entries.push(putEntry(i, 0));
      await store.applyBatch(entries);
    }
    results["puts/s, 256 per batch"] = rate(KEYS - SINGLE_PUTS, performance.now() - start);

    // Overwrite some keys so that older revisions exist to be read.
    const historicalRevision = store.revision;
    for (let i = 0; i < HISTORY_KEYS; ) {
      const entries: ApplyEntry[] = [];
      for (let j = 0; j < 256 && i < HISTORY_KEYS; j++, i++) entries.push(putEntry(i, 1));
      await store.applyBatch(entries);
    }

    const loaded = memory();
    results[`RSS with ${KEYS.toLocaleString("en")} keys`] = mb(loaded.rss);
    results["RSS growth"] = mb(loaded.rss - baseline.rss);
    results["V8 heap growth (the key index)"] =
      `${mb(loaded.heapUsed - baseline.heapUsed)} (${Math.round((loaded.heapUsed - baseline.heapUsed) / KEYS)} B/key)`;
    results["V8 heap committed / external"] = `${mb(loaded.heapTotal)} / ${mb(loaded.external)}`;
    results["disk before reopen (SST + WAL)"] = mb(store.backendSize);
    if (process.env.MVCC_BENCH_SMAPS) {
      const { readFileSync } = await import("node:fs");
      console.log(readFileSync("/proc/self/smaps_rollup", "utf8"));
      const smaps = readFileSync("/proc/self/smaps", "utf8").split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
      const big = smaps
        .map((m) => ({ head: m.split("\n")[0], rss: Number(/\nRss:\s+(\d+)/.exec(m)?.[1] ?? 0) }))
        .sort((a, b) => b.rss - a.rss)
        .slice(0, 12);
      for (const m of big) console.log(m.rss, "kB", m.head);
    }
    const rocks = (name: string) => store.rocksProperty(name);
    results["RocksDB memtables / block cache / table readers"] =
      `${mb(rocks("rocksdb.cur-size-all-mem-tables"))} / ${mb(rocks("rocksdb.block-cache-usage"))} / ${mb(rocks("rocksdb.estimate-table-readers-mem"))}`;

    const randomKey = (n: number) => Math.floor(Math.random() * n);
    start = performance.now();
    for (let r = 0; r < READS; r++) await store.range(rangeRequest({ key: keyOf(randomKey(KEYS)) }));
    results["single-key ranges/s, current revision, sequential"] = rate(READS, performance.now() - start);

    start = performance.now();
    for (let r = 0; r < READS; r += 64) {
      await Promise.all(
        Array.from({ length: 64 }, () => store.range(rangeRequest({ key: keyOf(randomKey(KEYS)) }))),
      );
    }
    results["single-key ranges/s, current revision, 64 concurrent"] = rate(READS, performance.now() - start);

    start = performance.now();
    for (let r = 0; r < READS; r++) {
      const i = randomKey(HISTORY_KEYS);
      const got = await store.range(rangeRequest({ key: keyOf(i), revision: historicalRevision }));
      if (!got.kvs[0]!.value.equals(storedValue(i, 0)))
        throw new Error("historical read did not return the old value");
    }
    results["single-key ranges/s, historical revision"] = rate(READS, performance.now() - start);

    const prefixReads = 2_000;
    start = performance.now();
    for (let r = 0; r < prefixReads; r++) {
      const first = randomKey(KEYS - 100);
      await store.range(rangeRequest({ key: keyOf(first), rangeEnd: keyOf(first + 100) }));
    }
    results["100-key ranges/s"] = rate(prefixReads, performance.now() - start);

    start = performance.now();
    const all = await store.range(rangeRequest({ key: "\0", rangeEnd: "\0", countOnly: true }));
    results[`count_only over all ${all.count.toLocaleString("en")} keys`] = since(start);
    start = performance.now();
    await store.range(rangeRequest({ key: "\0", rangeEnd: "\0", limit: 10_000 }));
    results["limit 10,000 over all keys (counts all)"] = since(start);

    await store.close();
    start = performance.now();
    store = await MvccStore.open(location, {});
    results["reopen: rebuild the key index from RocksDB"] = since(start);
    results["disk after reopen (memtable flushed)"] = mb(store.backendSize);
    const reopened = memory();
    results["RSS / V8 heap used after reopen"] = `${mb(reopened.rss)} / ${mb(reopened.heapUsed)}`;

    start = performance.now();
    await store.applyBatch([
      { index: ++index, term: 1, request: { compaction: { revision: store.revision, physical: true } } },
    ]);
    await store.compactionDone();
    results[`compaction dropping ${HISTORY_KEYS.toLocaleString("en")} superseded revisions`] = since(start);
    start = performance.now();
    const hash = await store.hashKV(0);
    results["HashKV over every revision"] = `${since(start)} (0x${hash.hash.toString(16)})`;
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  results["load average (1 min) at the end, on this many cores"] = `${loadavg()[0]!.toFixed(1)}`;
  const width = Math.max(...Object.keys(results).map((k) => k.length));
  for (const [name, value] of Object.entries(results)) console.log(`${name.padEnd(width)}  ${value}`);
}

await main();
