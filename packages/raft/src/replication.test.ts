import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProposalDroppedError } from "./errors.js";
import type { Raft } from "./raft.js";
import {
  entry,
  message,
  Network,
  newTestRaft,
  persist,
  storageWithTerms,
  takeMessages,
  utf8,
} from "./testing/network.js";
import { type Message, MessageType, StateRole } from "./types.js";

/** Makes `r` leader of `voters` by granting it every vote. */
function elect(r: Raft, voters: bigint[]): void {
  r.step(message({ type: MessageType.MsgHup, from: r.id }));
  takeMessages(r);
  for (const v of voters)
    if (v !== r.id) r.step(message({ type: MessageType.MsgVoteResp, from: v, to: r.id, term: r.term }));
  assert.equal(r.state, StateRole.Leader);
  persist(r);
}

function propose(r: Raft, data: string): void {
  r.step(message({ type: MessageType.MsgProp, from: r.id, entries: [entry(0, 0, data)] }));
}

/** Exchanges messages between two Rafts until quiet; returns everything sent. */
function exchange(a: Raft, b: Raft, initial: Message[]): Message[] {
  const all: Message[] = [];
  let queue = initial;
  for (let round = 0; round < 100 && queue.length > 0; round++) {
    const next: Message[] = [];
    for (const m of queue) {
      all.push(m);
      const to = m.to === a.id ? a : b;
      to.step(m);
      persist(to);
      next.push(...takeMessages(to));
    }
    queue = next;
  }
  return all;
}

describe("fast log back-off", () => {
  test("one rejection skips a whole divergent suffix of the follower's log (findConflictByTerm)", () => {
    const leader = newTestRaft(1n, [1n, 2n], {
      storage: storageWithTerms([1n, 2n], [1, 1, 1, 4, 4, 4, 4, 4, 4, 4]),
    });
    leader.becomeFollower(4, 0n);
    const follower = newTestRaft(2n, [1n, 2n], {
      storage: storageWithTerms([1n, 2n], [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3]),
    });
    follower.becomeFollower(4, 0n);
    elect(leader, [1n, 2n]);
    const sent = exchange(leader, follower, takeMessages(leader));
    const rejections = sent.filter((m) => m.type === MessageType.MsgAppResp && m.reject);
    assert.equal(rejections.length, 1, "a naive back-off would need 7");
    assert.equal(follower.log.lastIndex(), 11);
    assert.equal(follower.log.maybeTerm(4), 4);
    assert.equal(follower.log.maybeTerm(11), 5);
    assert.equal(leader.trk.progress.get(2n)?.match, 11);
    assert.equal(leader.log.committed, 11);
  });

  test("a follower with a short log hints its last index", () => {
    const leader = newTestRaft(1n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1, 1, 1, 1, 1, 1]) });
    leader.becomeFollower(1, 0n);
    const follower = newTestRaft(2n, [1n, 2n], { storage: storageWithTerms([1n, 2n], [1]) });
    elect(leader, [1n, 2n]);
    const sent = exchange(leader, follower, takeMessages(leader));
    const rejections = sent.filter((m) => m.type === MessageType.MsgAppResp && m.reject);
    assert.equal(rejections.length, 1);
    assert.equal(rejections[0].rejectHint, 1);
    assert.equal(follower.log.lastIndex(), 7);
  });
});

describe("probe and replicate states", () => {
  test("in probe state a follower gets one MsgApp until it answers; then the leader pipelines", () => {
    const r = newTestRaft(1n, [1n, 2n]);
    elect(r, [1n, 2n]);
    const pr = r.trk.progress.get(2n)!;
    assert.equal(pr.state, "probe");
    assert.equal(takeMessages(r).length, 1, "the no-op probe");
    propose(r, "a");
    propose(r, "b");
    assert.deepEqual(takeMessages(r), [], "paused while the probe is in flight");
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 1 }));
    assert.equal(pr.state, "replicate");
    // Both waiting proposals go out batched in one message.
    const msgs = takeMessages(r).filter((m) => m.type === MessageType.MsgApp && m.entries.length > 0);
    assert.equal(msgs.length, 1);
    assert.deepEqual(
      msgs[0].entries.map((e) => e.index),
      [2, 3],
    );
    // In replicate state each round's proposals are sent at once, without waiting for acks.
    propose(r, "c");
    const pipelined = takeMessages(r);
    propose(r, "d");
    pipelined.push(...takeMessages(r));
    assert.deepEqual(
      pipelined.map((m) => [m.index, m.entries.length]),
      [
        [3, 1],
        [4, 1],
      ],
    );
    assert.equal(pr.inflights.size, 3);
  });

  test("pipelining stops at maxInflightMsgs and resumes as acks free the window", () => {
    const r = newTestRaft(1n, [1n, 2n], { maxInflightMsgs: 2 });
    elect(r, [1n, 2n]);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 1 }));
    takeMessages(r);
    const sent: Message[] = [];
    for (const d of ["a", "b", "c", "d"]) {
      propose(r, d);
      sent.push(...takeMessages(r).filter((m) => m.type === MessageType.MsgApp));
    }
    assert.deepEqual(
      sent.map((m) => m.entries.map((e) => e.index)),
      [[2], [3]],
    );
    const pr = r.trk.progress.get(2n)!;
    assert.equal(pr.inflights.full(), true);
    assert.equal(pr.isPaused(), true);
    // One ack frees the first slot; the two waiting entries go out together.
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 2 }));
    const resumed = takeMessages(r).filter((m) => m.type === MessageType.MsgApp && m.entries.length > 0);
    assert.deepEqual(
      resumed.map((m) => m.entries.map((e) => e.index)),
      [[4, 5]],
    );
  });

  test("with a full window, a heartbeat response triggers an empty append so lost messages are detected", () => {
    const r = newTestRaft(1n, [1n, 2n], { maxInflightMsgs: 1 });
    elect(r, [1n, 2n]);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 1 }));
    takeMessages(r);
    propose(r, "lost");
    assert.equal(takeMessages(r).length, 1);
    propose(r, "waiting");
    assert.equal(takeMessages(r).length, 0);
    r.step(message({ type: MessageType.MsgHeartbeatResp, from: 2n, to: 1n, term: r.term }));
    const [probe] = takeMessages(r);
    assert.equal(probe.type, MessageType.MsgApp);
    assert.equal(probe.entries.length, 0);
    // The follower never got index 2: it rejects, and the leader resends from its match.
    r.step(
      message({
        type: MessageType.MsgAppResp,
        from: 2n,
        to: 1n,
        term: r.term,
        index: 2,
        reject: true,
        rejectHint: 1,
      }),
    );
    const pr = r.trk.progress.get(2n)!;
    assert.equal(pr.state, "probe");
    const [resend] = takeMessages(r);
    assert.equal(resend.index, 1);
    assert.deepEqual(
      resend.entries.map((e) => e.index),
      [2, 3],
    );
  });

  test("a stale rejection (for an index already matched) is ignored", () => {
    const r = newTestRaft(1n, [1n, 2n]);
    elect(r, [1n, 2n]);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 1 }));
    propose(r, "a");
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 2 }));
    takeMessages(r);
    r.step(
      message({
        type: MessageType.MsgAppResp,
        from: 2n,
        to: 1n,
        term: r.term,
        index: 1,
        reject: true,
        rejectHint: 0,
      }),
    );
    const pr = r.trk.progress.get(2n)!;
    assert.equal(pr.state, "replicate");
    assert.equal(pr.match, 2);
    assert.deepEqual(takeMessages(r), []);
  });

  test("reportUnreachable moves a replicating follower back to probe", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    assert.equal(net.node(1n).rn.status().progress.get(2n)?.state, "replicate");
    net.node(1n).rn.reportUnreachable(2n);
    assert.equal(net.node(1n).rn.status().progress.get(2n)?.state, "probe");
    // A heartbeat round brings it back.
    net.tickAll(1);
    assert.equal(net.node(1n).rn.status().progress.get(2n)?.state, "replicate");
  });

  test("lost appends in a network are recovered through heartbeats", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.dropType(MessageType.MsgApp);
    for (const d of ["a", "b", "c"]) net.propose(1n, d);
    net.recover();
    assert.deepEqual(net.appliedText(2n), []);
    net.tickAll(3);
    for (const id of [1n, 2n, 3n]) assert.deepEqual(net.appliedText(id), ["a", "b", "c"]);
  });
});

describe("proposal batching", () => {
  test("proposals made between two Readies leave in a single MsgApp per follower", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    const sentBefore = net.delivered.length;
    const leader = net.node(1n).rn;
    for (let i = 0; i < 50; i++) leader.propose(utf8(`p${i}`));
    net.stabilize();
    const apps = net.delivered
      .slice(sentBefore)
      .filter((m) => m.type === MessageType.MsgApp && m.entries.length > 0);
    assert.deepEqual(
      apps.map((m) => [Number(m.to), m.entries.length]),
      [
        [2, 50],
        [3, 50],
      ],
    );
    for (const id of [1n, 2n, 3n]) assert.equal(net.appliedText(id).length, 50);
  });

  test("entries waiting for a paused follower are sent together, split at maxSizePerMsg", () => {
    const r = newTestRaft(1n, [1n, 2n], { maxSizePerMsg: 100 });
    elect(r, [1n, 2n]);
    takeMessages(r); // the probe is in flight: follower 2 is paused
    for (let i = 0; i < 10; i++) propose(r, "x".repeat(40));
    assert.deepEqual(takeMessages(r), []);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 1 }));
    const apps = takeMessages(r).filter((m) => m.type === MessageType.MsgApp);
    // 40-byte entries, at most 100 bytes per message: 2 entries each (a third would exceed).
    assert.deepEqual(
      apps.map((m) => m.entries.length),
      [2, 2, 2, 2, 2],
    );
  });

  test("a single entry larger than maxSizePerMsg still goes out, alone", () => {
    const r = newTestRaft(1n, [1n, 2n], { maxSizePerMsg: 10 });
    elect(r, [1n, 2n]);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 1 }));
    takeMessages(r);
    propose(r, "y".repeat(50));
    const [app] = takeMessages(r);
    assert.equal(app.entries.length, 1);
  });
});

describe("commit propagation", () => {
  function replicatingLeader(): Raft {
    const r = newTestRaft(1n, [1n, 2n, 3n]);
    elect(r, [1n, 2n, 3n]);
    for (const from of [2, 3])
      r.step(message({ type: MessageType.MsgAppResp, from: BigInt(from), to: 1n, term: r.term, index: 1 }));
    takeMessages(r);
    return r;
  }

  test("a new commit index rides on the next round's entries instead of its own message", () => {
    const r = replicatingLeader();
    propose(r, "a");
    persist(r);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 2 }));
    assert.equal(r.log.committed, 2);
    assert.deepEqual(r.msgs, [], "nothing sent before the next Ready");
    propose(r, "b");
    persist(r);
    const sent = takeMessages(r);
    assert.deepEqual(
      sent.map((m) => [Number(m.to), m.entries.map((e) => e.index), m.commit]),
      [
        [2, [3], 2],
        [3, [3], 2],
      ],
    );
  });

  test("without new entries, the commit goes out alone, once, to followers it can move", () => {
    const r = replicatingLeader();
    propose(r, "a");
    persist(r);
    takeMessages(r);
    r.step(message({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: r.term, index: 2 }));
    r.step(message({ type: MessageType.MsgAppResp, from: 3n, to: 1n, term: r.term, index: 2 }));
    const sent = takeMessages(r);
    assert.deepEqual(
      sent.map((m) => [Number(m.to), m.entries.length, m.commit]),
      [
        [2, 0, 2],
        [3, 0, 2],
      ],
    );
    // Told already: a late duplicate ack sends nothing more.
    r.step(message({ type: MessageType.MsgAppResp, from: 3n, to: 1n, term: r.term, index: 2 }));
    assert.deepEqual(takeMessages(r), []);
  });
});

describe("uncommitted size limit", () => {
  test("proposals beyond maxUncommittedEntriesSize are refused until entries are applied", () => {
    const net = new Network([1n, 2n, 3n], { maxUncommittedEntriesSize: 100 });
    net.campaign(1n);
    net.isolate(1n);
    const leader = net.node(1n).rn;
    leader.propose(utf8("z".repeat(60)));
    leader.propose(utf8("z".repeat(40)));
    assert.throws(
      () => leader.propose(utf8("z")),
      (e: unknown) => e instanceof ProposalDroppedError && e.reason === "too many uncommitted entries",
    );
    net.recover();
    net.stabilize();
    net.tickAll(2);
    assert.equal(net.appliedText(1n).length, 2);
    leader.propose(utf8("z".repeat(60)));
  });

  test("an empty budget accepts one oversized entry", () => {
    const net = new Network([1n], { maxUncommittedEntriesSize: 10 });
    net.campaign(1n);
    net.node(1n).rn.propose(utf8("big".repeat(10)));
    assert.throws(() => net.node(1n).rn.propose(utf8("small")), ProposalDroppedError);
  });
});
