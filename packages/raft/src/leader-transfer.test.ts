import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProposalDroppedError } from "./errors.js";
import { Network, utf8 } from "./testing/network.js";
import { MessageType, NONE, StateRole } from "./types.js";

describe("leadership transfer", () => {
  test("to an up-to-date follower: MsgTimeoutNow at once, and it wins without waiting for a timeout", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    const term = net.raft(1n).term;
    const mark = net.delivered.length;
    net.node(1n).rn.transferLeader(2n);
    net.stabilize();
    const sent = net.delivered.slice(mark);
    assert.equal(sent[0].type, MessageType.MsgTimeoutNow);
    assert.equal(sent[0].to, 2n);
    assert.deepEqual(net.leaders(), [2n]);
    assert.equal(net.raft(2n).term, term + 1);
    for (const id of [1n, 2n, 3n]) assert.equal(net.raft(id).lead, 2n);
    net.propose(2n, "after");
    assert.deepEqual(net.appliedText(1n), ["after"]);
  });

  test("to a lagging follower: the leader first catches it up, then sends MsgTimeoutNow", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    for (const d of ["a", "b"]) net.propose(1n, d);
    net.recover();
    net.node(1n).rn.transferLeader(3n);
    const rd = net.flush(1n);
    assert.ok(rd.some((m) => m.type === MessageType.MsgApp && m.to === 3n));
    assert.ok(!rd.some((m) => m.type === MessageType.MsgTimeoutNow));
    net.send(rd);
    assert.deepEqual(net.leaders(), [3n]);
    assert.deepEqual(net.appliedText(3n), ["a", "b"]);
  });

  test("proposals are refused while a transfer is under way", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    net.node(1n).rn.transferLeader(3n);
    assert.equal(net.node(1n).rn.status().leadTransferee, 3n);
    assert.throws(
      () => net.node(1n).rn.propose(utf8("x")),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "leadership transfer in progress",
    );
  });

  test("a transfer that does not finish within an election timeout is aborted", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    net.node(1n).rn.transferLeader(3n);
    net.stabilize();
    for (let i = 0; i < net.raft(1n).electionTimeout; i++) {
      net.tick(1n);
      net.stabilize();
    }
    assert.equal(net.raft(1n).leadTransferee, NONE);
    assert.equal(net.raft(1n).state, StateRole.Leader);
    net.node(1n).rn.propose(utf8("accepted again"));
  });

  test("a follower forwards the request to the leader", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.node(3n).rn.transferLeader(3n);
    net.stabilize();
    assert.deepEqual(net.leaders(), [3n]);
  });

  test("transfer to the leader itself or to a learner is ignored; a repeat is idempotent", () => {
    const net = new Network([1n, 2n, 3n], { learners: [4n] });
    net.campaign(1n);
    net.node(1n).rn.transferLeader(1n);
    assert.equal(net.raft(1n).leadTransferee, NONE);
    net.node(1n).rn.transferLeader(4n);
    assert.equal(net.raft(1n).leadTransferee, NONE);
    net.isolate(2n);
    net.node(1n).rn.transferLeader(2n);
    net.node(1n).rn.transferLeader(2n);
    assert.equal(net.raft(1n).leadTransferee, 2n);
    assert.equal(net.flush(1n).filter((m) => m.type === MessageType.MsgTimeoutNow).length, 1);
    // A new target replaces the old one.
    net.recover();
    net.node(1n).rn.transferLeader(3n);
    net.stabilize();
    assert.deepEqual(net.leaders(), [3n]);
  });

  test("the transferee's campaign wins even against voters holding a leader lease", () => {
    const net = new Network([1n, 2n, 3n], { checkQuorum: true, preVote: true });
    net.campaign(1n);
    net.tickAll(2);
    // 3 heard from leader 1 just now: an ordinary vote request would be ignored.
    net.node(1n).rn.transferLeader(2n);
    net.stabilize();
    assert.deepEqual(net.leaders(), [2n]);
  });

  test("removing the transferee aborts the transfer", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    net.node(1n).rn.transferLeader(3n);
    net.raft(1n).applyConfChange({ type: 1, nodeId: 3n, context: new Uint8Array(0) });
    assert.equal(net.raft(1n).leadTransferee, NONE);
  });
});
