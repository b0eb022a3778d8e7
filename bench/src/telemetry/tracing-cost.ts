// What tracing costs a put through the gateway, side by side in one run: identical stacks
// (3 members + 1 gateway each) with tracing off, at 1% sampling and at 100%, exporting to one
// otlp-receiver process; bench/goload drives the same put scenario at each stack in turn,
// rotating the order every round. Two stacks run with tracing off (an A/A control): the ratio
// between them is the bench's noise floor, and each traced stack is compared with the first
// off stack both by medians over rounds and by the median of per-round ratios (a round's cells
// run back to back, so they share the machine's load of the moment). Besides throughput it
// reports the CPU time the stack's four processes spent per put (utime + stime from /proc),
// which a loaded machine disturbs far less than ops/s, split into gateway, leader and
// followers; the receiver's own CPU is left out (in a deployment it is Jaeger's).
//
//   node bench/dist/telemetry/tracing-cost.js [--rounds 3] [--total 5000] [--conns 10] [--clients 100]
//        [--stacks off,off,1%,100%] [--warmup 100000]
//
// Every stack first takes --warmup puts, unmeasured: a process that records 1% of its calls runs
// the SDK's recording and export code so rarely that V8 keeps it unoptimised for thousands of
// spans (~34 us a span for the first few hundred vs ~6 us warm, measured on a loaded machine), so
// a short run would measure a process's first minutes, not its steady state.
//
// Profiles: run it as `node --cpu-prof --cpu-prof-dir DIR bench/dist/telemetry/tracing-cost.js`;
// gateways and members inherit Node's flags and write theirs (named by pid, printed at the
// start) when stopped at the end; summarise with bench/dist/profile/top.js.
//
// The sampler is parentbased_traceidratio at the gateway: a root span there decides, and the
// members follow the sampled flag in `traceparent` (unsampled requests carry no trace bytes in
// their Raft entries).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LocalCluster, type MemberProcess } from "@etcd-ts/raft-node";
import { OTLP_RECEIVER_MAIN } from "@etcd-ts/telemetry";
import { freePort } from "@etcd-ts/testing";
import { GOLOAD_BIN, type GoloadResult, runGoload } from "../goload.js";
import { cpuSeconds } from "../proc-cpu.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const gatewayMain = join(root, "services/api-gateway/dist/main.js");

interface Options {
  rounds: number;
  total: number;
  conns: number;
  clients: number;
  stacks: Config[];
  warmup: number;
}

interface Config {
  /** Unique: "off", "off-2" for the control, "1%", "100%". */
  name: string;
  /** The trace ID ratio of every process of the stack; undefined: tracing off (no endpoint). */
  sampling: number | undefined;
}

const USAGE =
  "usage: tracing-cost [--rounds N] [--total N] [--conns N] [--clients N] [--stacks off,off,1%,100%] [--warmup N]";

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: "string", default: "3" },
      total: { type: "string", default: "5000" },
      conns: { type: "string", default: "10" },
      clients: { type: "string", default: "100" },
      stacks: { type: "string", default: "off,off,1%,100%" },
      warmup: { type: "string", default: "100000" },
    },
  });
  const count = (flag: "rounds" | "total" | "conns" | "clients" | "warmup") => {
    const n = Number(values[flag]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${USAGE} (bad --${flag})`);
    return n;
  };
  const seen = new Map<string, number>();
  const stacks = values.stacks!.split(",").map((spec): Config => {
    const n = (seen.get(spec) ?? 0) + 1;
    seen.set(spec, n);
    const name = n === 1 ? spec : `${spec}-${n}`;
    if (spec === "off") return { name, sampling: undefined };
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(spec);
    if (pct === null || Number(pct[1]) > 100) throw new Error(`${USAGE} (bad stack ${spec})`);
    return { name, sampling: Number(pct[1]) / 100 };
  });
  if (stacks[0]?.sampling !== undefined)
    throw new Error(`${USAGE} (the first stack must be off: the baseline)`);
  return {
    rounds: count("rounds"),
    total: count("total"),
    conns: count("conns"),
    clients: count("clients"),
    stacks,
    warmup: count("warmup"),
  };
}

interface Stack {
  config: Config;
  cluster: LocalCluster;
  gateway: ChildProcess;
  gatewayAddr: string;
}

const children: ChildProcess[] = [];

function envFor(config: Config, receiverUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith("OTEL_")) delete env[key];
  if (config.sampling === undefined) return env;
  return {
    ...env,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
    OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG: String(config.sampling),
  };
}

function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolvePromise, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${what} not ready:\n${out}`)), 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = pattern.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolvePromise(m);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`${what} exited with ${code}:\n${out}`)));
  });
}

async function startStack(config: Config, receiverUrl: string): Promise<Stack> {
  const env = envFor(config, receiverUrl);
  const cluster = await LocalCluster.start({
    size: 3,
    env,
    token: `tracing-cost-${config.name.replace("%", "pct")}`,
  });
  const gatewayAddr = `127.0.0.1:${await freePort()}`;
  const gateway = spawn(
    process.execPath,
    [
      // --cpu-prof and the like, as LocalCluster hands them to the members.
      ...process.execArgv,
      gatewayMain,
      `--endpoints=${cluster.endpoints}`,
      `--listen-addr=${gatewayAddr}`,
      `--json-listen-addr=127.0.0.1:${await freePort()}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env },
  );
  children.push(gateway);
  await waitForLine(gateway, /gateway listening/, `gateway (${config.name})`);
  return { config, cluster, gateway, gatewayAddr };
}

/** A stack's processes by role: gateway, the leader, the followers. */
interface Roles {
  gateway: number | undefined;
  leader: number | undefined;
  followers: (number | undefined)[];
}

async function rolesOf(s: Stack): Promise<Roles> {
  const { member } = await s.cluster.agreedLeader();
  const pid = (m: MemberProcess) => m.child?.pid;
  return {
    gateway: s.gateway.pid,
    leader: pid(member),
    followers: s.cluster.members.filter((m) => m !== member).map(pid),
  };
}

/** CPU seconds so far of gateway, leader, followers (summed). */
function roleCpu(r: Roles): [number, number, number] {
  return [
    cpuSeconds(r.gateway),
    cpuSeconds(r.leader),
    r.followers.reduce<number>((sum, p) => sum + cpuSeconds(p), 0),
  ];
}

function goload(endpoint: string, opts: Options, label: string): Promise<GoloadResult> {
  return runGoload(
    [
      "-endpoints",
      endpoint,
      "-op",
      "put",
      "-conns",
      String(opts.conns),
      "-clients",
      String(opts.clients),
      "-total",
      String(opts.total),
      "-timeout-s",
      "60",
      "-call-timeout-ms",
      "10000",
      "-label",
      label,
    ],
    120_000,
  );
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Cell {
  ops: number;
  p99: number;
  /** CPU microseconds per put: gateway, leader, followers (both), and their sum. */
  cpu: { gateway: number; leader: number; followers: number; total: number };
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  if (!existsSync(GOLOAD_BIN))
    throw new Error(`${GOLOAD_BIN} missing: run bench/goload/build.sh (or set GOLOAD)`);
  const receiver = spawn(process.execPath, [OTLP_RECEIVER_MAIN, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(receiver);
  const receiverUrl = `http://${(await waitForLine(receiver, /listening on ([\d.]+:\d+)/, "otlp-receiver"))[1]}`;
  const stacks: Stack[] = [];
  try {
    for (const config of opts.stacks) stacks.push(await startStack(config, receiverUrl));
    // Warm-up (JIT of the recording path too, connections, leader known) at every stack.
    for (const s of stacks) {
      const r = await goload(s.gatewayAddr, { ...opts, total: opts.warmup }, "warmup");
      console.log(`warm-up ${s.config.name}: ${opts.warmup} puts, ${Math.round(r.ops_per_s)} ops/s`);
    }
    const roles = new Map<string, Roles>();
    for (const s of stacks) {
      const r = await rolesOf(s);
      roles.set(s.config.name, r);
      console.log(
        `stack ${s.config.name}: gateway pid ${r.gateway}, leader pid ${r.leader}, followers ${r.followers.join(", ")}`,
      );
    }
    /** cells[round][stack name] */
    const cells: Map<string, Cell>[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      const row = new Map<string, Cell>();
      cells.push(row);
      for (let k = 0; k < stacks.length; k++) {
        const s = stacks[(k + round) % stacks.length]!;
        const r0 = roles.get(s.config.name)!;
        const before = roleCpu(r0);
        const r = await goload(s.gatewayAddr, opts, `put/${s.config.name}`);
        const after = roleCpu(r0);
        const per = after.map((a, i) => ((a - before[i]!) * 1e6) / Math.max(1, r.ok));
        const cell: Cell = {
          ops: r.ops_per_s,
          p99: r.latency_ms.p99 ?? 0,
          cpu: { gateway: per[0]!, leader: per[1]!, followers: per[2]!, total: per[0]! + per[1]! + per[2]! },
        };
        row.set(s.config.name, cell);
        console.log(
          `round ${round + 1} ${s.config.name.padEnd(6)} ${r.ops_per_s.toFixed(0)} ops/s p50 ${r.latency_ms.p50} ms p99 ${r.latency_ms.p99} ms errors ${r.errors}, ` +
            `CPU/put ${cell.cpu.total.toFixed(0)} us (gateway ${per[0]!.toFixed(0)}, leader ${per[1]!.toFixed(0)}, followers ${per[2]!.toFixed(0)})`,
        );
      }
    }
    const base = opts.stacks[0]!.name;
    const of = (name: string, pick: (c: Cell) => number) => cells.map((row) => pick(row.get(name)!));
    const baseOps = median(of(base, (c) => c.ops));
    const baseCpu = median(of(base, (c) => c.cpu.total));
    console.log(
      `\nput through the gateway, ${opts.conns} conns x ${opts.clients} clients, ${opts.total} puts/cell, ${opts.rounds} rounds; ` +
        `"paired": median over rounds of the ratio to stack ${base} in the same round (min..max):`,
    );
    for (const c of opts.stacks) {
      const ops = of(c.name, (x) => x.ops);
      const cpu = of(c.name, (x) => x.cpu.total);
      const pairedOps = ops.map((v, i) => v / cells[i]!.get(base)!.ops);
      const pairedCpu = cpu.map((v, i) => v / cells[i]!.get(base)!.cpu.total);
      const roleMedian = (pick: (x: Cell) => number) => median(of(c.name, pick)).toFixed(0);
      console.log(
        `  tracing ${c.name.padEnd(6)} ${median(ops).toFixed(0)} ops/s = ${pct(median(ops) / baseOps)} of ${base} ` +
          `(paired ${pct(median(pairedOps))}, ${pct(Math.min(...pairedOps))}..${pct(Math.max(...pairedOps))}), p99 ${median(of(c.name, (x) => x.p99))} ms; ` +
          `CPU/put ${median(cpu).toFixed(0)} us = ${pct(median(cpu) / baseCpu)} of ${base} ` +
          `(paired ${pct(median(pairedCpu))}, ${pct(Math.min(...pairedCpu))}..${pct(Math.max(...pairedCpu))}; ` +
          `gateway ${roleMedian((x) => x.cpu.gateway)}, leader ${roleMedian((x) => x.cpu.leader)}, followers ${roleMedian((x) => x.cpu.followers)})`,
      );
    }
    const spans = (await (await fetch(`${receiverUrl}/api/spans`)).json()) as { spans: unknown[] };
    console.log(`  spans received by the otlp-receiver: ${spans.spans.length}`);
  } finally {
    // A clean stop (profiles are written then); close() kills.
    await Promise.all(
      stacks.map(async (s) => {
        if (s.gateway.exitCode === null) {
          const exited = new Promise((r) => s.gateway.once("exit", r));
          s.gateway.kill("SIGTERM");
          const timer = setTimeout(() => s.gateway.kill("SIGKILL"), 15_000);
          await exited;
          clearTimeout(timer);
        }
        await Promise.all(s.cluster.members.map((m) => s.cluster.stop(m)));
      }),
    );
    for (const s of stacks) await s.cluster.close();
    for (const c of children) c.kill("SIGKILL");
  }
}

await main();
