import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProposalDroppedError } from "./errors.js";
import { message, Network, newTestRaft, persist, takeMessages, text, utf8 } from "./testing/network.js";
import { EntryType, MessageType, StateRole } from "./types.js";

describe("ReadIndex", () => {
  test("a leader answers once a heartbeat round confirms it still leads", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(1n, "w");
    const commit = net.raft(1n).log.committed;
    net.node(1n).rn.readIndex(utf8("r1"));
    // Nothing is answered before the round trip.
    assert.equal(net.raft(1n).readStates.length, 0);
    net.stabilize();
    const [rs] = net.node(1n).readStates;
    assert.equal(text(rs.requestCtx), "r1");
    assert.equal(rs.index, commit);
  });

  test("one heartbeat round confirms every read waiting", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    persist(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 1, index: 1 }));
    takeMessages(r);
    for (const ctx of ["a", "b", "c"])
      r.step(message({ type: MessageType.MsgReadIndex, from: 1n, context: utf8(ctx) }));
    const heartbeats = takeMessages(r).filter((m) => m.type === MessageType.MsgHeartbeat);
    assert.equal(heartbeats.length, 2, "one heartbeat per follower for all three reads");
    assert.equal(text(heartbeats[0].context!), "c");
    // Only the answer to the latest heartbeat (context "c") arrives, from one follower:
    // with the leader, a quorum; it confirms "a" and "b" too.
    r.step(message({ type: MessageType.MsgHeartbeatResp, from: 3n, to: 1n, term: 1, context: utf8("c") }));
    assert.deepEqual(
      r.readStates.map((rs) => [text(rs.requestCtx), rs.index]),
      [
        ["a", 1],
        ["b", 1],
        ["c", 1],
      ],
    );
  });

  test("the periodic heartbeat carries the newest pending read's context", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(1n);
    net.node(1n).rn.readIndex(utf8("late"));
    net.stabilize();
    assert.equal(net.node(1n).readStates.length, 0, "no quorum: no answer");
    net.recover();
    net.tick(1n);
    net.stabilize();
    assert.deepEqual(
      net.node(1n).readStates.map((rs) => text(rs.requestCtx)),
      ["late"],
    );
  });

  test("a follower's read goes to the leader and comes back as MsgReadIndexResp", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(1n, "w");
    net.node(3n).rn.readIndex(utf8("f"));
    net.stabilize();
    const [rs] = net.node(3n).readStates;
    assert.equal(text(rs.requestCtx), "f");
    assert.equal(rs.index, net.raft(1n).log.committed);
    const resp = net.delivered.find((m) => m.type === MessageType.MsgReadIndexResp);
    assert.equal(resp?.to, 3n);
    assert.equal(net.node(1n).readStates.length, 0);
  });

  test("a read forwarded again (the leader moved) keeps its requester, so the answer goes to it", () => {
    const r = newTestRaft(2n, [1n, 2n, 3n]);
    r.becomeFollower(1, 1n);
    r.step(message({ type: MessageType.MsgReadIndex, from: 3n, to: 2n, context: utf8("via-2") }));
    const [fwd] = takeMessages(r);
    assert.equal(fwd.type, MessageType.MsgReadIndex);
    assert.equal(fwd.to, 1n);
    assert.equal(fwd.from, 3n);
    assert.equal(fwd.term, 0);
  });

  test("a new leader defers reads until it has committed an entry of its term", () => {
    // Until its no-op commits, a new leader's commit index may lag the previous leader's.
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    takeMessages(r);
    r.step(message({ type: MessageType.MsgReadIndex, from: 1n, context: utf8("early") }));
    assert.deepEqual(
      takeMessages(r).filter((m) => m.type === MessageType.MsgHeartbeat),
      [],
      "no read round before the no-op commits",
    );
    assert.equal(r.pendingReadIndexMessages.length, 1);
    persist(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 1, index: 1 }));
    assert.equal(r.log.committed, 1);
    const heartbeats = takeMessages(r).filter((m) => m.type === MessageType.MsgHeartbeat);
    assert.equal(heartbeats.length, 2);
    assert.equal(text(heartbeats[0].context!), "early");
    r.step(
      message({ type: MessageType.MsgHeartbeatResp, from: 2n, to: 1n, term: 1, context: utf8("early") }),
    );
    assert.deepEqual(
      r.readStates.map((rs) => rs.index),
      [1],
    );
  });

  test("a single voter that just became leader answers once its first entry commits", () => {
    const net = new Network([1n]);
    net.node(1n).rn.campaign();
    assert.equal(net.raft(1n).state, StateRole.Leader);
    net.node(1n).rn.readIndex(utf8("first"));
    assert.equal(net.raft(1n).readStates.length, 0, "the no-op is not yet persisted, so not committed");
    net.stabilize();
    assert.deepEqual(
      net.node(1n).readStates.map((rs) => [text(rs.requestCtx), rs.index]),
      [["first", 1]],
    );
  });

  test("a single-voter cluster answers at once", () => {
    const net = new Network([1n]);
    net.campaign(1n);
    net.propose(1n, "w");
    net.node(1n).rn.readIndex(utf8("now"));
    assert.equal(net.raft(1n).readStates.length, 1);
    net.stabilize();
    assert.equal(net.node(1n).readStates[0].index, net.raft(1n).log.committed);
  });

  test("acks from learners do not make a quorum", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { learners: [4n] });
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    persist(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 1, index: 1 }));
    r.step(message({ type: MessageType.MsgReadIndex, from: 1n, context: utf8("q") }));
    r.step(message({ type: MessageType.MsgHeartbeatResp, from: 4n, to: 1n, term: 1, context: utf8("q") }));
    assert.equal(r.readStates.length, 0);
    r.step(message({ type: MessageType.MsgHeartbeatResp, from: 3n, to: 1n, term: 1, context: utf8("q") }));
    assert.equal(r.readStates.length, 1);
  });

  test("without a leader a read is refused, and a candidate refuses it too", () => {
    const net = new Network([1n, 2n, 3n], { preVote: false });
    assert.throws(
      () => net.node(1n).rn.readIndex(utf8("x")),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "no leader",
    );
    net.node(1n).rn.campaign();
    assert.equal(net.raft(1n).state, StateRole.Candidate);
    assert.throws(() => net.node(1n).rn.readIndex(utf8("x")), ProposalDroppedError);
  });

  test("a read served by a deposed leader is never answered", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(1n);
    net.node(1n).rn.readIndex(utf8("stale"));
    net.stabilize();
    net.tickAll(40);
    assert.notEqual(net.raft(1n).state, StateRole.Leader);
    net.recover();
    net.tickAll(5);
    assert.equal(net.node(1n).readStates.length, 0);
  });

  test("read traffic leaves between Readys, before the entries stepped since are persisted", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.propose(1n, "w");
    const leader = net.node(1n).rn;
    const commit = net.raft(1n).log.committed;
    // A write and a read arrive while the leader's last Ready is still being handled.
    leader.propose(utf8("x"));
    leader.readIndex(utf8("r"));
    const round = leader.takeReadTraffic();
    assert.deepEqual(
      round.messages.map((m) => [m.type, m.to, text(m.context ?? new Uint8Array())]),
      [
        [MessageType.MsgHeartbeat, 2n, "r"],
        [MessageType.MsgHeartbeat, 3n, "r"],
      ],
    );
    assert.equal(round.readStates.length, 0);
    // The new entry waits for the next Ready (its MsgApps batch there).
    assert.equal(net.raft(1n).log.unstable.hasNextEntries(), true);
    // A follower with an unpersisted entry answers the heartbeat at once; its MsgAppResp waits.
    const follower = net.node(2n).rn;
    const term = net.raft(1n).term;
    const append = message({
      type: MessageType.MsgApp,
      from: 1n,
      to: 2n,
      term,
      index: commit,
      logTerm: term,
    });
    append.entries = [{ term, index: commit + 1, type: EntryType.Normal, data: utf8("y") }];
    follower.step(append);
    follower.step(round.messages[0]!);
    const answer = follower.takeReadTraffic();
    assert.deepEqual(
      answer.messages.map((m) => m.type),
      [MessageType.MsgHeartbeatResp],
    );
    assert.equal(follower.hasReady(), true, "the appended entry still waits for its Ready");
    leader.step(answer.messages[0]!);
    const { readStates } = leader.takeReadTraffic();
    assert.deepEqual(
      readStates.map((rs) => [text(rs.requestCtx), rs.index]),
      [["r", commit]],
    );
    // Nothing is handed out twice.
    assert.equal(leader.takeReadTraffic().readStates.length, 0);
    net.stabilize();
    assert.equal(net.node(1n).readStates.length, 0);
  });
});
