// One group per rule of Figure 2 of the Raft paper ("In Search of an Understandable
// Consensus Algorithm"), driven at the message level.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  entry,
  message,
  Network,
  newTestRaft,
  persist,
  storageWithTerms,
  takeMessages,
  text,
  utf8,
} from "./testing/network.js";
import { MessageType, NONE, StateRole } from "./types.js";

function electLeader(r: ReturnType<typeof newTestRaft>, voters: bigint[]): void {
  r.step(message({ type: MessageType.MsgHup, from: r.id }));
  takeMessages(r);
  for (const v of voters) {
    if (v !== r.id) r.step(message({ type: MessageType.MsgVoteResp, from: v, to: r.id, term: r.term }));
  }
  assert.equal(r.state, StateRole.Leader);
}

describe("Figure 2, AppendEntries receiver", () => {
  test("1. reply false if term < currentTerm", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { storage: storageWithTerms([1n, 2n, 3n], [1, 2]) });
    r.becomeFollower(3, NONE);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 2,
        logTerm: 2,
        entries: [entry(3, 2)],
      }),
    );
    // Without check-quorum and pre-vote, a stale leader's message is dropped outright.
    assert.deepEqual(takeMessages(r), []);
    assert.equal(r.log.lastIndex(), 2);

    const withCq = newTestRaft(1n, [1n, 2n, 3n], {
      checkQuorum: true,
      storage: storageWithTerms([1n, 2n, 3n], [1, 2]),
    });
    withCq.becomeFollower(3, NONE);
    withCq.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 2,
        logTerm: 2,
        entries: [entry(3, 2)],
      }),
    );
    // With check-quorum, the stale leader is told our term so that it steps down.
    const [resp] = takeMessages(withCq);
    assert.equal(resp.type, MessageType.MsgAppResp);
    assert.equal(resp.term, 3);
    assert.equal(withCq.log.lastIndex(), 2);
  });

  test("2. reply false if the log has no entry at prevLogIndex with prevLogTerm", () => {
    const r = newTestRaft(1n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1, 2]) });
    r.becomeFollower(2, NONE);
    // Mismatched term at index 2.
    r.step(
      message({ type: MessageType.MsgApp, from: 2n, to: 1n, term: 2, index: 2, logTerm: 1, entries: [] }),
    );
    let [resp] = takeMessages(r);
    assert.equal(resp.reject, true);
    assert.equal(resp.index, 2);
    // Missing index 3 altogether: the hint points at our last index.
    r.step(
      message({ type: MessageType.MsgApp, from: 2n, to: 1n, term: 2, index: 3, logTerm: 2, entries: [] }),
    );
    [resp] = takeMessages(r);
    assert.equal(resp.reject, true);
    assert.equal(resp.rejectHint, 2);
    assert.equal(resp.logTerm, 2);
    // Matching: accepted.
    r.step(
      message({ type: MessageType.MsgApp, from: 2n, to: 1n, term: 2, index: 2, logTerm: 2, entries: [] }),
    );
    [resp] = takeMessages(r);
    assert.equal(resp.reject, false);
    assert.equal(resp.index, 2);
  });

  test("3. an existing entry that conflicts is deleted with all that follow it", () => {
    const r = newTestRaft(1n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1, 1, 1, 1]) });
    r.becomeFollower(2, NONE);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 1,
        logTerm: 1,
        entries: [entry(2, 1), entry(3, 2)],
      }),
    );
    // Index 3 conflicted (term 1 vs 2): 3 and 4 are replaced by the leader's single entry 3.
    assert.equal(r.log.lastIndex(), 3);
    assert.equal(r.log.maybeTerm(3), 2);
    assert.equal(r.log.maybeTerm(2), 1);
    const [resp] = takeMessages(r);
    assert.equal(resp.index, 3);
  });

  test("4. new entries are appended; entries already present are kept (a stale MsgApp truncates nothing)", () => {
    const r = newTestRaft(1n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1, 1]) });
    r.becomeFollower(2, NONE);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 2,
        logTerm: 1,
        entries: [entry(3, 2), entry(4, 2)],
      }),
    );
    assert.equal(r.log.lastIndex(), 4);
    takeMessages(r);
    // A delayed duplicate carrying only entry 3 must not drop entry 4.
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 2,
        logTerm: 1,
        entries: [entry(3, 2)],
      }),
    );
    assert.equal(r.log.lastIndex(), 4);
    const [resp] = takeMessages(r);
    assert.equal(resp.reject, false);
    assert.equal(resp.index, 3);
  });

  test("5. commitIndex = min(leaderCommit, index of last new entry)", () => {
    const r = newTestRaft(1n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1, 1, 1]) });
    r.becomeFollower(2, NONE);
    // The leader has committed 10, but this message only proves the log up to 2.
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 1,
        logTerm: 1,
        entries: [entry(2, 1)],
        commit: 10,
      }),
    );
    assert.equal(r.log.committed, 2);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 2,
        logTerm: 1,
        entries: [entry(3, 2)],
        commit: 3,
      }),
    );
    assert.equal(r.log.committed, 3);
    // A heartbeat's commit is already capped by the leader at the follower's match.
    r.step(message({ type: MessageType.MsgHeartbeat, from: 2n, to: 1n, term: 2, commit: 3 }));
    assert.equal(r.log.committed, 3);
  });
});

describe("Figure 2, all servers", () => {
  test("apply log[lastApplied+1..commitIndex] once committed, in order, exactly once", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    for (const d of ["a", "b", "c"]) net.node(1n).rn.propose(utf8(d));
    net.stabilize();
    for (const id of [1n, 2n, 3n]) {
      assert.deepEqual(net.appliedText(id), ["a", "b", "c"]);
      const st = net.node(id).rn.status();
      assert.equal(st.applied, st.commit);
    }
    // Nothing is handed out twice.
    net.tickAll(5);
    assert.deepEqual(net.appliedText(2n), ["a", "b", "c"]);
  });

  test("entries are not applied before they are committed", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(1n);
    net.propose(1n, "uncommitted");
    assert.deepEqual(net.appliedText(1n), []);
    assert.equal(net.raft(1n).log.lastIndex(), 2);
    assert.equal(net.raft(1n).log.committed, 1);
  });

  test("an RPC with a higher term makes any role adopt it and become follower", () => {
    for (const role of [StateRole.Follower, StateRole.Candidate, StateRole.Leader]) {
      const r = newTestRaft(1n, [1n, 2n, 3n]);
      if (role === StateRole.Candidate) r.step(message({ type: MessageType.MsgHup, from: 1n }));
      if (role === StateRole.Leader) electLeader(r, [1n, 2n, 3n]);
      assert.equal(r.state, role);
      r.step(message({ type: MessageType.MsgApp, from: 2n, to: 1n, term: 9, index: 0, logTerm: 0 }));
      assert.equal(r.term, 9);
      assert.equal(r.state, StateRole.Follower);
      assert.equal(r.lead, 2n);
      // A vote request at a higher term also moves the term, but names no leader.
      r.step(message({ type: MessageType.MsgVote, from: 3n, to: 1n, term: 10, index: 5, logTerm: 9 }));
      assert.equal(r.term, 10);
      assert.equal(r.lead, NONE);
    }
  });
});

describe("Figure 2, RequestVote receiver", () => {
  test("reply false if term < currentTerm", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.becomeFollower(5, NONE);
    r.step(message({ type: MessageType.MsgVote, from: 2n, to: 1n, term: 4, index: 10, logTerm: 4 }));
    // Without pre-vote a stale vote request is ignored; the candidate times out.
    assert.deepEqual(takeMessages(r), []);
    assert.equal(r.vote, NONE);
  });

  test("grant only to a log at least as up to date (last term, then last index)", () => {
    // Our log: terms [1, 2, 2], so last (index 3, term 2).
    const cases: Array<[number, number, boolean]> = [
      [3, 2, true], // same
      [4, 2, true], // longer, same term
      [2, 2, false], // shorter, same term
      [1, 3, true], // higher last term wins even if shorter
      [9, 1, false], // lower last term loses even if longer
    ];
    for (const [index, logTerm, granted] of cases) {
      const r = newTestRaft(1n, [1n, 2n, 3n], { storage: storageWithTerms([1n, 2n, 3n], [1, 2, 2]) });
      r.becomeFollower(2, NONE);
      r.step(message({ type: MessageType.MsgVote, from: 2n, to: 1n, term: 3, index, logTerm }));
      const [resp] = takeMessages(r);
      assert.equal(resp.type, MessageType.MsgVoteResp);
      assert.equal(resp.reject, !granted, `candidate last (${index}, ${logTerm})`);
      assert.equal(r.vote, granted ? 2n : NONE);
    }
  });

  test("at most one vote per term, repeatable for the same candidate; the vote is persisted", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(message({ type: MessageType.MsgVote, from: 2n, to: 1n, term: 1 }));
    r.step(message({ type: MessageType.MsgVote, from: 3n, to: 1n, term: 1 }));
    r.step(message({ type: MessageType.MsgVote, from: 2n, to: 1n, term: 1 }));
    assert.deepEqual(
      takeMessages(r).map((m) => [Number(m.to), m.reject]),
      [
        [2, false],
        [3, true],
        [2, false],
      ],
    );
    assert.equal(r.vote, 2n);
    assert.equal(r.hardState().vote, 2n);
  });
});

describe("Figure 2, candidates", () => {
  test("on conversion: increment term, vote for self, reset the election timer, request votes from all", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n], { storage: storageWithTerms([1n, 2n, 3n], [1, 1]) });
    r.becomeFollower(1, NONE);
    for (let i = 0; i < 3; i++) r.tick();
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    assert.equal(r.state, StateRole.Candidate);
    assert.equal(r.term, 2);
    assert.equal(r.vote, 1n);
    assert.equal(r.electionElapsed, 0);
    const msgs = takeMessages(r);
    assert.deepEqual(
      msgs.map((m) => [m.type, Number(m.to), m.term, m.index, m.logTerm]),
      [
        [MessageType.MsgVote, 2, 2, 2, 1],
        [MessageType.MsgVote, 3, 2, 2, 1],
      ],
    );
  });

  test("votes from a majority make it leader; a majority of rejections make it follower", () => {
    const won = newTestRaft(1n, [1n, 2n, 3n, 4n, 5n]);
    won.step(message({ type: MessageType.MsgHup, from: 1n }));
    won.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    assert.equal(won.state, StateRole.Candidate);
    won.step(message({ type: MessageType.MsgVoteResp, from: 3n, to: 1n, term: 1 }));
    assert.equal(won.state, StateRole.Leader);

    const lost = newTestRaft(1n, [1n, 2n, 3n, 4n, 5n]);
    lost.step(message({ type: MessageType.MsgHup, from: 1n }));
    for (const from of [2, 3])
      lost.step(
        message({ type: MessageType.MsgVoteResp, from: BigInt(from), to: 1n, term: 1, reject: true }),
      );
    assert.equal(lost.state, StateRole.Candidate);
    lost.step(message({ type: MessageType.MsgVoteResp, from: 4n, to: 1n, term: 1, reject: true }));
    assert.equal(lost.state, StateRole.Follower);
    assert.equal(lost.term, 1);
  });

  test("an AppendEntries from a leader of the same term makes it follower", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgApp, from: 2n, to: 1n, term: 1, index: 0, logTerm: 0 }));
    assert.equal(r.state, StateRole.Follower);
    assert.equal(r.lead, 2n);
    assert.equal(r.term, 1);
  });

  test("if the election times out, start a new one at a higher term", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    assert.equal(r.term, 1);
    for (let i = 0; i < 2 * r.electionTimeout; i++) r.tick();
    assert.equal(r.state, StateRole.Candidate);
    assert.equal(r.term, 2);
  });

  test("followers time out at a random point in [electionTick, 2*electionTick)", () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const r = newTestRaft(1n, [1n, 2n, 3n], { random: () => (seed * 0.6180339887) % 1 });
      let ticks = 0;
      while (r.state === StateRole.Follower && ticks < 100) {
        r.tick();
        ticks++;
      }
      assert.ok(ticks >= 10 && ticks < 20, `timed out after ${ticks}`);
      seen.add(ticks);
    }
    assert.ok(seen.size >= 8, `timeouts spread over ${seen.size} values`);
  });
});

describe("Figure 2, leaders", () => {
  test("upon election, send an initial append to each follower, and heartbeats while idle", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    electLeader(r, [1n, 2n, 3n]);
    const first = takeMessages(r);
    assert.deepEqual(
      first.map((m) => [m.type, Number(m.to), m.entries.length]),
      [
        [MessageType.MsgApp, 2, 1],
        [MessageType.MsgApp, 3, 1],
      ],
    );
    r.tick(); // heartbeatTick = 1
    assert.deepEqual(
      takeMessages(r).map((m) => [m.type, Number(m.to)]),
      [
        [MessageType.MsgHeartbeat, 2],
        [MessageType.MsgHeartbeat, 3],
      ],
    );
  });

  test("a client command is appended to the leader's log and replicated", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    electLeader(r, [1n, 2n, 3n]);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgProp, from: 1n, entries: [entry(0, 0, "cmd")] }));
    assert.equal(r.log.lastIndex(), 2);
    assert.equal(text(r.log.allEntriesFrom(2)[0].data), "cmd");
    // Followers in probe state get one message each (the no-op probe is still in flight).
    assert.deepEqual(takeMessages(r), []);
  });

  test("nextIndex/matchIndex: success advances both; an inconsistency moves nextIndex back and retries", () => {
    const r = newTestRaft(1n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1, 1, 1]) });
    r.becomeFollower(1, NONE);
    electLeader(r, [1n, 2n]);
    persist(r);
    const pr = r.trk.progress.get(2n)!;
    // nextIndex starts just past the leader's log as it was when elected (before the no-op).
    assert.equal(pr.next, 4);
    assert.equal(pr.match, 0);
    const [probe] = takeMessages(r);
    assert.equal(probe.index, 3);
    // The follower has nothing: it rejects with hint 0.
    r.step(
      message({
        type: MessageType.MsgAppResp,
        from: 2n,
        to: 1n,
        term: 2,
        index: 3,
        reject: true,
        rejectHint: 0,
      }),
    );
    assert.equal(pr.next, 1);
    const [retry] = takeMessages(r);
    assert.equal(retry.index, 0);
    assert.equal(retry.entries.length, 4);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 2, index: 4 }));
    assert.equal(pr.match, 4);
    assert.equal(pr.next, 5);
    assert.equal(pr.state, "replicate");
  });

  test("commit rule: N > commitIndex, a majority has matchIndex >= N, and log[N].term == currentTerm", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n, 4n, 5n]);
    electLeader(r, [1n, 2n, 3n, 4n, 5n]);
    persist(r);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 1, index: 1 }));
    assert.equal(r.log.committed, 0, "2 of 5");
    r.step(message({ type: MessageType.MsgAppResp, from: 3n, to: 1n, term: 1, index: 1 }));
    assert.equal(r.log.committed, 1, "3 of 5");
  });

  test("Figure 8: an entry of an earlier term is not committed by counting replicas", () => {
    // Leader 1 of term 3 holds an entry of term 2 at index 2 that it did not write.
    const storage = storageWithTerms([1n, 2n, 3n], [1, 2]);
    storage.setHardState({ term: 2, vote: 0n, commit: 1 });
    const r = newTestRaft(1n, [1n, 2n, 3n], { storage });
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 3 }));
    assert.equal(r.state, StateRole.Leader);
    assert.equal(r.term, 3);
    takeMessages(r);
    // Follower 2 holds index 2 (term 2): a majority has it, yet it must stay uncommitted.
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 3, index: 2 }));
    assert.equal(r.log.committed, 1);
    // Once the leader's own term-3 entry (index 3) is on a majority, 2 and 3 commit together.
    persist(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 3, index: 3 }));
    assert.equal(r.log.committed, 3);
  });

  test("a leader counts its own entry only once it is persisted", () => {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    electLeader(r, [1n, 2n, 3n]);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 1, index: 1 }));
    // One follower plus an unpersisted leader entry is not a majority of 3.
    assert.equal(r.log.committed, 0);
    persist(r);
    assert.equal(r.log.committed, 1);
  });
});
