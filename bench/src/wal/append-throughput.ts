// WAL append throughput with real fdatasync: entries/s and MB/s for batches of 1, 16 and
// 256 entries of 256 bytes, from 1 caller and from 64 concurrent callers (group commit),
// plus fdatasync and save latency percentiles. The disk under the temp directory decides
// everything here; run on the disk a member would use (WAL_BENCH_DIR=/path).
//
//   node --conditions=source --import tsx bench/src/wal/append-throughput.ts [secondsPerCase]

import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Entry } from "@etcd-ts/raft";
import { Wal } from "@etcd-ts/raft-node/wal";

const secondsPerCase = Number(process.argv[2] ?? 3);
const ENTRY_BYTES = 256;
const BATCHES = [1, 16, 256];
const CALLERS = [1, 64];

interface CaseResult {
  batch: number;
  sync: boolean;
  callers: number;
  entriesPerSec: number;
  payloadMBPerSec: number;
  diskMBPerSec: number;
  savesPerSec: number;
  fsyncsPerSec: number;
  savesPerFsync: number;
  fsyncMeanMs: number;
  fsyncBusyPercent: number;
  fsyncP50ms: number;
  fsyncP99ms: number;
  saveP50ms: number;
  saveP99ms: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function runCase(root: string, batch: number, callers: number, sync = true): Promise<CaseResult> {
  const dir = join(root, `b${batch}-c${callers}-${sync}`);
  const fsyncSeconds: number[] = [];
  const wal = await Wal.create(dir, { sync, onFsync: (s) => fsyncSeconds.push(s) });
  const data = Buffer.alloc(ENTRY_BYTES, 0x61);
  const saveMs: number[] = [];
  let nextIndex = 1;
  let entriesDone = 0;
  const deadline = performance.now() + secondsPerCase * 1000;

  async function caller(): Promise<void> {
    while (performance.now() < deadline) {
      const first = nextIndex;
      nextIndex += batch;
      const entries: Entry[] = new Array(batch);
      for (let k = 0; k < batch; k++) entries[k] = { term: 1, index: first + k, type: 0, data };
      const started = performance.now();
      await wal.save({ term: 1, vote: 1n, commit: first - 1 }, entries);
      saveMs.push(performance.now() - started);
      entriesDone += batch;
    }
  }

  const started = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  const seconds = (performance.now() - started) / 1000;
  const stats = wal.stats();
  await wal.close();
  await rm(dir, { recursive: true, force: true });
  fsyncSeconds.sort((a, b) => a - b);
  saveMs.sort((a, b) => a - b);
  return {
    batch,
    sync,
    callers,
    entriesPerSec: entriesDone / seconds,
    payloadMBPerSec: (entriesDone * ENTRY_BYTES) / seconds / 1e6,
    diskMBPerSec: stats.bytesWritten / seconds / 1e6,
    savesPerSec: stats.saves / seconds,
    fsyncsPerSec: stats.fsyncs / seconds,
    savesPerFsync: stats.fsyncs > 0 ? stats.saves / stats.fsyncs : Number.NaN,
    fsyncMeanMs: (stats.fsyncSecondsTotal / Math.max(1, stats.fsyncs)) * 1000,
    fsyncBusyPercent: (stats.fsyncSecondsTotal / seconds) * 100,
    fsyncP50ms: percentile(fsyncSeconds, 50) * 1000,
    fsyncP99ms: percentile(fsyncSeconds, 99) * 1000,
    saveP50ms: percentile(saveMs, 50),
    saveP99ms: percentile(saveMs, 99),
  };
}

/**
 * The disk's floor for comparison: one 320-byte positioned write plus fdatasync at a
 * time, no WAL code. The single-caller, batch-1 case cannot beat this.
 */
async function rawSyncBaseline(root: string): Promise<{ perSec: number; p50ms: number; p99ms: number }> {
  const path = join(root, "raw-baseline");
  const handle = await open(path, "w");
  const buf = Buffer.alloc(320, 1);
  const latencies: number[] = [];
  let position = 0;
  const started = performance.now();
  const deadline = started + secondsPerCase * 1000;
  while (performance.now() < deadline) {
    const t = performance.now();
    await handle.write(buf, 0, buf.length, position);
    position += buf.length;
    await handle.datasync();
    latencies.push(performance.now() - t);
  }
  const seconds = (performance.now() - started) / 1000;
  await handle.close();
  await rm(path);
  latencies.sort((a, b) => a - b);
  return {
    perSec: latencies.length / seconds,
    p50ms: percentile(latencies, 50),
    p99ms: percentile(latencies, 99),
  };
}

const root = await mkdtemp(join(process.env.WAL_BENCH_DIR ?? tmpdir(), "wal-bench-"));
try {
  const baseline = await rawSyncBaseline(root);
  const results: CaseResult[] = [];
  for (const batch of BATCHES) {
    for (const callers of CALLERS) results.push(await runCase(root, batch, callers));
  }
  // The same load with fsync off: what encoding and writing cost without the disk's wait.
  results.push(await runCase(root, 256, 64, false));
  const f = (n: number, digits = 0) => n.toFixed(digits);
  console.log(
    `WAL append, ${ENTRY_BYTES}-byte entries, fdatasync on, ${secondsPerCase}s per case, dir ${root}`,
  );
  console.log(
    `baseline without the WAL, one 320-byte write + fdatasync at a time: ${f(baseline.perSec)}/s, p50 ${f(baseline.p50ms, 2)} ms, p99 ${f(baseline.p99ms, 2)} ms`,
  );
  console.log(
    "| batch | callers | entries/s | payload MB/s | disk MB/s | saves/s | fsyncs/s | saves/fsync | time in fsync | fsync mean ms | fsync p50 ms | fsync p99 ms | save p50 ms | save p99 ms |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of results) {
    console.log(
      `| ${r.batch} | ${r.callers}${r.sync ? "" : " (fsync off)"} | ${f(r.entriesPerSec)} | ${f(r.payloadMBPerSec, 2)} | ${f(r.diskMBPerSec, 2)} | ${f(r.savesPerSec)} | ${f(r.fsyncsPerSec)} | ${f(r.savesPerFsync, 1)} | ${f(r.fsyncBusyPercent)}% | ${f(r.fsyncMeanMs, 2)} | ${f(r.fsyncP50ms, 2)} | ${f(r.fsyncP99ms, 2)} | ${f(r.saveP50ms, 2)} | ${f(r.saveP99ms, 2)} |`,
    );
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
