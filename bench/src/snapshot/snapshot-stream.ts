// `etcdctl snapshot save` from our member beside a real etcd 3.4 holding the same keys: MB/s,
// the member's RSS growth while it streams, and put throughput with a snapshot streaming. One member each on loopback, temp data dirs; keys
// loaded with bench/goload (sequential keys, so every key is distinct). The machine is shared:
// compare the two columns of one run, not runs with each other.
//   node bench/dist/snapshot/snapshot-stream.js [--keys 200000] [--val-size 256] [--only etcd|ours|base]
// BASE_MEMBER_MAIN=path/to/another/build/main.js adds a third column, "base", for a before/after
// comparison in the same run (a copy of an older services/raft-node/dist kept inside the package).
// Results: printed, and bench/results/snapshot-<timestamp>.json (with the load average before and after).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "@etcd-ts/testing";
import { GOLOAD_BIN, runGoload } from "../goload.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const memberMain = join(root, "services/raft-node/dist/main.js");

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : Number(process.argv[at + 1]);
}
const keys = option("keys", 200_000);
const valSize = option("val-size", 256);
// Node flags for our member only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": NODE_OPTIONS refuses
// --cpu-prof, and would profile this driver too).
const memberNodeArgs = (process.env.MEMBER_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
const baseMain = process.env.BASE_MEMBER_MAIN;
type Target = "etcd" | "ours" | "base";

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function startMember(kind: Target, dir: string): Promise<{ child: ChildProcess; endpoint: string }> {
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
  ];
  const child =
    kind === "etcd"
      ? spawn("/usr/bin/etcd", flags, { stdio: "ignore" })
      : spawn(process.execPath, [...memberNodeArgs, kind === "base" ? baseMain! : memberMain, ...flags], {
          stdio: "ignore",
        });
  const endpoint = `127.0.0.1:${client}`;
  for (let i = 0; i < 600; i++) {
    if (
      spawnSync("etcdctl", [`--endpoints=${endpoint}`, "endpoint", "health"], {
        env: { ...process.env, ETCDCTL_API: "3" },
      }).status === 0
    )
      return { child, endpoint };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`${kind} did not become healthy`);
}

interface Measured {
  target: string;
  bytes: number;
  seconds: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  /** Put throughput alone, then with a snapshot streaming at the same time. */
  putsAlone: number;
  putsDuringSnapshot: number;
}

/** `total` sequential puts from `offset` with goload (10 connections, 100 clients); ops/s. */
function putLoad(endpoint: string, total: number, offset: number): Promise<number> {
  const args = ["-endpoints", endpoint, "-conns", "10", "-clients", "100", "-op", "put", "-sequential-keys"];
  args.push("-key-space", String(offset + total), "-total", String(total), "-key-size", "16");
  args.push("-val-size", String(valSize), "-label", String(offset));
  return runGoload(args).then((r) => r.ops_per_s);
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

async function measure(kind: Target, dir: string): Promise<Measured> {
  const { child, endpoint } = await startMember(kind, dir);
  try {
    await putLoad(endpoint, keys, 0);
    // Let the load's garbage settle before taking the baseline.
    await new Promise((r) => setTimeout(r, 3000));
    const pid = child.pid!;
    const before = rssKiB(pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid));
    }, 20);
    const file = join(dir, `${kind}.snapshot.db`);
    const started = performance.now();
    const save = await snapshotSave(endpoint, file);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    if (save !== 0) throw new Error(`etcdctl snapshot save failed against ${kind}`);
    const bytes = statSync(file).size;
    // Puts alone, then the same number of puts with a snapshot streaming (new keys each time).
    const loadPuts = 20_000;
    const putsAlone = await putLoad(endpoint, loadPuts, keys);
    const [putsDuringSnapshot] = await Promise.all([
      putLoad(endpoint, loadPuts, keys + loadPuts),
      snapshotSave(endpoint, join(dir, `${kind}.during-load.db`)),
    ]);
    return {
      target: kind,
      bytes,
      seconds,
      rssBeforeMiB: before / 1024,
      rssPeakMiB: peak / 1024,
      putsAlone,
      putsDuringSnapshot,
    };
  } finally {
    // A profiled member must exit on its own to write its profile.
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(kind !== "etcd" && memberNodeArgs.length > 0 ? "SIGTERM" : "SIGKILL");
    await exited;
  }
}

async function main(): Promise<void> {
  if (!existsSync(GOLOAD_BIN)) throw new Error("build bench/goload first: bench/goload/build.sh");
  if (!existsSync(memberMain)) throw new Error("build first: npx tsc -b");
  const dir = mkdtempSync(join(tmpdir(), "snapshot-bench-"));
  try {
    const only = process.argv.indexOf("--only");
    const all: Target[] = baseMain === undefined ? ["etcd", "ours"] : ["etcd", "base", "ours"];
    const targets = only === -1 ? all : [process.argv[only + 1] as Target];
    const results: Measured[] = [];
    const loadBefore = loadavg();
    for (const target of targets) results.push(await measure(target, dir));
    const loadAfter = loadavg();
    console.log(
      `snapshot save of ${keys} keys (${valSize}-byte values), one member each; noisy shared machine`,
    );
    console.log(
      "target | file MB | seconds | MB/s | RSS before MiB | RSS peak MiB | growth MiB | puts/s alone | puts/s during a snapshot | ratio",
    );
    for (const r of results) {
      const mb = r.bytes / 1e6;
      console.log(
        `${r.target} | ${mb.toFixed(1)} | ${r.seconds.toFixed(2)} | ${(mb / r.seconds).toFixed(1)} | ` +
          `${r.rssBeforeMiB.toFixed(0)} | ${r.rssPeakMiB.toFixed(0)} | ${(r.rssPeakMiB - r.rssBeforeMiB).toFixed(0)} | ` +
          `${r.putsAlone.toFixed(0)} | ${r.putsDuringSnapshot.toFixed(0)} | ${(r.putsDuringSnapshot / r.putsAlone).toFixed(2)}`,
      );
    }
    const resultsDir = join(root, "bench/results");
    mkdirSync(resultsDir, { recursive: true });
    const file = join(
      resultsDir,
      `snapshot-${new Date().toISOString().replaceAll(":", "-").replace(".", "-")}.json`,
    );
    writeFileSync(
      file,
      `${JSON.stringify({ keys, valSize, baseMain, loadBefore, loadAfter, results }, null, 2)}
`,
    );
    console.log(
      `load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadAfter.map((l) => l.toFixed(2)).join(" ")}; saved ${file}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
