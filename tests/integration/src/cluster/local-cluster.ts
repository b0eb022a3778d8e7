// A cluster of member processes on loopback, started with etcd's flags, which a test can
// kill, pause, restart and partition. The same launcher runs real etcd or our raft-node, so a
// test written against one runs against the other by changing `target`.

import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts, LoopDisk, SlowDisk, SmallFilesystem } from "@etcd-ts/testing";
import { EtcdEndpoint, type StatusResult } from "./etcd-client.js";
import { PeerNetwork } from "./peer-network.js";

/**
 * etcd: /usr/bin/etcd (or $ETCD_BIN).
 * etcd-ts: our member, from TypeScript sources through tsx.
 * etcd-ts-dist: our member, compiled (services/raft-node/dist/main.js; run `tsc -b` first).
 */
export type TargetKind = "etcd" | "etcd-ts" | "etcd-ts-dist";

export const TARGET_KINDS: readonly TargetKind[] = ["etcd", "etcd-ts", "etcd-ts-dist"];

export interface ClusterOptions {
  target: TargetKind;
  size?: number;
  host?: string;
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
  /** Where data dirs and logs go; a fresh temp dir when unset. */
  baseDir?: string;
  /** Route peer traffic through PeerNetwork proxies (needed for link faults). */
  proxyPeers?: boolean;
  /** Token for --initial-cluster-token; distinct per run so stray members cannot join. */
  token?: string;
  /**
   * Each member's data dir on its own tmpfs of this many bytes (needs root), so a test can fill
   * it (`fillDisk`); on the run's base dir when unset.
   */
  diskBytes?: number;
  /**
   * Each member's data dir on its own ext4 loop disk with a blkio cgroup (needs root, cgroup v1),
   * so a test can slow its writes (`slowDisk`). Not with diskBytes.
   */
  slowableDisks?: boolean;
}

export interface MemberInfo {
  index: number;
  name: string;
  clientPort: number;
  /** Where the member listens for peers. */
  peerPort: number;
  /** What it advertises: the proxy when peers are proxied, else peerPort. */
  advertisedPeerPort: number;
  dataDir: string;
  logFile: string;
}

export interface MemberExit {
  member: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when this harness did not ask for it: a crash. */
  unexpected: boolean;
  at: number;
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  log: WriteStream;
  expectedExit: boolean;
  paused: boolean;
}

export class LocalCluster {
  readonly members: MemberInfo[];
  readonly exits: MemberExit[] = [];
  readonly network: PeerNetwork | undefined;
  private readonly running = new Map<number, Running>();
  private readonly endpoints: EtcdEndpoint[];
  /** Members whose next start joins a running cluster (--initial-cluster-state=existing). */
  private readonly joining = new Set<number>();
  private ownsBaseDir = false;
  /** Member i's own file system, when the cluster was created with diskBytes. */
  private readonly disks = new Map<number, SmallFilesystem>();
  /** Member i's loop disk and the cgroup that can slow it, when created with slowableDisks. */
  private readonly slowableDisks = new Map<number, { disk: LoopDisk; slow: SlowDisk }>();
  /** Snapshots received by member processes that have since been stopped (their counters died with them). */
  private snapshotsReceivedBefore = 0;

  private constructor(
    readonly options: Required<
      Omit<ClusterOptions, "snapshotCount" | "snapshotCatchUpEntries" | "diskBytes" | "slowableDisks">
    > & {
      snapshotCount?: number;
      snapshotCatchUpEntries?: number;
    },
    members: MemberInfo[],
  ) {
    this.members = members;
    if (options.proxyPeers) {
      this.network = new PeerNetwork(
        options.host,
        members.map((m) => m.advertisedPeerPort),
        members.map((m) => m.peerPort),
        () => this.pids(),
      );
    }
    this.endpoints = members.map((m) => new EtcdEndpoint(`${options.host}:${m.clientPort}`));
  }

  static async create(options: ClusterOptions): Promise<LocalCluster> {
    const host = options.host ?? "127.0.0.1";
    const size = options.size ?? 3;
    const proxyPeers = options.proxyPeers ?? true;
    const baseDir = options.baseDir ?? (await mkdtemp(join(tmpdir(), "etcd-ts-cluster-")));
    const ports = await freePorts(size * 3, host);
    const members: MemberInfo[] = [];
    for (let i = 0; i < size; i++) {
      const peerPort = ports[size + i];
      members.push({
        index: i,
        name: `m${i}`,
        clientPort: ports[i],
        peerPort,
        advertisedPeerPort: proxyPeers ? ports[2 * size + i] : peerPort,
        dataDir: join(baseDir, `m${i}.data`),
        logFile: join(baseDir, `m${i}.log`),
      });
    }
    await mkdir(baseDir, { recursive: true });
    const disks = new Map<number, SmallFilesystem>();
    if (options.diskBytes !== undefined) {
      for (const m of members) {
        const disk = SmallFilesystem.create(options.diskBytes);
        disks.set(m.index, disk);
        m.dataDir = join(disk.path, `${m.name}.data`);
      }
    }
    if (options.slowableDisks && options.diskBytes !== undefined)
      throw new Error("slowableDisks and diskBytes are different disks: pick one");
    const slowable = new Map<number, { disk: LoopDisk; slow: SlowDisk }>();
    if (options.slowableDisks) {
      for (const m of members) {
        const disk = LoopDisk.create({ diskBytes: 256 * 1024 * 1024, backingBytes: 512 * 1024 * 1024 });
        slowable.set(m.index, { disk, slow: SlowDisk.create(disk.deviceNumber) });
        m.dataDir = join(disk.mountPoint, `${m.name}.data`);
      }
    }
    const cluster = new LocalCluster(
      {
        target: options.target,
        size,
        host,
        heartbeatMs: options.heartbeatMs ?? 100,
        electionMs: options.electionMs ?? 1000,
        snapshotCount: options.snapshotCount,
        snapshotCatchUpEntries: options.snapshotCatchUpEntries,
        baseDir,
        proxyPeers,
        token: options.token ?? `chaos-${process.pid}-${Date.now()}`,
      },
      members,
    );
    cluster.ownsBaseDir = options.baseDir === undefined;
    for (const [i, disk] of disks) cluster.disks.set(i, disk);
    for (const [i, d] of slowable) cluster.slowableDisks.set(i, d);
    await cluster.network?.start();
    return cluster;
  }

  clientEndpoints(): string[] {
    return this.members.map((m) => `${this.options.host}:${m.clientPort}`);
  }

  peerEndpoints(): string[] {
    return this.members.map((m) => `${this.options.host}:${m.advertisedPeerPort}`);
  }

  isRunning(i: number): boolean {
    return this.running.has(i);
  }

  isPaused(i: number): boolean {
    return this.running.get(i)?.paused ?? false;
  }

  pid(i: number): number | undefined {
    return this.running.get(i)?.child.pid;
  }

  pids(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [i, r] of this.running) if (r.child.pid !== undefined) out.set(i, r.child.pid);
    return out;
  }

  async startAll(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) this.start(i);
  }

  /** Starts member i (first boot or restart: with a data dir, the initial-cluster flags are ignored). */
  start(i: number): void {
    if (this.running.has(i)) throw new Error(`member ${i} is already running`);
    const m = this.members[i];
    const { command, args } = this.commandLine(m);
    const log = createWriteStream(m.logFile, { flags: "a" });
    log.write(`\n==== ${new Date().toISOString()} starting: ${command} ${args.join(" ")}\n`);
    const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const entry: Running = { child, log, expectedExit: false, paused: false, exited: Promise.resolve() };
    entry.exited = new Promise<void>((resolveExit) => {
      child.once("exit", (code, signal) => {
        this.exits.push({ member: i, code, signal, unexpected: !entry.expectedExit, at: performance.now() });
        // stdout/stderr may still hold output: the log is closed on "close", not here.
        child.once("close", () => log.end(`\n==== exited code=${code} signal=${signal}\n`));
        if (this.running.get(i) === entry) this.running.delete(i);
        resolveExit();
      });
    });
    this.running.set(i, entry);
  }

  /** SIGTERM, and wait for the process to exit (SIGKILL after `graceMs`). */
  async stop(i: number, graceMs = 10_000): Promise<void> {
    const r = this.running.get(i);
    if (!r) return;
    await this.keepSnapshotCount(i);
    r.expectedExit = true;
    if (r.paused) r.child.kill("SIGCONT");
    r.child.kill("SIGTERM");
    const timer = setTimeout(() => r.child.kill("SIGKILL"), graceMs);
    await r.exited;
    clearTimeout(timer);
  }

  /**
   * Takes every free byte of member i's file system: its next write that needs space fails
   * with ENOSPC, and a member (ours, and etcd) is then expected to exit, which is no crash.
   */
  fillDisk(i: number): void {
    const disk = this.disks.get(i);
    if (disk === undefined) throw new Error("disk faults need a cluster created with diskBytes");
    const r = this.running.get(i);
    if (r) r.expectedExit = true;
    disk.fill();
  }

  /** Space returns on member i's file system (fillDisk's ballast is removed). */
  freeDisk(i: number): void {
    this.disks.get(i)?.unfill();
  }

  /**
   * Member i's disk takes at most `writeIops` write requests a second (its fsyncs wait in the
   * block layer) until `fastDisk`. Applies to the process running now; a restart escapes it.
   */
  slowDisk(i: number, writeIops: number): void {
    const d = this.slowableDisks.get(i);
    if (d === undefined) throw new Error("slow disks need a cluster created with slowableDisks");
    d.slow.limitWrites(writeIops);
    const pid = this.pid(i);
    if (pid !== undefined) d.slow.add(pid);
  }

  /** Member i's disk is at full speed again. */
  fastDisk(i: number): void {
    const d = this.slowableDisks.get(i);
    if (d === undefined) return;
    d.slow.limitWrites(0);
    const pid = this.pid(i);
    if (pid !== undefined) d.slow.remove(pid);
  }

  async kill(i: number): Promise<void> {
    const r = this.running.get(i);
    if (!r) return;
    await this.keepSnapshotCount(i);
    r.expectedExit = true;
    r.child.kill("SIGKILL");
    await r.exited;
  }

  pause(i: number): void {
    const r = this.running.get(i);
    if (!r || r.paused) return;
    r.child.kill("SIGSTOP");
    r.paused = true;
  }

  resume(i: number): void {
    const r = this.running.get(i);
    if (!r?.paused) return;
    r.child.kill("SIGCONT");
    r.paused = false;
  }

  /**
   * Snapshots the members received from a leader (etcd_network_snapshot_receive_success, which
   * etcd and our member both export), over every process this cluster ran: each member's counter
   * is read just before the harness stops it, and the running ones now. A member that exits on
   * its own (disk-full) takes its count with it; a paused one is not asked.
   */
  async snapshotsReceived(): Promise<number> {
    const running = [...this.running.keys()].filter((i) => !this.isPaused(i));
    const counts = await Promise.all(running.map((i) => this.snapshotsReceivedBy(i)));
    return counts.reduce((a, b) => a + b, this.snapshotsReceivedBefore);
  }

  private async keepSnapshotCount(i: number): Promise<void> {
    if (this.isPaused(i)) return;
    // Read first, then add: `x += await y` would read x before the await and lose concurrent adds.
    const n = await this.snapshotsReceivedBy(i);
    this.snapshotsReceivedBefore += n;
  }

  private snapshotsReceivedBy(i: number): Promise<number> {
    return this.metric(i, "etcd_network_snapshot_receive_success").then((n) => n ?? 0);
  }

  /**
   * Member i's Prometheus series `name` (from its client URL's /metrics) summed over labels;
   * undefined when it does not answer within a second.
   */
  async metric(i: number, name: string): Promise<number | undefined> {
    const url = `http://${this.options.host}:${this.members[i].clientPort}/metrics`;
    try {
      const text = await (await fetch(url, { signal: AbortSignal.timeout(1000) })).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").at(-1));
      }
      return sum;
    } catch {
      return undefined;
    }
  }

  /** Member i's client endpoint (its channel is reused, and closed with the cluster). */
  endpoint(i: number): EtcdEndpoint {
    return this.endpoints[i];
  }

  /** The peer URL member i advertises (the proxy's when peers are proxied). */
  peerUrl(i: number): string {
    return `http://${this.options.host}:${this.members[i].advertisedPeerPort}`;
  }

  /**
   * Starts member i afresh as a new member on the same addresses, joining the running cluster
   * (the caller has removed the old one and added the new one with MemberAdd): its data dir
   * is wiped first.
   */
  async startJoining(i: number): Promise<void> {
    if (this.running.has(i)) throw new Error(`member ${i} is running`);
    await rm(this.members[i].dataDir, { recursive: true, force: true });
    this.joining.add(i);
    this.start(i);
  }

  async restart(i: number): Promise<void> {
    await this.stop(i);
    this.start(i);
  }

  /** The member's answer to Maintenance.Status, or undefined if it did not answer in time. */
  status(i: number, timeoutMs = 1000): Promise<StatusResult | undefined> {
    return this.endpoints[i].status(timeoutMs).catch(() => undefined);
  }

  /** The index of the member that running members agree is leader, if any answers. */
  async leader(timeoutMs = 1000): Promise<number | undefined> {
    const statuses = await Promise.all(
      this.members.map((m) =>
        this.isRunning(m.index) && !this.isPaused(m.index) ? this.status(m.index, timeoutMs) : undefined,
      ),
    );
    const idToIndex = new Map<string, number>();
    statuses.forEach((s, i) => {
      if (s) idToIndex.set(s.memberId, i);
    });
    const votes = new Map<string, number>();
    for (const s of statuses) if (s && s.leader !== "0") votes.set(s.leader, (votes.get(s.leader) ?? 0) + 1);
    const [leaderId] = [...votes].sort((a, b) => b[1] - a[1])[0] ?? [];
    return leaderId === undefined ? undefined : idToIndex.get(leaderId);
  }

  /** Waits until every running member reports the same leader. */
  async waitForLeader(timeoutMs = 30_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    const exitsBefore = this.exits.length;
    let seen = "nothing yet";
    while (performance.now() < deadline) {
      const crashed = this.exits.slice(exitsBefore).find((e) => e.unexpected);
      if (crashed) {
        const tail = (await readFile(this.members[crashed.member].logFile, "utf8").catch(() => ""))
          .trimEnd()
          .split("\n")
          .slice(-12)
          .join("\n");
        throw new Error(
          `m${crashed.member} exited (code=${crashed.code} signal=${crashed.signal}) while waiting for a leader; its log ends:\n${tail}`,
        );
      }
      const members = [...this.running.keys()].filter((i) => !this.isPaused(i));
      const statuses = await Promise.all(members.map((i) => this.status(i, 2000)));
      seen = members
        .map((m, k) => `m${m}: ${statuses[k] ? `leader ${statuses[k]!.leader}` : "no answer"}`)
        .join(", ");
      const leaders = new Set(statuses.map((s) => s?.leader ?? "0"));
      if (statuses.length > 0 && leaders.size === 1 && !leaders.has("0")) {
        const leader = await this.leader();
        if (leader !== undefined) return leader;
      }
      await sleep(200);
    }
    throw new Error(
      `no agreed leader within ${timeoutMs} ms (last seen: ${seen}); see logs in ${this.options.baseDir}`,
    );
  }

  async close(options: { keepFiles?: boolean } = {}): Promise<void> {
    for (const i of [...this.running.keys()]) await this.kill(i);
    for (const e of this.endpoints) e.close();
    await this.network?.close();
    if (this.ownsBaseDir && !options.keepFiles)
      await rm(this.options.baseDir, { recursive: true, force: true });
    // Data dirs on the members' own file systems go with them (kept files or not: they are mounts).
    for (const disk of this.disks.values()) disk.destroy();
    this.disks.clear();
    for (const { disk, slow } of this.slowableDisks.values()) {
      slow.destroy();
      disk.destroy();
    }
    this.slowableDisks.clear();
  }

  private commandLine(m: MemberInfo): { command: string; args: string[] } {
    const h = this.options.host;
    const flags = [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=http://${h}:${m.clientPort}`,
      `--advertise-client-urls=http://${h}:${m.clientPort}`,
      `--listen-peer-urls=http://${h}:${m.peerPort}`,
      `--initial-advertise-peer-urls=http://${h}:${m.advertisedPeerPort}`,
      `--initial-cluster=${this.members.map((x) => `${x.name}=http://${h}:${x.advertisedPeerPort}`).join(",")}`,
      // Ignored once the data dir exists: only a member's first start after startJoining joins.
      `--initial-cluster-state=${this.joining.has(m.index) ? "existing" : "new"}`,
      `--initial-cluster-token=${this.options.token}`,
      `--heartbeat-interval=${this.options.heartbeatMs}`,
      `--election-timeout=${this.options.electionMs}`,
    ];
    if (this.options.snapshotCount !== undefined)
      flags.push(`--snapshot-count=${this.options.snapshotCount}`);
    if (this.options.snapshotCatchUpEntries !== undefined && this.options.target !== "etcd")
      flags.push(`--experimental-snapshot-catchup-entries=${this.options.snapshotCatchUpEntries}`);
    switch (this.options.target) {
      case "etcd":
        return {
          command: process.env.ETCD_BIN ?? "/usr/bin/etcd",
          args: [...flags, "--logger=zap", "--log-outputs=stderr"],
        };
      case "etcd-ts":
        return {
          command: process.execPath,
          args: ["--conditions=source", "--import", "tsx", "services/raft-node/src/main.ts", ...flags],
        };
      case "etcd-ts-dist":
        return { command: process.execPath, args: ["services/raft-node/dist/main.js", ...flags] };
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolveSleep) => {
    if (signal?.aborted) return resolveSleep();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolveSleep();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
