// Where a loaded member's memory goes, and what reopening it costs, on a bare MvccStore:
// loads N keys the way `npm run bench`'s rss scenario does (goload's 8-byte big-endian
// sequential keys, 256-byte values), in apply batches, then prints the process's memory split
// (V8 heap, external/ArrayBuffers, RocksDB's memtables, block cache and table readers, and the
// native rest), closes the store (writing its index checkpoint), reopens it and prints the open
// time by phase and what the rebuilt in-memory state holds, then reopens it once more without
// the checkpoint (the scan a restart after a crash does).
//
//   npx tsc -b && node bench/dist/mvcc/memory-restart.js [--keys N] [--batch B] [--heap-snapshot DIR]
//
// --compression and --block-cache-mib set the store's options of those names (defaults: the
// store's). MALLOC_ARENA_MAX=2 in the environment shows how much of the RSS is glibc's
// per-thread arenas holding memory RocksDB's threads freed.
//
// --heap-snapshot writes a V8 heap snapshot after the reopen (open it in Chrome's DevTools,
// Memory tab, "Summary" by constructor). A member adds its Raft log (up to --snapshot-count
// entries in memory) and gRPC buffers on top of this; the compare bench measures whole members.

import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString, writeHeapSnapshot } from "node:v8";
import { runInNewContext } from "node:vm";
import {
  type ApplyEntry,
  INDEX_CHECKPOINT_FILE,
  MvccStore,
  type MvccStoreOptions,
  putRequest,
} from "@etcd-ts/raft-node/mvcc";
import { keyOf, storedValue } from "./stored-values.js";

const USAGE = "[--keys N] [--batch B] [--compression on|off] [--block-cache-mib M] [--heap-snapshot DIR]";

interface Args {
  keys: number;
  batch: number;
  heapSnapshotDir: string | undefined;
  store: MvccStoreOptions;
}

function parseArgs(argv: string[]): Args {
  let keys = 1_000_000;
  let batch = 100;
  let heapSnapshotDir: string | undefined;
  const store: MvccStoreOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--keys") keys = Number(value());
    else if (flag === "--batch") batch = Number(value());
    else if (flag === "--heap-snapshot") heapSnapshotDir = value();
    else if (flag === "--compression") store.compression = value() !== "off";
    else if (flag === "--block-cache-mib") store.blockCacheBytes = Number(value()) * 1024 * 1024;
    else throw new Error(`unknown flag ${flag}; usage: memory-restart ${USAGE}`);
  }
  if (!Number.isInteger(keys) || keys < 1) throw new Error("--keys must be a positive integer");
  if (!Number.isInteger(batch) || batch < 1) throw new Error("--batch must be a positive integer");
  return { keys, batch, heapSnapshotDir, store };
}

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

interface MemorySplit {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

function memory(): MemorySplit {
  gc();
  gc();
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

/** Anonymous memory from /proc (the native heap RocksDB and the binding allocate from). */
function smapsRollup(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const line of readFileSync("/proc/self/smaps_rollup", "utf8").split("\n")) {
      const m = /^(\w+):\s+(\d+) kB/.exec(line);
      if (m) out[m[1]!] = Number(m[2]) * 1024;
    }
  } catch {}
  return out;
}

function report(title: string, rows: [string, string][]): void {
  console.log(`\n${title}`);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
}

function memoryRows(store: MvccStore, m: MemorySplit, baseline: MemorySplit): [string, string][] {
  const rocks = (name: string) => store.rocksProperty(name);
  const memtables = rocks("rocksdb.cur-size-all-mem-tables");
  const cache = rocks("rocksdb.block-cache-usage");
  const readers = rocks("rocksdb.estimate-table-readers-mem");
  const rollup = smapsRollup();
  // What V8 and RocksDB account for; the rest of RSS is allocator slack, code, stacks, mappings.
  const accounted = m.heapTotal + m.external + memtables + cache + readers;
  return [
    ["RSS (growth since start)", `${mib(m.rss)} (+${mib(m.rss - baseline.rss)})`],
    [
      "  anonymous / file-backed",
      `${mib(rollup.Anonymous ?? 0)} / ${mib((rollup.Rss ?? 0) - (rollup.Anonymous ?? 0))}`,
    ],
    [
      "V8 heap used / committed",
      `${mib(m.heapUsed)} / ${mib(m.heapTotal)} (used +${mib(m.heapUsed - baseline.heapUsed)})`,
    ],
    ["external / of which ArrayBuffers", `${mib(m.external)} / ${mib(m.arrayBuffers)}`],
    ["RocksDB memtables", mib(memtables)],
    ["RocksDB block cache (pinned)", `${mib(cache)} (${mib(rocks("rocksdb.block-cache-pinned-usage"))})`],
    ["RocksDB table readers (index + filter)", mib(readers)],
    ["RSS not accounted above", mib(m.rss - accounted)],
  ];
}

async function main(): Promise<void> {
  const { keys, batch, heapSnapshotDir, store: options } = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(process.env.MVCC_BENCH_DIR ?? tmpdir(), "mvcc-memory-"));
  const location = join(dir, "db");
  try {
    const baseline = memory();
    let store: MvccStore | undefined = await MvccStore.open(location, options);
    let index = 0;
    let start = performance.now();
    for (let i = 0; i < keys; ) {
      const entries: ApplyEntry[] = [];
      for (let j = 0; j < batch && i < keys; j++, i++) {
        entries.push({
          index: ++index,
          term: 1,
          request: { put: putRequest({ key: keyOf(i), value: storedValue(i) }) },
        });
      }
      await store.applyBatch(entries);
    }
    const loadMs = performance.now() - start;
    report(`loaded ${keys.toLocaleString("en-US")} keys (256-byte values, ${batch} per apply batch)`, [
      ["puts/s", Math.round((keys / loadMs) * 1000).toLocaleString("en-US")],
      ...memoryRows(store, memory(), baseline),
      ["bytes of V8 heap per key", String(Math.round((memory().heapUsed - baseline.heapUsed) / keys))],
    ]);

    const beforeClose = memory();
    const closeStarted = performance.now();
    await store.close();
    const closeMs = performance.now() - closeStarted;
    store = undefined;
    const closed = memory();
    report("closed", [
      ["close, ms (writes the index checkpoint)", closeMs.toFixed(0)],
      ["RSS", mib(closed.rss)],
      [
        "V8 heap used (freed by closing)",
        `${mib(closed.heapUsed)} (${mib(beforeClose.heapUsed - closed.heapUsed)})`,
      ],
    ]);

    start = performance.now();
    store = await MvccStore.open(location, options);
    const openMs = performance.now() - start;
    const reopened = memory();
    const phases = Object.entries(store.openPhasesMs).map(([k, v]) => `${k} ${v.toFixed(0)}`);
    report("reopened", [
      ["open, total ms", openMs.toFixed(0)],
      ["  by phase, ms", phases.join(", ")],
      [
        "key index from",
        `${store.indexSource.from}${store.indexSource.note === undefined ? "" : ` (${store.indexSource.note})`}`,
      ],
      ["revision / keys in the index", `${store.revision} / ${store.countLiveKeys()}`],
      ["V8 heap the open built (index + size model)", mib(reopened.heapUsed - closed.heapUsed)],
      ...memoryRows(store, reopened, baseline),
    ]);
    if (heapSnapshotDir !== undefined) {
      console.log(
        `\nheap snapshot: ${writeHeapSnapshot(join(heapSnapshotDir, `memory-restart-${keys}.heapsnapshot`))}`,
      );
    }
    await store.close();

    // The same reopen without the checkpoint (what a restart after a crash does): side by side.
    store = undefined;
    const closedAgain = memory();
    await rm(join(location, INDEX_CHECKPOINT_FILE), { force: true });
    start = performance.now();
    store = await MvccStore.open(location, options);
    const scanMs = performance.now() - start;
    const scanned = memory();
    report("reopened without the checkpoint (as after a crash)", [
      ["open, total ms", scanMs.toFixed(0)],
      [
        "  by phase, ms",
        Object.entries(store.openPhasesMs)
          .map(([k, v]) => `${k} ${v.toFixed(0)}`)
          .join(", "),
      ],
      ["key index from", store.indexSource.from],
      ["V8 heap the open built (index + size model)", mib(scanned.heapUsed - closedAgain.heapUsed)],
      ["RSS", mib(scanned.rss)],
    ]);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  console.log(
    `\nload average (1 min) at the end: ${loadavg()[0]!.toFixed(1)} (numbers are noisy on a shared machine)`,
  );
}

await main();
