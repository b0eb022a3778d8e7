// One Range over every key of a bare MvccStore (the member's `rangeEncoded`, what the KV
// service answers a Range with), with a put applied every 10 ms beside it: the Range's time,
// the answer's size and sha256 (to check two builds answer byte for byte alike), the puts'
// latency during it against a baseline, and the longest event-loop gap. Without the gRPC and
// Raft around it, so a change to the store's read path shows by itself, in seconds.
//
//   npx tsc -b && node bench/dist/mvcc/range-encoded.js [--keys N] [--dir D] [--rounds R] [--read-thread on|off]
//
// --dir keeps the loaded database there (loaded on the first run, reused by later ones, so two
// builds read the same data); without it a temp dir is loaded and removed. --read-thread off:
// the store's values read on libuv's pool and copied on this thread (MvccStoreOptions.rangeReadThread). Keys as the compare
// bench loads them (goload's 8-byte big-endian sequential keys, 256-byte values).

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import {
  type ApplyEntry,
  MvccStore,
  putRequest,
  rangeRequest,
  rangeResponseParts,
} from "@etcd-ts/raft-node/mvcc";
import { threadCpuSeconds } from "../proc-cpu.js";
import { keyOf, storedValue } from "./stored-values.js";

const USAGE = "[--keys N] [--dir D] [--rounds R] [--read-thread on|off]";

interface Args {
  keys: number;
  dir: string | undefined;
  rounds: number;
  readThread: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { keys: 200_000, dir: undefined, rounds: 3, readThread: true };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--keys") args.keys = Number(value());
    else if (flag === "--dir") args.dir = value();
    else if (flag === "--rounds") args.rounds = Number(value());
    else if (flag === "--read-thread") args.readThread = value() !== "off";
    else throw new Error(`unknown flag ${flag}; usage: range-encoded ${USAGE}`);
  }
  return args;
}

const PUT_INTERVAL_MS = 10;

/** CPU milliseconds of this process's main thread (its thread id is the pid). */
const mainThreadCpuMs = () => threadCpuSeconds(process.pid) * 1000;

function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((q / 100) * s.length) - 1))]!;
}

async function main(): Promise<void> {
  const { keys, dir: keptDir, rounds, readThread } = parseArgs(process.argv.slice(2));
  const dir = keptDir ?? (await mkdtemp(join(tmpdir(), "range-encoded-")));
  const location = join(dir, "db");
  const fresh = !existsSync(location);
  const store = await MvccStore.open(location, { rangeReadThread: readThread });
  let index = store.appliedIndex;
  try {
    if (fresh) {
      const start = performance.now();
      for (let i = 0; i < keys; ) {
        const entries: ApplyEntry[] = [];
        for (let j = 0; j < 1000 && i < keys; j++, i++) {
          entries.push({
            index: ++index,
            term: 1,
            request: { put: putRequest({ key: keyOf(i), value: storedValue(i) }) },
          });
        }
        await store.applyBatch(entries);
      }
      console.log(`loaded ${keys} keys in ${((performance.now() - start) / 1000).toFixed(1)} s`);
    }
    const putKey = Buffer.from("range-encoded-put");
    for (let round = 0; round < rounds; round++) {
      // Puts one at a time every PUT_INTERVAL_MS, each timed from when it was due.
      const lat: { at: number; ms: number }[] = [];
      let stop = false;
      const putter = (async () => {
        let due = performance.now();
        while (!stop) {
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const at = due;
          await store.applyBatch([
            { index: ++index, term: 1, request: { put: putRequest({ key: putKey, value: storedValue(0) }) } },
          ]);
          lat.push({ at, ms: performance.now() - at });
          due = Math.max(due + PUT_INTERVAL_MS, performance.now());
        }
      })();
      await new Promise((r) => setTimeout(r, 1000));
      const loop = monitorEventLoopDelay({ resolution: 5 });
      loop.enable();
      const cpu0 = process.cpuUsage();
      const main0 = mainThreadCpuMs();
      const start = performance.now();
      const res = await store.rangeEncoded(
        rangeRequest({ key: Buffer.from([0]), rangeEnd: Buffer.from([1]) }),
      );
      const ms = performance.now() - start;
      loop.disable();
      const cpu = process.cpuUsage(cpu0);
      const mainCpu = mainThreadCpuMs() - main0;
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await putter;
      // Hashed once the puts stopped: a synchronous hash of the answer would delay the last ones.
      const hash = createHash("sha256");
      let bytes = 0;
      for (const p of rangeResponseParts({ ...res, header: undefined })) {
        hash.update(p);
        bytes += p.length;
      }
      const base = lat.filter((p) => p.at < start).map((p) => p.ms);
      const during = lat.filter((p) => p.at >= start && p.at < start + ms).map((p) => p.ms);
      const f = (x: number) => x.toFixed(1);
      console.log(
        `round ${round + 1}: ${f(ms)} ms, ${res.count} keys, ${(bytes / 1e6).toFixed(1)} MB in ${res.kvParts.length} parts, ` +
          `sha256 ${hash.digest("hex").slice(0, 16)}; puts during p50/p99/max ${f(percentile(during, 50))}/${f(percentile(during, 99))}/${f(percentile(during, 100))} ms ` +
          `(n ${during.length}, baseline p99 ${f(percentile(base, 99))}); loop delay max ${f(loop.max / 1e6)} ms; ` +
          `CPU ${f((cpu.user + cpu.system) / 1000)} ms, main thread ${mainCpu} ms; ` +
          `rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; load ${loadavg()[0]!.toFixed(1)}`,
      );
    }
  } finally {
    await store.close();
    if (keptDir === undefined) await rm(dir, { recursive: true, force: true });
  }
}

await main();
