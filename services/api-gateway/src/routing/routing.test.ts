import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { etcdserverpb, v3electionpb, v3lockpb } from "@etcd-ts/api";
import { status } from "@grpc/grpc-js";
import { judgeFailure, mayRetry, retryDelayMs } from "./failure-policy.js";
import { type ClusterSnapshot, type MemberState, type RoundRobin, selectMember } from "./member-selection.js";
import { METHOD_BY_PATH, METHOD_ROUTES } from "./method-table.js";

const member = (id: string, over: Partial<MemberState> = {}): MemberState => ({
  id,
  address: `127.0.0.1:${id}`,
  isLearner: false,
  healthy: true,
  latencyMs: 1,
  ...over,
});

describe("selectMember", () => {
  const snap: ClusterSnapshot = {
    members: [member("a", { latencyMs: 3 }), member("b", { latencyMs: 1 }), member("c", { latencyMs: 2 })],
    leaderId: "c",
  };

  it("sends leader-bound calls to the leader, else the nearest healthy voter", () => {
    const rr: RoundRobin = { next: 0 };
    assert.equal(selectMember({ kind: "leader" }, snap, rr)?.id, "c");
    assert.equal(selectMember({ kind: "leader" }, { ...snap, leaderId: undefined }, rr)?.id, "b");
  });

  it("waits rather than sending leader-bound calls to followers while the known leader is down", () => {
    const rr: RoundRobin = { next: 0 };
    assert.equal(selectMember({ kind: "leader" }, snap, rr, new Set(["c"])), undefined);
    const leaderDown: ClusterSnapshot = {
      members: snap.members.map((m) => (m.id === "c" ? { ...m, healthy: false } : m)),
      leaderId: "c",
    };
    assert.equal(selectMember({ kind: "leader" }, leaderDown, rr), undefined);
  });

  it("spreads linearizable reads round-robin over healthy voters only", () => {
    const rr: RoundRobin = { next: 0 };
    const s: ClusterSnapshot = {
      members: [...snap.members, member("l", { isLearner: true }), member("d", { healthy: false })],
      leaderId: "c",
    };
    const picks = Array.from({ length: 6 }, () => selectMember({ kind: "linearizable" }, s, rr)?.id);
    assert.deepEqual(picks, ["a", "b", "c", "a", "b", "c"]);
  });

  it("sends serializable reads to the lowest-latency healthy member, learners when allowed", () => {
    const rr: RoundRobin = { next: 0 };
    const s: ClusterSnapshot = {
      members: [...snap.members, member("l", { isLearner: true, latencyMs: 0.5 })],
      leaderId: "c",
    };
    assert.equal(selectMember({ kind: "serializable", learners: false }, s, rr)?.id, "b");
    assert.equal(selectMember({ kind: "serializable", learners: true }, s, rr)?.id, "l");
    assert.equal(selectMember({ kind: "serializable", learners: false }, s, rr, new Set(["b"]))?.id, "c");
  });

  it("falls back to unhealthy members rather than to nothing, and to nothing when all are excluded", () => {
    const rr: RoundRobin = { next: 0 };
    const down: ClusterSnapshot = { members: [member("a", { healthy: false })], leaderId: undefined };
    assert.equal(selectMember({ kind: "linearizable" }, down, rr)?.id, "a");
    assert.equal(selectMember({ kind: "leader" }, { ...down, leaderId: undefined }, rr)?.id, "a");
    assert.equal(selectMember({ kind: "linearizable" }, down, rr, new Set(["a"])), undefined);
  });

  it("honours an explicitly named member", () => {
    assert.equal(selectMember({ kind: "member", id: "a" }, snap, { next: 0 })?.id, "a");
    assert.equal(selectMember({ kind: "member", id: "zz" }, snap, { next: 0 }), undefined);
  });
});

describe("judgeFailure", () => {
  it("retries anything the member refused before acting on it", () => {
    const v = judgeFailure(status.FAILED_PRECONDITION, "etcdserver: not leader");
    assert.ok(mayRetry(v, false));
    assert.ok(v.refresh);
    assert.ok(mayRetry(judgeFailure(status.UNKNOWN, "raft proposal dropped"), false));
  });

  it("retries a mutation after a connection failure only if nothing was sent", () => {
    const notSent = judgeFailure(
      status.UNAVAILABLE,
      "No connection established. Last error: connect ECONNREFUSED",
    );
    assert.ok(mayRetry(notSent, false));
    assert.ok(notSent.memberDown);
    const dropped = judgeFailure(status.UNAVAILABLE, "Connection dropped");
    assert.ok(!mayRetry(dropped, false));
    assert.ok(mayRetry(dropped, true));
  });

  it("retries reads but not writes after ambiguous etcd timeouts", () => {
    const v = judgeFailure(status.UNAVAILABLE, "etcdserver: request timed out");
    assert.ok(mayRetry(v, true));
    assert.ok(!mayRetry(v, false));
    assert.ok(!v.memberDown);
  });

  it("never retries errors that are the answer", () => {
    for (const [code, msg] of [
      [status.INVALID_ARGUMENT, "etcdserver: key is not provided"],
      [status.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"],
      [status.DEADLINE_EXCEEDED, "Deadline exceeded"],
      [status.CANCELLED, "Cancelled on client"],
    ] as const) {
      assert.ok(!mayRetry(judgeFailure(code, msg), true), msg);
    }
  });

  it("backs off exponentially up to a cap", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 10].map(retryDelayMs), [25, 50, 100, 200, 400, 500, 500]);
  });
});

describe("METHOD_ROUTES", () => {
  it("has one route per path and covers etcd's KV, Watch, Lease services", () => {
    assert.equal(METHOD_BY_PATH.size, METHOD_ROUTES.length);
    for (const p of [
      "/etcdserverpb.KV/Range",
      "/etcdserverpb.Watch/Watch",
      "/etcdserverpb.Lease/LeaseKeepAlive",
    ]) {
      assert.ok(METHOD_BY_PATH.has(p), p);
    }
    assert.equal(METHOD_BY_PATH.get("/etcdserverpb.KV/Put")?.idempotent, false);
  });

  it("matches the generated service definitions path for path, streaming shape included", () => {
    const generated = [
      etcdserverpb.KVService,
      etcdserverpb.WatchService,
      etcdserverpb.LeaseService,
      etcdserverpb.ClusterService,
      etcdserverpb.MaintenanceService,
      etcdserverpb.AuthService,
      v3electionpb.ElectionService,
      v3lockpb.LockService,
    ].flatMap((svc) => Object.values(svc));
    assert.equal(generated.length, METHOD_ROUTES.length);
    for (const def of generated) {
      const route = METHOD_BY_PATH.get(def.path);
      assert.ok(route, `no route for ${def.path}`);
      const shape = def.requestStream ? "bidi" : def.responseStream ? "server-stream" : "unary";
      assert.equal(route.shape, shape, def.path);
    }
  });
});
