// The compare bench's range-full step on our members alone, quick to repeat: 3 members on
// loopback (LocalCluster, one build), --keys keys loaded as `npm run bench` loads them, then
// --rounds times goload's range-full op on the leader (one Range over every key while 100
// puts/s go to the same member): the Range's time, the puts' p50/p99/max during it beside their
// baseline p99, and the leader's peak RSS growth. With --timeline FILE each round's puts (start
// on CLOCK_MONOTONIC in ns, latency in ms) go to FILE.<round>.json, to line up with the leader's
// CPU profile (--prof DIR: every member runs with --cpu-prof into DIR; see slices.js).
// --dir DIR keeps the members' data dirs and logs (<DIR>/<name>.log: --node-flags=--trace-gc
// writes there). Each round also splits the puts by the Range's phase: while it was built (until the
// response headers came, with the first bytes) and while it was sent and decoded. --gateway G.js:
// the Range and the puts go through an api-gateway of that build (with --prof it writes
// DIR/gateway.cpuprofile too; the timeline then names "gateway" beside the leader).
//   node bench/dist/profile/range-full.js [--keys 200000] [--rounds 2] [--main a.js] [--prof DIR]
//     [--timeline FILE] [--node-flags=--trace-gc] [--dir DIR] [--gateway G.js]
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { addressOf, LocalCluster } from "@etcd-ts/raft-node";
import { runGoload } from "../goload.js";
import { rssKiB } from "../proc-cpu.js";
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
  },
});
const keys = Number(args.keys);
const rounds = Number(args.rounds);
const extraFlags = args["node-flags"].split(" ").filter((f) => f !== "");
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

const cluster = await LocalCluster.start({
  size: 3,
  token: "range-full",
  logFiles: true,
  ...(args.dir === undefined ? {} : { root: resolve(args.dir) }),
  flags: ["--quota-backend-bytes", String(8 * 1024 ** 3)],
  ...(args.main === undefined ? {} : { main: resolve(args.main) }),
  nodeFlags: (m) => [...extraFlags, ...profFlags(m.name)],
});
const gateway: Gateway | undefined =
  args.gateway === undefined
    ? undefined
    : await startGateway(resolve(args.gateway), cluster, [...extraFlags, ...profFlags("gateway")]);
const f1 = (x: number | null | undefined) => (x === null || x === undefined ? "-" : x.toFixed(1));
/** goload's percentile (the smallest value with at least q% of them at or below it). */
function percentile(xs: number[], q: number): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((q / 100) * s.length) - 1))];
}
const summary: { s: number; p99: number; max: number; baseP99: number; ratio: number }[] = [];
try {
  const started = performance.now();
  const load = await runGoload(
    [
      ...["-endpoints", cluster.members.map(addressOf).join(","), "-op", "put", "-conns", "50"],
      ...["-clients", "500", "-total", String(keys), "-key-space", String(keys), "-sequential-keys"],
    ],
    1_200_000,
  );
  console.log(
    `loaded ${load.ok} keys in ${((performance.now() - started) / 1000).toFixed(1)} s (${load.errors} errors)`,
  );
  await new Promise((r) => setTimeout(r, 2_000));
  for (let round = 1; round <= rounds; round++) {
    const { member: leader } = await cluster.agreedLeader();
    const pid = leader.child!.pid!;
    const before = rssKiB(pid) ?? 0;
    let peak = before;
    const timer = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid) ?? 0);
    }, 100);
    // Wall clock to CLOCK_MONOTONIC (process.hrtime), for the timeline.
    const monoMinusWallNs =
      Number(process.hrtime.bigint()) - (performance.timeOrigin + performance.now()) * 1e6;
    const r = await runGoload(
      [
        ...["-endpoints", gateway?.address ?? addressOf(leader), "-op", "range-full"],
        ...["-clients", "1000", "-rate", "100"],
        ...["-baseline-ms", "4000", "-call-timeout-ms", "300000", "-range-key", "range-full-put"],
        "-timeline",
      ],
      400_000,
    );
    clearInterval(timer);
    const during = r.put_during_range_ms as { n?: number; p50?: number; p99?: number; max?: number };
    const base = r.put_baseline_ms as { p50?: number; p99?: number };
    const bytes = r.range_bytes as number;
    const growthMiB = (peak - before) / 1024;
    console.log(
      `round ${round}: ${((r.range_ms as number) / 1000).toFixed(2)} s, ${r.range_kvs} kvs ${(bytes / 1e6).toFixed(0)} MB; ` +
        `puts during p50/p99/max ${f1(during.p50)}/${f1(during.p99)}/${f1(during.max)} ms (n ${during.n}), ` +
        `baseline p50/p99 ${f1(base.p50)}/${f1(base.p99)} ms, p99 ratio ${f1((during.p99 ?? 0) / (base.p99 ?? 1))}; ` +
        `leader RSS +${growthMiB.toFixed(0)} MiB (${((growthMiB * 2 ** 20) / bytes).toFixed(2)}x); load ${loadavg()[0]!.toFixed(1)}`,
    );
    // The puts by the Range's phase: built (until the response headers came, which go with the
    // answer's first bytes), sent and decoded by the client, and the second after.
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
      s: (r.range_ms as number) / 1000,
      p99: during.p99 ?? 0,
      max: during.max ?? 0,
      baseP99: base.p99 ?? 0,
      ratio: (during.p99 ?? 0) / (base.p99 ?? 1),
    });
    if (args.timeline !== undefined) {
      const startNs = (r.range_start_unix_ns as number) + monoMinusWallNs;
      const puts = (r.put_timeline as [number, number][]).map(([at, ms]) => ({
        at_ns: Math.round(startNs + at * 1e6),
        at_ms: at,
        ms,
      }));
      const file = `${args.timeline}.${round}.json`;
      writeFileSync(
        file,
        JSON.stringify({
          leader: leader.name,
          ...(gateway === undefined ? {} : { gateway: "gateway" }),
          range_start_ns: Math.round(startNs),
          range_ms: r.range_end_ms,
          puts,
        }),
      );
      console.log(`  timeline: ${file}`);
    }
    await new Promise((r) => setTimeout(r, 3_000));
  }
  const col = (pick: (x: (typeof summary)[number]) => number) =>
    summary.map((x) => pick(x).toFixed(1)).join(" / ");
  console.log(
    `rounds: time ${col((x) => x.s)} s; puts p99 ${col((x) => x.p99)} ms, max ${col((x) => x.max)} ms; ` +
      `baseline p99 ${col((x) => x.baseP99)} ms; p99 ratio ${col((x) => x.ratio)} (median ${f1(
        percentile(
          summary.map((x) => x.ratio),
          50,
        ),
      )})`,
  );
} finally {
  // SIGTERM, not close()'s SIGKILL: a member writes its CPU profile as it exits.
  if (gateway !== undefined) await stopGateway(gateway);
  await Promise.all(cluster.members.map((m) => cluster.stop(m, "SIGTERM", 20_000)));
  await cluster.close({ keepFiles: args.dir !== undefined });
}
