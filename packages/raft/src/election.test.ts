import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CAMPAIGN_TRANSFER_CONTEXT } from "./raft.js";
import { message, Network, newTestRaft, storageWithTerms, takeMessages } from "./testing/network.js";
import { MessageType, NONE, StateRole } from "./types.js";

describe("pre-vote", () => {
  test("a pre-candidate asks for votes at term+1 without changing its term or vote", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { preVote: true });
    r.becomeFollower(4, NONE);
    r.vote = 2n;
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    assert.equal(r.state, StateRole.PreCandidate);
    assert.equal(r.term, 4);
    assert.equal(r.vote, 2n);
    const msgs = takeMessages(r);
    assert.deepEqual(
      msgs.map((m) => [m.type, m.term]),
      [
        [MessageType.MsgPreVote, 5],
        [MessageType.MsgPreVote, 5],
      ],
    );
    // A quorum of pre-votes starts the real election.
    r.step(message({ type: MessageType.MsgPreVoteResp, from: 2n, to: 1n, term: 5 }));
    assert.equal(r.state, StateRole.Candidate);
    assert.equal(r.term, 5);
    assert.equal(r.vote, 1n);
    assert.deepEqual(
      takeMessages(r).map((m) => m.type),
      [MessageType.MsgVote, MessageType.MsgVote],
    );
  });

  test("a voter grants a pre-vote without changing its own term or vote", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { preVote: true });
    r.becomeFollower(2, NONE);
    r.vote = 3n;
    r.step(message({ type: MessageType.MsgPreVote, from: 2n, to: 1n, term: 3, index: 0, logTerm: 0 }));
    const [resp] = takeMessages(r);
    assert.equal(resp.type, MessageType.MsgPreVoteResp);
    assert.equal(resp.reject, false);
    assert.equal(resp.term, 3);
    assert.equal(r.term, 2);
    assert.equal(r.vote, 3n);
  });

  test("pre-votes are refused to a log that is behind", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], {
      preVote: true,
      storage: storageWithTerms([1n, 2n, 3n], [1, 2]),
    });
    r.becomeFollower(2, NONE);
    r.step(message({ type: MessageType.MsgPreVote, from: 2n, to: 1n, term: 3, index: 5, logTerm: 1 }));
    const [resp] = takeMessages(r);
    assert.equal(resp.reject, true);
    assert.equal(resp.term, 2);
  });

  test("a partitioned node does not inflate its term and rejoins without disrupting the leader", () => {
    const net = new Network([1n, 2n, 3n], { preVote: true, checkQuorum: true });
    net.campaign(1n);
    const term = net.raft(1n).term;
    net.isolate(3n);
    net.tickAll(100);
    // The isolated node keeps pre-campaigning, never winning, never bumping its term.
    assert.equal(net.raft(3n).term, term);
    net.recover();
    net.tickAll(5);
    assert.deepEqual(net.leaders(), [1n]);
    assert.equal(net.raft(1n).term, term);
    assert.equal(net.raft(3n).lead, 1n);
  });

  test("without pre-vote, the same partition forces a new election at a higher term", () => {
    const net = new Network([1n, 2n, 3n], { preVote: false, checkQuorum: false });
    net.campaign(1n);
    const term = net.raft(1n).term;
    net.isolate(3n);
    net.tickAll(100);
    assert.ok(net.raft(3n).term > term + 3);
    net.recover();
    net.tickAll(30);
    assert.ok(net.raft(1n).term > term, "the rejoining node's term deposed the leader");
  });

  test("a pre-candidate that learns of a leader in its term becomes follower", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { preVote: true });
    r.becomeFollower(2, NONE);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    assert.equal(r.state, StateRole.PreCandidate);
    r.step(message({ type: MessageType.MsgHeartbeat, from: 2n, to: 1n, term: 2 }));
    assert.equal(r.state, StateRole.Follower);
    assert.equal(r.lead, 2n);
  });

  test("a rejected pre-vote from a higher term moves the pre-candidate to that term", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { preVote: true });
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgPreVoteResp, from: 2n, to: 1n, term: 7, reject: true }));
    assert.equal(r.state, StateRole.Follower);
    assert.equal(r.term, 7);
  });

  test("a node with a stale term answers a pre-vote with its current term, so the requester catches up", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { preVote: true });
    r.becomeFollower(5, NONE);
    r.step(message({ type: MessageType.MsgPreVote, from: 2n, to: 1n, term: 3 }));
    const [resp] = takeMessages(r);
    assert.equal(resp.type, MessageType.MsgPreVoteResp);
    assert.equal(resp.reject, true);
    assert.equal(resp.term, 5);
  });
});

describe("check-quorum", () => {
  test("a leader that hears from no quorum within an election timeout steps down", () => {
    const net = new Network([1n, 2n, 3n], { checkQuorum: true, preVote: true });
    net.campaign(1n);
    net.isolate(1n);
    for (let i = 0; i < 10; i++) {
      net.tick(1n);
      net.stabilize();
    }
    // The first check after election only resets activity flags it had from replies.
    assert.equal(net.raft(1n).state, StateRole.Leader);
    for (let i = 0; i < 10; i++) {
      net.tick(1n);
      net.stabilize();
    }
    assert.equal(net.raft(1n).state, StateRole.Follower);
    assert.equal(net.raft(1n).lead, NONE);
  });

  test("a leader hearing from a quorum stays leader", () => {
    const net = new Network([1n, 2n, 3n], { checkQuorum: true, preVote: true });
    net.campaign(1n);
    net.isolate(3n);
    net.tickAll(50);
    assert.equal(net.raft(1n).state, StateRole.Leader);
  });

  test("a follower that heard from its leader recently ignores a vote request (leader lease)", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { checkQuorum: true });
    r.becomeFollower(2, 2n);
    r.step(message({ type: MessageType.MsgVote, from: 3n, to: 1n, term: 3, index: 5, logTerm: 2 }));
    assert.deepEqual(takeMessages(r), []);
    assert.equal(r.term, 2);
    assert.equal(r.vote, NONE);
    // Once the election timeout has elapsed without the leader, the vote can be granted.
    for (let i = 0; i < r.electionTimeout; i++) r.electionElapsed++;
    r.step(message({ type: MessageType.MsgVote, from: 3n, to: 1n, term: 3, index: 5, logTerm: 2 }));
    const [resp] = takeMessages(r);
    assert.equal(resp.reject, false);
    assert.equal(r.term, 3);
  });

  test("a vote forced by leadership transfer is granted despite the lease", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { checkQuorum: true });
    r.becomeFollower(2, 2n);
    r.step(
      message({
        type: MessageType.MsgVote,
        from: 3n,
        to: 1n,
        term: 3,
        index: 5,
        logTerm: 2,
        context: CAMPAIGN_TRANSFER_CONTEXT,
      }),
    );
    const [resp] = takeMessages(r);
    assert.equal(resp.reject, false);
    assert.equal(r.vote, 3n);
  });

  test("with check-quorum but no pre-vote, a rejoining node's higher term forces one election, then all agree", () => {
    const net = new Network([1n, 2n, 3n], { checkQuorum: true, preVote: false });
    net.campaign(1n);
    const term = net.raft(1n).term;
    net.isolate(3n);
    net.tickAll(40);
    const isolatedTerm = net.raft(3n).term;
    assert.ok(isolatedTerm > term);
    net.recover();
    // Node 2 ignores 3's vote requests (it hears from the leader); 3 answers the leader's
    // heartbeats with its higher term, which deposes the leader, and a new election follows.
    net.tickAll(40);
    assert.equal(net.leaders().length, 1);
    const leader = net.leaders()[0];
    for (const id of [1n, 2n, 3n]) assert.equal(net.raft(id).lead, leader);
    assert.ok(net.raft(leader).term >= isolatedTerm, "the cluster moved to the rejoining node's term");
  });

  test("a stale leader told a higher term by a follower steps down", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { checkQuorum: true });
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    assert.equal(r.state, StateRole.Leader);
    r.step(message({ type: MessageType.MsgAppResp, from: 3n, to: 1n, term: 4 }));
    assert.equal(r.state, StateRole.Follower);
    assert.equal(r.term, 4);
  });
});

describe("elections in a network", () => {
  test("ticking alone elects exactly one leader, and every node agrees", () => {
    for (let seed = 1; seed <= 10; seed++) {
      const net = new Network([1n, 2n, 3n, 4n, 5n], { seed, checkQuorum: true, preVote: true });
      net.tickAll(30);
      const leaders = net.leaders();
      assert.equal(leaders.length, 1, `seed ${seed}`);
      for (const id of [1n, 2n, 3n, 4n, 5n]) assert.equal(net.raft(id).lead, leaders[0]);
    }
  });

  test("a leader is re-elected among the survivors when it is cut off", () => {
    const net = new Network([1n, 2n, 3n], { checkQuorum: true, preVote: true });
    net.campaign(1n);
    net.isolate(1n);
    net.tickAll(40);
    const leaders = net.leaders();
    assert.equal(leaders.length, 1);
    assert.notEqual(leaders[0], 1n);
    net.recover();
    net.tickAll(5);
    assert.equal(net.raft(1n).lead, leaders[0]);
  });

  test("a candidate with an outdated log cannot win", () => {
    // No lease or pre-vote: the vote requests reach the voters and only the log check stops them.
    const net = new Network([1n, 2n, 3n], { preVote: false, checkQuorum: false });
    net.campaign(1n);
    net.isolate(3n);
    net.propose(1n, "x");
    net.recover();
    net.node(3n).rn.campaign();
    net.stabilize();
    // Both voters refused: the candidate lost and fell back to follower at its new term.
    assert.equal(net.raft(3n).state, StateRole.Follower);
    assert.equal(net.raft(3n).term, 2);
    assert.equal(net.raft(1n).state, StateRole.Follower, "deposed by the higher term");
    assert.equal(net.raft(1n).vote, NONE, "but refused its vote");
    assert.equal(net.raft(2n).vote, NONE);
    net.tickAll(100);
    assert.equal(net.leaders().length, 1);
    assert.notEqual(net.leaders()[0], 3n);
    assert.deepEqual(net.appliedText(3n), ["x"]);
  });
});
