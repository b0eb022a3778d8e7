// What the chaos suite and the container-less tests run against: real etcd or our member, as
// raft-node's LocalCluster options, so a test written against one runs against the other by
// changing `target`.
import type { LocalClusterOptions } from "@etcd-ts/raft-node";

/**
 * etcd: /usr/bin/etcd (or $ETCD_BIN).
 * etcd-ts: our member, from TypeScript sources through tsx.
 * etcd-ts-dist: our member, compiled (services/raft-node/dist/main.js; run `tsc -b` first).
 */
export type TargetKind = "etcd" | "etcd-ts" | "etcd-ts-dist";

export const TARGET_KINDS: readonly TargetKind[] = ["etcd", "etcd-ts", "etcd-ts-dist"];

export interface TargetClusterOptions {
  size?: number;
  heartbeatMs?: number;
  electionMs?: number;
  /** Passed as --snapshot-count when set, to exercise snapshots during a short run. */
  snapshotCount?: number;
  /**
   * Passed as --experimental-snapshot-catchup-entries to our member when set: how much log a
   * member keeps behind a snapshot, so a lagging member needs a snapshot sooner. etcd 3.4 has
   * no such flag (it keeps 5,000 entries): etcd targets ignore it.
   */
  snapshotCatchUpEntries?: number;
  /** Where data dirs and logs go; a fresh temp dir, removed on close, when unset. */
  root?: string;
  /** Route peer traffic through PeerNetwork proxies (needed for link faults); on by default. */
  peerProxy?: boolean;
  /** Token for --initial-cluster-token; distinct per run so stray members cannot join. */
  token?: string;
  /** Data dirs by member name (on the run's own disks). */
  dataDirs?: Record<string, string>;
}

/** The members' names: m0, m1, ..., as the chaos suite's output numbers them. */
export function memberNames(size: number): string[] {
  return Array.from({ length: size }, (_, i) => `m${i}`);
}

/** LocalCluster options for a cluster of `target` members with each member's output in a log file. */
export function targetClusterOptions(target: TargetKind, o: TargetClusterOptions = {}): LocalClusterOptions {
  const size = o.size ?? 3;
  const flags = [
    `--heartbeat-interval=${o.heartbeatMs ?? 100}`,
    `--election-timeout=${o.electionMs ?? 1000}`,
  ];
  if (o.snapshotCount !== undefined) flags.push(`--snapshot-count=${o.snapshotCount}`);
  if (o.snapshotCatchUpEntries !== undefined && target !== "etcd")
    flags.push(`--experimental-snapshot-catchup-entries=${o.snapshotCatchUpEntries}`);
  const common = {
    size,
    names: memberNames(size),
    root: o.root,
    logFiles: true,
    peerProxy: o.peerProxy ?? true,
    token: o.token ?? `chaos-${process.pid}-${Date.now()}`,
    dataDirs: o.dataDirs,
  };
  switch (target) {
    case "etcd":
      return {
        ...common,
        binary: process.env.ETCD_BIN ?? "/usr/bin/etcd",
        flags: [...flags, "--logger=zap", "--log-outputs=stderr"],
      };
    case "etcd-ts":
      return { ...common, build: "source", flags };
    case "etcd-ts-dist":
      return { ...common, build: "dist", flags };
  }
}
