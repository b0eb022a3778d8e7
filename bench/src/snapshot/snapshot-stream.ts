// `etcdctl snapshot save` from our member beside a real etcd 3.4 holding the same keys: MB/s,
// the member's RSS growth while it streams, and put throughput with a snapshot streaming. One member each on loopback, temp data dirs; keys
// loaded with bench/goload (sequential keys, so every key is distinct). The machine is shared:
// compare the two columns of one run, not runs with each other.
//   node bench/dist/snapshot/snapshot-stream.js [--keys 200000] [--val-size 256] [--only etcd|ours|base[,...]]
//     [--rounds 3] [--no-sink] [--dropped-rounds 0] [--trickle 20]
// Puts during a snapshot: goload's snapshot-under-put, one put load (10 connections, 100 clients)
// covering the whole snapshot, alone for as long as the quiet snapshot took before it and for as
// long as this one took after it; ratio = during / mean(before, after), median of --rounds.
// A trickle of writes (--trickle puts/s, one at a time; 0: none) during a snapshot, between two
// quiet ones: the snapshot's time against theirs (a trickle should cost a snapshot almost nothing).
// BASE_MEMBER_MAIN=path/to/another/build/main.js adds a third column, "base", for a before/after
// comparison in the same run (a copy of an older services/raft-node/dist kept inside the package).
// Results: printed, and bench/results/snapshot-<timestamp>.json (with the load average before and
// after), saved after each target.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "@etcd-ts/testing";
import { GOLOAD_BIN, runGoload } from "../goload.js";
import { UnaryClient } from "../grpc/unary-client.js";
import { rssKiB } from "../proc-cpu.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const memberMain = join(root, "services/raft-node/dist/main.js");

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : Number(process.argv[at + 1]);
}
const keys = option("keys", 200_000);
const valSize = option("val-size", 256);
const putRounds = option("rounds", 3);
// --no-sink: the snapshot taken under load is read and dropped instead of written and fsynced
// (etcdctl's way), to tell the client's disk writes from the member's work.
const sink = !process.argv.includes("--no-sink");
// --dropped-rounds N: after the --rounds, N more with the snapshot dropped (roundsDropped).
const droppedRounds = option("dropped-rounds", 0);
const tricklePerSecond = option("trickle", 20);
// Node flags for our member only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": NODE_OPTIONS refuses
// --cpu-prof, and would profile this driver too).
const memberNodeArgs = (process.env.MEMBER_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
const baseMain = process.env.BASE_MEMBER_MAIN;
type Target = "etcd" | "ours" | "base";

async function startMember(
  kind: Target,
  dir: string,
): Promise<{ child: ChildProcess; endpoint: string; sent: object[] }> {
  const client = await freePort();
  const peer = await freePort();
  const flags = [
    `--name=${kind}`,
    `--data-dir=${join(dir, kind)}`,
    `--listen-client-urls=http://127.0.0.1:${client}`,
    `--advertise-client-urls=http://127.0.0.1:${client}`,
    `--listen-peer-urls=http://127.0.0.1:${peer}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
    `--initial-cluster=${kind}=http://127.0.0.1:${peer}`,
    // 8 GiB (etcd's suggested maximum): rounds of puts under a slow, paced snapshot write
    // millions of keys, and the default 2 GiB quota stopped a third 1M-key round's puts.
    "--quota-backend-bytes=8589934592",
  ];
  const child =
    kind === "etcd"
      ? spawn("/usr/bin/etcd", flags, { stdio: "ignore" })
      : spawn(process.execPath, [...memberNodeArgs, kind === "base" ? baseMain! : memberMain, ...flags], {
          stdio: ["ignore", "ignore", "pipe"],
        });
  // Our member's log line for each snapshot it sent (its write and send times, per-thread stages).
  const sent: object[] = [];
  let partial = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop()!;
    for (const line of lines)
      if (line.includes("sent database snapshot")) sent.push(JSON.parse(line) as object);
  });
  const endpoint = `127.0.0.1:${client}`;
  for (let i = 0; i < 600; i++) {
    if (
      spawnSync("etcdctl", [`--endpoints=${endpoint}`, "endpoint", "health"], {
        env: { ...process.env, ETCDCTL_API: "3" },
      }).status === 0
    )
      return { child, endpoint, sent };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`${kind} did not become healthy`);
}

/** One round of puts covering a snapshot (goload's snapshot-under-put). */
interface PutRound {
  before: number;
  during: number;
  after: number;
  /** during / mean(before, after). */
  ratio: number;
  snapshotSeconds: number;
  /** When the snapshot's first bytes arrived (ours: once its file is written), and the puts/s before and after. */
  firstByteSeconds: number;
  duringBeforeFirstByte: number;
  duringAfterFirstByte: number;
  p99Before: number | null;
  p99During: number | null;
}

interface Measured {
  target: string;
  bytes: number;
  seconds: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  /** Rounds of puts alone, then with a snapshot streaming, then alone again. */
  rounds: PutRound[];
  /** The median round's ratio. */
  putRatio: number;
  /** Rounds with the snapshot read and dropped by the client (no file, no fsync). */
  roundsDropped: PutRound[];
  /** Ours: the member's log line of each snapshot sent (write_ms, send_ms, stages_ms). */
  memberLog: object[];
  /** A snapshot under a trickle of puts, between two quiet ones (seconds; none with --trickle 0). */
  trickle?: { putsPerSecond: number; puts: number; seconds: number; quietSeconds: number[]; ratio: number };
}

/** `total` sequential puts from `offset` with goload (10 connections, 100 clients); ops/s. */
function putLoad(endpoint: string, total: number, offset: number): Promise<number> {
  const args = ["-endpoints", endpoint, "-conns", "10", "-clients", "100", "-op", "put", "-sequential-keys"];
  args.push("-key-space", String(offset + total), "-total", String(total), "-key-size", "16");
  args.push("-val-size", String(valSize), "-label", String(offset));
  return runGoload(args).then((r) => r.ops_per_s);
}

/**
 * The same put load as putLoad, covering a whole snapshot: alone for `baselineMs`, during the
 * snapshot (saved to `file` and fsynced, as etcdctl does; "" drops it), alone again for as long
 * as the snapshot took. New keys from `offset` on.
 */
async function putsAroundSnapshot(
  endpoint: string,
  offset: number,
  baselineMs: number,
  file: string,
): Promise<PutRound> {
  const args = ["-endpoints", endpoint, "-conns", "10", "-clients", "100", "-op", "snapshot-under-put"];
  args.push("-key-space", String(offset), "-key-size", "16", "-val-size", String(valSize));
  args.push("-baseline-ms", String(Math.round(baselineMs)), "-snapshot-file", file, "-total", "1");
  args.push("-timeout-s", "300");
  const r = await runGoload(args);
  const before = r.puts_per_s_before as number;
  const during = r.puts_per_s_during as number;
  const after = r.puts_per_s_after as number;
  const p99 = (w: unknown) => (w as { p99: number | null }).p99;
  return {
    before,
    during,
    after,
    ratio: during / ((before + after) / 2),
    snapshotSeconds: (r.snapshot_ms as number) / 1000,
    firstByteSeconds: (r.first_byte_ms as number) / 1000,
    duringBeforeFirstByte: r.puts_per_s_before_first_byte as number,
    duringAfterFirstByte: r.puts_per_s_after_first_byte as number,
    p99Before: p99(r.latency_before_ms),
    p99During: p99(r.latency_during_ms),
  };
}

function snapshotSave(endpoint: string, file: string): Promise<number> {
  return new Promise<number>((ok) => {
    const ctl = spawn("etcdctl", [`--endpoints=${endpoint}`, "snapshot", "save", file], {
      stdio: "ignore",
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    ctl.once("exit", (code) => ok(code ?? 1));
  });
}

/** Saves a snapshot to `file` (removed after) while putting `perSecond` keys a second, one at a time. */
async function snapshotUnderTrickle(
  endpoint: string,
  file: string,
  perSecond: number,
): Promise<{ seconds: number; puts: number }> {
  const client = new UnaryClient(endpoint);
  let saving = true;
  let puts = 0;
  // Bounded: stops with the snapshot, or after 10 minutes.
  const trickle = (async () => {
    const until = performance.now() + 600_000;
    for (let i = 0; saving && performance.now() < until; i++) {
      const next = performance.now() + 1000 / perSecond;
      await client.put(`trickle/${i}`, "x".repeat(valSize));
      puts++;
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
  })();
  try {
    const started = performance.now();
    const code = await snapshotSave(endpoint, file);
    const seconds = (performance.now() - started) / 1000;
    if (code !== 0) throw new Error("etcdctl snapshot save failed under the trickle");
    return { seconds, puts };
  } finally {
    saving = false;
    await trickle;
    client.close();
    rmSync(file, { force: true });
  }
}

async function quietSnapshotSeconds(endpoint: string, file: string): Promise<number> {
  const started = performance.now();
  const code = await snapshotSave(endpoint, file);
  rmSync(file, { force: true });
  if (code !== 0) throw new Error("etcdctl snapshot save failed");
  return (performance.now() - started) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function measure(kind: Target, dir: string): Promise<Measured> {
  const { child, endpoint, sent } = await startMember(kind, dir);
  try {
    await putLoad(endpoint, keys, 0);
    // Let the load's garbage settle before taking the baseline.
    await new Promise((r) => setTimeout(r, 3000));
    const pid = child.pid!;
    const before = rssKiB(pid) ?? 0;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid) ?? 0);
    }, 20);
    const file = join(dir, `${kind}.snapshot.db`);
    const started = performance.now();
    const save = await snapshotSave(endpoint, file);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    if (save !== 0) throw new Error(`etcdctl snapshot save failed against ${kind}`);
    const bytes = statSync(file).size;
    rmSync(file);
    console.log(
      `${kind} quiet snapshot: ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s ` +
        `(${(bytes / 1e6 / seconds).toFixed(1)} MB/s), RSS growth ${((peak - before) / 1024).toFixed(0)} MiB`,
    );
    let trickle: Measured["trickle"];
    if (tricklePerSecond > 0) {
      const under = await snapshotUnderTrickle(endpoint, file, tricklePerSecond);
      const quietSeconds = [seconds, await quietSnapshotSeconds(endpoint, file)];
      const ratio = under.seconds / ((quietSeconds[0]! + quietSeconds[1]!) / 2);
      trickle = { putsPerSecond: tricklePerSecond, ...under, quietSeconds, ratio };
      console.log(
        `${kind} snapshot under ${tricklePerSecond} puts/s: ${under.seconds.toFixed(2)} s (${under.puts} puts), ` +
          `quiet ${quietSeconds.map((q) => q.toFixed(2)).join(", ")} s: ${ratio.toFixed(2)}x`,
      );
    }
    // Puts covering a whole snapshot, against the same load alone for as long before and after.
    const rounds: PutRound[] = [];
    const during = join(dir, `${kind}.during-load.db`);
    for (let i = 0; i < putRounds; i++) {
      rounds.push(
        await putsAroundSnapshot(endpoint, keys + 1_000_000 * (i + 1), seconds * 1000, sink ? during : ""),
      );
      rmSync(during, { force: true });
      const r = rounds[i]!;
      console.log(
        `${kind} round ${i + 1}: puts/s before ${r.before.toFixed(0)}, during ${r.during.toFixed(0)} ` +
          `(snapshot ${r.snapshotSeconds.toFixed(2)} s; ${r.duringBeforeFirstByte.toFixed(0)} in its first ` +
          `${r.firstByteSeconds.toFixed(2)} s, ${r.duringAfterFirstByte.toFixed(0)} while it streamed), after ${r.after.toFixed(0)}: ${r.ratio.toFixed(2)}x`,
      );
    }
    const roundsDropped: PutRound[] = [];
    for (let i = 0; i < droppedRounds; i++) {
      const offset = keys + 1_000_000 * (putRounds + i + 1);
      const r = await putsAroundSnapshot(endpoint, offset, seconds * 1000, "");
      roundsDropped.push(r);
      console.log(
        `${kind} round ${i + 1}, snapshot dropped: puts/s before ${r.before.toFixed(0)}, during ${r.during.toFixed(0)} ` +
          `(snapshot ${r.snapshotSeconds.toFixed(2)} s), after ${r.after.toFixed(0)}: ${r.ratio.toFixed(2)}x`,
      );
    }
    return {
      target: kind,
      roundsDropped,
      bytes,
      seconds,
      rssBeforeMiB: before / 1024,
      rssPeakMiB: peak / 1024,
      rounds,
      putRatio: median(rounds.map((r) => r.ratio)),
      memberLog: sent,
      ...(trickle === undefined ? {} : { trickle }),
    };
  } finally {
    // A profiled member must exit on its own to write its profile.
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(kind !== "etcd" && memberNodeArgs.length > 0 ? "SIGTERM" : "SIGKILL");
    await exited;
  }
}

function medianRound(r: Measured): string {
  const m = [...r.rounds].sort((a, b) => a.ratio - b.ratio)[(r.rounds.length - 1) >> 1];
  return m === undefined ? "-" : `${m.before.toFixed(0)}, ${m.during.toFixed(0)}, ${m.after.toFixed(0)}`;
}

async function main(): Promise<void> {
  if (!existsSync(GOLOAD_BIN)) throw new Error("build bench/goload first: bench/goload/build.sh");
  if (!existsSync(memberMain)) throw new Error("build first: npx tsc -b");
  const dir = mkdtempSync(join(tmpdir(), "snapshot-bench-"));
  try {
    const only = process.argv.indexOf("--only");
    const all: Target[] = baseMain === undefined ? ["etcd", "ours"] : ["etcd", "base", "ours"];
    const targets = only === -1 ? all : (process.argv[only + 1]!.split(",") as Target[]);
    if (targets.includes("base") && baseMain === undefined)
      throw new Error("--only base needs BASE_MEMBER_MAIN=path/to/other/main.js");
    const results: Measured[] = [];
    const loadBefore = loadavg();
    const resultsDir = join(root, "bench/results");
    mkdirSync(resultsDir, { recursive: true });
    const file = join(
      resultsDir,
      `snapshot-${new Date().toISOString().replaceAll(":", "-").replace(".", "-")}.json`,
    );
    // Saved after each target: a run stopped part way keeps what it measured.
    const save = (loadAfter?: number[]) =>
      writeFileSync(
        file,
        `${JSON.stringify({ keys, valSize, baseMain, putRounds, sink, tricklePerSecond, loadBefore, loadAfter, results }, null, 2)}\n`,
      );
    for (const target of targets) {
      results.push(await measure(target, dir));
      save();
    }
    const loadAfter = loadavg();
    save(loadAfter);
    console.log(
      `snapshot save of ${keys} keys (${valSize}-byte values), one member each; noisy shared machine`,
    );
    console.log(
      "target | file MB | seconds | MB/s | RSS before MiB | RSS peak MiB | growth MiB | puts/s before, during, after (median round) | ratio (median) | snapshot under a trickle / quiet",
    );
    for (const r of results) {
      const mb = r.bytes / 1e6;
      console.log(
        `${r.target} | ${mb.toFixed(1)} | ${r.seconds.toFixed(2)} | ${(mb / r.seconds).toFixed(1)} | ` +
          `${r.rssBeforeMiB.toFixed(0)} | ${r.rssPeakMiB.toFixed(0)} | ${(r.rssPeakMiB - r.rssBeforeMiB).toFixed(0)} | ` +
          `${medianRound(r)} | ${r.putRatio.toFixed(2)} | ${r.trickle?.ratio.toFixed(2) ?? "-"}`,
      );
    }
    console.log(
      `load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadAfter.map((l) => l.toFixed(2)).join(" ")}; saved ${file}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
