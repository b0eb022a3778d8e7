// The compare bench's range-full step on our members alone, quick to repeat: 3 members on
// loopback (LocalCluster, one build), --keys keys loaded as `npm run bench` loads them, then
// --rounds times goload's range-full op on the leader (one Range over every key while 100
// puts/s go to the same member): the Range's time, the puts' p50/p99/max during it beside their
// baseline p99, and the leader's peak RSS growth. With --timeline FILE each round's puts (start
// on CLOCK_MONOTONIC in ns, latency in ms) go to FILE.<round>.json, to line up with the leader's
// CPU profile (--prof DIR: every member runs with --cpu-prof into DIR; see slices.js).
// --dir DIR keeps the members' data dirs and logs (<DIR>/<name>.log, the gateway's stdout in
// <DIR>/gateway.log: --node-flags=--trace-gc writes there). Each round also splits the puts by the Range's phase: while it was built (until the
// response headers came, with the first bytes) and while it was sent and decoded. --gateway G.js:
// the Range and the puts also go through an api-gateway of that build, each round (with --prof it
// writes DIR/gateway.cpuprofile too), with the gateway's peak RSS and CPU seconds over the round.
// Paired builds: --main a.js,b.js (and --gateway ga.js,gb.js, one per --main) start a cluster
// (and gateway) per build, load the keys into each, then take turns round by round (the order
// alternating), and end with each build's medians side by side. --etcd: a real etcd cluster
// (ETCD_BINARY, default /usr/bin/etcd) takes its turn as one more build, without a gateway.
// --order none|ascend|descend and --sort-by key|version|create|mod|value: the Range sorted as
// etcdctl's flags of those names sort it (default: none, key: a plain full list); comma lists of
// equal length are zipped into shapes, each round then takes every shape in turn.
//   node bench/dist/profile/range-full.js [--keys 200000] [--rounds 2] [--main a.js[,b.js]] [--etcd]
//     [--gateway G.js[,H.js]] [--prof DIR] [--timeline FILE] [--node-flags=--trace-gc] [--dir DIR]
//     [--order descend] [--sort-by mod]
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { addressOf, LocalCluster } from "@etcd-ts/raft-node";
import { runGoload } from "../goload.js";
import { cpuSeconds, rssKiB } from "../proc-cpu.js";
import { type Gateway, startGateway, stopGateway } from "./gateway-process.js";

const { values: args } = parseArgs({
  options: {
    keys: { type: "string", default: "200000" },
    rounds: { type: "string", default: "2" },
    main: { type: "string" },
    prof: { type: "string" },
    timeline: { type: "string" },
    "node-flags": { type: "string", default: "" },
    dir: { type: "string" },
    gateway: { type: "string" },
    etcd: { type: "boolean", default: false },
    "no-direct": { type: "boolean", default: false },
    order: { type: "string", default: "none" },
    "sort-by": { type: "string", default: "key" },
  },
});
const keys = Number(args.keys);
const rounds = Number(args.rounds);
const extraFlags = args["node-flags"].split(" ").filter((f) => f !== "");
const mains: (string | undefined)[] = args.main?.split(",").map((m) => resolve(m)) ?? [undefined];
const gatewayMains = args.gateway?.split(",").map((m) => resolve(m));
/** Several gateway builds in front of one cluster (one --main): only the gateways are paired. */
const sharedCluster = gatewayMains !== undefined && gatewayMains.length > 1 && mains.length === 1;
if (gatewayMains !== undefined && gatewayMains.length !== mains.length && !sharedCluster)
  throw new Error("--gateway needs one build per --main, or several builds with one --main");
const etcdBinary = process.env.ETCD_BINARY ?? "/usr/bin/etcd";
/** Each build's cluster: ours of a --main, or (--etcd, last) etcd's. */
const sources: { main: string | undefined; binary?: string; gatewayMain: string | undefined }[] =
  sharedCluster
    ? gatewayMains.map((gatewayMain) => ({ main: mains[0], gatewayMain }))
    : mains.map((main, i) => ({ main, gatewayMain: gatewayMains?.[i] }));
if (args.etcd) sources.push({ main: undefined, binary: etcdBinary, gatewayMain: undefined });
const paired = sources.length > 1;
const orders = args.order.split(",");
const targets = args["sort-by"].split(",");
if (orders.length !== targets.length) throw new Error("--order and --sort-by need as many entries");
/** The Range's sort order and target, as goload's flags take them. */
const shapes = orders.map((order, i) => ({ order, target: targets[i]! }));
const shapeName = (s: { order: string; target: string }) =>
  s.order === "none" && s.target === "key" ? "plain" : `${s.order}-by-${s.target}`;
/** A file name's part for build `i` (none with one build). */
const tag = (i: number) => (paired ? `b${i}-` : "");
const profFlags = (name: string) =>
  args.prof === undefined
    ? []
    : [
        "--cpu-prof",
        "--cpu-prof-dir",
        args.prof,
        "--cpu-prof-name",
        `${name}.cpuprofile`,
        "--cpu-prof-interval",
        "250",
      ];

interface Build {
  name: string;
  cluster: LocalCluster;
  gateway: Gateway | undefined;
}
const builds: Build[] = [];
const f1 = (x: number | null | undefined) => (x === null || x === undefined ? "-" : x.toFixed(1));
/** goload's percentile (the smallest value with at least q% of them at or below it). */
function percentile(xs: number[], q: number): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((q / 100) * s.length) - 1))];
}
/** One round's result per build and path (to the leader "direct", or through the "gateway"). */
const summary: {
  build: string;
  path: string;
  shape: string;
  s: number;
  p99: number;
  max: number;
  baseP99: number;
  ratio: number;
  /** The leader's peak RSS in MiB over the round. */
  leaderMiB: number;
  /** The gateway's peak RSS in MiB (through the gateway), else 0. */
  gatewayMiB: number;
  /** The gateway's CPU seconds over the round (through the gateway), else 0. */
  gatewayCpu: number;
}[] = [];

/** One Range over every key on `endpoint` (the leader, or the gateway) beside 100 puts/s. */
async function rangeRound(
  b: Build,
  bi: number,
  path: "direct" | "gateway",
  round: number,
  shape: { order: string; target: string },
): Promise<void> {
  const { member: leader } = await b.cluster.agreedLeader();
  const pid = leader.child!.pid!;
  const before = rssKiB(pid) ?? 0;
  let peak = before;
  // The gateway's peak RSS while it relays the answer (through the gateway only).
  const gatewayPid = path === "gateway" ? b.gateway!.child.pid : undefined;
  let gatewayPeak = gatewayPid === undefined ? 0 : (rssKiB(gatewayPid) ?? 0);
  const gatewayCpu0 = gatewayPid === undefined ? 0 : cpuSeconds(gatewayPid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssKiB(pid) ?? 0);
    if (gatewayPid !== undefined) gatewayPeak = Math.max(gatewayPeak, rssKiB(gatewayPid) ?? 0);
  }, 100);
  // Wall clock to CLOCK_MONOTONIC (process.hrtime), for the timeline.
  const monoMinusWallNs =
    Number(process.hrtime.bigint()) - (performance.timeOrigin + performance.now()) * 1e6;
  const endpoint = path === "gateway" ? b.gateway!.address : addressOf(leader);
  const r = await runGoload(
    [
      ...["-endpoints", endpoint, "-op", "range-full", "-clients", "1000", "-rate", "100"],
      ...["-baseline-ms", "4000", "-call-timeout-ms", "300000", "-range-key", "range-full-put"],
      ...["-range-sort-order", shape.order, "-range-sort-target", shape.target],
      "-timeline",
    ],
    400_000,
  );
  clearInterval(timer);
  // The gateway's CPU over the round (baseline puts, the Range, the second after it).
  const gatewayCpu = gatewayPid === undefined ? 0 : cpuSeconds(gatewayPid) - gatewayCpu0;
  const during = r.put_during_range_ms as { n?: number; p50?: number; p99?: number; max?: number };
  const base = r.put_baseline_ms as { p50?: number; p99?: number };
  const bytes = r.range_bytes as number;
  const growthMiB = (peak - before) / 1024;
  const label = `${paired ? `${b.name} ` : ""}${path}${shapes.length > 1 || shapeName(shape) !== "plain" ? ` ${shapeName(shape)}` : ""} round ${round}`;
  console.log(
    `${label}: ${((r.range_ms as number) / 1000).toFixed(2)} s, ${r.range_kvs} kvs ${(bytes / 1e6).toFixed(0)} MB; ` +
      `puts during p50/p99/max ${f1(during.p50)}/${f1(during.p99)}/${f1(during.max)} ms (n ${during.n}), ` +
      `baseline p50/p99 ${f1(base.p50)}/${f1(base.p99)} ms, p99 ratio ${f1((during.p99 ?? 0) / (base.p99 ?? 1))}; ` +
      `leader RSS peak ${(peak / 1024).toFixed(0)} MiB, +${growthMiB.toFixed(0)} MiB (${((growthMiB * 2 ** 20) / bytes).toFixed(2)}x); ` +
      `${gatewayPid === undefined ? "" : `gateway RSS peak ${(gatewayPeak / 1024).toFixed(0)} MiB, CPU ${gatewayCpu.toFixed(2)} s; `}load ${loadavg()[0]!.toFixed(1)}`,
  );
  // The puts by the Range's phase: built (until the response headers came, which go with the
  // answer's first bytes), sent and decoded by the client.
  const headerMs = r.range_header_ms as number;
  const decodedMs = r.range_decoded_ms as number;
  const timeline = r.put_timeline as [number, number][];
  const phase = (from: number, to: number) => {
    const ms = timeline.filter(([at]) => at >= from && at < to).map(([, ms]) => ms);
    return `${f1(percentile(ms, 50))}/${f1(percentile(ms, 99))}/${f1(percentile(ms, 100))} (n ${ms.length})`;
  };
  console.log(
    `  phases: built ${(headerMs / 1000).toFixed(2)} s, puts ${phase(0, headerMs)}; ` +
      `sent+decoded ${((decodedMs - headerMs) / 1000).toFixed(2)} s, puts ${phase(headerMs, decodedMs)}`,
  );
  summary.push({
    build: b.name,
    path,
    shape: shapeName(shape),
    s: (r.range_ms as number) / 1000,
    p99: during.p99 ?? 0,
    max: during.max ?? 0,
    baseP99: base.p99 ?? 0,
    ratio: (during.p99 ?? 0) / (base.p99 ?? 1),
    leaderMiB: peak / 1024,
    gatewayMiB: gatewayPeak / 1024,
    gatewayCpu,
  });
  if (args.timeline !== undefined) {
    const startNs = (r.range_start_unix_ns as number) + monoMinusWallNs;
    const puts = timeline.map(([at, ms]) => ({ at_ns: Math.round(startNs + at * 1e6), at_ms: at, ms }));
    const file = `${args.timeline}.${tag(bi)}${path === "gateway" ? "gateway." : ""}${round}.json`;
    writeFileSync(
      file,
      JSON.stringify({
        leader: leader.name,
        range_start_ns: Math.round(startNs),
        range_ms: r.range_end_ms,
        puts,
      }),
    );
    console.log(`  timeline: ${file}`);
  }
  await new Promise((r) => setTimeout(r, 3_000));
}

try {
  for (const [i, { main, binary, gatewayMain }] of sources.entries()) {
    const tree = sharedCluster
      ? gatewayMain!.replace(/\/services\/api-gateway\/dist\/main\.js$/, "")
      : (binary ?? main?.replace(/\/services\/raft-node\/dist\/main\.js$/, "") ?? "this tree");
    const name = paired ? `build ${i} (${tree})` : "";
    const shared = sharedCluster && binary === undefined ? builds[0]?.cluster : undefined;
    const cluster =
      shared ??
      (await LocalCluster.start({
        size: 3,
        token: `range-full-${i}`,
        logFiles: true,
        ...(args.dir === undefined ? {} : { root: resolve(paired ? join(args.dir, `b${i}`) : args.dir) }),
        flags: ["--quota-backend-bytes", String(8 * 1024 ** 3)],
        ...(main === undefined ? {} : { main }),
        ...(binary === undefined ? {} : { binary }),
        nodeFlags: (m) => [...extraFlags, ...profFlags(`${tag(i)}${m.name}`)],
      }));
    const build: Build = { name, cluster, gateway: undefined };
    builds.push(build);
    if (gatewayMain !== undefined)
      build.gateway = await startGateway(
        gatewayMain,
        cluster,
        [...extraFlags, ...profFlags(`${tag(i)}gateway`)],
        args.dir === undefined ? undefined : join(resolve(args.dir), `${tag(i)}gateway.log`),
      );
    if (shared !== undefined) continue; // its keys are in
    const started = performance.now();
    const load = await runGoload(
      [
        ...["-endpoints", cluster.members.map(addressOf).join(","), "-op", "put", "-conns", "50"],
        ...["-clients", "500", "-total", String(keys), "-key-space", String(keys), "-sequential-keys"],
      ],
      1_200_000,
    );
    console.log(
      `${name ? `${name}: ` : ""}loaded ${load.ok} keys in ${((performance.now() - started) / 1000).toFixed(1)} s (${load.errors} errors)`,
    );
  }
  await new Promise((r) => setTimeout(r, 2_000));
  for (let round = 1; round <= rounds; round++) {
    // Builds take turns, the first going first in odd rounds and last in even ones.
    const order = builds.map((b, i) => ({ b, i }));
    if (round % 2 === 0) order.reverse();
    for (const shape of shapes) {
      for (const { b, i } of order) {
        if (!args["no-direct"]) await rangeRound(b, i, "direct", round, shape);
        if (b.gateway !== undefined) await rangeRound(b, i, "gateway", round, shape);
      }
    }
  }
  const col = (xs: typeof summary, pick: (x: (typeof summary)[number]) => number) =>
    xs.map((x) => pick(x).toFixed(1)).join(" / ");
  for (const shape of shapes.map(shapeName))
    for (const b of builds) {
      for (const path of ["direct", "gateway"]) {
        const xs = summary.filter((x) => x.build === b.name && x.path === path && x.shape === shape);
        if (xs.length === 0) continue;
        const median = (pick: (x: (typeof summary)[number]) => number) => f1(percentile(xs.map(pick), 50));
        console.log(
          `${b.name ? `${b.name} ` : ""}${path}${shapes.length > 1 || shape !== "plain" ? ` ${shape}` : ""}: time ${col(xs, (x) => x.s)} s (median ${median((x) => x.s)}); ` +
            `puts p99 ${col(xs, (x) => x.p99)} ms (median ${median((x) => x.p99)}), max ${col(xs, (x) => x.max)} ms; ` +
            `baseline p99 ${col(xs, (x) => x.baseP99)} ms; leader RSS peak ${col(xs, (x) => x.leaderMiB)} MiB; p99 ratio ${col(xs, (x) => x.ratio)} (median ${median((x) => x.ratio)})` +
            (path === "gateway"
              ? `; gateway RSS peak ${col(xs, (x) => x.gatewayMiB)} MiB, CPU ${col(xs, (x) => x.gatewayCpu)} s (median ${median((x) => x.gatewayCpu)})`
              : ""),
        );
      }
    }
} finally {
  // SIGTERM, not close()'s SIGKILL: a member writes its CPU profile as it exits.
  for (const [i, { cluster, gateway }] of builds.entries()) {
    if (gateway !== undefined) await stopGateway(gateway);
    if (builds.findIndex((b) => b.cluster === cluster) !== i) continue; // shared, closed once
    await Promise.all(cluster.members.map((m) => cluster.stop(m, "SIGTERM", 20_000)));
    await cluster.close({ keepFiles: args.dir !== undefined });
  }
}
