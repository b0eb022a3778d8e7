import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProposalDroppedError } from "./errors.js";
import { Network, utf8 } from "./testing/network.js";
import { MessageType, NONE, StateRole } from "./types.js";

describe("leadership transfer", () => {
  test("to an up-to-date follower: MsgTimeoutNow at once, and it wins without waiting for a timeout", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    const term = net.raft(1).term;
    const mark = net.delivered.length;
    net.node(1).rn.transferLeader(2);
    net.stabilize();
    const sent = net.delivered.slice(mark);
    assert.equal(sent[0].type, MessageType.MsgTimeoutNow);
    assert.equal(sent[0].to, 2);
    assert.deepEqual(net.leaders(), [2]);
    assert.equal(net.raft(2).term, term + 1);
    for (const id of [1, 2, 3]) assert.equal(net.raft(id).lead, 2);
    net.propose(2, "after");
    assert.deepEqual(net.appliedText(1), ["after"]);
  });

  test("to a lagging follower: the leader first catches it up, then sends MsgTimeoutNow", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    for (const d of ["a", "b"]) net.propose(1, d);
    net.recover();
    net.node(1).rn.transferLeader(3);
    const rd = net.flush(1);
    assert.ok(rd.some((m) => m.type === MessageType.MsgApp && m.to === 3));
    assert.ok(!rd.some((m) => m.type === MessageType.MsgTimeoutNow));
    net.send(rd);
    assert.deepEqual(net.leaders(), [3]);
    assert.deepEqual(net.appliedText(3), ["a", "b"]);
  });

  test("proposals are refused while a transfer is under way", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    net.node(1).rn.transferLeader(3);
    assert.equal(net.node(1).rn.status().leadTransferee, 3);
    assert.throws(
      () => net.node(1).rn.propose(utf8("x")),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "leadership transfer in progress",
    );
  });

  test("a transfer that does not finish within an election timeout is aborted", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    net.node(1).rn.transferLeader(3);
    net.stabilize();
    for (let i = 0; i < net.raft(1).electionTimeout; i++) {
      net.tick(1);
      net.stabilize();
    }
    assert.equal(net.raft(1).leadTransferee, NONE);
    assert.equal(net.raft(1).state, StateRole.Leader);
    net.node(1).rn.propose(utf8("accepted again"));
  });

  test("a follower forwards the request to the leader", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.node(3).rn.transferLeader(3);
    net.stabilize();
    assert.deepEqual(net.leaders(), [3]);
  });

  test("transfer to the leader itself or to a learner is ignored; a repeat is idempotent", () => {
    const net = new Network([1, 2, 3], { learners: [4] });
    net.campaign(1);
    net.node(1).rn.transferLeader(1);
    assert.equal(net.raft(1).leadTransferee, NONE);
    net.node(1).rn.transferLeader(4);
    assert.equal(net.raft(1).leadTransferee, NONE);
    net.isolate(2);
    net.node(1).rn.transferLeader(2);
    net.node(1).rn.transferLeader(2);
    assert.equal(net.raft(1).leadTransferee, 2);
    assert.equal(net.flush(1).filter((m) => m.type === MessageType.MsgTimeoutNow).length, 1);
    // A new target replaces the old one.
    net.recover();
    net.node(1).rn.transferLeader(3);
    net.stabilize();
    assert.deepEqual(net.leaders(), [3]);
  });

  test("the transferee's campaign wins even against voters holding a leader lease", () => {
    const net = new Network([1, 2, 3], { checkQuorum: true, preVote: true });
    net.campaign(1);
    net.tickAll(2);
    // 3 heard from leader 1 just now: an ordinary vote request would be ignored.
    net.node(1).rn.transferLeader(2);
    net.stabilize();
    assert.deepEqual(net.leaders(), [2]);
  });

  test("removing the transferee aborts the transfer", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    net.node(1).rn.transferLeader(3);
    net.raft(1).applyConfChange({ type: 1, nodeId: 3, context: new Uint8Array(0) });
    assert.equal(net.raft(1).leadTransferee, NONE);
  });
});
