// Gateway failover time after a SIGKILL of the leader, with and without NATS, side by side.
// One cluster of 3 members publishing to a real nats-server, and two gateway processes on it:
// one following NATS (--nats-url), one polling only; both probe every 2 s (the default). Each
// gateway carries the same sequential write load. Each trial SIGKILLs the leader once, so both
// gateways live through the same election, and measures per gateway:
//   total           SIGKILL -> first write issued after it that the new leader acknowledged
//   after election  the new leader's own "raft leader changed" log line -> that acknowledgement
//   learnt          the new leader's log line -> the gateway's own "leader changed" log line
//                   (how long the gateway took to know; the rest is the write's own latency)
// (Raft's election timeout, 1-2 s here as in etcd, is the same for both and NATS cannot
// shorten it: "after election" is the gateway's own share.) Then the killed member is
// restarted and the next trial waits until all three agree on a leader.
// Usage (after `npx tsc -b`): node bench/dist/failover/gateway-failover.js [--trials 5] [--writers 2]
// Results: printed, and bench/results/failover-<timestamp>.json.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { NatsServerProcess } from "@etcd-ts/events";
import { LocalCluster, type MemberProcess } from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";
import { UnaryClient } from "../grpc/unary-client.js";

const fromSource = import.meta.url.endsWith(".ts");
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const gatewayMain = join(
  root,
  fromSource ? "services/api-gateway/src/main.ts" : "services/api-gateway/dist/main.js",
);

const { values: args } = parseArgs({
  options: { trials: { type: "string", default: "5" }, writers: { type: "string", default: "2" } },
});
const trials = Number(args.trials);
const writersPerGateway = Number(args.writers);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- processes ---------------------------------------------------------------------------------

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

interface GatewayProcess {
  address: string;
  child: ChildProcess;
  /** Its log (pino JSON lines on stdout). */
  output: { text: string };
}

async function startGateway(endpoints: string, extra: string[]): Promise<GatewayProcess> {
  const address = `127.0.0.1:${await freePort()}`;
  const json = `127.0.0.1:${await freePort()}`;
  const execArgv = fromSource ? ["--conditions=source", "--import", "tsx"] : [];
  const child = spawn(
    process.execPath,
    [
      ...execArgv,
      gatewayMain,
      `--endpoints=${endpoints}`,
      `--listen-addr=${address}`,
      `--json-listen-addr=${json}`,
      "--log-level=info",
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.add(child);
  const output = { text: "" };
  child.stdout?.on("data", (chunk: Buffer) => {
    output.text += chunk.toString();
  });
  const client = new UnaryClient(address);
  try {
    for (let i = 0; i < 300 && child.exitCode === null; i++) {
      if (
        await client.put("bench/ready", "v", 2_000).then(
          () => true,
          () => false,
        )
      )
        return { address, child, output };
      await sleep(100);
    }
  } finally {
    client.close();
  }
  throw new Error(`gateway ${address} never took a write`);
}

async function agreedLeader(cluster: LocalCluster): Promise<{ member: MemberProcess; id: string }> {
  const { member, idHex } = await cluster.agreedLeader(30_000);
  return { member, id: idHex };
}

/** The first time (pino's `time`), at or after `since`, a log line with one of `messages` names `id` as leader. */
function loggedLeaderAt(log: string, messages: string[], id: string, since: number): number | undefined {
  for (const line of log.split("\n")) {
    if (!messages.some((m) => line.includes(`"msg":"${m}"`))) continue;
    try {
      const entry = JSON.parse(line) as { time: number; leader: string };
      if (entry.leader === id && entry.time >= since) return entry.time;
    } catch {
      // Not a JSON log line.
    }
  }
  return undefined;
}

// ---- one trial -----------------------------------------------------------------------------------

interface Ack {
  startedAt: number;
  doneAt: number;
  member: string;
}

interface Measured {
  totalMs: number;
  afterElectionMs: number;
  learntMs: number;
}

interface Trial {
  electionMs: number;
  nats: Measured | undefined;
  polling: Measured | undefined;
  failedWrites: { nats: number; polling: number };
}

async function trial(
  cluster: LocalCluster,
  gateways: { nats: GatewayProcess; polling: GatewayProcess },
): Promise<Trial> {
  const { member: leader } = await agreedLeader(cluster);
  let stop = false;
  const acks = { nats: [] as Ack[], polling: [] as Ack[] };
  const failed = { nats: 0, polling: 0 };
  let seq = 0;
  const writer = async (kind: "nats" | "polling") => {
    const client = new UnaryClient(gateways[kind].address);
    // Bounded: 20,000 puts at most, and the trial stops the loop within 15 s of the kill.
    for (let i = 0; i < 20_000 && !stop; i++) {
      const startedAt = Date.now();
      try {
        const member = (
          await client.put(`bench/failover/${kind}/${seq++}`, "v", 5_000)
        ).header!.memberId.toString(16);
        acks[kind].push({ startedAt, doneAt: Date.now(), member });
      } catch {
        failed[kind]++;
      }
    }
    client.close();
  };
  const writers: Promise<void>[] = [];
  for (let w = 0; w < writersPerGateway; w++) writers.push(writer("nats"), writer("polling"));
  await sleep(1_000);
  const killedAt = Date.now();
  await cluster.stop(leader, "SIGKILL");

  const firstByNewLeader = (list: Ack[], id: string) =>
    list.filter((a) => a.startedAt >= killedAt && a.member === id).sort((a, b) => a.doneAt - b.doneAt)[0];
  const deadline = killedAt + 15_000;
  let next: { member: MemberProcess; id: string } | undefined;
  while (Date.now() < deadline) {
    next ??= await agreedLeader(cluster).catch(() => undefined);
    if (next && firstByNewLeader(acks.nats, next.id) && firstByNewLeader(acks.polling, next.id)) break;
    await sleep(50);
  }
  stop = true;
  await Promise.all(writers);
  if (next === undefined) throw new Error("no new leader within 15 s");
  const elected =
    loggedLeaderAt(next.member.output, ["raft leader changed"], next.id, killedAt) ?? Number.NaN;
  const measure = (kind: "nats" | "polling"): Measured | undefined => {
    const ack = firstByNewLeader(acks[kind], next!.id);
    const learnt = loggedLeaderAt(
      gateways[kind].output.text,
      ["leader changed", "leader changed (announced)"],
      next!.id,
      killedAt,
    );
    if (ack === undefined) return undefined;
    return {
      totalMs: ack.doneAt - killedAt,
      afterElectionMs: ack.doneAt - elected,
      learntMs: learnt === undefined ? Number.NaN : learnt - elected,
    };
  };
  const result = {
    electionMs: elected - killedAt,
    nats: measure("nats"),
    polling: measure("polling"),
    failedWrites: failed,
  };
  await cluster.restart(leader);
  await agreedLeader(cluster);
  return result;
}

// ---- main ------------------------------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const nats = await NatsServerProcess.start();
  const cluster = await LocalCluster.start({ size: 3, flags: [`--nats-url=${nats.url}`] });
  try {
    const endpoints = cluster.endpoints;
    const withNats = await startGateway(endpoints, [`--nats-url=${nats.url}`]);
    const polling = await startGateway(endpoints, []);
    const results: Trial[] = [];
    for (let i = 0; i < trials; i++) {
      const t = await trial(cluster, { nats: withNats, polling });
      results.push(t);
      const cell = (m: Measured | undefined) =>
        m === undefined
          ? "n/a"
          : `${m.totalMs} ms (${m.afterElectionMs} after election; knew it at +${m.learntMs})`;
      console.log(
        `trial ${i + 1}: election ${t.electionMs} ms; with NATS ${cell(t.nats)}; polling ${cell(t.polling)}; failed writes ${t.failedWrites.nats}/${t.failedWrites.polling}`,
      );
    }
    const complete = results.filter((r) => r.nats !== undefined && r.polling !== undefined);
    const med = (pick: (r: Trial) => number) => median(complete.map(pick));
    const summary = {
      trials: complete.length,
      medianElectionMs: med((r) => r.electionMs),
      nats: {
        medianTotalMs: med((r) => r.nats!.totalMs),
        medianAfterElectionMs: med((r) => r.nats!.afterElectionMs),
        medianLearntMs: med((r) => r.nats!.learntMs),
      },
      polling: {
        medianTotalMs: med((r) => r.polling!.totalMs),
        medianAfterElectionMs: med((r) => r.polling!.afterElectionMs),
        medianLearntMs: med((r) => r.polling!.learntMs),
      },
      // Both gateways live through the same election in a trial: per-trial pairs cancel its noise.
      medianTotalSavedMs: med((r) => r.polling!.totalMs - r.nats!.totalMs),
      medianShareRatio: med((r) => r.polling!.afterElectionMs / r.nats!.afterElectionMs),
    };
    console.log(
      `\nmedians over ${summary.trials} trials: election ${summary.medianElectionMs} ms\n` +
        `  total (SIGKILL -> first write acknowledged by the new leader): NATS ${summary.nats.medianTotalMs} ms, polling ${summary.polling.medianTotalMs} ms (${(summary.polling.medianTotalMs / summary.nats.medianTotalMs).toFixed(2)}x)\n` +
        `  gateway's share (election -> that write): NATS ${summary.nats.medianAfterElectionMs} ms, polling ${summary.polling.medianAfterElectionMs} ms (${(summary.polling.medianAfterElectionMs / summary.nats.medianAfterElectionMs).toFixed(2)}x)\n` +
        `  the gateway knew the new leader (election -> its "leader changed" log line): NATS ${summary.nats.medianLearntMs} ms, polling ${summary.polling.medianLearntMs} ms\n` +
        `per trial (same election for both): NATS saves a median ${summary.medianTotalSavedMs} ms of the total; polling's share / NATS's share, median ${summary.medianShareRatio.toFixed(2)}x`,
    );
    const dir = join(root, "bench/results");
    mkdirSync(dir, { recursive: true });
    const file = join(
      dir,
      `failover-${new Date().toISOString().replaceAll(":", "-").replace(".", "-")}.json`,
    );
    writeFileSync(
      file,
      `${JSON.stringify({ machine: { host: hostname(), cpus: cpus().length }, writersPerGateway, results, summary }, null, 2)}\n`,
    );
    console.log(`saved ${file}`);
    for (const g of [withNats, polling]) g.child.kill("SIGTERM");
  } finally {
    await cluster.close();
    await nats.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
