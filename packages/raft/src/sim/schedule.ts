// One random schedule, entirely determined by its seed: a chaos phase of random steps (message
// delivery, Ready handling, ticks, client requests, crashes, partitions, compaction, membership
// changes), then a quiet phase (faults stop, the network heals, every member restarts) in
// which liveness is checked against fixed bounds. The checker runs after every step of both.

import { ConfChangeType, NONE, type NodeId, StateRole } from "../mod.js";
import {
  checkLeaderElected,
  checkQuietProposalsCommitted,
  checkQuietReadsAnswered,
  InvariantViolation,
  type QuietProposal,
} from "./checker.js";
import { type ClusterStats, ELECTION_TICK, SimCluster } from "./cluster.js";
import { type FaultRates, PERFECT_NETWORK } from "./network.js";
import { Prng } from "./prng.js";

/** Ticks, once faults stop, within which a leader that every member follows must exist. */
export const LEADER_BOUND_TICKS = 30 * ELECTION_TICK;
/** Further ticks within which the leader must have caught every member up. */
export const SETTLE_BOUND_TICKS = 10 * ELECTION_TICK;
/** Ticks within which quiet-phase proposals must commit and quiet-phase reads be answered. */
export const COMMIT_BOUND_TICKS = 2 * ELECTION_TICK;
/**
 * Network rounds (deliver everything, handle every Ready) that must end in silence, per tick.
 * Generous: with one entry per message and a window of one, catching a follower up takes a
 * round per missing entry; only a message storm that never ends should hit it.
 */
const MAX_ROUNDS_PER_TICK = 20_000;
const QUIET_PROPOSALS = 3;

export const DEFAULT_CHAOS_STEPS = 1000;
export const MAX_MEMBERS = 5;

/**
 * "leader churn": 5 voters whose leaders are crashed, isolated and challenged far more often,
 * with one entry per message, the setting in which an old-term entry can be acknowledged on
 * its own before the new leader's entry (Raft's Figure 8).
 */
export type ClusterShape = "3 voters" | "5 voters" | "leader churn" | "membership";

export interface ScheduleShape {
  cluster: ClusterShape;
  initialVoters: number;
  chaosSteps: number;
  rates: FaultRates;
  /** Relative weight of crashes and partitions among chaos steps. */
  faultWeight: number;
  preVote: boolean;
  checkQuorum: boolean;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  maxUncommittedEntriesSize: number;
}

/** Derives the whole shape of a schedule from its seed, so a seed alone replays it. */
export function shapeForSeed(seed: number, chaosSteps = DEFAULT_CHAOS_STEPS): ScheduleShape {
  const r = new Prng(seed).fork();
  const roll = r.int(10);
  const cluster: ClusterShape =
    roll < 3 ? "3 voters" : roll < 5 ? "5 voters" : roll < 7 ? "leader churn" : "membership";
  const initialVoters = cluster === "3 voters" ? 3 : cluster === "membership" ? r.between(1, 3) : 5;
  const rates: FaultRates = {
    drop: r.pick([0, 0.02, 0.08]),
    duplicate: r.pick([0, 0.03]),
    maxDelay: r.pick([0, 2, 5]),
    longDelay: r.pick([0, 0.02]),
    longDelaySteps: 40,
  };
  const faultWeight = r.pick([0.5, 1, 2]);
  // etcd runs with both on; the other combinations are legal and take other code paths.
  return {
    cluster,
    initialVoters,
    chaosSteps,
    rates,
    faultWeight,
    preVote: r.chance(0.75),
    checkQuorum: r.chance(0.75),
    // One entry per message and a window of one bring out orderings that big batches hide:
    // e.g. a follower acknowledging an old-term entry before the new leader's own entry.
    maxSizePerMsg: cluster === "leader churn" ? 1 : r.pick([1, 64, 4096]),
    maxInflightMsgs: r.pick([1, 4, 256]),
    maxUncommittedEntriesSize: r.pick([0, 0, 256]),
  };
}

export interface QuietPhaseReport {
  ticksToLeader: number;
  ticksToSettle: number;
  ticksToCommit: number;
  proposalsAccepted: number;
  proposalsRefused: number;
}

export interface ScheduleReport {
  seed: number;
  shape: ScheduleShape;
  stats: ClusterStats;
  quiet: QuietPhaseReport;
}

export class ScheduleFailure extends Error {
  constructor(
    readonly seed: number,
    readonly step: number,
    readonly chaosSteps: number,
    override readonly cause: unknown,
  ) {
    const what = cause instanceof Error ? cause.message : String(cause);
    super(`seed ${seed} failed at step ${step}: ${what}`);
    this.name = "ScheduleFailure";
  }

  /** The one command that replays this schedule with a full trace. */
  get replayCommand(): string {
    const steps = this.chaosSteps === DEFAULT_CHAOS_STEPS ? "" : ` --steps ${this.chaosSteps}`;
    return `node --conditions=source --import tsx packages/raft/src/sim/replay.ts --seed ${this.seed}${steps}`;
  }
}

export interface RunOptions {
  chaosSteps?: number;
  trace?: (line: string) => void;
}

export function runSchedule(seed: number, options: RunOptions = {}): ScheduleReport {
  const shape = shapeForSeed(seed, options.chaosSteps);
  let cluster: SimCluster | undefined;
  try {
    cluster = new SimCluster(
      {
        seed,
        initialVoters: shape.initialVoters,
        rates: shape.rates,
        preVote: shape.preVote,
        checkQuorum: shape.checkQuorum,
        maxSizePerMsg: shape.maxSizePerMsg,
        maxInflightMsgs: shape.maxInflightMsgs,
        maxUncommittedEntriesSize: shape.maxUncommittedEntriesSize,
      },
      options.trace,
    );
    cluster.log(
      `seed ${seed}: ${shape.cluster}, ${shape.initialVoters} initial voter(s), ${shape.chaosSteps} chaos steps, ` +
        `network ${JSON.stringify(shape.rates)}, fault weight ${shape.faultWeight}, ` +
        `preVote ${shape.preVote}, checkQuorum ${shape.checkQuorum}, maxSizePerMsg ${shape.maxSizePerMsg}, ` +
        `maxInflightMsgs ${shape.maxInflightMsgs}, maxUncommittedEntriesSize ${shape.maxUncommittedEntriesSize}`,
    );
    const chaos = new Chaos(cluster, shape, new Prng(chaosSeed(seed)).fork());
    for (let i = 0; i < shape.chaosSteps; i++) {
      chaos.step();
      cluster.endStep();
    }
    const quiet = quietPhase(cluster);
    return { seed, shape, stats: cluster.stats, quiet };
  } catch (err) {
    if (options.trace && cluster) {
      options.trace("--- state at failure ---");
      for (const line of cluster.describeNodes()) options.trace(line);
    }
    throw new ScheduleFailure(seed, cluster?.now ?? 0, shape.chaosSteps, err);
  }
}

/** A seed for the chaos stream, distinct from the cluster's, keeping all 53 bits of `seed`. */
function chaosSeed(seed: number): number {
  const low = ((seed % 2 ** 32) ^ 0x2545f491) >>> 0;
  return Math.floor(seed / 2 ** 32) * 2 ** 32 + low;
}

type ChaosAction =
  | "deliverDue"
  | "deliverOne"
  | "ready"
  | "readyAll"
  | "tick"
  | "tickOne"
  | "propose"
  | "read"
  | "readTraffic"
  | "transfer"
  | "campaign"
  | "crash"
  | "crashLeader"
  | "isolateLeader"
  | "restart"
  | "partition"
  | "cutOneWay"
  | "heal"
  | "compact"
  | "confChange";

class Chaos {
  private readonly weights: Record<ChaosAction, number>;

  constructor(
    private readonly c: SimCluster,
    shape: ScheduleShape,
    private readonly rng: Prng,
  ) {
    const f = shape.faultWeight;
    const churn = shape.cluster === "leader churn";
    this.weights = {
      deliverDue: 22,
      deliverOne: 8,
      ready: 22,
      readyAll: 6,
      tick: 14,
      tickOne: 3,
      propose: 10,
      read: 3,
      readTraffic: 4,
      transfer: 0.6,
      campaign: churn ? 2 : 0.3,
      crash: 0.8 * f,
      crashLeader: (churn ? 2 : 0.4) * f,
      isolateLeader: 0.4 * f,
      restart: churn ? 5 : 2,
      partition: 0.6 * f,
      cutOneWay: 0.4 * f,
      heal: 1,
      compact: 2,
      confChange: shape.cluster === "membership" ? 1.5 : 0,
    };
  }

  step(): void {
    const c = this.c;
    const rng = this.rng;
    switch (rng.weighted(this.weights)) {
      case "deliverDue":
        c.deliverDue();
        return;
      case "deliverOne":
        c.deliverOneDue();
        return;
      case "ready": {
        const ready = c.upNodes().filter((n) => c.hasReady(n.id));
        if (ready.length > 0) c.processReady(rng.pick(ready).id);
        return;
      }
      case "readyAll":
        for (const n of rng.shuffle(c.upNodes())) c.processReady(n.id);
        return;
      case "tick":
        c.tickAll();
        return;
      case "tickOne":
        this.withUpNode((id) => c.tickOne(id));
        return;
      case "propose": {
        // Sometimes a burst, so that several proposals share one Ready and one MsgApp.
        const n = rng.chance(0.2) ? rng.between(2, 8) : 1;
        this.withUpNode((id) => {
          for (let i = 0; i < n; i++) c.propose(id);
        }, 0.5);
        return;
      }
      case "read":
        this.withUpNode((id) => c.readIndex(id), 0.3);
        return;
      case "readTraffic":
        this.withUpNode((id) => c.flushReadTraffic(id));
        return;
      case "transfer":
        this.withUpNode((id) => {
          const voters = c.status(id)?.confState.voters ?? [];
          if (voters.length > 0) c.transferLeader(id, rng.pick(voters));
        }, 0.8);
        return;
      case "campaign":
        this.withUpNode((id) => c.campaign(id));
        return;
      case "crash":
        this.withUpNode((id) => c.crash(id));
        return;
      case "crashLeader": {
        const leader = this.someLeader();
        if (leader !== undefined) c.crash(leader);
        return;
      }
      case "isolateLeader": {
        const leader = this.someLeader();
        if (leader === undefined) return;
        c.network.partition([
          [leader],
          c
            .members()
            .map((n) => n.id)
            .filter((id) => id !== leader),
        ]);
        c.log(`isolate leader ${leader}; cuts now: ${c.network.describeCuts()}`);
        return;
      }
      case "restart": {
        const down = c.stopped();
        if (down.length > 0) c.restart(rng.pick(down).id);
        return;
      }
      case "partition":
        this.partition();
        return;
      case "cutOneWay": {
        const ids = c.members().map((n) => n.id);
        if (ids.length < 2) return;
        const [from, to] = rng.shuffle(ids);
        c.network.cutOneWay(from, to);
        c.log(`cut ${from}->${to} one way; cuts now: ${c.network.describeCuts()}`);
        return;
      }
      case "heal":
        c.network.heal();
        c.log("heal the network");
        return;
      case "compact":
        this.withUpNode((id) => c.compact(id, rng.int(4)));
        return;
      case "confChange":
        this.confChange();
        return;
    }
  }

  private someLeader(): NodeId | undefined {
    const leaders = this.c.upNodes().filter((n) => this.c.status(n.id)?.role === StateRole.Leader);
    return leaders.length > 0 ? this.rng.pick(leaders).id : undefined;
  }

  /** Runs `fn` on a random running node, or on a running leader with probability `leaderBias`. */
  private withUpNode(fn: (id: NodeId) => void, leaderBias = 0): void {
    const up = this.c.upNodes();
    if (up.length === 0) return;
    if (leaderBias > 0 && this.rng.chance(leaderBias)) {
      const leaders = up.filter((n) => this.c.status(n.id)?.role === StateRole.Leader);
      if (leaders.length > 0) {
        fn(this.rng.pick(leaders).id);
        return;
      }
    }
    fn(this.rng.pick(up).id);
  }

  private partition(): void {
    const c = this.c;
    const ids = this.rng.shuffle(c.members().map((n) => n.id));
    if (ids.length < 2) return;
    const cut = this.rng.between(1, ids.length - 1);
    const sides = [ids.slice(0, cut), ids.slice(cut)];
    c.network.heal();
    c.network.partition(sides);
    c.log(`partition ${sides.map((s) => `{${s.join(",")}}`).join(" | ")}`);
  }

  /**
   * Membership changes go straight to a node that believes it leads. A change forwarded from
   * a follower could reach the leader after the simulator (deciding from a stale view) chose
   * it, e.g. promoting a learner whose removal has meanwhile been applied, which would put a
   * stopped node back in the configuration: an operator error, not a Raft one.
   */
  private confChange(): void {
    const c = this.c;
    const rng = this.rng;
    const leaders = c.upNodes().filter((n) => c.status(n.id)?.role === StateRole.Leader);
    if (leaders.length === 0) return;
    const leader = rng.pick(leaders).id;
    const cs = c.status(leader)!.confState;
    const voters = cs.voters.filter((id) => !c.removed.has(id));
    const learners = cs.learners.filter((id) => !c.removed.has(id));
    const options: (() => void)[] = [];
    if (voters.length + learners.length < MAX_MEMBERS) {
      options.push(() => c.proposeConfChange(leader, ConfChangeType.AddLearnerNode, c.allocateNodeId()));
      options.push(() => c.proposeConfChange(leader, ConfChangeType.AddNode, c.allocateNodeId()));
    }
    if (learners.length > 0) {
      options.push(() => c.proposeConfChange(leader, ConfChangeType.AddNode, rng.pick(learners)));
      options.push(() => c.proposeConfChange(leader, ConfChangeType.RemoveNode, rng.pick(learners)));
    }
    // Removing a voter from a 2-voter configuration is left out. Whichever of the two leads
    // when the removal commits may be the removed one (a follower being removed can win an
    // election before the removal commits); if it then crashes or loses its quorum before the
    // survivor holds its whole log, the survivor (still under the old configuration) needs the
    // removed node's vote, which that node refuses to a shorter log, and as a non-voter it
    // never campaigns itself. No leader, ever: a known hazard of one-at-a-time membership
    // changes, not a bug to find. From 3 voters up, the survivors can elect one of their own.
    if (voters.length > 2) {
      options.push(() => c.proposeConfChange(leader, ConfChangeType.RemoveNode, rng.pick(voters)));
      if (voters.includes(leader)) {
        options.push(() => c.proposeConfChange(leader, ConfChangeType.RemoveNode, leader));
      }
    }
    if (options.length > 0) rng.pick(options)();
  }
}

/**
 * Faults stop: the network heals and becomes perfect, every node restarts (a removed node may
 * still be needed to vote). Then, within fixed bounds
 * of ticks: a leader all members follow, every member caught up, and proposals accepted by
 * that leader committed and reads answered.
 */
function quietPhase(c: SimCluster): QuietPhaseReport {
  c.log("=== quiet phase: faults stop, network heals, every member restarts ===");
  c.network.rates = { ...PERFECT_NETWORK };
  c.network.heal();
  for (const n of c.stopped()) c.restart(n.id);
  c.endStep();

  let ticks = 0;
  drain(c);
  while (c.agreedLeader() === undefined) {
    checkLeaderElected(undefined, ticks, LEADER_BOUND_TICKS);
    c.tickAll();
    ticks++;
    drain(c);
  }
  const ticksToLeader = ticks;

  ticks = 0;
  let leader = settledLeader(c);
  while (leader === undefined) {
    if (ticks >= SETTLE_BOUND_TICKS) {
      throw new InvariantViolation(
        "liveness",
        `the cluster did not settle (one leader, nothing uncommitted, every member caught up) within ` +
          `${SETTLE_BOUND_TICKS} ticks of electing a leader`,
      );
    }
    c.tickAll();
    ticks++;
    drain(c);
    leader = settledLeader(c);
  }
  const ticksToSettle = ticks;
  c.log(`settled: leader ${leader}`);

  const accepted: { data: Uint8Array; label: string }[] = [];
  let refused = 0;
  for (let i = 0; i < QUIET_PROPOSALS; i++) {
    const outcome = c.propose(leader);
    if (outcome.accepted) accepted.push({ data: outcome.data, label: c.proposalLabel(outcome.data) });
    else refused++;
  }
  const reads: string[] = [];
  const readAtLeader = c.readIndex(leader);
  if (readAtLeader !== undefined) reads.push(readAtLeader);
  const followers = c.members().filter((n) => n.id !== leader && c.status(n.id)?.lead === leader);
  if (followers.length > 0) {
    const readAtFollower = c.readIndex(followers[0].id);
    if (readAtFollower !== undefined) reads.push(readAtFollower);
  }
  c.endStep();

  ticks = 0;
  const done = () =>
    accepted.every((p) => c.committedIndexOf(p.data) > 0) && reads.every((r) => c.reads.get(r) === true);
  drain(c);
  while (!done() && ticks < COMMIT_BOUND_TICKS) {
    c.tickAll();
    ticks++;
    drain(c);
  }
  const quietProposals: QuietProposal[] = accepted.map((p) => ({
    label: p.label,
    committedAt: c.committedIndexOf(p.data),
  }));
  checkQuietProposalsCommitted(quietProposals, ticks);
  checkQuietReadsAnswered(
    reads.map((r) => ({ label: r, answered: c.reads.get(r) === true })),
    ticks,
  );
  return {
    ticksToLeader,
    ticksToSettle,
    ticksToCommit: ticks,
    proposalsAccepted: accepted.length,
    proposalsRefused: refused,
  };
}

/** Delivers everything and handles every Ready until the cluster falls silent. */
function drain(c: SimCluster): void {
  for (let round = 0; round < MAX_ROUNDS_PER_TICK; round++) {
    const delivered = c.deliverAll();
    let readies = 0;
    for (const n of c.upNodes()) {
      if (c.hasReady(n.id)) {
        c.processReady(n.id);
        readies++;
      }
    }
    c.endStep();
    if (delivered === 0 && readies === 0) return;
  }
  throw new InvariantViolation(
    "liveness",
    `messages kept flowing for ${MAX_ROUNDS_PER_TICK} rounds without a tick on a perfect network`,
  );
}

/** The leader, once nothing is in transit: no transfer, all of its log committed and applied everywhere. */
function settledLeader(c: SimCluster): NodeId | undefined {
  const leader = c.agreedLeader();
  if (leader === undefined) return undefined;
  const s = c.status(leader)!;
  if (s.leadTransferee !== NONE) return undefined;
  if (c.mustGet(leader).storage.lastIndex() !== s.commit) return undefined;
  for (const id of [...s.confState.voters, ...s.confState.learners]) {
    const node = c.nodes.get(id);
    if (!node?.app || node.app.appliedIndex !== s.commit) return undefined;
  }
  return leader;
}
