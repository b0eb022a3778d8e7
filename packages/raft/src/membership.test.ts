import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeConfChange } from "./codec.js";
import { ProposalDroppedError, RaftError } from "./errors.js";
import { MemoryStorage } from "./storage.js";
import { message, Network, newTestRaft, persist, takeMessages, utf8 } from "./testing/network.js";
import { type ConfChange, ConfChangeType, EntryType, MessageType, StateRole } from "./types.js";

const cc = (type: ConfChangeType, nodeId: number): ConfChange => ({
  type,
  nodeId,
  context: new Uint8Array(0),
});

function changeMembership(net: Network, leader: number, change: ConfChange): void {
  net.node(leader).rn.proposeConfChange(change);
  net.stabilize();
}

describe("learners", () => {
  test("a learner added to the cluster receives the log", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, "before");
    changeMembership(net, 1, cc(ConfChangeType.AddLearnerNode, 4));
    assert.deepEqual(net.node(1).rn.status().confState, { voters: [1, 2, 3], learners: [4] });
    net.addNode(4, new MemoryStorage());
    net.propose(1, "after");
    net.tickAll(3);
    assert.deepEqual(net.appliedText(4), ["before", "after"]);
    assert.equal(net.node(1).rn.status().progress.get(4)?.isLearner, true);
    assert.equal(net.raft(4).isLearner, true);
  });

  test("a learner never campaigns and is not counted for commit", () => {
    const net = new Network([1, 2, 3], { learners: [4] });
    net.tickAll(1);
    for (let i = 0; i < 50; i++) net.tick(4);
    net.stabilize();
    assert.equal(net.raft(4).state, StateRole.Follower);
    assert.equal(net.raft(4).term, 0);
    net.campaign(1);
    net.isolate(2);
    net.isolate(3);
    net.cut(1, 4);
    net.recover();
    net.cut(1, 2);
    net.cut(1, 3);
    // Only the learner can hear the leader: nothing commits.
    const commit = net.raft(1).log.committed;
    net.propose(1, "x");
    assert.equal(net.raft(1).log.committed, commit);
    assert.equal(net.raft(4).log.lastIndex(), net.raft(1).log.lastIndex(), "the learner has the entry");
  });

  test("a learner's vote does not count toward an election", () => {
    const r = newTestRaft(1, [1, 2, 3], { learners: [4] });
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    const msgs = takeMessages(r);
    assert.deepEqual(
      msgs.map((m) => m.to),
      [2, 3],
      "no vote request to the learner",
    );
    r.step(message({ type: MessageType.MsgVoteResp, from: 4, to: 1, term: 1 }));
    assert.equal(r.state, StateRole.Candidate);
    r.step(message({ type: MessageType.MsgVoteResp, from: 2, to: 1, term: 1 }));
    assert.equal(r.state, StateRole.Leader);
  });

  test("promoting a learner (AddNode) makes it a voter that counts in quorums", () => {
    const net = new Network([1, 2], { learners: [3] });
    net.campaign(1);
    changeMembership(net, 1, cc(ConfChangeType.AddNode, 3));
    for (const id of [1, 2, 3])
      assert.deepEqual(net.node(id).rn.status().confState, { voters: [1, 2, 3], learners: [] });
    assert.equal(net.raft(3).isLearner, false);
    // With 2 cut off, the promoted voter 3 makes the quorum.
    net.isolate(2);
    net.propose(1, "with-3");
    assert.deepEqual(net.appliedText(3), ["with-3"]);
    assert.deepEqual(net.appliedText(1), ["with-3"]);
  });
});

describe("voters", () => {
  test("adding a voter raises the quorum", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    changeMembership(net, 1, cc(ConfChangeType.AddNode, 4));
    net.addNode(4, new MemoryStorage());
    net.tickAll(2);
    // 4 voters: a quorum is 3, so 1 and 2 alone no longer commit.
    net.isolate(3);
    net.isolate(4);
    net.cut(3, 4);
    const commit = net.raft(1).log.committed;
    net.propose(1, "needs-three");
    assert.equal(net.raft(1).log.committed, commit);
    net.recover();
    net.tickAll(2);
    assert.deepEqual(net.appliedText(4), ["needs-three"]);
  });

  test("removing a voter lowers the quorum, and can commit what was waiting", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    changeMembership(net, 1, cc(ConfChangeType.RemoveNode, 3));
    assert.deepEqual(net.node(1).rn.status().confState.voters, [1, 2]);
    net.isolate(2);
    // Leader and 2 form the quorum of two; with 2 cut off nothing commits.
    const commit = net.raft(1).log.committed;
    net.propose(1, "x");
    assert.equal(net.raft(1).log.committed, commit);
    assert.equal(net.node(1).rn.status().progress.has(3), false);
  });

  test("a leader that removes itself hands over with MsgTimeoutNow and steps down", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.propose(1, "x");
    const mark = net.delivered.length;
    changeMembership(net, 1, cc(ConfChangeType.RemoveNode, 1));
    const timeoutNow = net.delivered.slice(mark).filter((m) => m.type === MessageType.MsgTimeoutNow);
    assert.equal(timeoutNow.length, 1);
    assert.equal(timeoutNow[0].from, 1);
    // The chosen voter won at once, without any tick.
    const newLeader = timeoutNow[0].to;
    assert.equal(net.raft(newLeader).state, StateRole.Leader);
    // The old leader learns of the higher term at its next heartbeat and steps down.
    net.tickAll(1);
    const leaders = net.leaders();
    assert.deepEqual(leaders, [newLeader]);
    // The removed node does not campaign.
    for (let i = 0; i < 50; i++) net.tick(1);
    net.stabilize();
    assert.equal(net.raft(1).state, StateRole.Follower);
    net.propose(leaders[0], "y");
    assert.deepEqual(net.appliedText(leaders[0] === 2 ? 3 : 2), ["x", "y"]);
  });

  test("the last voter cannot be removed", () => {
    const net = new Network([1]);
    net.campaign(1);
    assert.throws(() => net.node(1).rn.proposeConfChange(cc(ConfChangeType.RemoveNode, 1)), RaftError);
    assert.throws(() => net.raft(1).applyConfChange(cc(ConfChangeType.RemoveNode, 1)), RaftError);
  });

  test("applying the same change twice is harmless (bootstrap entries are re-applied)", () => {
    const r = newTestRaft(1, [1, 2, 3]);
    const before = r.trk.confState();
    r.applyConfChange(cc(ConfChangeType.AddNode, 2));
    r.applyConfChange(cc(ConfChangeType.RemoveNode, 9));
    assert.deepEqual(r.trk.confState(), before);
  });
});

describe("one change at a time", () => {
  test("a second conf change is refused while the first is not applied", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(1);
    net.node(1).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 4));
    assert.throws(
      () => net.node(1).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 5)),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "conf change pending",
    );
    // Ordinary proposals are still fine.
    net.node(1).rn.propose(utf8("ok"));
    net.recover();
    net.stabilize();
    net.tickAll(2);
    net.node(1).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 5));
    net.stabilize();
    assert.deepEqual(net.node(1).rn.status().confState.learners, [4, 5]);
  });

  test("a new leader accepts a conf change only after applying an entry of its own term", () => {
    const r = newTestRaft(1, [1, 2, 3]);
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2, to: 1, term: 1 }));
    const prop = message({
      type: MessageType.MsgProp,
      from: 1,
      entries: [
        {
          index: 0,
          term: 0,
          type: EntryType.ConfChange,
          data: encodeConfChange(cc(ConfChangeType.AddNode, 4)),
        },
      ],
    });
    assert.throws(() => r.step(prop), ProposalDroppedError);
    persist(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2, to: 1, term: 1, index: 1 }));
    assert.equal(r.log.committed, 1);
    // Committed but not applied yet: still refused.
    assert.throws(() => r.step(prop), ProposalDroppedError);
    r.log.appliedTo(1);
    r.step(prop);
    assert.equal(r.log.lastIndex(), 2);
  });

  test("a node with a committed but unapplied conf change does not campaign", () => {
    const r = newTestRaft(1, [1, 2, 3]);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2,
        to: 1,
        term: 1,
        index: 0,
        logTerm: 0,
        commit: 1,
        entries: [
          {
            index: 1,
            term: 1,
            type: EntryType.ConfChange,
            data: encodeConfChange(cc(ConfChangeType.RemoveNode, 3)),
          },
        ],
      }),
    );
    assert.equal(r.log.committed, 1);
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    assert.equal(r.state, StateRole.Follower);
    r.log.appliedTo(1);
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    assert.equal(r.state, StateRole.Candidate);
  });

  test("a forwarded conf change the leader cannot take is dropped, not applied later", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(1);
    net.node(1).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 4));
    net.recover();
    net.node(2).rn.proposeConfChange(cc(ConfChangeType.AddLearnerNode, 5));
    net.stabilize();
    net.tickAll(3);
    assert.deepEqual(net.node(1).rn.status().confState.learners, [4]);
  });
});
