// What lease checkpoints cost the Raft log: a 3-member cluster holding N leases (10,000 by
// default, TTL 1 h, nobody keeping them alive, no other load), measured over a window:
//   entries/s   the leader's Raft index growth (only checkpoints are proposed here)
//   WAL KiB/s   growth of the leader's WAL directory
//   CPU %       each member's user+system time over the window (/proc/<pid>/stat)
// once with checkpoints on (this member's default: every lease every 5 s, at most 2 entries of
// 1,000 checkpoints per 0.5-s poll) and once with --experimental-enable-lease-checkpoint=false,
// each on a fresh cluster. Then, on the first cluster, one MoveLeader: the handover's entries.
// Usage (after `npx tsc -b`): node bench/dist/lease/checkpoint-cost.js [--leases 10000] [--seconds 30]

import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { addressOf, LocalCluster, type MemberProcess } from "@etcd-ts/raft-node";
import { UnaryClient } from "../grpc/unary-client.js";
import { cpuSeconds } from "../proc-cpu.js";

const { values: args } = parseArgs({
  options: { leases: { type: "string", default: "10000" }, seconds: { type: "string", default: "30" } },
});
const leaseCount = Number(args.leases);
const windowSeconds = Number(args.seconds);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function directoryBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) total += statSync(join(dir, name)).size;
  return total;
}

async function leaderOf(
  cluster: LocalCluster,
): Promise<{ member: MemberProcess; client: UnaryClient; id: bigint }> {
  for (let attempt = 0; attempt < 100; attempt++) {
    for (const m of cluster.members) {
      const client = new UnaryClient(addressOf(m));
      const status = await client.status().catch(() => undefined);
      if (status !== undefined && status.leader !== 0n && status.leader === status.header!.memberId) {
        return { member: m, client, id: status.leader };
      }
      client.close();
    }
    await sleep(200);
  }
  throw new Error("no leader");
}

interface Window {
  entriesPerSecond: number;
  walKiBPerSecond: number;
  cpuPercent: number[];
}

async function measure(cluster: LocalCluster): Promise<Window> {
  const { member, client } = await leaderOf(cluster);
  const walDir = join(member.dataDir, "member", "wal");
  const pids = cluster.members.map((m) => m.child!.pid!);
  const start = {
    index: (await client.status()).raftIndex,
    wal: directoryBytes(walDir),
    at: performance.now(),
  };
  const cpuStart = pids.map(cpuSeconds);
  await sleep(windowSeconds * 1000);
  const seconds = (performance.now() - start.at) / 1000;
  const index = (await client.status()).raftIndex;
  const result = {
    entriesPerSecond: Number(index - start.index) / seconds,
    walKiBPerSecond: (directoryBytes(walDir) - start.wal) / 1024 / seconds,
    cpuPercent: pids.map((pid, i) => (100 * (cpuSeconds(pid) - cpuStart[i]!)) / seconds),
  };
  client.close();
  return result;
}

async function run(flags: string[]): Promise<{ window: Window; handoverEntries?: number }> {
  const cluster = await LocalCluster.start({ size: 3, flags });
  try {
    const { client } = await leaderOf(cluster);
    let next = 0;
    const granter = async () => {
      while (next < leaseCount) {
        next++;
        await client.leaseGrant(3600);
      }
    };
    await Promise.all(Array.from({ length: 64 }, granter));
    // Let the first interval of checkpoints after the grants pass, then measure the steady state.
    await sleep(6_000);
    const window = await measure(cluster);
    const leader = await leaderOf(cluster);
    const target = cluster.members.find((m) => m !== leader.member)!;
    const targetClient = new UnaryClient(addressOf(target));
    const targetId = (await targetClient.status()).header!.memberId;
    const before = (await leader.client.status()).raftIndex;
    await leader.client.moveLeader(targetId);
    const after = (await targetClient.status()).raftIndex;
    // The new leader's empty entry is the one entry a transfer costs anyway.
    const handoverEntries = Number(after - before) - 1;
    leader.client.close();
    targetClient.close();
    client.close();
    return { window, handoverEntries };
  } finally {
    await cluster.close();
  }
}

const on = await run([]);
const off = await run(["--experimental-enable-lease-checkpoint=false"]);
const show = (name: string, r: { window: Window; handoverEntries?: number }) =>
  console.log(
    `${name.padEnd(16)} entries/s ${r.window.entriesPerSecond.toFixed(2).padStart(6)}  WAL KiB/s ${r.window.walKiBPerSecond
      .toFixed(1)
      .padStart(
        6,
      )}  CPU % per member ${r.window.cpuPercent.map((c) => c.toFixed(1)).join(" / ")}  handover entries ${r.handoverEntries}`,
  );
console.log(`${leaseCount} leases, ${windowSeconds}-s window, 3 members (noisy: shared machine)`);
show("checkpoints on", on);
show("checkpoints off", off);
process.exit(0);
