// A tiny in-memory network of RawNodes for the unit tests: messages are delivered only when
// a test says so (deliver/stabilize), Readies are handled by the Ready contract (persist,
// send, apply, advance), and links can be cut. Deterministic: the PRNG is seeded.

import { decodeConfChange } from "../codec.js";
import { type Raft, type RaftConfig, Raft as RaftImpl } from "../raft.js";
import { RawNode } from "../raw-node.js";
import { seededRandom } from "../sim/prng.js";
import { MemoryStorage } from "../storage.js";
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  type MessageType,
  NONE,
  type NodeId,
  type ReadState,
  type Snapshot,
  StateRole,
} from "../types.js";

/** A MemoryStorage that starts with a given configuration and no log, like etcd's test storage. */
export class ConfiguredStorage extends MemoryStorage {
  private readonly initialConf: ConfState;
  constructor(conf: ConfState) {
    super();
    this.initialConf = conf;
  }
  override initialState(): { hardState: HardState; confState: ConfState } {
    const s = super.initialState();
    // Once a snapshot has been installed, its conf state is the truth.
    if (this.snapshot().metadata.index > 0) return s;
    return {
      hardState: s.hardState,
      confState: { voters: [...this.initialConf.voters], learners: [...this.initialConf.learners] },
    };
  }
}

/** The Raft inside a RawNode, for assertions on internal state. */
export function raftOf(rn: RawNode): Raft {
  return (rn as unknown as { raft: Raft }).raft;
}

export interface TestNode {
  id: NodeId;
  rn: RawNode;
  raft: Raft;
  storage: MemoryStorage;
  /** Data of applied Normal entries (the no-ops excluded). */
  applied: Uint8Array[];
  appliedEntries: Entry[];
  appliedSnapshots: Snapshot[];
  readStates: ReadState[];
}

export type NetworkOptions = Partial<Omit<RaftConfig, "id" | "storage">> & {
  learners?: NodeId[];
  seed?: number;
};

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  private readonly cutLinks = new Set<string>();
  private readonly droppedTypes = new Set<MessageType>();
  /** Every message delivered, in order, for assertions. */
  readonly delivered: Message[] = [];
  private readonly options: NetworkOptions;
  private seed: number;

  constructor(voters: NodeId[], options: NetworkOptions = {}) {
    this.options = options;
    this.seed = options.seed ?? 1;
    const conf: ConfState = { voters: [...voters], learners: [...(options.learners ?? [])] };
    for (const id of [...voters, ...conf.learners]) this.addNode(id, new ConfiguredStorage(conf));
  }

  /** Starts a node on `storage` (a restart when the storage holds state). */
  addNode(id: NodeId, storage: MemoryStorage = new MemoryStorage(), applied?: number): TestNode {
    const rn = new RawNode({
      electionTick: 10,
      heartbeatTick: 1,
      random: seededRandom(this.seed++ * 7919),
      ...this.options,
      id,
      storage,
      applied,
    });
    const node: TestNode = {
      id,
      rn,
      raft: raftOf(rn),
      storage,
      applied: [],
      appliedEntries: [],
      appliedSnapshots: [],
      readStates: [],
    };
    this.nodes.set(id, node);
    return node;
  }

  /** Simulates a crash and restart: the node keeps only what it persisted. */
  restart(id: NodeId): TestNode {
    const old = this.node(id);
    const applied = old.raft.log.applied;
    const node = this.addNode(id, old.storage, applied);
    node.applied = old.applied;
    node.appliedEntries = old.appliedEntries;
    return node;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** Handles every pending Ready of `id` by the contract; returns the messages to send. */
  flush(id: NodeId): Message[] {
    const node = this.node(id);
    const out: Message[] = [];
    for (let round = 0; round < 100 && node.rn.hasReady(); round++) {
      const rd = node.rn.ready();
      if (rd.snapshot) node.storage.applySnapshot(rd.snapshot);
      node.storage.append(rd.entries);
      if (rd.hardState) node.storage.setHardState(rd.hardState);
      for (const m of rd.messages) out.push(m);
      if (rd.snapshot) node.appliedSnapshots.push(rd.snapshot);
      for (const e of rd.committedEntries) {
        node.appliedEntries.push(e);
        if (e.type === EntryType.ConfChange) node.rn.applyConfChange(decodeConfChange(e.data));
        else if (e.data.length > 0) node.applied.push(e.data);
      }
      for (const rs of rd.readStates) node.readStates.push(rs);
      node.rn.advance(rd);
    }
    return out;
  }

  cut(a: NodeId, b: NodeId): void {
    this.cutLinks.add(`${a}-${b}`);
    this.cutLinks.add(`${b}-${a}`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  recover(): void {
    this.cutLinks.clear();
    this.droppedTypes.clear();
  }

  dropType(t: MessageType): void {
    this.droppedTypes.add(t);
  }

  private passes(m: Message): boolean {
    return !this.cutLinks.has(`${m.from}-${m.to}`) && !this.droppedTypes.has(m.type) && this.nodes.has(m.to);
  }

  /** Delivers one message (if its link is up) without processing the receiver's output. */
  deliver(m: Message): boolean {
    if (!this.passes(m)) return false;
    this.delivered.push(m);
    this.node(m.to).rn.step(m);
    return true;
  }

  /** Delivers `msgs` and everything they cause, until the network is quiet. */
  send(msgs: Message[], maxMessages = 100_000): void {
    const queue = msgs.slice();
    for (const id of this.nodes.keys()) for (const m of this.flush(id)) queue.push(m);
    let n = 0;
    while (queue.length > 0) {
      if (++n > maxMessages) throw new Error("network did not quiesce");
      const m = queue.shift() as Message;
      if (!this.deliver(m)) continue;
      for (const out of this.flush(m.to)) queue.push(out);
    }
  }

  stabilize(): void {
    this.send([]);
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).rn.tick();
  }

  /** Ticks every node `n` times, delivering messages after each round. */
  tickAll(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.rn.tick();
      this.stabilize();
    }
  }

  campaign(id: NodeId): void {
    this.node(id).rn.campaign();
    this.stabilize();
  }

  propose(id: NodeId, data: string): void {
    this.node(id).rn.propose(utf8(data));
    this.stabilize();
  }

  leaders(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.raft.state === StateRole.Leader).map((n) => n.id);
  }

  appliedText(id: NodeId): string[] {
    return this.node(id).applied.map(text);
  }
}

export interface TestRaftOptions extends Partial<Omit<RaftConfig, "id" | "storage">> {
  learners?: NodeId[];
  storage?: MemoryStorage;
}

/** A bare Raft (no RawNode) for message-level tests, in a configuration with no log yet. */
export function newTestRaft(id: NodeId, voters: NodeId[], options: TestRaftOptions = {}): Raft {
  const storage = options.storage ?? new ConfiguredStorage({ voters, learners: options.learners ?? [] });
  return new RaftImpl({
    electionTick: 10,
    heartbeatTick: 1,
    random: seededRandom(Number(id)),
    checkQuorum: false,
    preVote: false,
    ...options,
    id,
    storage,
  });
}

/** Takes the messages a Raft has queued. */
export function takeMessages(r: Raft): Message[] {
  r.flushPendingSends();
  const msgs = r.msgs;
  r.msgs = [];
  return msgs;
}

/** Writes a Raft's unstable entries to its MemoryStorage and acknowledges them, as advance() would. */
export function persist(r: Raft): void {
  const storage = r.log.storage as MemoryStorage;
  const snap = r.log.unstable.snapshot;
  if (snap) {
    storage.applySnapshot(snap);
    r.log.stableSnapTo(snap.metadata.index);
  }
  const ents = r.log.unstable.entries;
  if (ents.length === 0) return;
  storage.append(ents);
  const last = ents[ents.length - 1];
  r.onPersisted(last.index, last.term);
}

export function message(fields: Partial<Message> & Pick<Message, "type">): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...fields,
  };
}

export function entry(index: number, term: number, data = ""): Entry {
  return { index, term, type: EntryType.Normal, data: utf8(data) };
}

/** A MemoryStorage holding the given (index 1..n) terms, in a configuration of `voters`. */
export function storageWithTerms(voters: NodeId[], terms: number[]): ConfiguredStorage {
  const s = new ConfiguredStorage({ voters, learners: [] });
  s.append(terms.map((t, i) => entry(i + 1, t)));
  return s;
}
