// CPU per operation of each member, and the latency of one client: 3 members on loopback
// (LocalCluster), goload drives N calls at 1 client straight to the leader, and each member's
// CPU time (utime + stime from /proc/PID/stat) over those calls is divided by N. CPU per call
// is much less sensitive to other load on this shared machine than latency is.
// Before/after: --main takes several member builds (e.g. a copy of the tree before a change,
// /tmp/base/services/raft-node/dist/main.js, and this one); all clusters run at once and their
// rounds alternate, so every build sees the same machine state. The build that goes first
// rotates each round (round r starts with build r mod n, as the bench's cells rotate): the
// second build of a round was seen to pay more (h2req), so a fixed order would bias the pairing.
// Usage (after `npx tsc -b` and bench/goload/build.sh):
//   node bench/dist/profile/cpu-per-op.js [--op put] [--calls 2000] [--rounds 3] [--clients 1] [--warmup N] [--main a.js,b.js]
// --gateway a.js,b.js: each cluster gets an api-gateway of that build (one per --main, in the
// same order), goload goes through it (--conns connections), and the gateway's CPU per call is
// reported beside the members'.
// --tls: every cluster also serves an https client URL (the test CA of scripts/gen-test-certs.sh,
// server TLS only, as bench/compare's put-tls rows), and each round measures it beside the
// plain URL: what client TLS costs per call. --etcd: a real etcd cluster measured the same way
// beside ours (/usr/bin/etcd, or ETCD_BINARY).
// --threads: each member's CPU, run-queue wait and context switches per call by thread name
// (main "node", "libuv-worker", "V8 DefaultWorke", RocksDB's, etcd's Go threads), leader and
// followers apart, summed over the rounds: which threads wake per call. --strace: after the
// rounds, one more run of --calls per build with strace on the leader, a follower and the
// gateway if any (every thread; goload through the gateway as in the rounds), printing syscalls
// per call by thread name (ptrace slows the calls: counts only).
// --spread: goload gets every member's client URL, the leader's first, as the bench's `members`
// target does: its connections go round-robin over the members, so two thirds of the puts at
// --conns 50 reach a follower, which forwards them to the leader and answers once it applied them.
// --bg-put-clients N [--bg-put-conns M]: N closed-loop writers (on M connections of their own, 10
// by default) put beside the measured calls to the same endpoint, from just before the first to
// the last (goload's -bg-put-*): e.g. `--op range-lin --bg-put-clients 10`, linearizable reads
// while others write. Each round then prints the writers' puts/s and p50 too; the CPU per call
// counts the writers' CPU. --follower: goload goes to a follower instead of the leader.
// --node-flags 'a b,c': Node flags for each --main build, in its order (builds separated by commas,
// flags by spaces; an empty entry for none): the same tree paired with and without a V8 flag, e.g.
// `--main t/...,t/... --node-flags ',--max-semi-space-size=32'`. --gc: the members run with
// --trace-gc and each round also prints the leader's and followers' V8 collections per 1,000 calls,
// their pause per call and the bytes allocated per call (the young generation's growth between
// collections; a full collection's surviving bytes are not allocation), from that trace.
// --jit: the members run with --trace-opt --trace-deopt and each round also prints how many
// functions V8 marked for optimization and how many deoptimizations the leader had (a fresh
// member's warm-up: `--warmup 1 --calls 1000 --rounds 6`).
// Profiles: run it as `node --cpu-prof --cpu-prof-dir DIR bench/dist/...`; the members inherit
// Node's flags and write theirs when stopped at the end (summarise with top.js).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { LocalCluster } from "@etcd-ts/raft-node";
import { GOLOAD_BIN, type GoloadResult, runGoload } from "../goload.js";
import { cpuSeconds, rssKiB, type ThreadGroupDelta, threadDeltas, threadStats } from "../proc-cpu.js";
import { type Gateway, startGateway } from "./gateway-process.js";

const { values: args } = parseArgs({
  options: {
    op: { type: "string", default: "put" },
    calls: { type: "string", default: "2000" },
    /** Calls per cluster before the rounds, not counted (JIT, connections); default min(500, calls). */
    warmup: { type: "string" },
    rounds: { type: "string", default: "3" },
    clients: { type: "string", default: "1" },
    conns: { type: "string", default: "1" },
    main: { type: "string" },
    gateway: { type: "string" },
    tls: { type: "boolean", default: false },
    etcd: { type: "boolean", default: false },
    threads: { type: "boolean", default: false },
    strace: { type: "boolean", default: false },
    spread: { type: "boolean", default: false },
    "bg-put-clients": { type: "string", default: "0" },
    "bg-put-conns": { type: "string", default: "10" },
    follower: { type: "boolean", default: false },
    "node-flags": { type: "string" },
    gc: { type: "boolean", default: false },
    jit: { type: "boolean", default: false },
  },
});
const etcdBinary = process.env.ETCD_BINARY ?? "/usr/bin/etcd";
const certs = args.tls ? mkdtempSync(join(tmpdir(), "cpu-per-op-certs-")) : undefined;
if (certs !== undefined) {
  const made = spawnSync(
    "bash",
    [resolve(import.meta.dirname, "../../../scripts/gen-test-certs.sh"), certs],
    {
      encoding: "utf8",
    },
  );
  if (made.status !== 0) throw new Error(`gen-test-certs.sh failed: ${made.stderr}`);
}
const calls = Number(args.calls);
const rounds = Number(args.rounds);
const clients = Number(args.clients);
const conns = Number(args.conns);
const bgPutClients = Number(args["bg-put-clients"]);
const gatewayMains = args.gateway?.split(",").map((m) => resolve(m));
const mains = args.main?.split(",").map((m) => resolve(m)) ??
  gatewayMains?.map(() => undefined) ?? [undefined];
if (gatewayMains !== undefined && gatewayMains.length !== mains.length)
  throw new Error("--gateway needs one build per --main");
const nodeFlagsOf = (args["node-flags"]?.split(",") ?? []).map((f) => f.split(" ").filter((a) => a !== ""));
if (nodeFlagsOf.length > mains.length) throw new Error("--node-flags has more entries than --main builds");
if (!existsSync(GOLOAD_BIN)) throw new Error(`missing ${GOLOAD_BIN}: run bench/goload/build.sh`);

// With the members' event trace on (ETCD_TS_TRACE_EVENTS=<prefix>), goload stamps its side too,
// one file per build (<prefix>.goload-<build>), for hops.js.
const traceEvents = process.env.ETCD_TS_TRACE_EVENTS;

function goload(endpoint: string, total: number, tls = false, build = 0): Promise<GoloadResult> {
  const argv = [
    ...(tls ? ["-cacert", join(certs!, "ca.crt")] : []),
    ...(traceEvents ? ["-trace-file", `${traceEvents}.goload-${build}`] : []),
    "-endpoints",
    endpoint,
    "-op",
    args.op!,
    "-conns",
    String(conns),
    "-clients",
    String(clients),
  ];
  if (bgPutClients > 0)
    argv.push("-bg-put-clients", String(bgPutClients), "-bg-put-conns", String(args["bg-put-conns"]));
  return runGoload([...argv, "-total", String(total)]);
}

interface Round {
  build: string;
  gatewayUs: number | undefined;
  leaderUs: number;
  followersUs: number[];
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  opsPerS: number;
  /** Raft snapshots each member saved during the round ("saved snapshot"), leader first. */
  snapshots: number[];
  /** --jit: the leader's functions marked for optimization and its deoptimizations. */
  jit?: { marked: number; deopts: number };
  /** --gc: V8's collections over the round, leader then followers. */
  gc?: GcStats[];
  /** --bg-put-clients: the writers' puts/s and p50 (ms) beside the measured calls. */
  bgPut?: { opsPerS: number; p50: number | null };
  /** --threads: per role ("leader", "follower" for both followers), per thread name. */
  threads?: Map<string, Map<string, ThreadGroupDelta>>;
}

function endpointOf(leaderUrl: string, gateway: Gateway | undefined, followerUrls: string[] = []): string {
  return gateway?.address ?? [leaderUrl, ...followerUrls].map((u) => u.replace(/^https?:\/\//, "")).join(",");
}

async function measure(
  build: string,
  cluster: LocalCluster,
  gateway: Gateway | undefined,
  tls: boolean,
  buildIndex: number,
): Promise<Round> {
  const { member: leader } = await cluster.agreedLeader();
  const followers = cluster.members.filter((m) => m !== leader);
  const pids = [leader, ...followers].map((m) => m.child!.pid!);
  if (gateway !== undefined) pids.push(gateway.child.pid!);
  const threadsBefore = args.threads ? pids.map(threadStats) : [];
  const before = pids.map(cpuSeconds);
  const target = args.follower ? followers[0]! : leader;
  const url = tls ? target.tlsClientUrl! : target.clientUrl;
  const spreadTo = args.spread ? followers.map((m) => (tls ? m.tlsClientUrl! : m.clientUrl)) : [];
  const traced = [leader, ...followers].map((m) => m.output.length);
  const load = await goload(endpointOf(url, gateway, spreadTo), calls, tls, buildIndex);
  const after = pids.map(cpuSeconds);
  const gc = args.gc ? [leader, ...followers].map((m, i) => gcStats(m.output.slice(traced[i]))) : undefined;
  const leaderTrace = leader.output.slice(traced[0]);
  const jit = args.jit
    ? {
        marked: leaderTrace.match(/marking .* for optimization/g)?.length ?? 0,
        deopts: leaderTrace.match(/bailout \(kind: deopt/g)?.length ?? 0,
      }
    : undefined;
  let threads: Round["threads"];
  if (args.threads) {
    threads = new Map();
    for (const [i, pid] of pids.entries()) {
      const role = i === 0 ? "leader" : i <= followers.length ? "follower" : "gateway";
      addThreadDeltas(threads, role, threadDeltas(threadsBefore[i]!, threadStats(pid)));
    }
  }
  if (load.errors > 0) throw new Error(`${build}: ${load.errors} calls failed`);
  const perOpUs = pids.map((_, i) => Math.round(((after[i]! - before[i]!) / calls) * 1e6));
  const gatewayUs = gateway === undefined ? undefined : perOpUs.pop();
  return {
    build,
    gatewayUs,
    leaderUs: perOpUs[0]!,
    followersUs: perOpUs.slice(1),
    p50: load.latency_ms.p50,
    p90: load.latency_ms.p90 ?? null,
    p99: load.latency_ms.p99,
    p999: load.latency_ms.p999 ?? null,
    max: load.latency_ms.max ?? null,
    opsPerS: Math.round(load.ops_per_s),
    snapshots: [leader, ...followers].map(
      (m, i) => m.output.slice(traced[i]).match(/"msg":"saved snapshot"/g)?.length ?? 0,
    ),
    bgPut: bgPutOf(load),
    threads,
    gc,
    jit,
  };
}

interface GcStats {
  scavenges: number;
  fullGcs: number;
  pauseMs: number;
  allocatedMb: number;
}

/**
 * Sums --trace-gc lines ("Scavenge 12.3 (14.0) -> 11.1 (15.0) MB, 0.85 / 0.00 ms ..."): a
 * scavenge's "before" less the previous collection's "after" is what was allocated in between.
 */
function gcStats(trace: string): GcStats {
  const stats: GcStats = { scavenges: 0, fullGcs: 0, pauseMs: 0, allocatedMb: 0 };
  let lastAfter: number | undefined;
  for (const m of trace.matchAll(
    /ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact)\S* ([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \//g,
  )) {
    const before = Number(m[2]);
    if (m[1] === "Scavenge" || m[1] === "Minor Mark-Compact") stats.scavenges++;
    else stats.fullGcs++;
    if (lastAfter !== undefined && before > lastAfter) stats.allocatedMb += before - lastAfter;
    lastAfter = Number(m[3]);
    stats.pauseMs += Number(m[4]);
  }
  return stats;
}

function gcText(rounds: readonly Round[]): string {
  if (rounds[0]?.gc === undefined) return "";
  const part = (pick: (r: Round) => GcStats[]) => {
    const sum = rounds.flatMap(pick).reduce(
      (a, g) => ({
        scavenges: a.scavenges + g.scavenges,
        fullGcs: a.fullGcs + g.fullGcs,
        pauseMs: a.pauseMs + g.pauseMs,
        allocatedMb: a.allocatedMb + g.allocatedMb,
      }),
      { scavenges: 0, fullGcs: 0, pauseMs: 0, allocatedMb: 0 },
    );
    const n = (calls * rounds.length * pick(rounds[0]!).length) / 1000;
    // n is thousands of calls: ms per 1,000 calls is us per call.
    return `${(sum.scavenges / n).toFixed(2)} scavenges + ${(sum.fullGcs / n).toFixed(2)} full /1k calls, pause ${(sum.pauseMs / n).toFixed(1)} us/call, ${((sum.allocatedMb * 1024) / n / 1000).toFixed(1)} KB/call`;
  };
  return `; gc leader ${part((r) => r.gc!.slice(0, 1))}; each follower ${part((r) => r.gc!.slice(1))}`;
}

function bgPutOf(load: GoloadResult): Round["bgPut"] {
  const bg = load.bg_put as { ops_per_s: number; latency_ms: { p50: number | null } } | undefined;
  return bg === undefined ? undefined : { opsPerS: Math.round(bg.ops_per_s), p50: bg.latency_ms.p50 };
}

function bgPutText(rounds: readonly Round[]): string {
  const bg = rounds.flatMap((r) => (r.bgPut === undefined ? [] : [r.bgPut]));
  if (bg.length === 0) return "";
  return `; beside ${median(bg.map((b) => b.opsPerS))} puts/s (p50 ${median(bg.map((b) => b.p50 ?? 0))} ms)`;
}

function addThreadDeltas(
  into: Map<string, Map<string, ThreadGroupDelta>>,
  role: string,
  deltas: Map<string, ThreadGroupDelta>,
): void {
  const byName = into.get(role) ?? new Map<string, ThreadGroupDelta>();
  into.set(role, byName);
  for (const [name, d] of deltas) {
    const sum = byName.get(name);
    if (sum === undefined) byName.set(name, { ...d });
    else {
      sum.threads = Math.max(sum.threads, d.threads);
      sum.cpuSeconds += d.cpuSeconds;
      sum.runQueueSeconds += d.runQueueSeconds;
      sum.voluntary += d.voluntary;
      sum.involuntary += d.involuntary;
    }
  }
}

/** The --threads table of one build: per call, each role's threads (followers: per follower). */
function printThreads(rounds: readonly Round[], followerCount: number): void {
  const total = new Map<string, Map<string, ThreadGroupDelta>>();
  for (const r of rounds) for (const [role, byName] of r.threads ?? []) addThreadDeltas(total, role, byName);
  const n = calls * rounds.length;
  for (const [role, byName] of total) {
    const per = role === "follower" ? n * followerCount : n;
    console.log(`    ${role}: thread (count)  cpu us  run-queue us  voluntary cs  involuntary cs  per call`);
    const rows = [...byName].sort((a, b) => b[1].cpuSeconds - a[1].cpuSeconds);
    for (const [name, d] of rows) {
      if (d.cpuSeconds === 0 && d.voluntary === 0) continue;
      console.log(
        `      ${`${name} (${d.threads})`.padEnd(24)} ${((d.cpuSeconds / per) * 1e6).toFixed(1).padStart(7)} ${((d.runQueueSeconds / per) * 1e6).toFixed(1).padStart(8)} ${(d.voluntary / per).toFixed(2).padStart(8)} ${(d.involuntary / per).toFixed(2).padStart(8)}`,
      );
    }
  }
}

/**
 * --strace: `total` calls with strace following every thread of the leader and one follower;
 * prints system calls per call by role, thread name and call. ptrace makes every syscall slow,
 * so latency and CPU in this run mean nothing; the counts are what the code asks of the kernel.
 */
async function straceRun(
  build: string,
  cluster: LocalCluster,
  gateway: Gateway | undefined,
  total: number,
  buildIndex: number,
): Promise<void> {
  const { member: leader } = await cluster.agreedLeader();
  const follower = cluster.members.find((m) => m !== leader)!;
  const dir = mkdtempSync(join(tmpdir(), "cpu-per-op-strace-"));
  const roles = [
    { role: "leader", pid: leader.child!.pid! },
    { role: "follower", pid: follower.child!.pid! },
    ...(gateway === undefined ? [] : [{ role: "gateway", pid: gateway.child.pid! }]),
  ];
  const names = roles.map(({ pid }) => new Map(threadStats(pid).map((t) => [t.tid, t.name])));
  const tracers = roles.map(({ pid }, i) =>
    spawn("strace", ["-f", "-qq", "-o", join(dir, `trace-${i}`), "-p", String(pid)], { stdio: "ignore" }),
  );
  try {
    await new Promise((r) => setTimeout(r, 1000)); // attached to every thread
    const load = await goload(endpointOf(leader.clientUrl, gateway), total, false, buildIndex);
    if (load.errors > 0) throw new Error(`${build}: ${load.errors} calls failed under strace`);
  } finally {
    for (const t of tracers) t.kill("SIGINT");
    await Promise.all(
      tracers.map((t) => new Promise((r) => (t.exitCode === null ? t.once("exit", r) : r(0)))),
    );
  }
  console.log(`  ${build}: system calls per call (strace, ${total} calls)`);
  for (const [i, { role }] of roles.entries()) {
    const counts = new Map<string, Map<string, number>>();
    for (const line of readFileSync(join(dir, `trace-${i}`), "utf8").split("\n")) {
      const m = /^(\d+)\s+([a-z_0-9]+)\(/.exec(line);
      if (m === null) continue;
      const thread = names[i]!.get(Number(m[1])) ?? "(new thread)";
      const byCall = counts.get(thread) ?? new Map<string, number>();
      counts.set(thread, byCall);
      byCall.set(m[2]!, (byCall.get(m[2]!) ?? 0) + 1);
    }
    for (const [thread, byCall] of counts) {
      const sum = [...byCall.values()].reduce((a, b) => a + b, 0);
      const list = [...byCall]
        .sort((a, b) => b[1] - a[1])
        .map(([call, n]) => `${call} ${(n / total).toFixed(2)}`)
        .join(", ");
      console.log(`    ${role} ${thread}: ${(sum / total).toFixed(2)} (${list})`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const clusters: { build: string; cluster: LocalCluster; gateway: Gateway | undefined }[] = [];
const tlsFlags =
  certs === undefined
    ? []
    : ["--cert-file", join(certs, "server.crt"), "--key-file", join(certs, "server.key")];
try {
  const builds: {
    main: string | undefined;
    binary?: string;
    gatewayMain: string | undefined;
    flags?: string[];
  }[] = mains.map((main, i) => ({ main, gatewayMain: gatewayMains?.[i], flags: nodeFlagsOf[i] }));
  if (args.etcd) builds.unshift({ main: undefined, binary: etcdBinary, gatewayMain: undefined });
  for (const { main, binary, gatewayMain, flags: flagsOf = [] } of builds) {
    // A row is named by its tree; by both when members and gateway come from different trees.
    const memberTree =
      main === undefined ? "this build" : main.replace(/\/services\/raft-node\/dist\/main\.js$/, "");
    const gatewayTree = gatewayMain?.replace(/\/services\/api-gateway\/dist\/main\.js$/, "");
    const build =
      binary ??
      (gatewayTree === undefined || gatewayTree === memberTree
        ? memberTree
        : `members ${memberTree}, gateway ${gatewayTree}`) +
        (flagsOf.length > 0 ? ` [${flagsOf.join(" ")}]` : "");
    const cluster = await LocalCluster.start({
      size: 3,
      main,
      ...(binary === undefined ? {} : { binary }),
      nodeFlags: () => [
        ...(args.gc ? ["--trace-gc"] : []),
        ...(args.jit ? ["--trace-opt", "--trace-deopt"] : []),
        ...flagsOf,
      ],
      token: `cpu-${clusters.length}`,
      tlsClientUrls: certs !== undefined,
      flags: tlsFlags,
    });
    clusters.push({ build, cluster, gateway: undefined });
    if (gatewayMain !== undefined) clusters.at(-1)!.gateway = await startGateway(gatewayMain, cluster);
  }
  // Plain, then (--tls) the https URL of each cluster, as separate rows.
  const variants = certs === undefined ? [false] : [false, true];
  // JIT and connection warm-up, not counted.
  for (const [i, { cluster, gateway }] of clusters.entries()) {
    const { member } = await cluster.agreedLeader();
    const urlOf = (m: (typeof cluster.members)[number], tls: boolean) =>
      tls ? m.tlsClientUrl! : m.clientUrl;
    const others = args.spread ? cluster.members.filter((m) => m !== member) : [];
    for (const tls of variants)
      await goload(
        endpointOf(
          urlOf(member, tls),
          gateway,
          others.map((m) => urlOf(m, tls)),
        ),
        args.warmup === undefined ? Math.min(500, calls) : Number(args.warmup),
        tls,
        i,
      );
  }
  const results: Round[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < clusters.length; k++) {
      const i = (r + k) % clusters.length;
      const { build: name, cluster, gateway } = clusters[i]!;
      for (const tls of r % 2 === 0 ? variants : [...variants].reverse()) {
        const build = tls ? `${name} (TLS)` : name;
        const round = await measure(build, cluster, gateway, tls, i);
        results.push(round);
        console.log(
          `round ${r + 1} ${build}: ${round.gatewayUs === undefined ? "" : `gateway ${round.gatewayUs} us/op, `}leader ${round.leaderUs} us/op, followers ${round.followersUs.join(", ")} us/op, p50 ${round.p50} ms, p90 ${round.p90} ms, p99 ${round.p99} ms, p99.9 ${round.p999} ms, max ${round.max} ms, ${round.opsPerS} ops/s${round.snapshots.some((n) => n > 0) ? `, snapshots saved ${round.snapshots.join("/")}` : ""}${bgPutText([round])}${gcText([round])}${round.jit === undefined ? "" : `; leader jit ${round.jit.marked} marked for optimization, ${round.jit.deopts} deopts`}`,
        );
      }
    }
  }
  console.log(
    `\n${args.op} x${calls} at ${clients} client(s)${args.follower ? " to a follower" : ""}${bgPutClients > 0 ? `, ${bgPutClients} writers beside` : ""}, median of ${rounds} rounds:`,
  );
  for (const build of [...new Set(results.map((r) => r.build))]) {
    const mine = results.filter((r) => r.build === build);
    const gatewayUs =
      mine[0]!.gatewayUs === undefined ? "" : `gateway ${median(mine.map((r) => r.gatewayUs!))} us/op, `;
    console.log(
      `  ${build}: ${gatewayUs}leader ${median(mine.map((r) => r.leaderUs))} us/op, followers ${median(mine.map((r) => median(r.followersUs)))} us/op, p50 ${median(mine.map((r) => r.p50 ?? 0))} ms, p90 ${median(mine.map((r) => r.p90 ?? 0))} ms, p99 ${median(mine.map((r) => r.p99 ?? 0))} ms, p99.9 ${median(mine.map((r) => r.p999 ?? 0))} ms, max ${median(mine.map((r) => r.max ?? 0))} ms, ${median(mine.map((r) => r.opsPerS))} ops/s${bgPutText(mine)}${gcText(mine)}`,
    );
    if (args.threads) printThreads(mine, mine[0]!.followersUs.length);
  }
  // Resident memory after the rounds (young-generation flags trade it for collections).
  for (const { build, cluster } of clusters) {
    const { member: leader } = await cluster.agreedLeader();
    const mib = (m: (typeof cluster.members)[number]) => Math.round((rssKiB(m.child?.pid) ?? 0) / 1024);
    const followers = cluster.members.filter((m) => m !== leader).map(mib);
    console.log(`  ${build}: RSS leader ${mib(leader)} MiB, followers ${followers.join(", ")} MiB`);
  }
  if (args.strace)
    for (const [i, { build, cluster, gateway }] of clusters.entries())
      await straceRun(build, cluster, gateway, calls, i);
} finally {
  for (const { gateway } of clusters) gateway?.child.kill("SIGTERM");
  // A clean stop (profiles are written then); close() kills.
  await Promise.all(clusters.flatMap(({ cluster }) => cluster.members.map((m) => cluster.stop(m))));
  await Promise.all(clusters.map(({ cluster }) => cluster.close()));
  if (certs !== undefined) rmSync(certs, { recursive: true, force: true });
}
