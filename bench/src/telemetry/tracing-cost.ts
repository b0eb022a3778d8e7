// What tracing costs a put through the gateway, side by side in one run: three identical stacks
// (3 members + 1 gateway each) with tracing off, at 1% sampling and at 100%, exporting to one
// otlp-receiver process; bench/goload drives the same put scenario at each stack in turn,
// rotating the order every round, and the medians are compared (the machine is shared: take
// the ratios, not the absolute numbers). Besides throughput it reports the CPU time the stack's
// four processes spent per put (utime + stime from /proc), which a loaded machine disturbs far
// less than ops/s; the receiver's own CPU is left out (in a deployment it is Jaeger's).
//
//   node bench/dist/telemetry/tracing-cost.js [--rounds 3] [--total 5000] [--conns 10] [--clients 100]
//
// The sampler is parentbased_traceidratio at the gateway: a root span there decides, and the
// members follow the sampled flag in `traceparent` (unsampled requests carry no trace bytes in
// their Raft entries).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalCluster } from "@etcd-ts/raft-node";
import { OTLP_RECEIVER_MAIN } from "@etcd-ts/telemetry";
import { freePort } from "@etcd-ts/testing";
import { GOLOAD_BIN, type GoloadResult, runGoload } from "../goload.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const gatewayMain = join(root, "services/api-gateway/dist/main.js");

interface Options {
  rounds: number;
  total: number;
  conns: number;
  clients: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { rounds: 3, total: 5_000, conns: 10, clients: 100 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!.replace(/^--/, "");
    const value = Number(argv[++i]);
    if (!(flag in opts) || !Number.isInteger(value) || value <= 0) {
      throw new Error(
        `usage: tracing-cost [--rounds N] [--total N] [--conns N] [--clients N] (bad ${argv[i - 1]})`,
      );
    }
    opts[flag as keyof Options] = value;
  }
  return opts;
}

interface Config {
  name: string;
  /** OTEL_* for every process of the stack; undefined: tracing off (no endpoint). */
  sampling: number | undefined;
}

const CONFIGS: Config[] = [
  { name: "off", sampling: undefined },
  { name: "1%", sampling: 0.01 },
  { name: "100%", sampling: 1 },
];

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
  const cluster = await LocalCluster.start({ size: 3, env, token: `tracing-cost-${config.name}` });
  const gatewayAddr = `127.0.0.1:${await freePort()}`;
  const gateway = spawn(
    process.execPath,
    [
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

/** CPU seconds (user + system) a process has used, from /proc/PID/stat (Linux, 100 ticks/s). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function stackCpuSeconds(s: Stack): number {
  return cpuSeconds(s.gateway.pid) + s.cluster.members.reduce((sum, m) => sum + cpuSeconds(m.child?.pid), 0);
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

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(GOLOAD_BIN))
    throw new Error(`${GOLOAD_BIN} missing: run bench/goload/build.sh (or set GOLOAD)`);
  const receiver = spawn(process.execPath, [OTLP_RECEIVER_MAIN, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(receiver);
  const receiverUrl = `http://${(await waitForLine(receiver, /listening on ([\d.]+:\d+)/, "otlp-receiver"))[1]}`;
  const stacks: Stack[] = [];
  try {
    for (const config of CONFIGS) stacks.push(await startStack(config, receiverUrl));
    // Warm-up (JIT, connections, leader known) at every stack before measuring.
    for (const s of stacks)
      await goload(s.gatewayAddr, { ...opts, total: Math.min(opts.total, 2_000) }, "warmup");
    const results = new Map<string, GoloadResult[]>(CONFIGS.map((c) => [c.name, []]));
    const cpuPerPut = new Map<string, number[]>(CONFIGS.map((c) => [c.name, []]));
    for (let round = 0; round < opts.rounds; round++) {
      for (let k = 0; k < stacks.length; k++) {
        const s = stacks[(k + round) % stacks.length]!;
        const cpuBefore = stackCpuSeconds(s);
        const r = await goload(s.gatewayAddr, opts, `put/${s.config.name}`);
        const us = ((stackCpuSeconds(s) - cpuBefore) * 1e6) / Math.max(1, r.ok);
        results.get(s.config.name)!.push(r);
        cpuPerPut.get(s.config.name)!.push(us);
        console.log(
          `round ${round + 1} ${s.config.name.padEnd(5)} ${r.ops_per_s.toFixed(0)} ops/s p50 ${r.latency_ms.p50} ms p99 ${r.latency_ms.p99} ms errors ${r.errors}, ${us.toFixed(0)} us CPU/put`,
        );
      }
    }
    const off = median(results.get("off")!.map((r) => r.ops_per_s));
    const offCpu = median(cpuPerPut.get("off")!);
    console.log(
      `\nput through the gateway, ${opts.conns} conns x ${opts.clients} clients, ${opts.total} puts/cell:`,
    );
    for (const c of CONFIGS) {
      const rs = results.get(c.name)!;
      const ops = median(rs.map((r) => r.ops_per_s));
      const p99 = median(rs.map((r) => r.latency_ms.p99 ?? 0));
      const cpu = median(cpuPerPut.get(c.name)!);
      console.log(
        `  tracing ${c.name.padEnd(5)} median ${ops.toFixed(0)} ops/s (${((ops / off) * 100).toFixed(1)}% of off), p99 ${p99} ms, ` +
          `${cpu.toFixed(0)} us CPU/put in gateway + members (${((cpu / offCpu) * 100).toFixed(1)}% of off)`,
      );
    }
    const spans = (await (await fetch(`${receiverUrl}/api/spans`)).json()) as { spans: unknown[] };
    console.log(`  spans received by the otlp-receiver: ${spans.spans.length}`);
  } finally {
    for (const s of stacks) await s.cluster.close();
    for (const c of children) c.kill("SIGKILL");
  }
}

await main();
