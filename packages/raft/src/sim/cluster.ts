// The simulated cluster: RawNodes driven exactly as a real member drives one (persist, then
// send, then apply, then advance), over the fault-injecting network, with crash and restart
// from nothing but what was persisted. Every observable fact goes through the SafetyChecker.
//
// What is "on disk" for a node is its MemoryStorage: the harness writes to it only what a
// Ready told it to persist, so a crash (dropping the RawNode and the state machine) loses
// exactly what a real crash loses: unstable entries, the in-memory commit index, progress,
// pending reads, the applied state. A restart builds a new RawNode on that storage and
// rebuilds the state machine from the stored snapshot plus the committed entries Raft hands
// back after it.

import {
  bootstrapEntries,
  bootstrapStorage,
  type ConfChange,
  ConfChangeType,
  type ConfState,
  decodeConfChange,
  decodeMessage,
  EntryType,
  encodeConfChange,
  encodeMessage,
  MemoryStorage,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  ProposalDroppedError,
  RawNode,
  type ReadState,
  type Ready,
  StateRole,
  type Status,
} from "../mod.js";
import { dataKey, type LogView, SafetyChecker } from "./checker.js";
import { KvStateMachine, proposalData } from "./kv-state-machine.js";
import { type Delivery, type FaultRates, SimNetwork } from "./network.js";
import { Prng, seededRandom } from "./prng.js";
import { describeMessage, describeReady, roleName } from "./trace-format.js";

export const ELECTION_TICK = 10;
export const HEARTBEAT_TICK = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class SimNode {
  raw: RawNode | undefined;
  app: KvStateMachine | undefined;
  /** The configuration as of app.appliedIndex: what a snapshot taken now must record. */
  appConfState: ConfState = { voters: [], learners: [] };

  constructor(
    readonly id: NodeId,
    /** The node's disk. */
    readonly storage: MemoryStorage,
  ) {}

  get up(): boolean {
    return this.raw !== undefined;
  }
}

export interface ClusterStats {
  steps: number;
  ticks: number;
  delivered: number;
  lostInNetwork: number;
  proposalsAccepted: number;
  proposalsDropped: number;
  entriesApplied: number;
  readsAnswered: number;
  /** Answered on a node that was not leading: the read went through MsgReadIndex. */
  followerReadsAnswered: number;
  snapshotsInstalled: number;
  compactions: number;
  crashes: number;
  confChangesApplied: number;
  /** A leader applied its own removal. */
  leaderRemovals: number;
  /** MsgTimeoutNow delivered: a leadership transfer reached its last step. */
  timeoutNowDelivered: number;
  leadersElected: number;
  maxTerm: number;
}

export interface ClusterConfig {
  seed: number;
  initialVoters: number;
  rates: FaultRates;
  preVote: boolean;
  checkQuorum: boolean;
  /** Flow control, as RaftConfig's fields of the same names. */
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  maxUncommittedEntriesSize: number;
}

export type ProposalOutcome = { accepted: true; data: Uint8Array } | { accepted: false; reason: string };

/**
 * The ID of the k-th node (k >= 1): k times an odd 64-bit constant, modulo 2^64. Odd
 * multiplication is a bijection modulo 2^64, so IDs are distinct and never 0, and they spread
 * over all 64 bits, in no particular order, as etcd's member IDs (sha1 prefixes) do.
 */
export function simNodeId(k: number): NodeId {
  return (BigInt(k) * 0x9e3779b97f4a7c15n) & 0xffff_ffff_ffff_ffffn;
}

export class SimCluster {
  readonly nodes = new Map<NodeId, SimNode>();
  readonly checker = new SafetyChecker();
  readonly network: SimNetwork<Message>;
  /** Removed nodes, with the index of the entry that removed them (the same on every node). */
  readonly removed = new Map<NodeId, number>();
  now = 0;
  readonly stats: ClusterStats = {
    steps: 0,
    ticks: 0,
    delivered: 0,
    lostInNetwork: 0,
    proposalsAccepted: 0,
    proposalsDropped: 0,
    entriesApplied: 0,
    readsAnswered: 0,
    followerReadsAnswered: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    crashes: 0,
    confChangesApplied: 0,
    leaderRemovals: 0,
    timeoutNowDelivered: 0,
    leadersElected: 0,
    maxTerm: 0,
  };
  /** The highest commit index any node has reported, live or durable. */
  maxCommitKnown = 0;
  /** Reads issued: ctx -> answered yet. */
  readonly reads = new Map<string, boolean>();

  private readonly rng: Prng;
  private readonly nodeSeeds: Prng;
  /** Ordinal of the next node to create; its ID is simNodeId(ordinal). */
  private nextNodeOrdinal: number;
  private nextProposalId = 1;
  private nextReadId = 1;
  private readonly touched = new Set<NodeId>();
  private readonly leadersSeen = new Set<string>();
  private readonly config: ClusterConfig;

  constructor(
    config: ClusterConfig,
    private readonly trace?: (line: string) => void,
  ) {
    const { seed, initialVoters, rates } = config;
    this.config = config;
    const root = new Prng(seed);
    this.rng = root.fork();
    this.nodeSeeds = root.fork();
    // A forwarded proposal delivered twice is appended twice: Raft does not deduplicate client
    // requests (etcd's apply layer does, by request ID), so the network never duplicates them.
    this.network = new SimNetwork<Message>(root.fork(), rates, (m) => m.type !== MessageType.MsgProp);
    const voters = Array.from({ length: initialVoters }, (_, i) => simNodeId(i + 1));
    this.nextNodeOrdinal = initialVoters + 1;
    for (const e of bootstrapEntries(voters)) this.checker.observeProposal(e.data);
    for (const id of voters) {
      const node = new SimNode(id, bootstrapStorage(voters));
      this.nodes.set(id, node);
      this.start(node);
    }
  }

  log(line: string): void {
    this.trace?.(`[${this.now}] ${line}`);
  }

  // --- lifecycle -------------------------------------------------------------------------

  private start(node: SimNode): void {
    const snap = node.storage.snapshot();
    node.raw = new RawNode({
      id: node.id,
      storage: node.storage,
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      random: seededRandom(this.nodeSeeds.fork()),
      applied: snap.metadata.index,
      checkQuorum: this.config.checkQuorum,
      preVote: this.config.preVote,
      maxSizePerMsg: this.config.maxSizePerMsg,
      maxInflightMsgs: this.config.maxInflightMsgs,
      maxUncommittedEntriesSize: this.config.maxUncommittedEntriesSize,
    });
    node.app = KvStateMachine.restore(snap.metadata.index, snap.data);
    node.appConfState = cloneConf(snap.metadata.confState);
    this.checker.observeRestore(node.id, snap.metadata.index, node.app.digest);
    this.touched.add(node.id);
  }

  crash(id: NodeId): void {
    const node = this.mustGet(id);
    if (!node.up) return;
    node.raw = undefined;
    node.app = undefined;
    this.checker.observeCrash(id);
    this.stats.crashes++;
    this.log(`crash ${id}`);
  }

  restart(id: NodeId): void {
    const node = this.mustGet(id);
    if (node.up) return;
    this.start(node);
    const hs = node.storage.initialState().hardState;
    this.log(
      `restart ${id} from snapshot ${node.storage.snapshot().metadata.index}, log ` +
        `${node.storage.firstIndex()}..${node.storage.lastIndex()}, ` +
        `hs t${hs.term}/v${hs.vote}/c${hs.commit}`,
    );
  }

  /** Nodes that are down, removed from the cluster or not. */
  stopped(): SimNode[] {
    return [...this.nodes.values()].filter((n) => !n.up);
  }

  /** Nodes that are part of the cluster as the simulator sees it (created and not removed). */
  members(): SimNode[] {
    return [...this.nodes.values()].filter((n) => !this.removed.has(n.id));
  }

  upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.up);
  }

  mustGet(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  // --- the Ready loop --------------------------------------------------------------------

  hasReady(id: NodeId): boolean {
    return this.nodes.get(id)?.raw?.hasReady() ?? false;
  }

  /** Handles one Ready of `id` following the contract: persist, send, apply, advance. */
  processReady(id: NodeId): void {
    const node = this.mustGet(id);
    const raw = node.raw;
    if (!raw || !node.app || !raw.hasReady()) return;
    const rd = raw.ready();
    this.touched.add(id);
    if (this.trace) this.log(`ready ${id}: ${describeReady(rd)}`);

    this.persist(node, rd);

    const snapshotReports = this.sendAll(rd.messages);

    if (rd.snapshot) {
      const snap = rd.snapshot;
      node.app = KvStateMachine.restore(snap.metadata.index, snap.data);
      node.appConfState = cloneConf(snap.metadata.confState);
      this.checker.observeRestore(id, snap.metadata.index, node.app.digest);
      this.stats.snapshotsInstalled++;
      this.noteConfMembers(snap.metadata.confState);
    }
    const live = node.app!;
    for (const e of rd.committedEntries) {
      live.apply(e);
      if (e.type === EntryType.ConfChange) {
        const cc = decodeConfChange(e.data);
        node.appConfState = cloneConf(raw.applyConfChange(cc));
        this.stats.confChangesApplied++;
        this.onConfChangeApplied(node, cc, e.index);
      }
      this.checker.observeApply(id, e, live.digest);
      this.stats.entriesApplied++;
    }
    this.answerReads(id, raw, rd.readStates);
    raw.advance(rd);

    for (const [to, ok] of snapshotReports) raw.reportSnapshot(to, ok);

    const status = raw.status();
    this.observeStatus(node, status);
    if (status.role === StateRole.Leader)
      this.checker.checkLeaderCompleteness(id, status.term, logView(node));
  }

  /**
   * Takes `id`'s read traffic out of Raft between two Readys (RawNode.takeReadTraffic), as a
   * member does while a Ready's WAL write is in flight: its messages leave before the entries
   * and votes stepped since the last Ready are persisted, and its reads are answered.
   */
  flushReadTraffic(id: NodeId): void {
    const raw = this.mustGet(id).raw;
    if (!raw) return;
    const { messages, readStates } = raw.takeReadTraffic();
    if (messages.length === 0 && readStates.length === 0) return;
    this.touched.add(id);
    if (this.trace) this.log(`read traffic ${id}: ${messages.map(describeMessage).join(", ")}`);
    this.sendAll(messages);
    this.answerReads(id, raw, readStates);
  }

  /** Hands `messages` to the network; the snapshot sends it dropped, to report as failed. */
  private sendAll(messages: readonly Message[]): [NodeId, boolean][] {
    const snapshotReports: [NodeId, boolean][] = [];
    for (const m of messages) {
      const outcome = this.network.send(m, this.now);
      if (outcome === "dropped") {
        this.stats.lostInNetwork++;
        if (this.trace) this.log(`  drop ${describeMessage(m)}`);
        // The transport knows a snapshot stream failed and says so, as etcd's rafthttp does.
        if (m.type === MessageType.MsgSnap) snapshotReports.push([m.to, false]);
      } else if (outcome === "duplicated" && this.trace) {
        this.log(`  duplicate ${describeMessage(m)}`);
      }
    }
    return snapshotReports;
  }

  private answerReads(id: NodeId, raw: RawNode, readStates: readonly ReadState[]): void {
    for (const rs of readStates) {
      const ctx = decoder.decode(rs.requestCtx);
      this.checker.observeReadAnswered(id, ctx, rs.index);
      if (this.reads.has(ctx)) this.reads.set(ctx, true);
      this.stats.readsAnswered++;
      if (raw.status().role !== StateRole.Leader) this.stats.followerReadsAnswered++;
    }
  }

  private persist(node: SimNode, rd: Ready): void {
    const storage = node.storage;
    const before = storage.initialState().hardState;
    this.checker.observeReadySync(node.id, {
      entries: rd.entries.length,
      snapshot: rd.snapshot !== undefined,
      termOrVoteChanged:
        rd.hardState !== undefined &&
        (rd.hardState.term !== before.term || rd.hardState.vote !== before.vote),
      mustSync: rd.mustSync,
    });
    if (rd.snapshot) storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) {
      storage.append(rd.entries);
      const first = storage.firstIndex();
      let prevTerm: number | undefined;
      for (const e of rd.entries) {
        if (e.index < first) continue; // already folded into the snapshot; storage skips it too
        if (prevTerm === undefined) prevTerm = storage.term(e.index - 1);
        this.checker.observePersistedEntry(node.id, e, prevTerm);
        prevTerm = e.term;
      }
    }
    if (rd.hardState) {
      storage.setHardState(rd.hardState);
      this.checker.observeDurableCommit(node.id, rd.hardState.commit);
      this.maxCommitKnown = Math.max(this.maxCommitKnown, rd.hardState.commit);
    }
  }

  /**
   * A removed node keeps running, and its messages still reach the nodes that have not
   * applied its removal: until they do, they may need its vote (in a 2-voter cluster, the
   * survivor needs the removed node's vote to elect itself under the old configuration).
   * etcd stops a removed member shortly after it applies its removal, or when a peer that
   * applied it answers "removed"; either can leave the survivors without a quorum forever,
   * a hazard of that membership layer, not of Raft, so the simulator does not reproduce it.
   * Nodes that applied the removal ignore the removed node, as etcd's transport does.
   */
  private onConfChangeApplied(node: SimNode, cc: ConfChange, index: number): void {
    if (this.trace) this.log(`  ${node.id} applies ${ConfChangeType[cc.type]} ${cc.nodeId}`);
    if (cc.type === ConfChangeType.RemoveNode) {
      if (!this.removed.has(cc.nodeId)) this.removed.set(cc.nodeId, index);
      if (cc.nodeId === node.id && node.raw?.status().role === StateRole.Leader) this.stats.leaderRemovals++;
      return;
    }
    this.ensureNodeExists(cc.nodeId);
  }

  /** Has `receiver` applied the removal of `peer`? */
  private knowsRemoved(receiver: SimNode, peer: NodeId): boolean {
    const at = this.removed.get(peer);
    return at !== undefined && (receiver.app?.appliedIndex ?? 0) >= at;
  }

  /** A snapshot may be the first a node hears of members added while it was away. */
  private noteConfMembers(cs: ConfState): void {
    for (const id of [...cs.voters, ...cs.learners]) this.ensureNodeExists(id);
  }

  /**
   * Starts the process for a newly added member, as an operator would once the configuration
   * change committed: an empty storage, learning everything from the leader.
   */
  private ensureNodeExists(id: NodeId): void {
    if (this.nodes.has(id)) return;
    if (this.removed.has(id)) throw new Error(`node ${id} was re-added after its removal was applied`);
    const node = new SimNode(id, new MemoryStorage());
    this.nodes.set(id, node);
    this.start(node);
    this.log(`join ${id}: started with an empty log`);
  }

  // --- the network -----------------------------------------------------------------------

  deliverDue(): number {
    const batch = this.network.takeDue(this.now);
    for (const d of batch) this.deliver(d);
    return batch.length;
  }

  deliverOneDue(): boolean {
    const d = this.network.takeOneDue(this.now);
    if (d) this.deliver(d);
    return d !== undefined;
  }

  deliverAll(): number {
    const batch = this.network.takeAll();
    for (const d of batch) this.deliver(d);
    return batch.length;
  }

  private deliver(d: Delivery<Message>): void {
    const m = d.message;
    const sender = this.nodes.get(m.from);
    const receiver = this.nodes.get(m.to);
    const why = d.lost
      ? "link cut"
      : !receiver
        ? "no such node"
        : !receiver.raw
          ? "receiver down"
          : this.knowsRemoved(receiver, m.from)
            ? "sender was removed"
            : undefined;
    if (why !== undefined) {
      this.stats.lostInNetwork++;
      if (this.trace) this.log(`lose ${describeMessage(m)} (${why})`);
      if (sender?.raw) {
        if (m.type === MessageType.MsgSnap) sender.raw.reportSnapshot(m.to, false);
        else if (d.lost && this.rng.chance(0.3)) sender.raw.reportUnreachable(m.to);
        this.touched.add(m.from);
      }
      return;
    }
    const raw = receiver!.raw!;
    this.stats.delivered++;
    if (m.type === MessageType.MsgTimeoutNow) this.stats.timeoutNowDelivered++;
    if (this.trace) this.log(`deliver ${describeMessage(m)}`);
    try {
      // Through the wire codec, as a real transport does: the receiver gets its own copy (no
      // entry or snapshot object is ever shared between two nodes) and the codec is exercised
      // on every message the protocol produces.
      raw.step(decodeMessage(encodeMessage(m)));
    } catch (err) {
      // A forwarded proposal the receiver cannot take is lost, like any dropped message.
      if (!(err instanceof ProposalDroppedError)) throw err;
      if (this.trace) this.log(`  ${m.to} drops forwarded proposal: ${err.reason}`);
    }
    this.touched.add(m.to);
    if (m.type === MessageType.MsgSnap && sender?.raw) {
      sender.raw.reportSnapshot(m.to, true);
      this.touched.add(m.from);
    }
  }

  // --- time ------------------------------------------------------------------------------

  tick(id: NodeId): void {
    const raw = this.nodes.get(id)?.raw;
    if (!raw) return;
    raw.tick();
    this.touched.add(id);
  }

  /** Ticks one node only: its clock runs ahead of the others'. */
  tickOne(id: NodeId): void {
    this.tick(id);
    this.log(`tick ${id} alone`);
  }

  tickAll(): void {
    for (const n of this.upNodes()) this.tick(n.id);
    this.stats.ticks++;
    this.log("tick");
  }

  // --- client operations -----------------------------------------------------------------

  propose(id: NodeId): ProposalOutcome {
    const raw = this.mustGet(id).raw;
    if (!raw) return { accepted: false, reason: "node down" };
    const pid = this.nextProposalId++;
    const data = proposalData(pid, `k${this.rng.int(6)}`, `v${pid}`);
    this.checker.observeProposal(data);
    this.touched.add(id);
    try {
      raw.propose(data);
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      this.stats.proposalsDropped++;
      this.log(`propose p${pid} at ${id}: dropped (${err.reason})`);
      return { accepted: false, reason: err.reason };
    }
    this.stats.proposalsAccepted++;
    this.log(`propose p${pid} at ${id}: accepted`);
    return { accepted: true, data };
  }

  /** Issues a ReadIndex request at `id`; returns its context, or undefined if refused. */
  readIndex(id: NodeId): string | undefined {
    const raw = this.mustGet(id).raw;
    if (!raw) return undefined;
    const ctx = `r${this.nextReadId++}`;
    // Everything any node knows to be committed right now must be visible to this read.
    const bound = Math.max(this.maxCommitKnown, this.checker.highestApplied);
    this.checker.observeReadStarted(ctx, bound);
    this.touched.add(id);
    try {
      raw.readIndex(encoder.encode(ctx));
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      this.log(`read ${ctx} at ${id}: refused (${err.reason})`);
      return undefined;
    }
    this.reads.set(ctx, false);
    this.log(`read ${ctx} at ${id}: must see index >= ${bound}`);
    return ctx;
  }

  transferLeader(id: NodeId, to: NodeId): void {
    const raw = this.mustGet(id).raw;
    if (!raw) return;
    this.log(`transfer leadership at ${id} to ${to}`);
    raw.transferLeader(to);
    this.touched.add(id);
  }

  campaign(id: NodeId): void {
    const raw = this.mustGet(id).raw;
    if (!raw) return;
    this.log(`campaign ${id}`);
    raw.campaign();
    this.touched.add(id);
  }

  /**
   * Snapshots `id`'s state machine at its applied index and compacts its log, keeping the
   * last `keep` entries for followers that are only a little behind.
   */
  compact(id: NodeId, keep: number): boolean {
    const node = this.mustGet(id);
    const app = node.app;
    if (!app) return false;
    const applied = app.appliedIndex;
    const storage = node.storage;
    if (applied <= storage.snapshot().metadata.index) return false;
    storage.createSnapshot(applied, node.appConfState, app.snapshotData());
    const compactTo = applied - keep;
    if (compactTo >= storage.firstIndex()) storage.compact(compactTo);
    this.stats.compactions++;
    this.log(`compact ${id}: snapshot at ${applied}, log now starts at ${storage.firstIndex()}`);
    return true;
  }

  /** A membership change proposed straight to a leader (never forwarded: see schedule.ts). */
  proposeConfChange(id: NodeId, type: ConfChangeType, target: NodeId): ProposalOutcome {
    const raw = this.mustGet(id).raw;
    if (!raw) return { accepted: false, reason: "node down" };
    // The context makes every request unique, so "no entry committed twice" covers them too.
    const cc: ConfChange = { type, nodeId: target, context: encoder.encode(`c${this.nextProposalId++}`) };
    const data = encodeConfChange(cc);
    this.checker.observeProposal(data);
    this.touched.add(id);
    try {
      raw.proposeConfChange(cc);
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
      this.log(`propose ${ConfChangeType[type]} ${target} at ${id}: dropped (${err.reason})`);
      return { accepted: false, reason: err.reason };
    }
    this.log(`propose ${ConfChangeType[type]} ${target} at ${id}: accepted`);
    return { accepted: true, data };
  }

  allocateNodeId(): NodeId {
    return simNodeId(this.nextNodeOrdinal++);
  }

  // --- observation -----------------------------------------------------------------------

  status(id: NodeId): Status | undefined {
    return this.nodes.get(id)?.raw?.status();
  }

  /** Runs the per-step checks on every node the step touched. */
  endStep(): void {
    this.stats.steps++;
    this.now++;
    for (const id of this.touched) {
      const node = this.nodes.get(id);
      if (node?.raw) this.observeStatus(node, node.raw.status());
    }
    this.touched.clear();
  }

  private observeStatus(node: SimNode, s: Status): void {
    this.checker.observeRole(node.id, s.term, s.role);
    this.checker.observeLiveCommit(node.id, s.commit, s.term);
    if (s.commit > this.maxCommitKnown) this.maxCommitKnown = s.commit;
    if (s.term > this.stats.maxTerm) this.stats.maxTerm = s.term;
    if (s.role === StateRole.Leader) {
      const key = `${s.term}/${node.id}`;
      if (!this.leadersSeen.has(key)) {
        this.leadersSeen.add(key);
        this.stats.leadersElected++;
        this.log(`${node.id} is leader of term ${s.term}`);
      }
    }
  }

  /** A leader every running member follows, or undefined. */
  agreedLeader(): NodeId | undefined {
    let leader: Status | undefined;
    const statuses: Status[] = [];
    for (const n of this.members()) {
      const s = n.raw?.status();
      if (!s) continue;
      statuses.push(s);
      if (s.role === StateRole.Leader && (!leader || s.term > leader.term)) leader = s;
    }
    if (!leader) return undefined;
    const cs = leader.confState;
    const inConfig = new Set([...cs.voters, ...cs.learners]);
    for (const s of statuses) {
      if (!inConfig.has(s.id)) continue;
      if (s.lead !== leader.id || s.term !== leader.term) return undefined;
    }
    return leader.id;
  }

  describeNodes(): string[] {
    const lines: string[] = [];
    for (const n of this.nodes.values()) {
      const st = n.storage;
      const hs = st.initialState().hardState;
      const disk = `disk: snap ${st.firstIndex() - 1} log ..${st.lastIndex()} hs t${hs.term}/v${hs.vote}/c${hs.commit}`;
      const s = n.raw?.status();
      if (!s) {
        lines.push(`node ${n.id}: down; ${disk}`);
        continue;
      }
      lines.push(
        `node ${n.id}: ${roleName(s.role)} t${s.term} lead=${s.lead} commit=${s.commit} applied=${n.app?.appliedIndex} ` +
          `voters=[${s.confState.voters}] learners=[${s.confState.learners}]` +
          `${s.leadTransferee !== NONE ? ` transferring to ${s.leadTransferee}` : ""}; ${disk}`,
      );
    }
    return lines;
  }

  /** For the quiet phase: has a proposal with this data been applied anywhere? */
  committedIndexOf(data: Uint8Array): number {
    return this.checker.committedIndexOf(data);
  }

  /** "p17" for a proposal's data: the label traces use for it. */
  proposalLabel(data: Uint8Array): string {
    return dataKey(data).split(" ")[0];
  }
}

function logView(node: SimNode): LogView {
  const st = node.storage;
  return { snapshotIndex: st.firstIndex() - 1, lastIndex: st.lastIndex(), termAt: (i) => st.term(i) };
}

function cloneConf(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}
