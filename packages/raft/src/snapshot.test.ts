import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SnapshotTemporarilyUnavailableError } from "./errors.js";
import { MemoryStorage } from "./storage.js";
import { message, Network, newTestRaft, persist, takeMessages, utf8 } from "./testing/network.js";
import { ConfChangeType, type Message, MessageType, type Snapshot } from "./types.js";

/** Snapshots node `id` at its applied index and compacts its log up to there. */
function compact(net: Network, id: number): Snapshot {
  const node = net.node(id);
  const applied = node.raft.log.applied;
  const snap = node.storage.createSnapshot(applied, node.rn.status().confState, utf8(`state@${applied}`));
  node.storage.compact(applied);
  return snap;
}

describe("log compaction and snapshot install", () => {
  test("a follower behind the compaction point receives the snapshot and then the log", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    for (const d of ["a", "b", "c"]) net.propose(1, d);
    const snap = compact(net, 1);
    net.propose(1, "d");
    net.recover();
    net.tickAll(3);
    const n3 = net.node(3);
    assert.equal(n3.appliedSnapshots.length, 1);
    assert.equal(n3.appliedSnapshots[0].metadata.index, snap.metadata.index);
    assert.equal(new TextDecoder().decode(n3.appliedSnapshots[0].data), `state@${snap.metadata.index}`);
    // After the snapshot, the entries past it arrive normally.
    assert.deepEqual(net.appliedText(3), ["d"]);
    assert.equal(n3.storage.firstIndex(), snap.metadata.index + 1);
    assert.equal(n3.raft.log.committed, net.raft(1).log.committed);
    // The follower acknowledging the snapshot index moves the leader on, even without reportSnapshot.
    assert.equal(net.node(1).rn.status().progress.get(3)?.state, "replicate");
  });

  test("the leader sends MsgSnap when the entries a follower needs are compacted, and waits", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    net.isolate(3);
    net.propose(1, "a");
    net.propose(1, "b");
    const snap = compact(net, 1);
    net.recover();
    net.tick(1);
    // heartbeat -> response -> empty append at 3's believed position -> rejection -> snapshot.
    const out: Message[] = [];
    for (let round = 0; round < 6 && !out.some((m) => m.type === MessageType.MsgSnap); round++) {
      for (const id of [1, 2, 3]) {
        const msgs = net.flush(id);
        if (id === 1) out.push(...msgs);
        for (const m of msgs) if (m.type !== MessageType.MsgSnap) net.deliver(m);
      }
    }
    const snapMsg = out.find((m) => m.type === MessageType.MsgSnap);
    assert.equal(snapMsg?.to, 3);
    assert.equal(snapMsg?.snapshot?.metadata.index, snap.metadata.index);
    const st = net.node(1).rn.status().progress.get(3);
    assert.equal(st?.state, "snapshot");
    assert.equal(st?.pendingSnapshot, snap.metadata.index);
    // While the snapshot is in flight nothing else is sent to 3.
    const mark = net.delivered.length;
    net.propose(1, "c");
    assert.equal(
      net.delivered
        .slice(mark)
        .filter((m) => m.to === 3 && m.type === MessageType.MsgApp && m.entries.length > 0).length,
      0,
    );
  });

  test("reportSnapshot(failure) probes again from the follower's match; success from past the snapshot", () => {
    const r = newTestRaft(1, [1, 2]);
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2, to: 1, term: 1 }));
    persist(r);
    for (const d of ["a", "b", "c"])
      r.step(
        message({
          type: MessageType.MsgProp,
          from: 1,
          entries: [{ index: 0, term: 0, type: 0, data: utf8(d) }],
        }),
      );
    persist(r);
    const pr = r.trk.progress.get(2)!;
    pr.recentActive = true;
    pr.becomeSnapshot(3);
    r.step(message({ type: MessageType.MsgSnapStatus, from: 2, reject: true }));
    assert.equal(pr.state, "probe");
    assert.equal(pr.next, 1, "failed: back to match + 1");
    assert.equal(pr.isPaused(), true, "waits for the next heartbeat response before probing");

    pr.becomeSnapshot(3);
    r.step(message({ type: MessageType.MsgSnapStatus, from: 2, reject: false }));
    assert.equal(pr.state, "probe");
    assert.equal(pr.next, 4, "delivered: probe just past the snapshot");
    takeMessages(r);
    r.step(message({ type: MessageType.MsgHeartbeatResp, from: 2, to: 1, term: 1 }));
    const [probe] = takeMessages(r);
    assert.equal(probe.type, MessageType.MsgApp);
    assert.equal(probe.index, 3);
  });

  test("no snapshot is built for a follower not heard from recently", () => {
    const r = newTestRaft(1, [1, 2]);
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2, to: 1, term: 1 }));
    persist(r);
    const storage = r.log.storage as import("./storage.js").MemoryStorage;
    r.step(
      message({
        type: MessageType.MsgProp,
        from: 1,
        entries: [{ index: 0, term: 0, type: 0, data: utf8("a") }],
      }),
    );
    persist(r);
    r.log.committed = 2;
    r.log.appliedTo(2);
    storage.createSnapshot(2, undefined, utf8("s"));
    storage.compact(2);
    takeMessages(r);
    const pr = r.trk.progress.get(2)!;
    pr.recentActive = false;
    pr.msgAppFlowPaused = false;
    pr.next = 1;
    r.sendAppend(2);
    assert.deepEqual(takeMessages(r), []);
    pr.recentActive = true;
    r.sendAppend(2);
    const [m] = takeMessages(r);
    assert.equal(m.type, MessageType.MsgSnap);
  });

  test("a snapshot that is temporarily unavailable is retried later rather than failing", () => {
    const r = newTestRaft(1, [1, 2]);
    r.step(message({ type: MessageType.MsgHup, from: 1 }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2, to: 1, term: 1 }));
    persist(r);
    const storage = r.log.storage as import("./storage.js").MemoryStorage;
    r.log.committed = 1;
    r.log.appliedTo(1);
    storage.createSnapshot(1, undefined, utf8("s"));
    storage.compact(1);
    storage.snapshot = () => {
      throw new SnapshotTemporarilyUnavailableError();
    };
    takeMessages(r);
    const pr = r.trk.progress.get(2)!;
    pr.recentActive = true;
    pr.msgAppFlowPaused = false;
    pr.next = 1;
    r.sendAppend(2);
    assert.deepEqual(takeMessages(r), []);
    assert.equal(pr.state, "probe");
  });

  test("a follower installs a snapshot: log reset, commit moved, configuration taken from it", () => {
    const r = newTestRaft(2, [1, 2]);
    const snap: Snapshot = {
      metadata: { index: 11, term: 11, confState: { voters: [1, 2, 3], learners: [] } },
      data: utf8("img"),
    };
    r.step(message({ type: MessageType.MsgSnap, from: 1, to: 2, term: 11, snapshot: snap }));
    assert.equal(r.log.lastIndex(), 11);
    assert.equal(r.log.committed, 11);
    assert.deepEqual(r.trk.confState().voters, [1, 2, 3]);
    const [resp] = takeMessages(r);
    assert.equal(resp.type, MessageType.MsgAppResp);
    assert.equal(resp.index, 11);
    assert.equal(r.log.unstable.snapshot, snap);
  });

  test("a snapshot the follower's log already covers only moves the commit index", () => {
    const r = newTestRaft(2, [1, 2]);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 1,
        to: 2,
        term: 1,
        index: 0,
        logTerm: 0,
        entries: [1, 2, 3].map((i) => ({ index: i, term: 1, type: 0, data: utf8("") })),
      }),
    );
    takeMessages(r);
    const snap: Snapshot = {
      metadata: { index: 2, term: 1, confState: { voters: [1, 2], learners: [] } },
      data: utf8(""),
    };
    r.step(message({ type: MessageType.MsgSnap, from: 1, to: 2, term: 1, snapshot: snap }));
    assert.equal(r.log.committed, 2);
    assert.equal(r.log.lastIndex(), 3, "entries past the snapshot are kept");
    assert.equal(r.log.unstable.snapshot, undefined);
    // A snapshot at or below the commit index is ignored.
    r.step(message({ type: MessageType.MsgSnap, from: 1, to: 2, term: 1, snapshot: snap }));
    assert.equal(takeMessages(r).at(-1)?.index, 2);
  });

  test("a member added after compaction starts from the snapshot, then learns of itself from the log", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    for (const d of ["a", "b"]) net.propose(1, d);
    const snap = compact(net, 1);
    // The snapshot predates the change that adds 4: its conf state does not list 4.
    net
      .node(1)
      .rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4, context: new Uint8Array(0) });
    net.stabilize();
    net.addNode(4, new MemoryStorage());
    net.propose(1, "c");
    net.tickAll(3);
    const n4 = net.node(4);
    assert.equal(n4.appliedSnapshots[0]?.metadata.index, snap.metadata.index);
    assert.deepEqual(net.appliedText(4), ["c"]);
    assert.deepEqual(n4.rn.status().confState, { voters: [1, 2, 3], learners: [4] });
    assert.equal(n4.raft.isLearner, true);
  });

  test("a restarted node recovers from its snapshot and the log after it", () => {
    const net = new Network([1, 2, 3]);
    net.campaign(1);
    for (const d of ["a", "b"]) net.propose(1, d);
    const snap = compact(net, 2);
    net.propose(1, "c");
    const restarted = net.restart(2);
    assert.equal(restarted.raft.log.firstIndex(), snap.metadata.index + 1);
    assert.equal(restarted.raft.log.committed, net.raft(1).log.committed);
    net.propose(1, "d");
    assert.deepEqual(net.appliedText(2), ["a", "b", "c", "d"]);
  });
});
