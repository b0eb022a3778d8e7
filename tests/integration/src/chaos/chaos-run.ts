// One chaos run, end to end: start a cluster, run the workload and watchers while the nemesis
// injects faults, heal, let everything settle, then check the history.

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Prng } from "@etcd-ts/raft";
import { addressOf, LocalCluster, type MemberExit } from "@etcd-ts/raft-node";
import { diskFaultsUnavailable, type PeerNetworkStats, slowDiskUnavailable } from "@etcd-ts/testing";
import { EtcdEndpoint } from "../cluster/etcd-client.js";
import { memberNames, type TargetKind, targetClusterOptions } from "../cluster/targets.js";
import { sleep } from "./abortable-sleep.js";
import { type FaultRecord, HistoryRecorder, type Operation, type WatcherRecord } from "./history.js";
import { checkLinearizability, type LinearizabilityReport } from "./linearizability.js";
import { MemberDisks } from "./member-disks.js";
import { FAULT_KINDS, type FaultKind, Nemesis } from "./nemesis.js";
import { formatResources, type MemberResources, ResourceLog } from "./process-resources.js";
import { checkRevisions, checkWatches, type WatchProblem, type WatchReport } from "./watch-checker.js";
import { classifyError, errorReason, Watcher, Workload } from "./workload.js";

export interface ChaosOptions {
  target: TargetKind;
  seed: number;
  /** How long the workload runs under faults, in seconds. */
  durationSec: number;
  clients?: number;
  keys?: number;
  watchers?: number;
  faults?: readonly FaultKind[];
  /** Faults injected first, in order, before the seeded picks (Nemesis's `opening`). */
  openingFaults?: readonly FaultKind[];
  opTimeoutMs?: number;
  thinkMs?: number;
  holdMs?: [number, number];
  quietMs?: [number, number];
  /**
   * --snapshot-count and --experimental-snapshot-catchup-entries. For our member both default
   * low (CHAOS_SNAPSHOTS), so that a member cut off or down for a second or two comes back
   * behind the leader's compacted log and catches up by a snapshot; etcd keeps its defaults
   * (and has no catch-up flag: 5,000 entries).
   */
  snapshotCount?: number;
  snapshotCatchUpEntries?: number;
  heartbeatMs?: number;
  electionMs?: number;
  /** Keep data dirs and logs, and write history.json etc. there. */
  keepFiles?: boolean;
  baseDir?: string;
  /** Progress lines go here. */
  log?: (line: string) => void;
  /** Per-key search budget for the checker. */
  checkMillisPerKey?: number;
  /**
   * Compact the history every this many seconds, as real clients do (a soak without it grows
   * every member's database and snapshot without bound); to the oldest revision a watcher
   * still needs, so no watcher is cut off. Off when undefined.
   */
  compactEverySec?: number;
}

/** How often member RSS and fds are sampled. */
const RESOURCE_SAMPLE_MS = 30_000;

/** Our member's snapshot settings in a chaos run unless given. */
export const CHAOS_SNAPSHOTS = { snapshotCount: 100, snapshotCatchUpEntries: 20 };

/**
 * Snapshots a member received from a leader: etcd and our member both export it. Counted over
 * every process of the run (a stopped member's count is read just before it is stopped).
 */
const SNAPSHOTS_RECEIVED = "etcd_network_snapshot_receive_success";
/** Snapshots leaders sent whole (etcd_network_snapshot_send_success), counted the same way. */
const SNAPSHOTS_SENT = "etcd_network_snapshot_send_success";
/**
 * How often the snapshot counters are read from every member: a member that exits on its own
 * (a full disk) keeps the counts of its last reading, at most this old.
 */
const COUNTER_SAMPLE_MS = 5_000;

export interface ChaosResult {
  options: ChaosOptions;
  verdict: "ok" | "violation" | "unknown";
  history: Operation[];
  faults: FaultRecord[];
  watchers: WatcherRecord[];
  exits: MemberExit[];
  linearizability: LinearizabilityReport;
  watches: WatchReport;
  revisions: WatchProblem[];
  /** Snapshots members received from a leader (etcd_network_snapshot_receive_success). */
  snapshotsReceived: number;
  /** Snapshots leaders sent (etcd_network_snapshot_send_success). */
  snapshotsSent: number;
  /** Member processes that exited without a reading at their end (on their own, or stopped while paused): counted as of their last reading. */
  countsFromLastReading: number;
  /** Compactions the run asked for: done, refused or failed (how many, by reason), and the last revision. */
  compactions: { done: number; failed: number; lastRevision: number; failures: Record<string, number> };
  /** Each member slot's RSS and open fds over the run. */
  resources: MemberResources[];
  /** How the peer proxies attributed the connections members opened (undefined: no proxies). */
  peerConnections: PeerNetworkStats | undefined;
  /** Why the run could not finish its settle phase, if it could not. */
  settleProblems: string[];
  timings: { startupMs: number; workloadMs: number; settleMs: number; checkMs: number };
  /** performance.now() when the workload started: times in the summary are relative to it. */
  epoch: number;
  baseDir: string;
  summary: string;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? (() => {});
  const rng = new Prng(options.seed);
  const prefix = "/chaos/";
  const keys = Array.from({ length: options.keys ?? 4 }, (_, i) => `${prefix}k${i}`);
  const t0 = performance.now();
  const faults = options.faults ?? FAULT_KINDS;
  const diskFull = faults.includes("disk-full");
  const slowDisks = faults.includes("slow-disk");
  if (diskFull && slowDisks) throw new Error("disk-full and slow-disk need different disks: run them apart");
  const noDisks = diskFull ? diskFaultsUnavailable() : slowDisks ? slowDiskUnavailable() : undefined;
  if (noDisks !== undefined) throw new Error(`disk faults cannot run here: ${noDisks}`);
  const ours = options.target !== "etcd";
  const snapshotCount = options.snapshotCount ?? (ours ? CHAOS_SNAPSHOTS.snapshotCount : undefined);
  const snapshotCatchUpEntries =
    options.snapshotCatchUpEntries ?? (ours ? CHAOS_SNAPSHOTS.snapshotCatchUpEntries : undefined);
  const names = memberNames(3);
  const disks = diskFull
    ? // Room for etcd's preallocated 64 MiB WAL segments and a short run's data; tmpfs holds
      // only what is written.
      MemberDisks.small(names, 256 * 1024 * 1024)
    : slowDisks
      ? MemberDisks.slowable(names)
      : undefined;
  const cluster = await LocalCluster.create({
    ...targetClusterOptions(options.target, {
      size: names.length,
      snapshotCount,
      snapshotCatchUpEntries,
      heartbeatMs: options.heartbeatMs,
      electionMs: options.electionMs,
      root: options.baseDir,
      token: `chaos-${options.seed}`,
      dataDirs: disks?.dataDirs(),
    }),
    countersAcrossRestarts: [SNAPSHOTS_RECEIVED, SNAPSHOTS_SENT],
  }).catch((err: Error) => {
    disks?.destroy();
    throw err;
  });
  log(`cluster: ${options.target}, files in ${cluster.root}`);
  const endpoints = cluster.members.map((m) => new EtcdEndpoint(addressOf(m)));
  const recorder = new HistoryRecorder();
  const settleProblems: string[] = [];
  let watchers: Watcher[] = [];
  let nemesis: Nemesis | undefined;
  let startupMs = 0;
  let workloadMs = 0;
  let settleMs = 0;
  let epoch = 0;
  let snapshotsReceived = 0;
  let snapshotsSent = 0;
  const compactions = { done: 0, failed: 0, lastRevision: 0, failures: {} as Record<string, number> };
  const resources = new ResourceLog();
  const timers: NodeJS.Timeout[] = [];
  try {
    cluster.startAll();
    // Our member starts through tsx, which on a busy 2-core machine can take most of a minute.
    const leader = (await cluster.agreedLeader(180_000)).member.index;
    startupMs = performance.now() - t0;
    log(`leader m${leader} after ${(startupMs / 1000).toFixed(1)}s`);

    watchers = Array.from(
      { length: options.watchers ?? 3 },
      (_, id) => new Watcher({ id, endpoints, prefix, startRevision: 1 }),
    );
    for (const w of watchers) w.start();
    const workload = new Workload({
      endpoints,
      recorder,
      seed: options.seed,
      clients: options.clients ?? 8,
      keys,
      opTimeoutMs: options.opTimeoutMs ?? 2_000,
      thinkMs: options.thinkMs ?? 20,
      maxOpsPerClient: 1_000_000,
    });
    nemesis = new Nemesis(cluster, rng, {
      endpoints,
      disks,
      faults,
      // Two snapshots' worth past the kept tail: the leader's log is compacted past the killed
      // member's last entry whatever the snapshot phase was when it died.
      // (etcd keeps 5,000 entries: out of a short run's reach.)
      behindEntries:
        ours && snapshotCount !== undefined && snapshotCatchUpEntries !== undefined
          ? 2 * snapshotCount + snapshotCatchUpEntries + 10
          : undefined,
      opening: options.openingFaults,
      holdMs: options.holdMs ?? [1_000, 5_000],
      quietMs: options.quietMs ?? [1_000, 3_000],
    });
    const tw = performance.now();
    epoch = tw;
    workload.start();
    nemesis.start();
    timers.push(setInterval(() => void resources.sample(cluster.pids()), RESOURCE_SAMPLE_MS));
    timers.push(setInterval(() => void cluster.sampleCounters(), COUNTER_SAMPLE_MS));
    if (options.compactEverySec !== undefined) {
      let turn = 0;
      const compact = async () => {
        let oldestNeeded = Number.POSITIVE_INFINITY;
        for (const w of watchers) oldestNeeded = Math.min(oldestNeeded, w.lastRevision());
        if (!(oldestNeeded > compactions.lastRevision)) return;
        try {
          await endpoints[turn++ % endpoints.length].compact(oldestNeeded, options.opTimeoutMs ?? 2_000);
          compactions.done++;
          compactions.lastRevision = oldestNeeded;
        } catch (err) {
          compactions.failed++;
          const reason = errorReason(err);
          compactions.failures[reason] = (compactions.failures[reason] ?? 0) + 1;
        }
      };
      timers.push(setInterval(() => void compact(), options.compactEverySec * 1000));
    }
    const progress = setInterval(() => {
      const done = recorder.ops.filter((o) => o.completedAt !== undefined || o.outcome === "unknown").length;
      const last = nemesis?.log.at(-1);
      log(
        `  ${Math.round((performance.now() - tw) / 1000)}s: ${done} ops; last fault: ${last ? `${last.kind} ${last.detail}` : "none"}`,
      );
    }, 10_000);
    await sleep(options.durationSec * 1000);
    clearInterval(progress);
    for (const t of timers.splice(0)) clearInterval(t);
    await resources.sample(cluster.pids());
    await nemesis.stop();
    await workload.stop();
    workloadMs = performance.now() - tw;
    log(
      `workload stopped after ${(workloadMs / 1000).toFixed(1)}s, ${recorder.ops.length} ops, ${nemesis.log.length} faults`,
    );

    // Settle: every member back, one leader, then a final read of every key (recorded, so a
    // lost write shows up in the history) and time for the watchers to catch up.
    const ts = performance.now();
    try {
      await cluster.agreedLeader(60_000);
    } catch (err) {
      settleProblems.push(`after healing: ${(err as Error).message}`);
    }
    for (const key of keys) {
      let done = false;
      for (let attempt = 0; attempt < 20 && !done; attempt++) {
        const op = recorder.invoke({ process: 1_000_000 + attempt, kind: "read", key });
        try {
          const r = await endpoints[attempt % endpoints.length].get(key, 3_000);
          recorder.complete(op, "ok", { output: r.value, revision: r.revision, modRevision: r.modRevision });
          done = true;
        } catch (err) {
          recorder.complete(op, classifyError(err).outcome, { error: classifyError(err).error });
          await sleep(500);
        }
      }
      if (!done) settleProblems.push(`final read of ${key} never succeeded after healing`);
    }
    // A loop, not Math.max(...ops): a long run's history (170,000 ops) overflows the stack.
    let target = 0;
    for (const o of recorder.ops) {
      if (o.outcome === "ok" && o.kind !== "read" && (o.revision ?? 0) > target) target = o.revision ?? 0;
    }
    const catchUpUntil = performance.now() + 20_000;
    while (performance.now() < catchUpUntil && watchers.some((w) => w.lastRevision() < target))
      await sleep(200);
    for (const w of watchers) {
      if (w.lastRevision() < target) {
        settleProblems.push(
          `watcher ${w.record.id} reached revision ${w.lastRevision()} of ${target} 20 s after healing`,
        );
      }
    }
    settleMs = performance.now() - ts;
    snapshotsReceived = await cluster.counterTotal(SNAPSHOTS_RECEIVED);
    snapshotsSent = await cluster.counterTotal(SNAPSHOTS_SENT);
  } finally {
    for (const t of timers) clearInterval(t);
    await Promise.all(watchers.map((w) => w.stop()));
    await nemesis?.stop().catch(() => {});
    for (const e of endpoints) e.close();
    await cluster.close({ keepFiles: options.keepFiles });
    // Data dirs on the members' own file systems go with them (kept files or not: they are mounts).
    disks?.destroy();
  }

  log("checking...");
  const tc = performance.now();
  const history = recorder.ops;
  const linearizability = checkLinearizability(history, {
    maxMillisPerKey: options.checkMillisPerKey ?? 60_000,
  });
  const watcherRecords = watchers.map((w) => w.record);
  const watches = checkWatches(history, watcherRecords);
  const revisions = checkRevisions(history);
  const checkMs = performance.now() - tc;
  const crashes = cluster.exits.filter((e) => e.unexpected);
  const broken =
    linearizability.verdict === "violation" ||
    !watches.ok ||
    revisions.length > 0 ||
    crashes.length > 0 ||
    settleProblems.length > 0;
  const verdict = broken ? "violation" : linearizability.verdict === "unknown" ? "unknown" : "ok";
  const result: ChaosResult = {
    options,
    verdict,
    history,
    faults: nemesis?.log ?? [],
    watchers: watcherRecords,
    exits: cluster.exits,
    linearizability,
    watches,
    revisions,
    settleProblems,
    snapshotsReceived,
    snapshotsSent,
    countsFromLastReading: cluster.sampledExits,
    compactions,
    resources: resources.report(),
    peerConnections:
      cluster.network === undefined
        ? undefined
        : { ...cluster.network.stats, refusedSenders: { ...cluster.network.stats.refusedSenders } },
    timings: { startupMs, workloadMs, settleMs, checkMs },
    epoch,
    baseDir: cluster.root,
    summary: "",
  };
  result.summary = summarize(result);
  if (options.keepFiles) await saveRun(result);
  return result;
}

export async function saveRun(result: ChaosResult): Promise<string> {
  const dir = join(result.baseDir, "run");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "history.json"), JSON.stringify(result.history));
  await writeFile(join(dir, "watchers.json"), JSON.stringify(result.watchers));
  await writeFile(join(dir, "faults.json"), JSON.stringify(result.faults, null, 1));
  await writeFile(join(dir, "summary.txt"), `${result.summary}\n`);
  return dir;
}

/** Re-checks a run saved with keepFiles (its run/ directory): the checkers only, no cluster. */
export async function recheckSavedRun(
  dir: string,
  checkMillisPerKey = 120_000,
): Promise<{ ok: boolean; text: string }> {
  const history = JSON.parse(await readFile(join(dir, "history.json"), "utf8")) as Operation[];
  const watchers = JSON.parse(await readFile(join(dir, "watchers.json"), "utf8")) as WatcherRecord[];
  const linearizability = checkLinearizability(history, { maxMillisPerKey: checkMillisPerKey });
  const watches = checkWatches(history, watchers);
  const revisions = checkRevisions(history);
  const lines = [`${history.length} ops, ${watchers.length} watchers from ${dir}`];
  lines.push(`linearizability: ${linearizability.verdict} (${(linearizability.millis / 1000).toFixed(2)}s)`);
  for (const k of linearizability.keys) {
    lines.push(`  ${k.key}: ${k.verdict}${k.reason ? ` (${k.reason})` : ""}; ${k.ops} ops, ${k.steps} steps`);
    if (k.counterexample) lines.push(indent(k.counterexample.text, "  "));
  }
  lines.push(`watches: ${watches.ok ? "ok" : `${watches.problems.length} problems`}`);
  for (const p of watches.problems.slice(0, 50)) lines.push(`  ${p.kind}: ${p.detail}`);
  lines.push(`revisions: ${revisions.length === 0 ? "ok" : `${revisions.length} problems`}`);
  for (const p of revisions.slice(0, 50)) lines.push(`  ${p.kind}: ${p.detail}`);
  const ok = linearizability.verdict === "ok" && watches.ok && revisions.length === 0;
  return { ok, text: lines.join("\n") };
}

export function summarize(r: ChaosResult): string {
  const lines: string[] = [];
  const o = r.options;
  const at = (t: number) => `${((t - r.epoch) / 1000).toFixed(1)}s`;
  lines.push(
    `chaos run: target=${o.target} seed=${o.seed} duration=${o.durationSec}s verdict=${r.verdict.toUpperCase()}`,
  );
  const count = (f: (op: Operation) => boolean) => r.history.filter(f).length;
  for (const kind of ["read", "write", "cas"] as const) {
    const ofKind = (op: Operation) => op.kind === kind;
    const casDetail =
      kind === "cas"
        ? ` (applied ${count((op) => ofKind(op) && op.outcome === "ok" && op.succeeded === true)}, refused ${count((op) => ofKind(op) && op.outcome === "ok" && op.succeeded === false)})`
        : "";
    lines.push(
      `  ${kind.padEnd(5)}: ${count(ofKind)} ops: ok ${count((op) => ofKind(op) && op.outcome === "ok")}${casDetail}, fail ${count((op) => ofKind(op) && op.outcome === "fail")}, unknown ${count((op) => ofKind(op) && op.outcome === "unknown")}`,
    );
  }
  const errors = new Map<string, number>();
  for (const op of r.history)
    if (op.error) errors.set(op.error.slice(0, 90), (errors.get(op.error.slice(0, 90)) ?? 0) + 1);
  const topErrors = [...errors].sort((a, b) => b[1] - a[1]).slice(0, 6);
  if (topErrors.length > 0) {
    lines.push("  most frequent errors:");
    for (const [e, n] of topErrors) lines.push(`    ${n} x ${e}`);
  }
  const byKind = new Map<string, number>();
  for (const f of r.faults) byKind.set(f.kind, (byKind.get(f.kind) ?? 0) + 1);
  lines.push(
    `  faults: ${r.faults.length} (${[...byKind].map(([k, n]) => `${k} ${n}`).join(", ") || "none"})`,
  );
  for (const f of r.faults) {
    lines.push(
      `    ${at(f.startedAt)}-${f.endedAt === undefined ? "?" : at(f.endedAt)} ${f.kind}: ${f.detail}`,
    );
  }
  lines.push(
    `  snapshots: ${r.snapshotsSent} sent by leaders, ${r.snapshotsReceived} received by lagging members${r.countsFromLastReading > 0 ? ` (${r.countsFromLastReading} member processes ended without a final reading: counted as of their last, read every ${COUNTER_SAMPLE_MS / 1000} s)` : ""}`,
  );
  if (r.options.compactEverySec !== undefined) {
    const c = r.compactions;
    lines.push(`  compactions: ${c.done} done (last to revision ${c.lastRevision}), ${c.failed} failed`);
    for (const [reason, n] of Object.entries(c.failures).sort((a, b) => b[1] - a[1]))
      lines.push(`    ${n} x ${reason}`);
  }
  const p = r.peerConnections;
  if (p !== undefined) {
    lines.push(
      `  peer connections through the proxies: ${p.connections} (${p.named} named by x-server-from (${p.own} by the destination itself), ${p.anonymous} naming no sender, ${p.refused} refused, ${p.connections - p.named - p.anonymous - p.refused} closed unforwarded: the member was down), ${p.resets} reset after drops`,
    );
    for (const [sender, n] of Object.entries(p.refusedSenders))
      lines.push(`    refused ${n} x from ${sender}`);
  }
  lines.push("  member resources (a restarted member is a new process):");
  for (const line of formatResources(r.resources)) lines.push(`    ${line}`);
  const crashes = r.exits.filter((e) => e.unexpected);
  lines.push(`  member exits not caused by the nemesis: ${crashes.length}`);
  for (const e of crashes)
    lines.push(`    m${e.member} exited code=${e.code} signal=${e.signal} at ${at(e.at)}`);
  lines.push(
    `  watchers: ${r.watchers.map((w) => `#${w.id} ${w.events.length} events, ${w.restarts} re-watches`).join("; ")}`,
  );
  lines.push(
    `  timings: startup ${(r.timings.startupMs / 1000).toFixed(1)}s, workload ${(r.timings.workloadMs / 1000).toFixed(1)}s, settle ${(r.timings.settleMs / 1000).toFixed(1)}s, checking ${(r.timings.checkMs / 1000).toFixed(1)}s`,
  );
  lines.push(
    `  linearizability: ${r.linearizability.verdict} (${(r.linearizability.millis / 1000).toFixed(2)}s)`,
  );
  for (const k of r.linearizability.keys) {
    lines.push(
      `    ${k.key}: ${k.verdict}${k.reason ? ` (${k.reason})` : ""}; ${k.ops} ops checked, ${k.unknownOps} unknown, ${k.steps} steps, ${(k.millis / 1000).toFixed(2)}s`,
    );
  }
  for (const k of r.linearizability.keys)
    if (k.counterexample) lines.push(indent(k.counterexample.text, "    "));
  lines.push(
    `  watches: ${r.watches.ok ? "ok" : `${r.watches.problems.length} problems`} (${r.watches.eventsChecked} events against ${r.watches.acknowledgedWrites} acknowledged writes)`,
  );
  for (const p of r.watches.problems.slice(0, 20)) lines.push(`    ${p.kind}: ${p.detail}`);
  if (r.watches.problems.length > 20) lines.push(`    ... ${r.watches.problems.length - 20} more`);
  lines.push(`  revisions: ${r.revisions.length === 0 ? "ok" : `${r.revisions.length} problems`}`);
  for (const p of r.revisions.slice(0, 20)) lines.push(`    ${p.kind}: ${p.detail}`);
  for (const p of r.settleProblems) lines.push(`  settle: ${p}`);
  lines.push(`  member logs: ${r.options.keepFiles ? r.baseDir : "(removed; run with --keep to keep)"}`);
  return lines.join("\n");
}

function indent(text: string, by: string): string {
  return text
    .split("\n")
    .map((l) => by + l)
    .join("\n");
}
