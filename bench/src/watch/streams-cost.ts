// What open watch streams cost a put: one 3-member cluster per build (and a real etcd with
// --etcd), goload's watch-latency at one put at a time over shapes that differ in one thing
// each (connections, streams, watchers per key), rounds alternating between the clusters.
// Prints, per shape and cluster, the p50 of the put's answer (sent -> ack) and of sent -> last
// watcher, and the members' CPU per put counted between goload's puts-start / puts-end lines
// (the creates left out). Bounded: each run has goload's -total and -timeout-s.
//
//   node bench/dist/watch/streams-cost.js [--main a.js,b.js] [--etcd] [--rounds 2] [--total 300] [--warmup 3000]
//     [--shapes put-c1,put-c10,w1k-s10,w1k-s1000,w100k-s1000]
// A shape: put-cN (puts alone on N connections), wW-sS[-cN][-kK] (W watchers, given as 1k/100k
// or a number, on S streams over N connections (10 by default), spread over K keys (1,000 by
// default; each put reaches the watchers of one key). The endpoints are the members' with the
// leader first, as the compare bench's direct targets: with 10 connections 6 puts in 10 go to
// a follower.
import { parseArgs } from "node:util";
import { addressOf, LocalCluster } from "@etcd-ts/raft-node";
import { type GoloadResult, startGoload } from "../goload.js";
import { totalCpuSeconds } from "../proc-cpu.js";

const { values: args } = parseArgs({
  options: {
    main: { type: "string" },
    etcd: { type: "boolean", default: false },
    rounds: { type: "string", default: "2" },
    total: { type: "string", default: "300" },
    /** Puts per cluster before the rounds, not counted (a fresh Node process runs its first thousands cold). */
    warmup: { type: "string", default: "3000" },
    shapes: { type: "string", default: "put-c1,put-c10,w1k-s10,w1k-s1000,w100k-s1000" },
  },
});

interface Shape {
  name: string;
  conns: number;
  watchers: number;
  streams: number;
  keys: number;
}

function count(text: string): number {
  const n = text.endsWith("k") ? Number(text.slice(0, -1)) * 1000 : Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`bad count ${text}`);
  return n;
}

function parseShape(name: string): Shape {
  const put = /^put-c(\d+)$/.exec(name);
  if (put) return { name, conns: Number(put[1]), watchers: 0, streams: 0, keys: 0 };
  const w = /^w(\w+?)-s(\d+)(?:-c(\d+))?(?:-k(\w+))?$/.exec(name);
  if (!w) throw new Error(`bad shape ${name}`);
  return {
    name,
    watchers: count(w[1]!),
    streams: Number(w[2]),
    conns: w[3] === undefined ? 10 : Number(w[3]),
    keys: w[4] === undefined ? 1000 : count(w[4]),
  };
}

const shapes = args.shapes!.split(",").map(parseShape);
const rounds = Number(args.rounds);
const total = Number(args.total);

interface Target {
  label: string;
  cluster: LocalCluster;
}

const targets: Target[] = [];
const mains = args.main?.split(",") ?? [undefined];
try {
  for (const [i, main] of mains.entries()) {
    const cluster = await LocalCluster.create({
      size: 3,
      token: `streams-cost-${i}`,
      ...(main === undefined ? {} : { main }),
    });
    targets.push({ label: main === undefined ? "this" : `build${i}`, cluster });
  }
  if (args.etcd) {
    const cluster = await LocalCluster.create({
      size: 3,
      token: "streams-cost-etcd",
      binary: "/usr/bin/etcd",
    });
    targets.push({ label: "etcd", cluster });
  }
  for (const t of targets) t.cluster.startAll();
  for (const t of targets) for (const m of t.cluster.members) await t.cluster.waitReady(m);
  for (const t of targets) await t.cluster.agreedLeader(30_000);
  if (mains.length > 1) for (const [i, m] of mains.entries()) console.log(`build${i}: ${m}`);

  for (const t of targets) {
    const endpoints = await leaderFirst(t.cluster);
    const argv = ["-endpoints", endpoints.join(","), "-op", "put", "-conns", "10", "-clients", "1"];
    await startGoload([...argv, "-total", args.warmup!, "-timeout-s", "60"], 120_000).result;
  }
  for (let round = 0; round < rounds; round++) {
    for (const shape of shapes) {
      // Rotate which cluster goes first.
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      for (const t of order) {
        const line = await runShape(t, shape, round);
        console.log(line);
      }
    }
  }
} finally {
  for (const t of targets) await t.cluster.close();
}

async function leaderFirst(cluster: LocalCluster): Promise<string[]> {
  const leader = await cluster.leader(5_000);
  if (leader === undefined) throw new Error("no leader");
  return [leader, ...cluster.members.filter((m) => m !== leader)].map(addressOf);
}

async function runShape(t: Target, shape: Shape, round: number): Promise<string> {
  const endpoints = await leaderFirst(t.cluster);
  const argv = ["-endpoints", endpoints.join(","), "-conns", String(shape.conns), "-clients", "1"];
  argv.push("-total", String(total), "-timeout-s", "60", "-call-timeout-ms", "10000");
  if (shape.watchers === 0) argv.push("-op", "put");
  else
    argv.push(
      ...["-op", "watch-latency", "-watchers", String(shape.watchers), "-streams", String(shape.streams)],
      ...["-watch-keys", String(shape.keys), "-watch-key", `sc-${round}-${shape.name}`],
      ...["-watch-timeout-ms", "5000", "-create-timeout-s", String(30 + Math.ceil(shape.watchers / 2000))],
    );
  const pids = t.cluster.members.flatMap((m) => (m.child?.pid === undefined ? [] : [m.child.pid]));
  const cpu: Record<string, number> = { start: totalCpuSeconds(pids) };
  const run = startGoload(argv, 300_000, (phase) => {
    cpu[phase] = totalCpuSeconds(pids);
  });
  let r: GoloadResult;
  try {
    r = await run.result;
  } catch (error) {
    return `${shape.name.padEnd(14)} ${t.label.padEnd(7)} error ${String(error).slice(0, 200)}`;
  }
  const end = totalCpuSeconds(pids);
  const from = cpu["puts-start"] ?? cpu.start!;
  const to = cpu["puts-end"] ?? end;
  const perPut = Math.round(((to - from) * 1e6) / Math.max(1, r.ok));
  const p50 = (x: unknown) => (x as { p50?: number } | undefined)?.p50?.toFixed(2) ?? "-";
  const ack = shape.watchers === 0 ? r.latency_ms.p50?.toFixed(2) : p50(r.put_ack_ms);
  const all = shape.watchers === 0 ? "-" : p50(r.send_to_all_ms);
  return `${shape.name.padEnd(14)} ${t.label.padEnd(7)} ok ${r.ok} ack p50 ${ack} all p50 ${all} ms, members' CPU ${perPut} us/put, errors ${r.errors}`;
}
