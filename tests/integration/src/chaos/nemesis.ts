// Injects faults into a LocalCluster on a seeded schedule: a fault (or, for "two-faults", a
// process fault overlapping a link fault on another member; for "three-faults", a partition, a
// kill and a paused leader on three members), held for a while, healed, then a quiet spell so
// the cluster can recover and clients make progress.

import { rm } from "node:fs/promises";
import type { Prng } from "@etcd-ts/raft";
import type { LocalCluster } from "@etcd-ts/raft-node";
import type { LinkState } from "@etcd-ts/testing";
import type { EtcdEndpoint } from "../cluster/etcd-client.js";
import { sleep } from "./abortable-sleep.js";
import { type FaultRecord, now } from "./history.js";
import type { MemberDisks } from "./member-disks.js";
import { processDiskReadBytes } from "./process-resources.js";

export type FaultKind =
  /** SIGKILL a random member, restart it after the hold. */
  | "kill"
  /** SIGKILL the current leader (as Maintenance.Status reports it), restart after the hold. */
  | "kill-leader"
  /**
   * SIGKILL a random member, then write `behindEntries` puts (to a key outside the workload's
   * prefix, through the other members) before the hold: it comes back at least that many
   * entries behind, whatever the clients' throughput, so past a compacted log it must be sent
   * a snapshot.
   */
  | "kill-behind"
  /** SIGKILL every member at once, restart them all: acknowledged writes must survive. */
  | "kill-all"
  /** SIGTERM a random member and restart it: a graceful restart. */
  | "restart"
  /** SIGSTOP a random member, SIGCONT after the hold: a process that freezes, then wakes believing nothing happened. */
  | "pause"
  /** SIGSTOP the leader: when it wakes, a new leader may have been elected behind its back. */
  | "pause-leader"
  /** Cut every link into and out of one member (the leader half the time). */
  | "isolate"
  /** Cut one direction of one link: a sends nothing to b, b still reaches a. */
  | "one-way"
  /** Split a member from one other member only (both directions); the third still sees both. */
  | "bridge"
  /** Slow both directions between two members: 20-300 ms more latency, and half the time a thin pipe. */
  | "slow-link"
  /** A link between two members that keeps failing and recovering (stall or drop, 50-500 ms each way). */
  | "flapping-link"
  /**
   * Two faults overlapping on different members: SIGKILL or SIGSTOP one member (the leader half
   * the time) while another is isolated, cut one way, or slowed on its link to the third, the
   * link fault first and the process fault 0-1 s later. Isolating one member while another is
   * down leaves no quorum for the hold: nothing may be acknowledged then, nothing lost after.
   */
  | "two-faults"
  /**
   * Three faults at once, on three different members: one member cut off (isolated), then
   * 0-1 s later another SIGKILLed, then 0-1 s later the leader (when one is found) SIGSTOPped.
   * No quorum is left for the hold: nothing may be acknowledged then, nothing lost after. They
   * are healed in a seeded order, the killed member never first (a restarted member publishes
   * itself through a quorum before it serves).
   */
  | "three-faults"
  /** Maintenance.MoveLeader from the leader to another member (a planned leader change). */
  | "move-leader"
  /**
   * A dead member replaced by a new one on the same addresses: SIGKILL it, MemberRemove it,
   * wipe its data, MemberAdd a new member (a learner half the time), start it joining; a
   * learner catches up (by snapshot when the log was compacted) and is then promoted.
   */
  | "replace-member"
  /**
   * Fill a random member's file system (every free byte): the member, ours or etcd, stops at
   * the write it cannot store. After the hold the space returns and a stopped member is
   * restarted on its data. Needs root (members on tmpfs mounts: `diskBytes`).
   */
  | "disk-full"
  /**
   * Slow a random member's disk: at most 2-30 write requests a second reach it (a blkio cgroup
   * throttling its loop device), so every fsync waits, for the hold. Needs root and cgroup v1
   * (members on loop disks: `slowableDisks`).
   */
  | "slow-disk";

export const FAULT_KINDS: readonly FaultKind[] = [
  "kill",
  "kill-leader",
  "kill-behind",
  "kill-all",
  "restart",
  "pause",
  "pause-leader",
  "isolate",
  "one-way",
  "bridge",
  "slow-link",
  "flapping-link",
  "two-faults",
  "three-faults",
];

const LINK_FAULT_KINDS: readonly FaultKind[] = [
  "isolate",
  "one-way",
  "bridge",
  "slow-link",
  "flapping-link",
  "two-faults",
  "three-faults",
];

/** Membership changes under load; not in the CI run's default mix (they take longer to heal). */
export const MEMBERSHIP_FAULT_KINDS: readonly FaultKind[] = ["move-leader", "replace-member"];

/** Disk faults; not in the default mix (they need root to mount the members' file systems). */
export const DISK_FAULT_KINDS: readonly FaultKind[] = ["disk-full", "slow-disk"];

export const ALL_FAULT_KINDS: readonly FaultKind[] = [
  ...FAULT_KINDS,
  ...MEMBERSHIP_FAULT_KINDS,
  ...DISK_FAULT_KINDS,
];

/** Where "kill-behind" writes: outside the workload's prefix, so no checker sees it. */
const BEHIND_KEY = "/nemesis/behind";

/** What one membership call may take, and how many times it is tried (leaders change meanwhile). */
const MEMBERSHIP_CALL_MS = 5_000;
const MEMBERSHIP_ATTEMPTS = 20;

export interface NemesisOptions {
  faults: readonly FaultKind[];
  /** How many entries "kill-behind" puts the killed member behind (150 when unset). */
  behindEntries?: number;
  /** Faults injected first, in this order, before the seeded picks from `faults` begin. */
  opening?: readonly FaultKind[];
  holdMs: [number, number];
  quietMs: [number, number];
  /** A client of each member, by index. */
  endpoints: readonly EtcdEndpoint[];
  /** The members' own disks, for disk-full and slow-disk. */
  disks?: MemberDisks;
}

export class Nemesis {
  readonly log: FaultRecord[] = [];
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly cluster: LocalCluster,
    private readonly rng: Prng,
    private readonly options: NemesisOptions,
  ) {
    const needsProxy = [...options.faults, ...(options.opening ?? [])].some((f) =>
      LINK_FAULT_KINDS.includes(f),
    );
    if (needsProxy && !cluster.network) throw new Error("link faults need a cluster created with peerProxy");
  }

  start(): void {
    this.loop = this.run();
  }

  /** Stops scheduling, heals the fault in progress, and brings every member back. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
    await this.healEverything();
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    const { holdMs, quietMs } = this.options;
    const opening = [...(this.options.opening ?? [])];
    await sleep(this.rng.between(quietMs[0], quietMs[1]), signal);
    while (!signal.aborted) {
      const kind = opening.shift() ?? this.rng.pick(this.options.faults);
      const hold = this.rng.between(holdMs[0], holdMs[1]);
      const record: FaultRecord = { kind, detail: "", startedAt: now() };
      this.log.push(record);
      const heal = await this.inject(kind, record);
      await sleep(hold, signal);
      await heal();
      record.endedAt = now();
      await sleep(this.rng.between(quietMs[0], quietMs[1]), signal);
    }
  }

  /** Applies a fault and returns how to undo it. */
  private async inject(kind: FaultKind, record: FaultRecord): Promise<() => Promise<void>> {
    const c = this.cluster;
    const n = c.members.length;
    const randomMember = () => this.rng.between(0, n - 1);
    const linkState = (): LinkState => (this.rng.chance(0.5) ? "stall" : "drop");
    switch (kind) {
      case "kill":
      case "kill-leader": {
        let m = randomMember();
        if (kind === "kill-leader") {
          const leader = await this.findLeader();
          if (leader === undefined) record.detail = "no leader found; killing a random member instead; ";
          else m = leader;
        }
        record.detail += `SIGKILL m${m}`;
        await c.stop(c.members[m], "SIGKILL");
        return () => this.restartAndWait(m, record);
      }
      case "kill-behind": {
        const m = randomMember();
        await c.stop(c.members[m], "SIGKILL");
        const wanted = this.options.behindEntries ?? 150;
        const written = await this.writeBehind(m, wanted);
        record.detail = `SIGKILL m${m}, then ${written} puts without it (${wanted} asked)`;
        return () => this.restartAndWait(m, record);
      }
      case "disk-full": {
        const m = randomMember();
        record.detail = `filled m${m}'s disk`;
        const exitsBefore = c.exits.length;
        this.memberDisks().fill(c, c.members[m]);
        return async () => {
          this.options.disks?.unfill(c.members[m]);
          const exit = c.exits.slice(exitsBefore).find((e) => e.member === m);
          if (exit === undefined) {
            record.detail += `; m${m} still running when space returned`;
            return;
          }
          record.detail += `; m${m} stopped (exit ${exit.code ?? exit.signal}), restarting`;
          await this.restartAndWait(m, record);
        };
      }
      case "slow-disk": {
        const m = randomMember();
        const writeIops = this.rng.between(2, 30);
        const readIops = this.rng.between(2, 30);
        record.detail = `m${m}'s disk: ${writeIops} writes/s, ${readIops} reads/s`;
        // What the process read from its disk (not its page cache) over the hold: whether the
        // read limit had anything to hold.
        const pid = c.members[m].child?.pid;
        const diskReads = () => processDiskReadBytes(pid);
        // The member's own WAL fsync timings over the hold show the fault took.
        const fsyncs = async () => ({
          seconds: await c.metric(c.members[m], "etcd_disk_wal_fsync_duration_seconds_sum"),
          count: await c.metric(c.members[m], "etcd_disk_wal_fsync_duration_seconds_count"),
        });
        const before = await fsyncs();
        const readBefore = await diskReads();
        this.memberDisks().slow(c.members[m], writeIops, readIops);
        return async () => {
          const after = await fsyncs();
          const readAfter = await diskReads();
          this.options.disks?.fast(c.members[m]);
          const n = (after.count ?? 0) - (before.count ?? 0);
          const seconds = (after.seconds ?? 0) - (before.seconds ?? 0);
          record.detail +=
            before.count === undefined || after.count === undefined
              ? "; WAL fsyncs not readable"
              : `; ${n} WAL fsyncs, ${n > 0 ? ((seconds / n) * 1000).toFixed(0) : "-"} ms each`;
          record.detail +=
            readBefore === undefined || readAfter === undefined
              ? "; disk reads not readable"
              : `; ${((readAfter - readBefore) / 1024).toFixed(0)} KiB read from its disk`;
        };
      }
      case "kill-all": {
        record.detail = "SIGKILL every member";
        const members = c.members.map((m) => m.index);
        await Promise.all(members.map((m) => c.stop(c.members[m], "SIGKILL")));
        return async () => {
          await Promise.all(members.map((m) => this.restartAndWait(m, record)));
        };
      }
      case "restart": {
        const m = randomMember();
        record.detail = `SIGTERM m${m}, restart`;
        await c.stop(c.members[m], "SIGTERM", 10_000);
        return () => this.restartAndWait(m, record);
      }
      case "pause":
      case "pause-leader": {
        const leader = kind === "pause-leader" ? await this.findLeader() : undefined;
        const m = leader ?? randomMember();
        if (kind === "pause-leader" && leader === undefined)
          record.detail = "no leader found; pausing a random member; ";
        record.detail += `SIGSTOP m${m}`;
        c.pause(c.members[m]);
        return async () => c.resume(c.members[m]);
      }
      case "isolate": {
        const leader = this.rng.chance(0.5) ? (await c.leader())?.index : undefined;
        const m = leader ?? randomMember();
        const state = linkState();
        record.detail = `isolate m${m}${leader !== undefined ? " (leader)" : ""}: ${state}`;
        c.network!.isolate(m, state);
        return async () => c.network!.isolate(m, "open");
      }
      case "one-way": {
        const a = randomMember();
        const b = (a + this.rng.between(1, n - 1)) % n;
        const state = linkState();
        record.detail = `m${a} -> m${b}: ${state}`;
        c.network!.setLink(a, b, state);
        return async () => c.network!.setLink(a, b, "open");
      }
      case "bridge": {
        const a = randomMember();
        const b = (a + this.rng.between(1, n - 1)) % n;
        const state = linkState();
        record.detail = `m${a} <-> m${b}: ${state}`;
        c.network!.setLink(a, b, state);
        c.network!.setLink(b, a, state);
        return async () => {
          c.network!.setLink(a, b, "open");
          c.network!.setLink(b, a, "open");
        };
      }
      case "slow-link": {
        const a = randomMember();
        const b = (a + this.rng.between(1, n - 1)) % n;
        const shape = {
          delayMs: this.rng.between(20, 300),
          bytesPerSecond: this.rng.chance(0.5) ? this.rng.between(16, 256) * 1024 : 0,
        };
        record.detail = `m${a} <-> m${b}: +${shape.delayMs} ms, ${shape.bytesPerSecond || "unlimited"} B/s`;
        c.network!.shapeLink(a, b, shape);
        c.network!.shapeLink(b, a, shape);
        return async () => {
          c.network!.shapeLink(a, b, undefined);
          c.network!.shapeLink(b, a, undefined);
        };
      }
      case "flapping-link": {
        const a = randomMember();
        const b = (a + this.rng.between(1, n - 1)) % n;
        const state = linkState();
        const flaps = { count: 0 };
        let down = false;
        let timer: NodeJS.Timeout | undefined;
        const flip = () => {
          down = !down;
          flaps.count++;
          c.network!.setLink(a, b, down ? state : "open");
          c.network!.setLink(b, a, down ? state : "open");
          timer = setTimeout(flip, this.rng.between(50, 500));
        };
        flip();
        return async () => {
          clearTimeout(timer);
          c.network!.setLink(a, b, "open");
          c.network!.setLink(b, a, "open");
          record.detail = `m${a} <-> m${b}: ${state}, ${flaps.count} flips`;
        };
      }
      case "two-faults": {
        const leader = this.rng.chance(0.5) ? await this.findLeader() : undefined;
        const a = leader ?? randomMember();
        const [b, third] = this.rng.chance(0.5) ? [(a + 1) % n, (a + 2) % n] : [(a + 2) % n, (a + 1) % n];
        const net = c.network!;
        let healLink: () => void;
        const link = this.rng.between(0, 2);
        if (link === 0) {
          const state = linkState();
          record.detail = `isolate m${b}: ${state}`;
          net.isolate(b, state);
          healLink = () => net.isolate(b, "open");
        } else if (link === 1) {
          const state = linkState();
          record.detail = `m${b} -> m${third}: ${state}`;
          net.setLink(b, third, state);
          healLink = () => net.setLink(b, third, "open");
        } else {
          const shape = { delayMs: this.rng.between(20, 300), bytesPerSecond: 0 };
          record.detail = `m${b} <-> m${third}: +${shape.delayMs} ms`;
          net.shapeLink(b, third, shape);
          net.shapeLink(third, b, shape);
          healLink = () => {
            net.shapeLink(b, third, undefined);
            net.shapeLink(third, b, undefined);
          };
        }
        await sleep(this.rng.between(0, 1_000));
        const who = `m${a}${leader !== undefined ? " (leader)" : ""}`;
        if (this.rng.chance(0.5)) {
          record.detail += `, then SIGKILL ${who}`;
          await c.stop(c.members[a], "SIGKILL");
          return async () => {
            await this.restartAndWait(a, record);
            healLink();
          };
        }
        record.detail += `, then SIGSTOP ${who}`;
        c.pause(c.members[a]);
        return async () => {
          c.resume(c.members[a]);
          healLink();
        };
      }
      case "three-faults": {
        if (n < 3) throw new Error("three-faults needs three members");
        const leader = await this.findLeader();
        const paused = leader ?? randomMember();
        const others = c.members.map((m) => m.index).filter((i) => i !== paused);
        const isolated = this.rng.pick(others);
        const killed = this.rng.pick(others.filter((i) => i !== isolated));
        const net = c.network!;
        const state = linkState();
        record.detail = `isolate m${isolated}: ${state}`;
        net.isolate(isolated, state);
        await sleep(this.rng.between(0, 1_000));
        record.detail += `, then SIGKILL m${killed}`;
        await c.stop(c.members[killed], "SIGKILL");
        await sleep(this.rng.between(0, 1_000));
        record.detail += `, then SIGSTOP m${paused}${leader !== undefined ? " (leader)" : ""}`;
        c.pause(c.members[paused]);
        const heals: Record<string, () => Promise<void>> = {
          resume: async () => c.resume(c.members[paused]),
          reconnect: async () => net.isolate(isolated, "open"),
          restart: () => this.restartAndWait(killed, record),
        };
        const first = this.rng.chance(0.5) ? "resume" : "reconnect";
        const order = this.rng.chance(0.5)
          ? [first, "restart", first === "resume" ? "reconnect" : "resume"]
          : [first, first === "resume" ? "reconnect" : "resume", "restart"];
        return async () => {
          record.detail += `; healed: ${order.join(", ")}`;
          for (const step of order) await heals[step]!();
        };
      }
      case "move-leader": {
        const leader = await this.findLeader();
        if (leader === undefined) {
          record.detail = "no leader found; nothing moved";
          return async () => {};
        }
        const others = c.members
          .map((m) => m.index)
          .filter((i) => i !== leader && c.members[i].child !== undefined);
        const target = this.rng.pick(others);
        const targetStatus = await this.options.endpoints[target].status(2_000).catch(() => undefined);
        if (targetStatus === undefined) {
          record.detail = `m${target} did not answer; nothing moved`;
          return async () => {};
        }
        const moved = await this.options.endpoints[leader]
          .moveLeader(targetStatus.memberId, MEMBERSHIP_CALL_MS)
          .then(
            () => "done",
            (err: Error) => `failed: ${err.message}`,
          );
        record.detail = `move leader m${leader} -> m${target}: ${moved}`;
        return async () => {};
      }
      case "replace-member": {
        const m = randomMember();
        const asLearner = this.rng.chance(0.5);
        const via = this.rng.pick(c.members.map((x) => x.index).filter((i) => i !== m));
        record.detail = `replace m${m} as a new ${asLearner ? "learner" : "voter"} (calls via m${via})`;
        await c.stop(c.members[m], "SIGKILL");
        const endpoint = this.options.endpoints[via];
        const peerUrl = c.members[m].peerUrl;
        const old = await this.retry(record, "member list", async () =>
          (await endpoint.memberList(MEMBERSHIP_CALL_MS)).find((x) => x.peerUrls.includes(peerUrl)),
        );
        if (old !== undefined)
          await this.retry(record, "remove", () => endpoint.memberRemove(old.id, MEMBERSHIP_CALL_MS));
        const added = await this.retry(record, "add", () =>
          endpoint.memberAdd(peerUrl, asLearner, MEMBERSHIP_CALL_MS),
        );
        if (added === undefined) {
          // The cluster no longer has it: restarting on the old data would be refused.
          record.detail += "; not re-added";
          return async () => {};
        }
        // A new member on the same addresses: an empty data dir, joining the running cluster.
        await rm(c.members[m].dataDir, { recursive: true, force: true });
        c.spawn(c.members[m], { state: "existing" });
        return async () => {
          await this.waitServing(m, record);
          if (!asLearner) return;
          // etcd refuses until the learner's log is within 10% of the leader's.
          const started = now();
          for (let i = 0; i < 120; i++) {
            const promoted = await endpoint.memberPromote(added.id, MEMBERSHIP_CALL_MS).then(
              () => true,
              () => false,
            );
            if (promoted) {
              record.detail += `; promoted ${((now() - started) / 1000).toFixed(1)}s after serving`;
              return;
            }
            await sleep(500);
          }
          record.detail += "; never promoted";
        };
      }
    }
  }

  /**
   * Puts to BEHIND_KEY through the members other than `m`, four at a time, until `count`
   * succeeded; bounded by 30 s and by the nemesis stopping. Returns how many succeeded.
   */
  private async writeBehind(m: number, count: number): Promise<number> {
    const c = this.cluster;
    const others = c.members.map((x) => x.index).filter((i) => i !== m);
    const until = now() + 30_000;
    let done = 0;
    let attempt = 0;
    const lane = async () => {
      while (done < count && now() < until && !this.stopping.signal.aborted) {
        const via = others[attempt++ % others.length]!;
        try {
          await this.options.endpoints[via].put(BEHIND_KEY, String(attempt), 2_000);
          done++;
        } catch {
          await sleep(100);
        }
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    return done;
  }

  /** Runs a membership call until it succeeds (bounded); undefined when it never did. */
  private async retry<T>(record: FaultRecord, what: string, call: () => Promise<T>): Promise<T | undefined> {
    let last = "";
    for (let i = 0; i < MEMBERSHIP_ATTEMPTS; i++) {
      try {
        return await call();
      } catch (err) {
        last = (err as Error).message;
        await sleep(500);
      }
    }
    record.detail += `; ${what} failed: ${last}`;
    return undefined;
  }

  /** The leader, waiting up to ~3 s for one (right after a fault there may be none). */
  private async findLeader(): Promise<number | undefined> {
    let leader = (await this.cluster.leader())?.index;
    for (let i = 0; i < 6 && leader === undefined; i++) {
      await sleep(500);
      leader = (await this.cluster.leader())?.index;
    }
    return leader;
  }

  /**
   * Restarts a member and waits (bounded) until it answers Status, so that the next fault
   * does not take down a second member while this one is still starting: one fault at a time.
   */
  private async restartAndWait(m: number, record: FaultRecord): Promise<void> {
    this.cluster.spawn(this.cluster.members[m]);
    await this.waitServing(m, record);
  }

  private async waitServing(m: number, record: FaultRecord): Promise<void> {
    const started = now();
    while (now() - started < 60_000) {
      if (await this.options.endpoints[m].status(1000).catch(() => undefined)) {
        record.detail += `; m${m} serving again after ${((now() - started) / 1000).toFixed(1)}s`;
        return;
      }
      await sleep(250);
    }
    record.detail += `; m${m} not serving 60 s after restart`;
  }

  private memberDisks(): MemberDisks {
    if (this.options.disks === undefined) throw new Error("disk faults need the members on their own disks");
    return this.options.disks;
  }

  private async healEverything(): Promise<void> {
    const c = this.cluster;
    c.network?.healAll();
    for (const m of c.members) {
      c.resume(m);
      if (m.child === undefined) c.spawn(m);
    }
  }
}
