import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SnapshotTemporarilyUnavailableError } from "./errors.js";
import { MemoryStorage } from "./storage.js";
import { message, Network, newTestRaft, persist, takeMessages, utf8 } from "./testing/network.js";
import { ConfChangeType, type Message, MessageType, type Snapshot } from "./types.js";

/** Snapshots node `id` at its applied index and compacts its log up to there. */
function compact(net: Network, id: bigint): Snapshot {
  const node = net.node(id);
  const applied = node.raft.log.applied;
  const snap = node.storage.createSnapshot(applied, node.rn.status().confState, utf8(`state@${applied}`));
  node.storage.compact(applied);
  return snap;
}

describe("log compaction and snapshot install", () => {
  test("a follower behind the compaction point receives the snapshot and then the log", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    for (const d of ["a", "b", "c"]) net.propose(1n, d);
    const snap = compact(net, 1n);
    net.propose(1n, "d");
    net.recover();
    net.tickAll(3);
    const n3 = net.node(3n);
    assert.equal(n3.appliedSnapshots.length, 1);
    assert.equal(n3.appliedSnapshots[0].metadata.index, snap.metadata.index);
    assert.equal(new TextDecoder().decode(n3.appliedSnapshots[0].data), `state@${snap.metadata.index}`);
    // After the snapshot, the entries past it arrive normally.
    assert.deepEqual(net.appliedText(3n), ["d"]);
    assert.equal(n3.storage.firstIndex(), snap.metadata.index + 1);
    assert.equal(n3.raft.log.committed, net.raft(1n).log.committed);
    // The follower acknowledging the snapshot index moves the leader on, even without reportSnapshot.
    assert.equal(net.node(1n).rn.status().progress.get(3n)?.state, "replicate");
  });

  test("the leader sends MsgSnap when the entries a follower needs are compacted, and waits", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    net.isolate(3n);
    net.propose(1n, "a");
    net.propose(1n, "b");
    const snap = compact(net, 1n);
    net.recover();
    net.tick(1n);
    // heartbeat -> response -> empty append at 3's believed position -> rejection -> snapshot.
    const out: Message[] = [];
    for (let round = 0; round < 6 && !out.some((m) => m.type === MessageType.MsgSnap); round++) {
      for (const id of [1n, 2n, 3n]) {
        const msgs = net.flush(id);
        if (id === 1n) out.push(...msgs);
        for (const m of msgs) if (m.type !== MessageType.MsgSnap) net.deliver(m);
      }
    }
    const snapMsg = out.find((m) => m.type === MessageType.MsgSnap);
    assert.equal(snapMsg?.to, 3n);
    assert.equal(snapMsg?.snapshot?.metadata.index, snap.metadata.index);
    const st = net.node(1n).rn.status().progress.get(3n);
    assert.equal(st?.state, "snapshot");
    assert.equal(st?.pendingSnapshot, snap.metadata.index);
    // While the snapshot is in flight nothing else is sent to 3.
    const mark = net.delivered.length;
    net.propose(1n, "c");
    assert.equal(
      net.delivered
        .slice(mark)
        .filter((m) => m.to === 3n && m.type === MessageType.MsgApp && m.entries.length > 0).length,
      0,
    );
  });

  test("reportSnapshot(failure) probes again from the follower's match; success from past the snapshot", () => {
    const r = newTestRaft(1n, [1n, 2n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    persist(r);
    for (const d of ["a", "b", "c"])
      r.step(
        message({
          type: MessageType.MsgProp,
          from: 1n,
          entries: [{ index: 0, term: 0, type: 0, data: utf8(d) }],
        }),
      );
    persist(r);
    const pr = r.trk.progress.get(2n)!;
    pr.recentActive = true;
    pr.becomeSnapshot(3);
    r.step(message({ type: MessageType.MsgSnapStatus, from: 2n, reject: true }));
    assert.equal(pr.state, "probe");
    assert.equal(pr.next, 1, "failed: back to match + 1");
    assert.equal(pr.isPaused(), true, "waits for the next heartbeat response before probing");

    pr.becomeSnapshot(3);
    r.step(message({ type: MessageType.MsgSnapStatus, from: 2n, reject: false }));
    assert.equal(pr.state, "probe");
    assert.equal(pr.next, 4, "delivered: probe just past the snapshot");
    takeMessages(r);
    r.step(message({ type: MessageType.MsgHeartbeatResp, from: 2n, to: 1n, term: 1 }));
    const [probe] = takeMessages(r);
    assert.equal(probe.type, MessageType.MsgApp);
    assert.equal(probe.index, 3);
  });

  test("no snapshot is built for a follower not heard from recently", () => {
    const r = newTestRaft(1n, [1n, 2n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
    persist(r);
    const storage = r.log.storage as import("./storage.js").MemoryStorage;
    r.step(
      message({
        type: MessageType.MsgProp,
        from: 1n,
        entries: [{ index: 0, term: 0, type: 0, data: utf8("a") }],
      }),
    );
    persist(r);
    r.log.committed = 2;
    r.log.appliedTo(2);
    storage.createSnapshot(2, undefined, utf8("s"));
    storage.compact(2);
    takeMessages(r);
    const pr = r.trk.progress.get(2n)!;
    pr.recentActive = false;
    pr.msgAppFlowPaused = false;
    pr.next = 1;
    r.sendAppend(2n);
    assert.deepEqual(takeMessages(r), []);
    pr.recentActive = true;
    r.sendAppend(2n);
    const [m] = takeMessages(r);
    assert.equal(m.type, MessageType.MsgSnap);
  });

  test("a snapshot that is temporarily unavailable is retried later rather than failing", () => {
    const r = newTestRaft(1n, [1n, 2n]);
    r.step(message({ type: MessageType.MsgHup, from: 1n }));
    r.step(message({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 1 }));
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
    const pr = r.trk.progress.get(2n)!;
    pr.recentActive = true;
    pr.msgAppFlowPaused = false;
    pr.next = 1;
    r.sendAppend(2n);
    assert.deepEqual(takeMessages(r), []);
    assert.equal(pr.state, "probe");
  });

  test("a follower installs a snapshot: log reset, commit moved, configuration taken from it", () => {
    const r = newTestRaft(2n, [1n, 2n]);
    const snap: Snapshot = {
      metadata: { index: 11, term: 11, confState: { voters: [1n, 2n, 3n], learners: [] } },
      data: utf8("img"),
    };
    r.step(message({ type: MessageType.MsgSnap, from: 1n, to: 2n, term: 11, snapshot: snap }));
    assert.equal(r.log.lastIndex(), 11);
    assert.equal(r.log.committed, 11);
    assert.deepEqual(r.trk.confState().voters, [1n, 2n, 3n]);
    const [resp] = takeMessages(r);
    assert.equal(resp.type, MessageType.MsgAppResp);
    assert.equal(resp.index, 11);
    assert.equal(r.log.unstable.snapshot, snap);
  });

  test("a snapshot the follower's log already covers only moves the commit index", () => {
    const r = newTestRaft(2n, [1n, 2n]);
    r.step(
      message({
        type: MessageType.MsgApp,
        from: 1n,
        to: 2n,
        term: 1,
        index: 0,
        logTerm: 0,
        entries: [1, 2, 3].map((i) => ({ index: i, term: 1, type: 0, data: utf8("") })),
      }),
    );
    takeMessages(r);
    const snap: Snapshot = {
      metadata: { index: 2, term: 1, confState: { voters: [1n, 2n], learners: [] } },
      data: utf8(""),
    };
    r.step(message({ type: MessageType.MsgSnap, from: 1n, to: 2n, term: 1, snapshot: snap }));
    assert.equal(r.log.committed, 2);
    assert.equal(r.log.lastIndex(), 3, "entries past the snapshot are kept");
    assert.equal(r.log.unstable.snapshot, undefined);
    // A snapshot at or below the commit index is ignored.
    r.step(message({ type: MessageType.MsgSnap, from: 1n, to: 2n, term: 1, snapshot: snap }));
    assert.equal(takeMessages(r).at(-1)?.index, 2);
  });

  test("a member added after compaction starts from the snapshot, then learns of itself from the log", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    for (const d of ["a", "b"]) net.propose(1n, d);
    const snap = compact(net, 1n);
    // The snapshot predates the change that adds 4: its conf state does not list 4.
    net
      .node(1n)
      .rn.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n, context: new Uint8Array(0) });
    net.stabilize();
    net.addNode(4n, new MemoryStorage());
    net.propose(1n, "c");
    net.tickAll(3);
    const n4 = net.node(4n);
    assert.equal(n4.appliedSnapshots[0]?.metadata.index, snap.metadata.index);
    assert.deepEqual(net.appliedText(4n), ["c"]);
    assert.deepEqual(n4.rn.status().confState, { voters: [1n, 2n, 3n], learners: [4n] });
    assert.equal(n4.raft.isLearner, true);
  });

  test("a restarted node recovers from its snapshot and the log after it", () => {
    const net = new Network([1n, 2n, 3n]);
    net.campaign(1n);
    for (const d of ["a", "b"]) net.propose(1n, d);
    const snap = compact(net, 2n);
    net.propose(1n, "c");
    const restarted = net.restart(2n);
    assert.equal(restarted.raft.log.firstIndex(), snap.metadata.index + 1);
    assert.equal(restarted.raft.log.committed, net.raft(1n).log.committed);
    net.propose(1n, "d");
    assert.deepEqual(net.appliedText(2n), ["a", "b", "c", "d"]);
  });
});
