import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeConfChange } from "./codec.js";
import { ProposalDroppedError } from "./errors.js";
import { RawNode } from "./raw-node.js";
import { seededRandom } from "./sim/prng.js";
import { bootstrapStorage, MemoryStorage } from "./storage.js";
import { Network, text, utf8 } from "./testing/network.js";
import { ConfChangeType, EntryType, MessageType, StateRole } from "./types.js";

describe("RawNode", () => {
  test("a single node elects itself and commits a proposal after its own append is persisted", () => {
    const storage = bootstrapStorage([1n]);
    const rn = new RawNode({ id: 1n, storage, electionTick: 10, heartbeatTick: 1, random: seededRandom(1) });
    // The bootstrap entries come out first, as committed entries to apply.
    let rd = rn.ready();
    assert.deepEqual(
      rd.committedEntries.map((e) => decodeConfChange(e.data).nodeId),
      [1n],
    );
    rn.applyConfChange(decodeConfChange(rd.committedEntries[0].data));
    rn.advance(rd);
    rn.campaign();
    rd = rn.ready();
    assert.equal(rd.softState?.role, StateRole.Leader);
    assert.equal(rd.hardState?.term, 2);
    assert.equal(rd.hardState?.vote, 1n);
    assert.equal(rd.mustSync, true);
    assert.deepEqual(
      rd.entries.map((e) => [e.index, e.term]),
      [[2, 2]],
    );
    // Not committed until the leader's own append is persisted.
    assert.equal(rd.committedEntries.length, 0);
    storage.append(rd.entries);
    storage.setHardState(rd.hardState!);
    rn.advance(rd);
    rd = rn.ready();
    assert.deepEqual(
      rd.committedEntries.map((e) => e.index),
      [2],
    );
    rn.advance(rd);
    rn.propose(utf8("x"));
    rd = rn.ready();
    assert.equal(rd.entries.length, 1);
    assert.equal(rd.committedEntries.length, 0);
    storage.append(rd.entries);
    rn.advance(rd);
    rd = rn.ready();
    assert.equal(text(rd.committedEntries[0].data), "x");
    rn.advance(rd);
    assert.equal(rn.hasReady(), false);
    assert.equal(rn.status().applied, 3);
  });

  test("Ready: a follower's acknowledgement travels with the entries it promises are persisted", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.node(1n).rn.propose(utf8("p"));
    const app = net.flush(1n).find((m) => m.type === MessageType.MsgApp && m.to === 2n)!;
    net.deliver(app);
    const rn2 = net.node(2n).rn;
    const rd = rn2.ready();
    assert.equal(rd.entries.length, 1);
    assert.equal(rd.mustSync, true);
    assert.deepEqual(
      rd.messages.map((m) => [m.type, m.index]),
      [[MessageType.MsgAppResp, rd.entries[0].index]],
    );
    // Handed out once: a second ready() before advance() does not repeat them.
    assert.equal(rn2.ready().entries.length, 0);
    rn2.advance(rd);
  });

  test("Ready: a commit-only hard state change does not need a sync; a new term or vote does", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.node(1n).rn.propose(utf8("p"));
    for (const m of net.flush(1n)) net.deliver(m);
    net.flush(2n);
    for (const m of net.flush(3n)) net.deliver(m);
    // The leader's commit advanced: the next heartbeat/append tells 2.
    for (const m of net.flush(1n)) if (m.to === 2n) net.deliver(m);
    const rd = net.node(2n).rn.ready();
    assert.ok(rd.hardState);
    assert.equal(rd.entries.length, 0);
    assert.equal(rd.mustSync, false);
    assert.equal(rd.committedEntries.length, 1);
    net.node(2n).rn.advance(rd);

    const fresh = new Network([1n, 2n, 3n]);
    fresh.node(1n).rn.campaign();
    const vote = fresh.node(1n).rn.ready();
    assert.equal(vote.softState?.role, StateRole.PreCandidate);
    fresh.node(2n).rn.step(vote.messages[0]);
    fresh.node(3n).rn.step(vote.messages[1]);
    fresh.node(1n).rn.advance(vote);
    // Granting a pre-vote changes nothing durable.
    assert.equal(fresh.node(2n).rn.ready().mustSync, false);
  });

  test("three nodes elect one leader and replicate to all", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    assert.deepEqual(net.leaders(), [1n]);
    net.propose(1n, "a");
    net.propose(1n, "b");
    for (const id of [1n, 2n, 3n]) assert.deepEqual(net.appliedText(id), ["a", "b"]);
    const st = net.node(1n).rn.status();
    assert.equal(st.progress.get(2n)?.state, "replicate");
    assert.equal(st.progress.get(2n)?.match, 3);
  });

  test("a follower forwards proposals to the leader", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(3n, "from-3");
    for (const id of [1n, 2n, 3n]) assert.deepEqual(net.appliedText(id), ["from-3"]);
  });

  test("proposals without a leader are refused with a reason, never silently lost", () => {
    const net = new Network([1n, 2n, 3n]);
    assert.throws(
      () => net.node(1n).rn.propose(utf8("x")),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "no leader",
    );
    assert.throws(() => net.node(1n).rn.readIndex(utf8("r")), ProposalDroppedError);
  });

  test("local-only message types from the network are ignored", () => {
    const net = new Network([1n, 2n, 3n]);
    net.node(1n).rn.step({
      type: MessageType.MsgHup,
      to: 1n,
      from: 2n,
      term: 0,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
    });
    assert.equal(net.raft(1n).state, StateRole.Follower);
    assert.equal(net.node(1n).rn.hasReady(), false);
  });

  test("a peer message without a term (other than a forwarded proposal or read) is ignored", () => {
    const net = new Network([1n, 2n, 3n]);
    const app = {
      type: MessageType.MsgApp,
      to: 1n,
      from: 2n,
      term: 0,
      logTerm: 0,
      index: 0,
      entries: [{ term: 0, index: 1, type: EntryType.Normal, data: utf8("junk") }],
      commit: 1,
      reject: false,
      rejectHint: 0,
    };
    net.node(1n).rn.step(app);
    assert.equal(net.raft(1n).log.lastIndex(), 0);
    assert.equal(net.raft(1n).lead, 0n);
  });

  test("a restarted node recovers term, vote, log and commit from storage", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(1n, "a");
    const before = net.raft(2n);
    const restarted = net.restart(2n);
    assert.equal(restarted.raft.term, before.term);
    assert.equal(restarted.raft.vote, before.vote);
    assert.equal(restarted.raft.log.lastIndex(), before.log.lastIndex());
    assert.equal(restarted.raft.log.committed, before.log.committed);
    assert.equal(restarted.raft.log.applied, before.log.applied);
    // Nothing applied is handed out again.
    assert.equal(restarted.rn.ready().committedEntries.length, 0);
  });

  test("a restart without `applied` re-delivers committed entries from the snapshot on", () => {
    const storage = bootstrapStorage([1n]);
    const rn = new RawNode({ id: 1n, storage, electionTick: 10, heartbeatTick: 1, random: seededRandom(1) });
    const rd = rn.ready();
    rn.advance(rd);
    const again = new RawNode({
      id: 1n,
      storage,
      electionTick: 10,
      heartbeatTick: 1,
      random: seededRandom(1),
    });
    const rd2 = again.ready();
    assert.deepEqual(
      rd2.committedEntries.map((e) => e.type),
      [EntryType.ConfChange],
    );
  });

  test("a joining node with an empty storage learns the configuration from the log", () => {
    const storages = [1, 2, 3].map(() => bootstrapStorage([1n, 2n, 3n]));
    const net = new Network([]);
    for (const [i, s] of storages.entries()) net.addNode(BigInt(i + 1), s);
    net.stabilize();
    net.campaign(1n);
    net
      .node(1n)
      .rn.proposeConfChange({ type: ConfChangeType.AddNode, nodeId: 4n, context: new Uint8Array(0) });
    net.stabilize();
    net.addNode(4n, new MemoryStorage());
    net.propose(1n, "after-join");
    // Heartbeats make the leader probe the new node.
    net.tickAll(3);
    assert.deepEqual(net.appliedText(4n), ["after-join"]);
    assert.deepEqual(net.node(4n).rn.status().confState.voters, [1n, 2n, 3n, 4n]);
  });
});
