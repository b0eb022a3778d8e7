import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeConfChange } from "./codec.js";
import { ProposalDroppedError, RaftError } from "./errors.js";
import { MemoryStorage } from "./storage.js";
import { message, Network, newTestRaft, persist, takeMessages, utf8 } from "./testing/network.js";
import { type ConfChange, ConfChangeType, EntryType, MessageType, StateRole } from "./types.js";

const cc = (type: ConfChangeType, nodeId: bigint): ConfChange => ({
  type,
  nodeId,
  context: new Uint8Array(0),
});

function changeMembership(net: Network, leader: bigint, change: ConfChange): void {
  net.node(leader).rn.proposeConfChange(change);
  net.stabilize();
}

describe("learners", () => {
  test("a learner added to the cluster receives the log", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(1n, "before");
    changeMembership(net, 1n, cc(ConfChangeType.AddLearnerNode, 4n));
    assert.deepEqual(net.node(1n).rn.status().confState, { voters: [1n, 2n, 3n], learners: [4n] });
    net.addNode(4n, new MemoryStorage());
    net.propose(1n, "after");
    net.tickAll(3);
    assert.deepEqual(net.appliedText(4n), ["before", "after"]);
    assert.equal(net.node(1n).rn.status().progress.get(4n)?.isLearner, true);
    assert.equal(net.raft(4n).isLearner, true);
  });

  test("a learner never campaigns and is not counted for commit", () => {
    const net = new Network([1n, 2n, 3n], { learners: [4n] });
    net.tickAll(1);
    for (let i = 0; i < 50; i++) net.tick(4n);
    net.stabilize();
    assert.equal(net.raft(4n).state, StateRole.Follower);
    assert.equal(net.raft(4n).term, 0);
    net.campaign(1n);
    net.isolate(2n);
    net.isolate(3n);
    net.cut(1n, 4n);
    net.recover();
    net.cut(1n, 2n);
    net.cut(1n, 3n);
    // Only the learner can hear the leader: nothing commits.
    const commit = net.raft(1n).log.committed;
    net.propose(1n, "x");
    assert.equal(net.raft(1n).log.committed, commit);
    assert.equal(net.raft(4n).log.lastIndex(), net.raft(1n).log.lastIndex(), "the learner has the entry");
  });

  test("a learner's vote does not count toward an election", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { learners: [4n] });
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    const msgs = takeMessages(r);
    assert.deepEqual(
      msgs.map((m) => m.to),
      [2n, 3n],
      "no vote request to the learner",
    );
    r.step(message({ type: MessageType.MsgVoteResp, from: 4n, to: 1n, term: 1 }));
    assert.equal(r.state, StateRole.Candidate);
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    assert.equal(r.state, StateRole.Leader);
  });

  test("promoting a learner (AddNode) makes it a voter that counts in quorums", () => {
    const net = new Network([1n, 2n], { learners: [3n] });
    net.campaign(1n);
    changeMembership(net, 1n, cc(ConfChangeType.AddNode, 3n));
    for (const id of [1n, 2n, 3n])
      assert.deepEqual(net.node(id).rn.status().confState, { voters: [1n, 2n, 3n], learners: [] });
    assert.equal(net.raft(3n).isLearner, false);
    // With 2 cut off, the promoted voter 3 makes the quorum.
    net.isolate(2n);
    net.propose(1n, "with-3");
    assert.deepEqual(net.appliedText(3n), ["with-3"]);
    assert.deepEqual(net.appliedText(1n), ["with-3"]);
  });
});

describe("voters", () => {
  test("adding a voter raises the quorum", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    changeMembership(net, 1n, cc(ConfChangeType.AddNode, 4n));
    net.addNode(4n, new MemoryStorage());
    net.tickAll(2);
    // 4 voters: a quorum is 3, so 1 and 2 alone no longer commit.
    net.isolate(3n);
    net.isolate(4n);
    net.cut(3n, 4n);
    const commit = net.raft(1n).log.committed;
    net.propose(1n, "needs-three");
    assert.equal(net.raft(1n).log.committed, commit);
    net.recover();
    net.tickAll(2);
    assert.deepEqual(net.appliedText(4n), ["needs-three"]);
  });

  test("removing a voter lowers the quorum, and can commit what was waiting", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    changeMembership(net, 1n, cc(ConfChangeType.RemoveNode, 3n));
    assert.deepEqual(net.node(1n).rn.status().confState.voters, [1n, 2n]);
    net.isolate(2n);
    // Leader and 2 form the quorum of two; with 2 cut off nothing commits.
    const commit = net.raft(1n).log.committed;
    net.propose(1n, "x");
    assert.equal(net.raft(1n).log.committed, commit);
    assert.equal(net.node(1n).rn.status().progress.has(3n), false);
  });

  test("a leader that removes itself hands over with MsgTimeoutNow and steps down", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(1n, "x");
    const mark = net.delivered.length;
    changeMembership(net, 1n, cc(ConfChangeType.RemoveNode, 1n));
    const timeoutNow = net.delivered.slice(mark).filter((m) => m.type === MessageType.MsgTimeoutNow);
    assert.equal(timeoutNow.length, 1);
    assert.equal(timeoutNow[0].from, 1n);
    // The chosen voter won at once, without any tick.
    const newLeader = timeoutNow[0].to;
    assert.equal(net.raft(newLeader).state, StateRole.Leader);
    // The old leader learns of the higher term at its next heartbeat and steps down.
    net.tickAll(1);
    const leaders = net.leaders();
    assert.deepEqual(leaders, [newLeader]);
    // The removed node does not campaign.
    for (let i = 0; i < 50; i++) net.tick(1n);
    net.stabilize();
    assert.equal(net.raft(1n).state, StateRole.Follower);
    net.propose(leaders[0], "y");
    assert.deepEqual(net.appliedText(leaders[0] === 2n ? 3n : 2n), ["x", "y"]);
  });

  test("the last voter cannot be removed", () => {
    const net = new Network([1n]);
    net.campaign(1n);
    assert.throws(() => net.node(1n).rn.proposeConfChange(cc(ConfChangeType.RemoveNode, 1n)), RaftError);
    assert.throws(() => net.raft(1n).applyConfChange(cc(ConfChangeType.RemoveNode, 1n)), RaftError);
  });

  test("applying the same change twice is harmless (bootstrap entries are re-applied)", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    const before = r.trk.confState();
    r.applyConfChange(cc(ConfChangeType.AddNode, 2n));
    r.applyConfChange(cc(ConfChangeType.RemoveNode, 9n));
    assert.deepEqual(r.trk.confState(), before);
  });
});

describe("one change at a time", () => {
  test("a second conf change is refused while the first is not applied", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(1n);
    net.node(1n).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 4n));
    assert.throws(
      () => net.node(1n).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 5n)),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "conf change pending",
    );
    // Ordinary proposals are still fine.
    net.node(1n).rn.propose(utf8("ok"));
    net.recover();
    net.stabilize();
    net.tickAll(2);
    net.node(1n).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 5n));
    net.stabilize();
    assert.deepEqual(net.node(1n).rn.status().confState.learners, [4n, 5n]);
  });

  test("a new leader accepts a conf change only after applying an entry of its own term", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    const prop = message({
      type: MessageType.MsgProp,
      from: 1n,
      entries: [
        {
          index: 0,
          term: 0,
          type: EntryType.ConfChange,
          data: encodeConfChange(cc(ConfChangeType.AddNode, 4n)),
        },
      ],
    });
    assert.throws(() => r.step(prop), ProposalDroppedError);
    persist(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 1, index: 1 }));
    assert.equal(r.log.committed, 1);
    // Committed but not applied yet: still refused.
    assert.throws(() => r.step(prop), ProposalDroppedError);
    r.log.appliedTo(1);
    r.step(prop);
    assert.equal(r.log.lastIndex(), 2);
  });

  test("a node with a committed but unapplied conf change does not campaign", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 1,
        index: 0,
        logTerm: 0,
        commit: 1,
        entries: [
          {
            index: 1,
            term: 1,
            type: EntryType.ConfChange,
            data: encodeConfChange(cc(ConfChangeType.RemoveNode, 3n)),
          },
        ],
      }),
    );
    assert.equal(r.log.committed, 1);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    assert.equal(r.state, StateRole.Follower);
    r.log.appliedTo(1);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    assert.equal(r.state, StateRole.Candidate);
  });

  test("a forwarded conf change the leader cannot take is dropped, not applied later", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(1n);
    net.node(1n).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 4n));
    net.recover();
    net.node(2n).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 5n));
    net.stabilize();
    net.tickAll(3);
    assert.deepEqual(net.node(1n).rn.status().confState.learners, [4n]);
  });
});
