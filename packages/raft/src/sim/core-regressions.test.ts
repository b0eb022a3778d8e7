// Bugs the simulator found in the Raft core, each reduced to a few explicit steps through the
// public API. The seed that first showed each one is named in its test.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  bootstrapStorage,
  ConfChangeType,
  decodeConfChange,
  EntryType,
  type MemoryStorage,
  type Message,
  MessageType,
  type NodeId,
  RawNode,
  type ReadState,
  StateRole,
} from "../mod.js";
import { Prng } from "./prng.js";

const enc = new TextEncoder();

/** A handful of RawNodes with a hand-driven message queue and the Ready contract. */
class Bench {
  readonly storages = new Map<NodeId, MemoryStorage>();
  readonly nodes = new Map<NodeId, RawNode>();
  readonly readStates: ReadState[] = [];
  queue: Message[] = [];

  constructor(voters: NodeId[]) {
    for (const id of voters) {
      this.storages.set(id, bootstrapStorage(voters));
      this.start(id);
    }
  }

  start(id: NodeId): RawNode {
    const storage = this.storages.get(id)!;
    const prng = new Prng(Number(id));
    const rn = new RawNode({
      id,
      storage,
      electionTick: 10,
      heartbeatTick: 1,
      random: () => prng.next(),
      applied: storage.snapshot().metadata.index,
    });
    this.nodes.set(id, rn);
    return rn;
  }

  node(id: NodeId): RawNode {
    return this.nodes.get(id)!;
  }

  /** Handles one Ready of `id` (persist, send, apply, advance); false if it had none. */
  handle(id: NodeId): boolean {
    const rn = this.node(id);
    if (!rn.hasReady()) return false;
    const rd = rn.ready();
    const st = this.storages.get(id)!;
    if (rd.snapshot) st.applySnapshot(rd.snapshot);
    st.append(rd.entries);
    if (rd.hardState) st.setHardState(rd.hardState);
    this.queue.push(...rd.messages);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) rn.applyConfChange(decodeConfChange(e.data));
    }
    this.readStates.push(...rd.readStates);
    rn.advance(rd);
    return true;
  }

  /** Delivers queued messages accepted by `pass` (dropping the rest) and handles Readys until quiet. */
  settle(pass: (m: Message) => boolean = () => true, rounds = 50): void {
    for (let i = 0; i < rounds; i++) {
      let busy = false;
      for (const id of this.nodes.keys()) busy = this.handle(id) || busy;
      const batch = this.queue;
      this.queue = [];
      for (const m of batch) {
        if (pass(m) && this.nodes.has(m.to)) this.node(m.to).step(m);
        busy = true;
      }
      if (!busy) return;
    }
  }

  tickAll(): void {
    for (const rn of this.nodes.values()) rn.tick();
  }

  leader(): NodeId | undefined {
    for (const [id, rn] of this.nodes) if (rn.status().role === StateRole.Leader) return id;
    return undefined;
  }
}

describe("core regressions found by the simulator", () => {
  // Seed 1351: a single voter persisted entry 3 (so it was committed: the only voter holds it)
  // and crashed before persisting commit=3. Restarted, it became leader with commit 2 and
  // answered a ReadIndex at 2 at once, before committing an entry of its term, so the read
  // could miss the write at index 3, which was committed before the read began.
  it("a restarted single voter waits for an entry of its term before answering reads", () => {
    const b = new Bench([1n]);
    b.settle(); // apply the bootstrap entry: a node with unapplied conf changes won't campaign
    b.node(1n).campaign();
    b.settle();
    assert.equal(b.node(1n).status().commit, 2);

    b.node(1n).propose(enc.encode("p1"));
    const rd = b.node(1n).ready();
    b.storages.get(1n)!.append(rd.entries);
    b.node(1n).advance(rd);
    assert.equal(b.node(1n).status().commit, 3, "the only voter persisted entry 3: it is committed");
    // Crash: the Ready that would persist commit=3 is never handled.
    b.start(1n);
    assert.equal(b.node(1n).status().commit, 2);
    b.settle();

    b.node(1n).campaign();
    assert.equal(b.node(1n).status().role, StateRole.Leader);
    b.node(1n).readIndex(enc.encode("r1"));
    b.settle();
    assert.equal(b.readStates.length, 1, "the read is answered once the leader's entry commits");
    assert.ok(b.readStates[0].index >= 3, `read index ${b.readStates[0].index} misses committed index 3`);
  });

  // Seed 308: in a 2-voter cluster {1,2} leader 1 committed its own removal (index 4) but had
  // appended more entries that voter 2 lacked. On applying the removal it sent TimeoutNow to 2
  // and stepped down at once. Voter 2, not knowing the removal committed, still needed 1's
  // vote; 1 refused it (its log was longer) and, no longer a voter, never campaigned itself:
  // no leader, ever.
  it("a leader that removes itself hands over only to a voter holding its whole log", () => {
    const b = new Bench([1n, 2n]);
    b.settle();
    b.node(1n).campaign();
    b.settle();
    assert.equal(b.leader(), 1n);

    b.node(1n).proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: 1n, context: new Uint8Array(0) });
    b.handle(1n);
    const removalIndex = b.storages.get(1n)!.lastIndex();
    // One more entry, appended before the removal commits, reaches only the leader.
    b.node(1n).propose(enc.encode("extra"));
    b.handle(1n);
    const extraIndex = removalIndex + 1;
    b.settle((m) => !(m.type === MessageType.MsgApp && m.entries.some((e) => e.index >= extraIndex)));
    assert.deepEqual(b.node(1n).status().confState.voters, [2n], "leader 1 applied its own removal");
    assert.equal(b.storages.get(1n)!.lastIndex(), extraIndex);
    assert.equal(b.storages.get(2n)!.lastIndex(), removalIndex);

    // Let the cluster run with a perfect network: a leader must emerge and voter 2 must learn
    // that the removal committed.
    for (let t = 0; t < 200 && b.node(2n).status().confState.voters.includes(1n); t++) {
      b.tickAll();
      b.settle();
    }
    const s2 = b.node(2n).status();
    assert.deepEqual(s2.confState.voters, [2n], "voter 2 never applied the removal of 1");
    assert.ok(s2.commit >= removalIndex);
    for (let t = 0; t < 50 && b.leader() !== 2n; t++) {
      b.tickAll();
      b.settle();
    }
    assert.equal(b.leader(), 2n);
  });
});
