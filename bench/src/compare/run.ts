// `npm run bench`: this project against a real etcd 3.4, side by side, in one run.
// Starts a 3-member real etcd cluster and our 3 members + one gateway on free loopback ports
// (temp data dirs), drives each with the same lean Go client (bench/goload) scenario by
// scenario, alternating targets, then loads N keys into both, reads member RSS, and restarts one
// follower of each cluster, timing until it serves a serializable Range at the latest revision.
// With those keys loaded, "range-full" reads them all in one Range per target while a paced put
// load runs beside it (time, response size, RSS growth, the puts' latency against a baseline).
// Last, the defrag row (defrag-2g): each cluster's leader loaded with ~--defrag-mb of 4 KiB
// values written twice and compacted, then Maintenance.Defragment on it under a put load.
// Flags: --quick, --scenarios a,b, --targets etcd,members,gateway, --keys N, --defrag-mb N, --profile DIR
// (our members and gateway write V8 CPU profiles there; summarise with bench/dist/profile/top.js).
// Results: bench/results/<timestamp>.json.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { cpus, hostname, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { addressOf, LocalCluster } from "@etcd-ts/raft-node";
import { freePorts } from "@etcd-ts/testing";
import { GOLOAD_BIN, GOLOAD_DIR, type GoloadResult, type GoloadRun, startGoload } from "../goload.js";
import { processTree, rssKiB, threadStats, totalCpuSeconds } from "../proc-cpu.js";
import {
  type Cell,
  catchupRatio,
  catchupText,
  cellPlan,
  cellText,
  fmtMs,
  fmtOps,
  membersText,
  mergeRounds,
  ratio,
  threadDelta,
  withFirst,
} from "./cells.js";

// Both bench/src/compare/run.ts (tsx) and bench/dist/compare/run.js sit three levels down.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const etcdBin = "/usr/bin/etcd";
const memberMain = join(root, "services/raft-node/dist/main.js");
const gatewayMain = join(root, "services/api-gateway/dist/main.js");
const authMain = join(root, "services/auth/dist/main.js");
const host = "127.0.0.1";

interface Scenario {
  name: string;
  op: string;
  conns: number;
  clients: number;
  total: number;
  quickTotal: number;
  watchers?: number;
  streams?: number;
  /** watch-latency: keys the watchers are spread over (each put reaches that key's watchers). */
  watchKeys?: number;
  /** goload's -timeout-s for the cell, when the default cell timeout is too short. */
  timeoutS?: number;
  /**
   * "tls": the members' https client URLs (the same clusters also serve https, with the test CA's
   * server certificate); etcd and our members only, as neither proxy serves TLS here.
   * "auth": auth enabled on both clusters for this scenario alone, a non-root user whose role may
   * write every key, its token on every call (goload authenticates each connection once).
   */
  security?: "tls" | "auth";
  /**
   * Closed-loop writers beside the measured calls, on connections of their own to the same
   * endpoints (goload's -bg-put-*), from just before the first measured call to the last: the
   * row is the measured calls' rate and latency, the cell also shows the writers' (bg_put).
   * The server CPU column then counts the writers' CPU too, per measured call.
   */
  bgPut?: { conns: number; clients: number };
}

// Totals aim at ~5-15 s per cell at real etcd's speed on this machine (shared/FACTS.md);
// every cell is also bounded in time by goload's -timeout-s.
const scenarios: Scenario[] = [
  { name: "put-1x1", op: "put", conns: 1, clients: 1, total: 5_000, quickTotal: 1_000 },
  { name: "put-10x100", op: "put", conns: 10, clients: 100, total: 40_000, quickTotal: 8_000 },
  { name: "put-50x500", op: "put", conns: 50, clients: 500, total: 60_000, quickTotal: 10_000 },
  {
    name: "put-tls-10x100",
    op: "put",
    conns: 10,
    clients: 100,
    total: 40_000,
    quickTotal: 8_000,
    security: "tls",
  },
  {
    name: "put-auth-10x100",
    op: "put",
    conns: 10,
    clients: 100,
    total: 40_000,
    quickTotal: 8_000,
    security: "auth",
  },
  { name: "txn-put-10x100", op: "txn-put", conns: 10, clients: 100, total: 40_000, quickTotal: 8_000 },
  { name: "range-lin-1x1", op: "range-lin", conns: 1, clients: 1, total: 8_000, quickTotal: 2_000 },
  { name: "range-lin-10x100", op: "range-lin", conns: 10, clients: 100, total: 50_000, quickTotal: 10_000 },
  // Linearizable reads while others write (kube-apiserver's and every client's default Get):
  // the reads' rate and latency, 10 writers on 10 connections putting all along.
  {
    name: "range-lin-1x1-under-put-10x10",
    op: "range-lin",
    conns: 1,
    clients: 1,
    total: 2_000,
    quickTotal: 500,
    bgPut: { conns: 10, clients: 10 },
  },
  {
    name: "range-lin-10x10-under-put-10x10",
    op: "range-lin",
    conns: 10,
    clients: 10,
    total: 10_000,
    quickTotal: 2_000,
    bgPut: { conns: 10, clients: 10 },
  },
  { name: "range-ser-1x1", op: "range-ser", conns: 1, clients: 1, total: 10_000, quickTotal: 2_000 },
  { name: "range-ser-10x100", op: "range-ser", conns: 10, clients: 100, total: 80_000, quickTotal: 15_000 },
  // Through the gateway, tokens come from the auth service (JWTs the gateway verifies) and its
  // Range cache answers a user what members let that user read (--range-cache-user).
  {
    name: "range-serializable-auth-10x100",
    op: "range-ser",
    conns: 10,
    clients: 100,
    total: 80_000,
    quickTotal: 15_000,
    security: "auth",
  },
  {
    name: "watch-1000",
    op: "watch-latency",
    conns: 1,
    clients: 1,
    total: 300,
    quickTotal: 50,
    watchers: 1_000,
    streams: 10,
  },
  {
    name: "watch-10000",
    op: "watch-latency",
    conns: 1,
    clients: 1,
    total: 100,
    quickTotal: 20,
    watchers: 10_000,
    streams: 100,
  },
  // Many watched keys (a Kubernetes-style fan-out): 100 watchers on each of 1,000 keys, over
  // 1,000 streams on 10 connections; each put reaches the 100 watchers of its key.
  {
    name: "watch-100k-1000keys",
    op: "watch-latency",
    conns: 10,
    clients: 1,
    total: 200,
    quickTotal: 30,
    watchers: 100_000,
    streams: 1_000,
    watchKeys: 1_000,
  },
  // A watch starting far behind the head (a client resuming after a disconnect): `total`
  // revisions written first, then times to the first event and to the head (see goload).
  {
    name: "watch-catchup-100k",
    op: "watch-catchup",
    conns: 10,
    clients: 100,
    total: 100_000,
    quickTotal: 10_000,
    timeoutS: 120,
  },
  {
    name: "watch-catchup-1m",
    op: "watch-catchup",
    conns: 50,
    clients: 500,
    total: 1_000_000,
    quickTotal: 20_000,
    timeoutS: 600,
  },
  {
    name: "lease-keepalive-10x100",
    op: "lease-keepalive",
    conns: 10,
    clients: 100,
    total: 80_000,
    quickTotal: 10_000,
  },
];
/** Steps after the scenarios, on --keys loaded keys. */
const KEY_STEPS = ["rss", "range-full"];
const quickScenarios = ["put-1x1", "put-10x100", "range-ser-10x100", "watch-1000", "lease-keepalive-10x100"];

// etcd-proxy: real etcd behind its own `etcd grpc-proxy` (a Go proxy with watch and keep-alive
// coalescing and a serializable-range cache): what one proxy hop costs etcd, for the gateway row.
type Target = "etcd" | "etcd-proxy" | "members" | "gateway";
const targetNames: Target[] = ["etcd", "etcd-proxy", "members", "gateway"];

interface Options {
  quick: boolean;
  scenarios: Scenario[];
  targets: Target[];
  keys: number;
  /** Whether the "rss" step (RSS after the load, a follower's restart) runs. */
  rss: boolean;
  /** Whether the "range-full" step runs (one Range over the loaded keys per target). */
  rangeFull: boolean;
  /** How many times each target's range-full cell runs (rotating the order each round). */
  rangeRounds: number;
  /**
   * --wait-until HH:MM (UTC): after loading the keys, wait until then before measuring, so the
   * measured steps fall in a quiet window of a shared machine while the load does not.
   */
  waitUntil: Date | undefined;
  /** The defrag row's target database size in MiB (etcd's dbSize), 0 when the row is not run. */
  defragMiB: number;
  cellTimeoutS: number;
  profileDir: string | undefined;
  /** The gateway's --workers (etcd's grpc-proxy uses every core by itself). */
  gatewayWorkers: string;
  /** Seconds of the same load, unmeasured, before each throughput cell (0: none). */
  warmupS: number;
  /**
   * Rounds per single-client cell: its calls split into this many goload runs, the targets
   * taking turns (each round starts with the next one), as cpu-per-op alternates builds.
   */
  cellRounds: number;
}

function parseArgs(argv: string[]): Options {
  let quick = false;
  let names: string[] | undefined;
  let keys: number | undefined;
  let targets: Target[] = [...targetNames];
  let profileDir: string | undefined;
  let gatewayWorkers = "1";
  let rangeRounds = 1;
  let waitUntil: Date | undefined;
  let defragMiB: number | undefined;
  let warmupS = 2;
  // Single-client cells: the per-scenario rotation gave etcd the first place in all three of the
  // README's run (scenarios 0, 4 and 8 of its list), put 1 / 1 right after the clusters started;
  // in rounds every target takes every place.
  let cellRounds = 5;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === "--quick") quick = true;
    else if (flag === "--scenarios") names = value().split(",").filter(Boolean);
    else if (flag === "--keys") keys = Number(value());
    else if (flag === "--targets") targets = value().split(",").filter(Boolean) as Target[];
    else if (flag === "--profile") profileDir = resolve(value());
    else if (flag === "--gateway-workers") gatewayWorkers = value();
    else if (flag === "--range-rounds") rangeRounds = Number(value());
    else if (flag === "--wait-until") waitUntil = utcTimeToday(value());
    else if (flag === "--defrag-mb") defragMiB = Number(value());
    else if (flag === "--warmup-s") warmupS = Number(value());
    else if (flag === "--cell-rounds") cellRounds = Number(value());
    else if (flag === "--help" || flag === "-h") {
      console.log(
        `usage: run [--quick] [--scenarios a,b] [--targets etcd,members,gateway] [--keys N] [--range-rounds N] [--wait-until HH:MM (UTC, after loading keys)] [--defrag-mb N] [--warmup-s S (default 2, 0: none)] [--cell-rounds N (single-client cells in N rounds, targets taking turns; default 5, 1: one run each)] [--profile DIR] [--gateway-workers N|auto]\nscenarios: ${scenarios.map((s) => s.name).join(", ")}, ${KEY_STEPS.join(", ")} (these two load --keys keys first), ${DEFRAG_ROW}`,
      );
      process.exit(0);
    } else throw new Error(`unknown flag ${a}`);
  }
  const wanted =
    names ??
    (quick ? [...quickScenarios, ...KEY_STEPS] : [...scenarios.map((s) => s.name), ...KEY_STEPS, DEFRAG_ROW]);
  for (const n of wanted) {
    if (!KEY_STEPS.includes(n) && n !== DEFRAG_ROW && !scenarios.some((s) => s.name === n))
      throw new Error(`unknown scenario ${n}`);
  }
  const mib = defragMiB ?? (quick ? 256 : 2048);
  if (!Number.isFinite(mib) || mib <= 0) throw new Error("--defrag-mb must be positive");
  for (const t of targets) {
    if (!targetNames.includes(t)) throw new Error(`unknown target ${t}`);
  }
  const k = keys ?? (quick ? 10_000 : 1_000_000);
  if (!Number.isInteger(k) || k < 0) throw new Error("--keys must be a non-negative integer");
  if (!Number.isInteger(rangeRounds) || rangeRounds < 1)
    throw new Error("--range-rounds must be a positive integer");
  if (!Number.isInteger(cellRounds) || cellRounds < 1)
    throw new Error("--cell-rounds must be a positive integer");
  return {
    quick,
    scenarios: scenarios.filter((s) => wanted.includes(s.name)),
    targets,
    keys: KEY_STEPS.some((n) => wanted.includes(n)) ? k : 0,
    rss: wanted.includes("rss"),
    rangeFull: wanted.includes("range-full"),
    rangeRounds,
    waitUntil,
    defragMiB: wanted.includes(DEFRAG_ROW) ? mib : 0,
    cellTimeoutS: quick ? 8 : 15,
    profileDir,
    gatewayWorkers,
    warmupS,
    cellRounds,
  };
}

// ---------------------------------------------------------------- processes

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
}

const procs: Proc[] = [];
const clusters: LocalCluster[] = [];
const tempDirs: string[] = [];
let currentLoad: GoloadRun | undefined;
let stopping = false;

function startProc(name: string, cmd: string, args: string[], logFile: string): Proc {
  const log = createWriteStream(logFile);
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.once("exit", (code, signal) => {
    if (stopping) return;
    // The temp dir (and the log) is removed at the end: show the log's tail now.
    let tail = "";
    try {
      tail = readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n    ");
    } catch {}
    console.error(`!! ${name} exited unexpectedly (${signal ?? code}):\n    ${tail}`);
  });
  const p = { name, child, exited };
  procs.push(p);
  return p;
}

async function stopProc(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 10_000);
  await p.exited;
  clearTimeout(timer);
}

let stopped: Promise<void> | undefined;
function stopAll(): Promise<void> {
  stopped ??= doStopAll();
  return stopped;
}

async function doStopAll(): Promise<void> {
  stopping = true;
  currentLoad?.kill();
  // Proxies and the auth service first (they are clients of the members), then all members together.
  const clients = procs.filter(
    (p) => p.name.startsWith("gateway") || p.name === "etcd-grpc-proxy" || p.name === "auth",
  );
  await Promise.all(clients.map(stopProc));
  // SIGTERM, not close()'s SIGKILL: a member writes its CPU profile as it exits.
  await Promise.all(clusters.flatMap((c) => c.members.map((m) => c.stop(m, "SIGTERM", 10_000))));
  for (const c of clusters) await c.close();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}

interface Cluster {
  label: string;
  members: LocalCluster;
  clientEndpoints: string[];
  /** The same members' https client URLs (host:port). */
  tlsEndpoints: string[];
  gateway?: string;
  /** The proxy in front (etcd's grpc-proxy, our gateway) and our auth service: their PIDs, for server CPU. */
  proxyPid?: number;
  authPid?: number;
}

/** Node flags for our processes: a CPU profile per process, written when it exits. */
function nodeFlags(name: string, profileDir: string | undefined): string[] {
  if (profileDir === undefined) return [];
  mkdirSync(profileDir, { recursive: true });
  return ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `${name}.cpuprofile`];
}

async function startCluster(
  kind: "etcd" | "ours",
  dir: string,
  certs: string,
  profileDir?: string,
  gatewayWorkers = "1",
): Promise<Cluster> {
  const ports = await freePorts(2, host);
  const members = await LocalCluster.create({
    size: 3,
    names: [1, 2, 3].map((n) => `${kind}-n${n}`),
    root: dir,
    logFiles: true,
    token: `bench-${kind}`,
    tlsClientUrls: true,
    flags: [
      ...["--cert-file", join(certs, "server.crt"), "--key-file", join(certs, "server.key")],
      // The defrag row writes about twice its --defrag-mb before compacting: at 2 GiB both hit
      // the default 2 GiB quota (NOSPACE) while loading. 8 GiB is etcd's suggested maximum.
      ...["--quota-backend-bytes", String(8 * 1024 ** 3)],
    ],
    ...(kind === "etcd"
      ? { binary: etcdBin }
      : { main: memberMain, nodeFlags: (m) => nodeFlags(m.name, profileDir) }),
  });
  clusters.push(members);
  members.on("exit", (e) => {
    if (!e.unexpected || stopping) return;
    const m = members.members[e.member]!;
    const tail = m.output.trim().split("\n").slice(-5).join("\n    ");
    console.error(`!! ${m.name} exited unexpectedly (${e.signal ?? e.code}):\n    ${tail}`);
  });
  members.startAll();
  const clientEndpoints = members.members.map(addressOf);
  const tlsEndpoints = members.members.map((m) => m.tlsClientUrl!.replace("https://", ""));
  const cluster: Cluster = { label: kind, members, clientEndpoints, tlsEndpoints };
  if (kind === "etcd") {
    const proxy = `${host}:${ports[0]}`;
    cluster.proxyPid = startProc(
      "etcd-grpc-proxy",
      etcdBin,
      [
        "grpc-proxy",
        "start",
        "--endpoints",
        clientEndpoints.join(","),
        "--listen-addr",
        proxy,
        "--advertise-client-url",
        proxy,
        "--data-dir",
        join(dir, "proxy"),
      ],
      join(dir, "grpc-proxy.log"),
    ).child.pid;
    cluster.gateway = proxy;
  }
  if (kind === "ours") {
    const gw = `${host}:${ports[0]}`;
    // services/auth answers the gateway's Authenticate (JWTs), as deployed (npm start, compose).
    const [authGrpc, authHttp] = await freePorts(2, host);
    cluster.authPid = startProc(
      "auth",
      process.execPath,
      [
        ...nodeFlags("auth", profileDir),
        authMain,
        "--endpoints",
        members.members.map((m) => m.peerUrl).join(","),
        "--listen-addr",
        `${host}:${authGrpc}`,
        "--http-listen-addr",
        `${host}:${authHttp}`,
        "--log-level",
        "warn",
      ],
      join(dir, "auth.log"),
    ).child.pid;
    cluster.proxyPid = startProc(
      "gateway",
      process.execPath,
      [
        ...nodeFlags("gateway", profileDir),
        gatewayMain,
        "--endpoints",
        clientEndpoints.join(","),
        "--listen-addr",
        gw,
        "--json-listen-addr",
        `${host}:${ports[1]}`,
        "--auth-endpoints",
        `${host}:${authGrpc}`,
        "--range-cache-user",
        `root:${ROOT_PASSWORD}`,
        "--workers",
        gatewayWorkers,
        "--log-level",
        "warn",
      ],
      join(dir, "gateway.log"),
    ).child.pid;
    cluster.gateway = gw;
  }
  return cluster;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ROOT_PASSWORD = "bench-root";
/** A user that is not root (so each call goes through the permission check), allowed every key. */
const BENCH_USER = "bench:bench-password";

function etcdctl(endpoint: string, ...args: string[]): void {
  const r = spawnSync("etcdctl", ["--endpoints", endpoint, "--command-timeout", "10s", ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
    encoding: "utf8",
    timeout: 20_000,
  });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** Turns auth on (root and the bench user made the first time) or off, as etcdctl users do. */
function setAuth(c: Cluster, on: boolean): void {
  const ep = c.clientEndpoints[0]!;
  if (!on) {
    etcdctl(ep, "--user", `root:${ROOT_PASSWORD}`, "auth", "disable");
    return;
  }
  const [user, password] = BENCH_USER.split(":") as [string, string];
  const exists =
    spawnSync("etcdctl", ["--endpoints", ep, "user", "get", "root"], { timeout: 20_000 }).status === 0;
  if (!exists) {
    etcdctl(ep, "user", "add", `root:${ROOT_PASSWORD}`);
    etcdctl(ep, "user", "grant-role", "root", "root");
    etcdctl(ep, "user", "add", `${user}:${password}`);
    etcdctl(ep, "role", "add", user);
    etcdctl(ep, "role", "grant-permission", user, "readwrite", "--from-key", "");
    etcdctl(ep, "user", "grant-role", user, user);
  }
  etcdctl(ep, "auth", "enable");
}

function etcdctlPut(endpoint: string): boolean {
  const r = spawnSync(
    "etcdctl",
    ["--endpoints", endpoint, "--dial-timeout", "2s", "--command-timeout", "3s", "put", "bench-ready", "1"],
    { env: { ...process.env, ETCDCTL_API: "3" }, encoding: "utf8", timeout: 8_000 },
  );
  return r.status === 0;
}

async function waitHealthy(endpoints: string[], what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (const ep of endpoints) {
    for (;;) {
      if (stopping) throw new Error("stopped");
      if (etcdctlPut(ep)) break;
      if (Date.now() > deadline) throw new Error(`${what}: ${ep} not healthy after 60 s`);
      await sleep(500);
    }
  }
}

// ---------------------------------------------------------------- load

/** One cell: goload's result, or what went wrong (the table shows ERROR, the JSON the reason). */
async function goload(
  args: string[],
  hardTimeoutMs: number,
  onPhase?: (phase: string) => void,
): Promise<Cell> {
  const run = startGoload(args, hardTimeoutMs, onPhase);
  currentLoad = run;
  try {
    return { result: await run.result };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    currentLoad = undefined;
  }
}

function scenarioArgs(s: Scenario, endpoints: string[], total: number, timeoutS: number, label: string) {
  const args = [
    "-endpoints",
    endpoints.join(","),
    "-op",
    s.op,
    "-conns",
    String(s.conns),
    "-clients",
    String(s.clients),
    "-total",
    String(total),
    "-timeout-s",
    String(timeoutS),
    "-call-timeout-ms",
    "10000",
    "-label",
    label,
  ];
  if (s.watchers !== undefined)
    args.push(
      "-watchers",
      String(s.watchers),
      "-watch-timeout-ms",
      "5000",
      "-create-timeout-s",
      String(30 + Math.ceil(s.watchers / 2_000)),
    );
  if (s.watchKeys !== undefined) args.push("-watch-keys", String(s.watchKeys));
  if (s.streams !== undefined) args.push("-streams", String(s.streams));
  if (s.bgPut !== undefined)
    args.push("-bg-put-conns", String(s.bgPut.conns), "-bg-put-clients", String(s.bgPut.clients));
  return args;
}

/**
 * The processes that serve a target: its three members, and the proxy in front with its
 * workers (our gateway with the auth service it asks for tokens).
 */
function serverPids(t: Target, etcd: Cluster, ours: Cluster): number[] {
  const members = (c: Cluster) =>
    c.members.members.flatMap((m) => (m.child?.pid === undefined ? [] : [m.child.pid]));
  switch (t) {
    case "etcd":
      return members(etcd);
    case "etcd-proxy":
      return [...members(etcd), ...processTree(etcd.proxyPid)];
    case "members":
      return members(ours);
    case "gateway":
      return [...members(ours), ...processTree(ours.proxyPid), ...processTree(ours.authPid)];
  }
}

function rssOf(c: Cluster) {
  const each = c.members.members.map((m) => rssKiB(m.child?.pid));
  const known = each.filter((x): x is number => x !== null);
  return {
    each_mib: each.map((x) => (x === null ? null : +(x / 1024).toFixed(1))),
    max_mib: known.length ? +(Math.max(...known) / 1024).toFixed(1) : null,
    sum_mib: known.length ? +(known.reduce((a, b) => a + b, 0) / 1024).toFixed(1) : null,
  };
}

/** The next time it is HH:MM in UTC (today, or tomorrow if that has passed). */
function utcTimeToday(hhmm: string): Date {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm);
  if (m === null) throw new Error("--wait-until wants HH:MM (UTC)");
  const at = new Date();
  at.setUTCHours(Number(m[1]), Number(m[2]), 0, 0);
  if (at.getTime() < Date.now()) at.setUTCDate(at.getUTCDate() + 1);
  return at;
}

/** The targets, the first `i` moved to the end: each scenario starts with another one. */
function rotated(i: number): Target[] {
  return targetNames.map((_, k) => targetNames[(k + i) % targetNames.length]!);
}

// ---------------------------------------------------------------- range-full

/** The machine's load averages, to print beside cells measured on a shared machine. */
function uptimeText(): string {
  return `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}`;
}

/** Puts per second beside the Range, and for how long before it (their baseline). */
const RANGE_FULL_PUT_RATE = 100;
const RANGE_FULL_BASELINE_MS = 4_000;
const RANGE_FULL_CALL_TIMEOUT_MS = 300_000;

interface RssTrack {
  before_mib: number | null;
  peak_mib: number | null;
  after_mib: number | null;
}

type RangeFullCell = Cell & {
  /** The member that answered (etcd, members) or every member (behind a proxy): RSS by process. */
  rss?: Record<string, RssTrack>;
  endpoint?: string;
  /** The machine's load averages when the cell ended. */
  load?: number[];
};

/**
 * One Range over every key on `t` with goload's range-full op (a paced put load on the same
 * endpoint), sampling the RSS of each process that may take part every 100 ms: the members
 * (etcd and members targets: the leader alone, which answers both) and the proxy.
 */
async function rangeFullCell(t: Target, etcd: Cluster, ours: Cluster): Promise<RangeFullCell> {
  const cluster = t === "etcd" || t === "etcd-proxy" ? etcd : ours;
  const leader = await cluster.members.leader(10_000);
  if (leader === undefined) return { error: `${cluster.label}: no leader` };
  const direct = t === "etcd" || t === "members";
  const endpoint = direct ? addressOf(leader) : cluster.gateway!;
  const pids: Record<string, number | undefined> = {};
  for (const m of direct ? [leader] : cluster.members.members) pids[m.name] = m.child?.pid;
  if (!direct) {
    const proxyName = t === "gateway" ? "gateway" : "etcd-grpc-proxy";
    pids[proxyName] = procs.find((p) => p.name === proxyName)?.child.pid;
  }
  const track: Record<string, { before: number | null; peak: number | null; last: number | null }> = {};
  const sample = () => {
    for (const [name, pid] of Object.entries(pids)) {
      const kib = rssKiB(pid);
      track[name] ??= { before: kib, peak: kib, last: kib };
      const tr = track[name];
      if (kib !== null) tr.peak = Math.max(tr.peak ?? 0, kib);
      tr.last = kib;
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  const args = [
    "-endpoints",
    endpoint,
    "-op",
    "range-full",
    "-clients",
    "1000",
    "-rate",
    String(RANGE_FULL_PUT_RATE),
    "-baseline-ms",
    String(RANGE_FULL_BASELINE_MS),
    "-call-timeout-ms",
    String(RANGE_FULL_CALL_TIMEOUT_MS),
    "-range-key",
    `range-full-put-${t}`,
    "-label",
    `range-full/${t}`,
  ];
  let cell: Cell;
  try {
    cell = await goload(args, RANGE_FULL_CALL_TIMEOUT_MS + 60_000);
  } finally {
    clearInterval(timer);
  }
  sample();
  const mib = (kib: number | null) => (kib === null ? null : +(kib / 1024).toFixed(1));
  const rss: Record<string, RssTrack> = {};
  for (const [name, tr] of Object.entries(track)) {
    rss[name] = { before_mib: mib(tr.before), peak_mib: mib(tr.peak), after_mib: mib(tr.last) };
  }
  // Let the processes settle (and free what the answer took) before the next target.
  await sleep(3_000);
  return { ...cell, rss, endpoint, load: loadavg() };
}

interface RangeFullSummary {
  seconds: number;
  /** Until the response headers came (with the answer's first bytes): the answer was built. */
  builtSeconds: number | null;
  mb: number;
  kvs: number;
  /** Largest peak RSS growth of a member, and of the proxy (MiB). */
  memberGrowth: number | null;
  proxyGrowth: number | null;
  put: { p50: number | null; p99: number | null; max: number | null };
  baseP99: number | null;
}

function summarizeRangeFull(c: RangeFullCell | undefined): RangeFullSummary | undefined {
  if (c === undefined || !("result" in c)) return undefined;
  const r = c.result;
  const during = r.put_during_range_ms as { p50?: number; p99?: number; max?: number };
  const base = r.put_baseline_ms as { p99?: number };
  let memberGrowth: number | null = null;
  let proxyGrowth: number | null = null;
  for (const [name, tr] of Object.entries(c.rss ?? {})) {
    if (tr.before_mib === null || tr.peak_mib === null) continue;
    const growth = tr.peak_mib - tr.before_mib;
    if (name === "gateway" || name === "etcd-grpc-proxy") proxyGrowth = growth;
    else memberGrowth = Math.max(memberGrowth ?? 0, growth);
  }
  return {
    seconds: (r.range_ms as number) / 1000,
    builtSeconds: typeof r.range_header_ms === "number" ? r.range_header_ms / 1000 : null,
    mb: (r.range_bytes as number) / 1e6,
    kvs: r.range_kvs as number,
    memberGrowth,
    proxyGrowth,
    put: { p50: during.p50 ?? null, p99: during.p99 ?? null, max: during.max ?? null },
    baseP99: base.p99 ?? null,
  };
}

function rangeFullText(c: RangeFullCell | undefined): string {
  if (c === undefined) return "-";
  if ("error" in c) return `ERROR (${c.error})`;
  const s = summarizeRangeFull(c)!;
  const growth = [s.memberGrowth, s.proxyGrowth].map((g) => (g === null ? "-" : g.toFixed(0))).join("/");
  return (
    `${s.seconds.toFixed(2)} s (built ${s.builtSeconds === null ? "-" : s.builtSeconds.toFixed(2)} s), ${s.kvs} kvs ${s.mb.toFixed(0)} MB, RSS +${growth} MiB (member/proxy), ` +
    `puts during ${fmtMs(s.put.p50)}/${fmtMs(s.put.p99)}/${fmtMs(s.put.max)} ms (baseline p99 ${fmtMs(s.baseP99)})`
  );
}

/** The range-full rows: each target beside etcd (time) and beside its own baseline (puts). */
function rangeFullTable(cells: Partial<Record<Target, RangeFullCell>>, keys: number): string {
  const etcd = summarizeRangeFull(cells.etcd);
  const rows = [
    [
      `one Range over ${keys.toLocaleString("en-US")} keys`,
      "time s",
      "time/etcd",
      "MB",
      "RSS growth member MiB (x MB)",
      "proxy MiB (x MB)",
      "puts during p50/p99/max ms",
      "baseline p99",
      "p99 during/baseline",
    ],
  ];
  const times = (g: number | null, mb: number) =>
    g === null ? "-" : `${g.toFixed(0)} (${(g / mb).toFixed(2)}x)`;
  for (const t of targetNames) {
    const c = cells[t];
    if (c === undefined) continue;
    const s = summarizeRangeFull(c);
    if (s === undefined) {
      rows.push([t, "ERROR", "-", "-", "-", "-", "-", "-", "-"]);
      continue;
    }
    // MB are 10^6 bytes, RSS MiB 2^20: the ratio is against the response's MiB.
    const mib = (s.mb * 1e6) / 2 ** 20;
    rows.push([
      t,
      s.seconds.toFixed(2),
      etcd !== undefined && etcd.seconds > 0 ? (s.seconds / etcd.seconds).toFixed(2) : "-",
      s.mb.toFixed(0),
      times(s.memberGrowth, mib),
      times(s.proxyGrowth, mib),
      `${fmtMs(s.put.p50)}/${fmtMs(s.put.p99)}/${fmtMs(s.put.max)}`,
      fmtMs(s.baseP99),
      s.put.p99 !== null && s.baseP99 !== null && s.baseP99 > 0 ? (s.put.p99 / s.baseP99).toFixed(2) : "-",
    ]);
  }
  return `${table(rows)}\n(time/etcd and p99 during/baseline: <1 is better; growth is peak RSS minus RSS before, sampled every 100 ms)`;
}

// ---------------------------------------------------------------- restart

const RESTART_TIMEOUT_MS = 300_000;

type RestartResult = { seconds: number; revision: number; rss_mib: number | null } | { error: string };

/** The header revision of a Range on `endpoint` (serializable: the member's own state), or undefined. */
function rangeRevision(endpoint: string, serializable: boolean): number | undefined {
  const r = spawnSync(
    "etcdctl",
    [
      "--endpoints",
      endpoint,
      "--dial-timeout",
      "1s",
      "--command-timeout",
      "2s",
      "get",
      "bench-ready",
      "-w",
      "json",
      ...(serializable ? ["--consistency", "s"] : []),
    ],
    { env: { ...process.env, ETCDCTL_API: "3" }, encoding: "utf8", timeout: 5_000 },
  );
  if (r.status !== 0) return undefined;
  try {
    return Number((JSON.parse(r.stdout) as { header: { revision: number | string } }).header.revision);
  } catch {
    return undefined;
  }
}

/** Whether `endpoint` ("host:port") accepts a TCP connection within `timeoutMs`. */
function accepts(endpoint: string, timeoutMs: number): Promise<boolean> {
  const at = endpoint.lastIndexOf(":");
  return new Promise((resolve) => {
    const socket = connect({ host: endpoint.slice(0, at), port: Number(endpoint.slice(at + 1)) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Stops one follower (SIGTERM), starts it again on its data dir and times until it answers a
 * serializable Range at the revision the cluster had before: what a member holding the loaded
 * keys takes to restart and serve (reopening its store, replaying its WAL, catching up).
 */
async function restartFollower(c: Cluster): Promise<RestartResult> {
  try {
    const leader = await c.members.leader(2_000);
    const follower = c.members.members.find((m) => m !== leader && m.child !== undefined);
    if (leader === undefined || follower === undefined) return { error: "no leader and follower" };
    const latest = rangeRevision(addressOf(leader), false);
    if (latest === undefined) return { error: "the leader did not answer a Range" };
    await c.members.stop(follower, "SIGTERM", 30_000);
    const started = performance.now();
    c.members.spawn(follower);
    const endpoint = addressOf(follower);
    for (;;) {
      if (stopping) return { error: "stopped" };
      // etcdctl only once the port accepts: a dial refused inside etcdctl waits out grpc-go's
      // 1 s reconnect backoff, which made this row's resolution ~1 s (for both clusters).
      const listening = await accepts(endpoint, 1_000);
      const revision = listening ? rangeRevision(endpoint, true) : undefined;
      if (revision !== undefined && revision >= latest) {
        const seconds = (performance.now() - started) / 1000;
        const rss = rssKiB(follower.child?.pid);
        return {
          seconds: +seconds.toFixed(2),
          revision,
          rss_mib: rss === null ? null : +(rss / 1024).toFixed(1),
        };
      }
      if (follower.child === undefined) return { error: `${follower.name} exited while restarting` };
      if (performance.now() - started > RESTART_TIMEOUT_MS)
        return { error: `not serving revision ${latest} after ${RESTART_TIMEOUT_MS / 1000} s` };
      await sleep(listening ? 100 : 20);
    }
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function restartText(r: RestartResult | undefined): string {
  if (r === undefined) return "-";
  if ("error" in r) return `ERROR (${r.error})`;
  return `${r.seconds.toFixed(1)} s to serve revision ${r.revision} (RSS then ${r.rss_mib} MiB)`;
}

// ---------------------------------------------------------------- defrag

const DEFRAG_ROW = "defrag-2g";
/**
 * etcd's dbSize per key of the defrag row's load (a 4 KiB value written twice, 16-byte keys):
 * 131,752 keys made 1,625 MB (2026-12-05), so 2048 MiB is ~175,000 keys.
 */
const DEFRAG_BYTES_PER_KEY = 12_300;

interface DbStatus {
  dbSize: number;
  dbSizeInUse: number;
}

type DefragResult =
  | {
      keys: number;
      load_s: number;
      compact_s: number;
      before: DbStatus | null;
      after: DbStatus | null;
      cell: Cell;
      /** The leader's "finished defragmenting" log line (ours: its phases), if it wrote one. */
      log?: string;
    }
  | { error: string };

/**
 * A direct target's endpoints (in its members' order) with its leader first, for both clusters
 * alike: a cell with one connection uses the first endpoint only, and a put sent to a follower
 * is forwarded and answered once that follower applies it, so which member won the election
 * moved put 1 / 1 between ~300 and ~470 puts/s from run to run.
 */
async function leaderFirst(c: Cluster, endpoints: string[]): Promise<string[]> {
  const leader = await c.members.leader(5_000);
  return withFirst(endpoints, leader === undefined ? -1 : c.members.members.indexOf(leader));
}

/** Status's sizes of one member (etcdctl endpoint status), or null. */
function endpointStatus(endpoint: string): DbStatus | null {
  const r = spawnSync(
    "etcdctl",
    ["--endpoints", endpoint, "--command-timeout", "10s", "endpoint", "status", "-w", "json"],
    {
      env: { ...process.env, ETCDCTL_API: "3" },
      encoding: "utf8",
      timeout: 20_000,
    },
  );
  if (r.status !== 0) return null;
  try {
    const [s] = JSON.parse(r.stdout) as { Status: { dbSize: number; dbSizeInUse: number } }[];
    return s ? { dbSize: Number(s.Status.dbSize), dbSizeInUse: Number(s.Status.dbSizeInUse) } : null;
  } catch {
    return null;
  }
}

/**
 * The defrag row on one cluster: `keys` 16-byte keys (none of the other rows' 8-byte ones) each
 * put twice with a fresh random 4 KiB value, compacted at the head with --physical, then goload's
 * defrag-under-put on the leader: 10 s of 10/50 puts of 256 B to it, Maintenance.Defragment of
 * it meanwhile. The leader, because a member that is defragmenting holds its own applies: the
 * puts it proposes are the ones that wait.
 */
async function defragRow(c: Cluster, mib: number): Promise<DefragResult> {
  try {
    const keys = Math.max(1_000, Math.round((mib * 1024 * 1024) / DEFRAG_BYTES_PER_KEY));
    const started = performance.now();
    for (let round = 0; round < 2; round++) {
      if (stopping) return { error: "stopped" };
      const load = await goload(
        [
          ...["-endpoints", c.clientEndpoints.join(","), "-op", "put", "-conns", "10", "-clients", "100"],
          ...["-total", String(keys), "-key-space", String(keys), "-sequential-keys", "-key-size", "16"],
          ...[
            "-val-size",
            "4096",
            "-random-values",
            "-timeout-s",
            "1200",
            "-label",
            `defrag-load/${c.label}`,
          ],
        ],
        1_300_000,
      );
      if ("error" in load) return { error: `load: ${load.error}` };
      if (load.result.ok < keys) return { error: `load: ${load.result.ok} of ${keys} puts acknowledged` };
    }
    const loadS = (performance.now() - started) / 1000;
    const leader = await c.members.leader(5_000);
    if (leader === undefined) return { error: "no leader" };
    const endpoint = addressOf(leader);
    const revision = rangeRevision(endpoint, false);
    if (revision === undefined) return { error: "the leader did not answer a Range" };
    const compactStarted = performance.now();
    const compacted = spawnSync(
      "etcdctl",
      ["--endpoints", endpoint, "--command-timeout", "600s", "compact", String(revision), "--physical"],
      { env: { ...process.env, ETCDCTL_API: "3" }, encoding: "utf8", timeout: 660_000 },
    );
    if (compacted.status !== 0) return { error: `compact: ${compacted.stderr.trim()}` };
    const compactS = (performance.now() - compactStarted) / 1000;
    const before = endpointStatus(endpoint);
    const cell = await goload(
      [
        ...["-endpoints", endpoint, "-defrag-endpoint", endpoint, "-op", "defrag-under-put"],
        ...[
          "-conns",
          "10",
          "-clients",
          "50",
          "-key-space",
          "100000",
          "-val-size",
          "256",
          "-baseline-s",
          "10",
        ],
        ...["-timeout-s", "900", "-call-timeout-ms", "120000", "-label", `defrag/${c.label}`],
      ],
      1_000_000,
    );
    return {
      keys,
      load_s: +loadS.toFixed(1),
      compact_s: +compactS.toFixed(1),
      before,
      after: endpointStatus(endpoint),
      cell,
      log: leader.output.split("\n").find((l) => l.includes("finished defragmenting")),
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const fmtMB = (bytes: number | undefined) => (bytes === undefined ? "-" : `${(bytes / 1e6).toFixed(0)} MB`);

function defragText(r: DefragResult | undefined): string {
  if (r === undefined) return "-";
  if ("error" in r) return `ERROR (${r.error})`;
  if ("error" in r.cell) return `ERROR (${r.cell.error})`;
  const x = r.cell.result;
  const during = x.during_ms as { p50: number | null; p99: number | null; max: number | null };
  const base = x.latency_ms as { p50: number | null; p99: number | null; max?: number | null };
  const size = (s: DbStatus | null) =>
    s === null ? "-" : `${fmtMB(s.dbSize)} (in use ${fmtMB(s.dbSizeInUse)})`;
  return (
    `defrag ${((x.defrag_ms as number) / 1000).toFixed(1)} s; put p50/p99/max without ` +
    `${fmtMs(base.p50)}/${fmtMs(base.p99)}/${fmtMs(base.max ?? null)} ms, during ` +
    `${fmtMs(during.p50)}/${fmtMs(during.p99)}/${fmtMs(during.max)} ms; longest with no put ` +
    `${fmtMs(x.longest_no_put_ms as number)} ms (${x.puts_completed_during} puts during)` +
    `${x.errors > 0 ? `, ${x.errors} errors` : ""}; dbSize ${size(r.before)} -> ${size(r.after)}` +
    ` [load ${r.load_s} s, compact ${r.compact_s} s]`
  );
}

/** ours/etcd of the defrag row: defrag time, p99 during, longest gap (lower is better), and ours' p99 during/without. */
function defragRatios(ours: DefragResult | undefined, etcd: DefragResult | undefined): string {
  const cellOf = (r: DefragResult | undefined) =>
    r !== undefined && !("error" in r) && !("error" in r.cell) ? r.cell.result : undefined;
  const o = cellOf(ours);
  const e = cellOf(etcd);
  if (o === undefined) return "-";
  const p99 = (x: GoloadResult, f: "during_ms" | "latency_ms") => (x[f] as { p99: number | null }).p99 ?? 0;
  const own = p99(o, "latency_ms") > 0 ? (p99(o, "during_ms") / p99(o, "latency_ms")).toFixed(2) : "-";
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : "-");
  const vsEtcd =
    e === undefined
      ? ""
      : `ours/etcd: defrag time ${ratio(o.defrag_ms as number, e.defrag_ms as number)}, put p99 during ${ratio(
          p99(o, "during_ms"),
          p99(e, "during_ms"),
        )}, longest with no put ${ratio(o.longest_no_put_ms as number, e.longest_no_put_ms as number)} (<1 is better); `;
  return `${vsEtcd}ours put p99 during/without ${own} (goal <= 2)`;
}

/** A direct cell's per-member CPU (Cell.members): leader first, "l cpu/top thread/run queue". */

// ---------------------------------------------------------------- output

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [
    line(rows[0]),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.slice(1).map(line),
  ].join("\n");
}

// ---------------------------------------------------------------- main

function ensureTools(): void {
  if (!existsSync(etcdBin)) {
    console.log("installing Debian's etcd-server and etcd-client (apt-get)...");
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    spawnSync("apt-get", ["update"], { stdio: "inherit", env });
    const r = spawnSync("apt-get", ["install", "-y", "etcd-server", "etcd-client"], {
      stdio: "inherit",
      env,
    });
    if (r.status !== 0 || !existsSync(etcdBin)) throw new Error("could not install etcd-server");
  }
  if (spawnSync("etcdctl", ["version"], { encoding: "utf8" }).status !== 0) {
    throw new Error("etcdctl missing: apt-get install etcd-client");
  }
  // Rebuilt when its source is newer (a binary from before a new op would refuse it).
  if (
    !existsSync(GOLOAD_BIN) ||
    statSync(join(GOLOAD_DIR, "main.go")).mtimeMs > statSync(GOLOAD_BIN).mtimeMs
  ) {
    console.log("building goload (bench/goload/build.sh)...");
    const r = spawnSync("bash", [join(GOLOAD_DIR, "build.sh")], {
      stdio: "inherit",
      env: { ...process.env, OUT: dirname(GOLOAD_BIN) },
    });
    if (r.status !== 0 || !existsSync(GOLOAD_BIN)) throw new Error("goload build failed");
  }
  for (const main of [memberMain, gatewayMain, authMain]) {
    if (!existsSync(main)) throw new Error(`missing ${main}: build first (npx tsc -b)`);
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  ensureTools();
  const work = mkdtempSync(join(tmpdir(), "etcd-ts-bench-"));
  tempDirs.push(work);
  const startedAt = new Date();
  console.log(`bench: ${opts.quick ? "quick" : "full"} run, temp dir ${work}`);

  // The test CA and server certificate the https client URLs serve (scripts/gen-test-certs.sh).
  const certs = join(work, "certs");
  const made = spawnSync("bash", [join(root, "scripts/gen-test-certs.sh"), certs], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(`gen-test-certs.sh failed: ${made.stderr}`);
  const etcd = await startCluster("etcd", join(work, "etcd"), certs);
  const ours = await startCluster("ours", join(work, "ours"), certs, opts.profileDir, opts.gatewayWorkers);
  await waitHealthy(etcd.clientEndpoints, "etcd");
  await waitHealthy(ours.clientEndpoints, "our members");
  await waitHealthy([ours.gateway!], "our gateway");
  await waitHealthy([etcd.gateway!], "etcd's grpc-proxy");
  console.log(
    `etcd ${etcd.clientEndpoints.join(",")} (grpc-proxy ${etcd.gateway}); ours ${ours.clientEndpoints.join(",")}; gateway ${ours.gateway}`,
  );

  const endpointsOf: Record<Target, string[]> = {
    etcd: etcd.clientEndpoints,
    "etcd-proxy": [etcd.gateway!],
    members: ours.clientEndpoints,
    gateway: [ours.gateway!],
  };
  const tlsEndpointsOf: Partial<Record<Target, string[]>> = {
    etcd: etcd.tlsEndpoints,
    members: ours.tlsEndpoints,
  };
  const results: Record<string, Partial<Record<Target, Cell>>> = {};
  for (const [i, s] of opts.scenarios.entries()) {
    results[s.name] = {};
    // Rotate the order per scenario so no target always runs first on a warm/cold machine.
    const order = rotated(i).filter(
      (t) => opts.targets.includes(t) && (s.security !== "tls" || tlsEndpointsOf[t] !== undefined),
    );
    if (s.security === "auth") for (const c of [etcd, ours]) setAuth(c, true);
    // A single-client cell's result moves with what ran just before it and when (the first
    // target of a run measures a machine nobody loaded yet): with --cell-rounds its calls are
    // split into rounds, each round's targets in turn starting one later, as cpu-per-op
    // alternates builds.
    const { rounds, warmupS, inCell } = cellPlan(s, opts);
    const parts: Partial<Record<Target, Cell[]>> = {};
    for (let round = 0; round < rounds; round++) {
      for (const t of order.map((_, k) => order[(k + round) % order.length]!)) {
        if (stopping) return;
        const cellTotal = opts.quick ? s.quickTotal : s.total;
        const total = Math.ceil(cellTotal / rounds);
        // Watch scenarios pay for creating thousands of watchers before the first put.
        const timeoutS = s.timeoutS ?? opts.cellTimeoutS + (s.watchers ? Math.ceil(s.watchers / 500) : 0);
        let endpoints = s.security === "tls" ? tlsEndpointsOf[t]! : endpointsOf[t];
        if (t === "etcd" || t === "members")
          endpoints = await leaderFirst(t === "etcd" ? etcd : ours, endpoints);
        const extra: string[] = [];
        if (s.security === "tls") extra.push("-cacert", join(certs, "ca.crt"));
        if (s.security === "auth") extra.push("-user", BENCH_USER);
        // Each cell watches its own prefix (members and gateway share one cluster).
        // A watch may take up to half the cell's time (etcd needs minutes to reach the head of
        // 1,000,000 revisions: 120 s timed it out); the fill and the other watch share the rest.
        if (s.op === "watch-catchup")
          extra.push(
            "-watch-key",
            `catchup-${t}`,
            "-watch-timeout-ms",
            String(Math.max(120, timeoutS / 2) * 1000),
          );
        let warmup: Extract<Cell, { result: GoloadResult }>["warmup"];
        if (warmupS > 0 && round === 0 && !inCell) {
          const warm = scenarioArgs(s, endpoints, cellTotal, warmupS, `${s.name}/${t}/warmup`);
          const warmed = await goload([...warm, ...extra], (warmupS + 60) * 1000);
          warmup =
            "error" in warmed
              ? warmed
              : {
                  ok: warmed.result.ok,
                  elapsed_s: warmed.result.elapsed_s,
                  ops_per_s: warmed.result.ops_per_s,
                  p50_ms: warmed.result.latency_ms.p50,
                };
        }
        const label = rounds === 1 ? `${s.name}/${t}` : `${s.name}/${t}/round-${round + 1}`;
        const args = [...scenarioArgs(s, endpoints, total, timeoutS, label), ...extra];
        if (inCell) args.push("-warmup-s", String(warmupS));
        const pids = serverPids(t, etcd, ours);
        // Direct targets: per member, the leader (the first endpoint) first.
        const direct = t === "etcd" || t === "members" ? (t === "etcd" ? etcd : ours).members.members : [];
        const memberPids = direct
          .map((m) => ({ pid: m.child?.pid, leader: addressOf(m) === endpoints[0] }))
          .sort((a, b) => Number(b.leader) - Number(a.leader));
        const threadsNow = () => memberPids.map((m) => (m.pid === undefined ? [] : threadStats(m.pid)));
        let threadsBefore = threadsNow();
        // A watch row's members are read over its puts alone, as its CPU per put is (below).
        let threadsAfter: ReturnType<typeof threadsNow> | undefined;
        const cpuBefore = totalCpuSeconds(pids);
        // A watch row's creates (100,000 watchers) cost more CPU than its puts: its puts are
        // counted apart too, between goload's phase lines.
        const putCpu: Record<string, number> = {};
        const cell = await goload(args, (timeoutS + 180) * 1000, (phase) => {
          putCpu[phase] = totalCpuSeconds(pids);
          if (phase === "puts-start") threadsBefore = threadsNow();
          if (phase === "puts-end") threadsAfter = threadsNow();
        });
        if ("result" in cell && warmup !== undefined) cell.warmup = warmup;
        if ("result" in cell && inCell) {
          const ok = Number(cell.result.warmup_puts ?? 0);
          warmup = { ok, elapsed_s: warmupS, ops_per_s: ok / warmupS, p50_ms: null };
          cell.warmup = warmup;
        }
        if ("result" in cell && cell.result.ok > 0 && memberPids.length > 0) {
          const ok = cell.result.ok;
          cell.members = memberPids.map((m, k) => {
            const after = threadsAfter?.[k] ?? (m.pid === undefined ? [] : threadStats(m.pid));
            const delta = threadDelta(threadsBefore[k]!, after);
            return {
              role: m.leader ? "leader" : "follower",
              cpu_us: Math.round((delta.cpu * 1e6) / ok),
              top_thread_us: Math.round((delta.top * 1e6) / ok),
              run_queue_us: Math.round((delta.runQueue * 1e6) / ok),
            };
          });
        }
        if ("result" in cell && cell.result.ok > 0) {
          cell.server_cpu_us_per_op = Math.round(
            ((totalCpuSeconds(pids) - cpuBefore) * 1e6) / cell.result.ok,
          );
          const start = putCpu["puts-start"];
          const end = putCpu["puts-end"];
          if (start !== undefined && end !== undefined) {
            cell.server_cpu_us_per_put = Math.round(((end - start) * 1e6) / cell.result.ok);
          }
        }
        parts[t] = [...(parts[t] ?? []), cell];
        const name = rounds === 1 ? s.name : `${s.name} ${round + 1}/${rounds}`;
        const warmed =
          warmup === undefined
            ? ""
            : "error" in warmup
              ? " [warm-up failed]"
              : ` [warm-up ${warmup.ok} calls, ${fmtOps(warmup.ops_per_s)}/s]`;
        console.log(
          `  ${name.padEnd(24)} ${t.padEnd(8)} ${"error" in cell ? cell.error : s.op === "watch-catchup" ? catchupText(cell) : cellText(cell, !!s.watchers)}${warmed}${membersText(cell)}`,
        );
      }
    }
    for (const t of order) {
      const cells = parts[t];
      if (cells === undefined) continue;
      const cell = cells.length === 1 ? cells[0]! : mergeRounds(cells);
      results[s.name][t] = cell;
      if (cells.length > 1)
        console.log(
          `  ${s.name.padEnd(24)} ${t.padEnd(8)} ${cellText(cell, false)} (${cells.length} rounds)${membersText(cell)}`,
        );
    }
    if (s.security === "auth") for (const c of [etcd, ours]) setAuth(c, false);
  }

  let rss: Record<string, unknown> | undefined;
  /** One record per --range-rounds round. */
  let rangeFull: Partial<Record<Target, RangeFullCell>>[] | undefined;
  if (opts.keys > 0) {
    rss = { keys: opts.keys, val_size: 256, before: { etcd: rssOf(etcd), ours: rssOf(ours) } };
    const loads: Record<string, Cell> = {};
    for (const c of [etcd, ours]) {
      if (stopping) return;
      const args = [
        "-endpoints",
        c.clientEndpoints.join(","),
        "-op",
        "put",
        "-conns",
        "50",
        "-clients",
        "500",
        "-total",
        String(opts.keys),
        "-key-space",
        String(opts.keys),
        "-sequential-keys",
        "-timeout-s",
        String(Math.max(120, Math.ceil(opts.keys / 500))),
        "-label",
        `load/${c.label}`,
      ];
      loads[c.label] = await goload(args, (Math.max(120, Math.ceil(opts.keys / 500)) + 60) * 1000);
      console.log(`  load ${opts.keys} keys into ${c.label}: ${cellText(loads[c.label], false)}`);
    }
    await sleep(2_000);
    rss.after = { etcd: rssOf(etcd), ours: rssOf(ours) };
    rss.load = loads;
    if (opts.waitUntil !== undefined && opts.waitUntil.getTime() > Date.now()) {
      console.log(`  waiting until ${opts.waitUntil.toISOString()} (--wait-until)`);
      while (!stopping && Date.now() < opts.waitUntil.getTime()) await sleep(1_000);
      if (stopping) return;
    }
    if (opts.rangeFull) {
      rangeFull = [];
      for (let round = 0; round < opts.rangeRounds; round++) {
        const cells: Partial<Record<Target, RangeFullCell>> = {};
        const targets = rotated(opts.scenarios.length + round).filter((t) => opts.targets.includes(t));
        for (const t of targets) {
          if (stopping) return;
          cells[t] = await rangeFullCell(t, etcd, ours);
          console.log(`  range-full ${t.padEnd(10)} ${rangeFullText(cells[t])}  [${uptimeText()}]`);
        }
        rangeFull.push(cells);
      }
    }
    if (opts.rss) {
      const restarts: Record<string, RestartResult> = {};
      for (const c of [etcd, ours]) {
        if (stopping) return;
        restarts[c.label] = await restartFollower(c);
        console.log(
          `  restart a follower of ${c.label} holding ${opts.keys} keys: ${restartText(restarts[c.label])}`,
        );
      }
      rss.restart = restarts;
    }
  }

  let defrag: Record<string, DefragResult> | undefined;
  if (opts.defragMiB > 0) {
    defrag = {};
    // Members only: defragmenting is per member, so the proxies have no cell of their own.
    const wanted = [etcd, ours].filter((c) => opts.targets.includes(c === etcd ? "etcd" : "members"));
    for (const c of wanted) {
      if (stopping) return;
      defrag[c.label] = await defragRow(c, opts.defragMiB);
      console.log(`  ${DEFRAG_ROW} ${c.label}: ${defragText(defrag[c.label])}`);
      const log = defrag[c.label];
      if (log !== undefined && "log" in log && log.log !== undefined) console.log(`    ${log.log}`);
    }
  }

  // Interrupted: no table or results file for a partial run.
  if (stopping) return;
  const header = [
    "scenario",
    "etcd ops/s (p50/p99 ms)",
    "etcd via grpc-proxy",
    "ours via members",
    "ours via gateway",
    "members/etcd",
    "gateway/etcd",
    "gateway/etcd-proxy",
    "server CPU us/op e/p/m/g",
    "goload CPU us/op e/p/m/g",
  ];
  const rows = [header];
  for (const s of opts.scenarios) {
    const r = results[s.name];
    const w = !!s.watchers;
    const cpu = targetNames
      .map((t) => {
        const c = r[t];
        return c && "result" in c ? String(c.result.client_cpu.us_per_op) : "-";
      })
      .join("/");
    const serverCpu = targetNames
      .map((t) => {
        const c = r[t];
        if (!c || !("result" in c) || c.server_cpu_us_per_op === undefined) return "-";
        // Watch rows: the puts' own CPU, then the whole cell's (creates included) in brackets.
        return c.server_cpu_us_per_put !== undefined
          ? `${c.server_cpu_us_per_put} (${c.server_cpu_us_per_op})`
          : String(c.server_cpu_us_per_op);
      })
      .join("/");
    rows.push([
      s.op === "watch-latency" ? `${s.name} (put->all watchers)` : s.name,
      ...(s.op === "watch-catchup"
        ? [
            catchupText(r.etcd),
            catchupText(r["etcd-proxy"]),
            catchupText(r.members),
            catchupText(r.gateway),
            catchupRatio(r.members, r.etcd),
            catchupRatio(r.gateway, r.etcd),
            catchupRatio(r.gateway, r["etcd-proxy"]),
          ]
        : [
            cellText(r.etcd, w),
            cellText(r["etcd-proxy"], w),
            cellText(r.members, w),
            cellText(r.gateway, w),
            ratio(r.members, r.etcd, w),
            ratio(r.gateway, r.etcd, w),
            ratio(r.gateway, r["etcd-proxy"], w),
          ]),
      serverCpu,
      cpu,
    ]);
  }
  if (opts.scenarios.length > 0) console.log(`\n${table(rows)}`);
  if (rss) {
    const a = rss.after as Record<string, ReturnType<typeof rssOf>>;
    const b = rss.before as Record<string, ReturnType<typeof rssOf>>;
    console.log(
      `\nmember RSS after ${opts.keys.toLocaleString("en-US")} keys (256-byte values), MiB max / sum of 3 (before load):` +
        `\n  etcd: ${a.etcd.max_mib} / ${a.etcd.sum_mib} (${b.etcd.max_mib} / ${b.etcd.sum_mib})` +
        `\n  ours: ${a.ours.max_mib} / ${a.ours.sum_mib} (${b.ours.max_mib} / ${b.ours.sum_mib})` +
        `\n  members/etcd (max): ${a.ours.max_mib !== null && a.etcd.max_mib ? (a.ours.max_mib / a.etcd.max_mib).toFixed(2) : "-"} (<1 is better)`,
    );
    const restart = rss.restart as Record<string, RestartResult> | undefined;
    if (restart !== undefined) {
      const e = restart.etcd;
      const o = restart.ours;
      const ratio =
        e && o && "seconds" in e && "seconds" in o && e.seconds > 0
          ? (o.seconds / e.seconds).toFixed(2)
          : "-";
      console.log(
        `\nrestart of a follower holding ${opts.keys.toLocaleString("en-US")} keys, until it serves a serializable Range at the latest revision:` +
          `\n  etcd: ${restartText(e)}` +
          `\n  ours: ${restartText(o)}` +
          `\n  members/etcd (time): ${ratio} (<1 is better)`,
      );
    }
  }
  for (const [round, cells] of (rangeFull ?? []).entries()) {
    console.log(
      `\n${rangeFull!.length > 1 ? `round ${round + 1}:\n` : ""}${rangeFullTable(cells, opts.keys)}`,
    );
  }
  if (defrag !== undefined) {
    console.log(
      `\n${DEFRAG_ROW}: Maintenance.Defragment of the leader holding ~${opts.defragMiB} MiB (4 KiB values written twice, compacted) under 10/50 puts of 256 B:` +
        `\n  etcd: ${defragText(defrag.etcd)}` +
        `\n  ours: ${defragText(defrag.ours)}` +
        `\n  ${defragRatios(defrag.ours, defrag.etcd)}`,
    );
  }
  const errored = Object.entries(results).flatMap(([name, r]) =>
    Object.entries(r).flatMap(([t, c]) => (c && "error" in c ? [`${name}/${t}: ${c.error}`] : [])),
  );
  if (errored.length) console.log(`\nerrors:\n  ${errored.join("\n  ")}`);

  const resultsDir = join(root, "bench/results");
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
  const etcdVersion = spawnSync(etcdBin, ["--version"], { encoding: "utf8" }).stdout.split("\n")[0];
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        started_at: startedAt.toISOString(),
        finished_at: new Date().toISOString(),
        machine: {
          hostname: hostname(),
          cpus: cpus().length,
          cpu_model: cpus()[0]?.model,
          node: process.version,
        },
        etcd: etcdVersion,
        options: {
          quick: opts.quick,
          scenarios: opts.scenarios.map((s) => s.name),
          keys: opts.keys,
          defrag_mib: opts.defragMiB,
          gateway_workers: opts.gatewayWorkers,
          warmup_s: opts.warmupS,
          single_client_warmup_s: cellPlan({ op: "put", clients: 1 }, opts).warmupS,
          cell_rounds: opts.cellRounds,
        },
        scenarios: opts.scenarios.map((s) => ({ ...s, results: results[s.name] })),
        rss,
        range_full: rangeFull,
        defrag,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nsaved ${file}`);
  if (opts.profileDir !== undefined) {
    console.log(
      `CPU profiles (written as our processes exit): node bench/dist/profile/top.js ${opts.profileDir}/*.cpuprofile`,
    );
  }
}

let exitCode = 0;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping clusters...`);
    exitCode = 130;
    void stopAll().then(() => process.exit(exitCode));
  });
}
try {
  await main();
} catch (e) {
  console.error(`bench failed: ${e instanceof Error ? e.message : String(e)}`);
  exitCode = 1;
} finally {
  await stopAll();
}
process.exit(exitCode);
