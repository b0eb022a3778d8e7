import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import pino from "pino";
import { RangeCache } from "../cache/range-cache.js";
import { RangeCacheFeed } from "../cache/range-cache-feed.js";
import type { MemberChannel, UnaryResult } from "../cluster/member-channel.js";
import type { MemberDirectory } from "../cluster/member-directory.js";
import { GatewayMetrics } from "../observability/gateway-metrics.js";
import type { ClusterSnapshot } from "../routing/member-selection.js";
import { METHOD_BY_PATH, type MethodRoute } from "../routing/method-table.js";
import { WatchHub } from "../watch/watch-hub.js";
import { UnaryForwarder } from "./unary-forwarder.js";

const { RangeRequest, PutRequest, TxnRequest, CompactionRequest } = etcdserverpb;

/** Any etcd response: all the gateway reads is the header (field 1) revision (3). */
function answerAt(revision: number, memberTag: number): Buffer {
  return Buffer.from(
    etcdserverpb.RangeResponse.encode(
      etcdserverpb.RangeResponse.fromPartial({ header: { revision, raftTerm: memberTag } }),
    ).finish(),
  );
}

const route = (path: string): MethodRoute => METHOD_BY_PATH.get(path)!;
const RANGE = route("/etcdserverpb.KV/Range");
const serializableGet = Buffer.from(
  RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from("a"), serializable: true })).finish(),
);

class FakeMembers implements MemberDirectory {
  /** The header revision each member answers at. */
  revisions = new Map([
    ["leader", 10],
    ["near", 10],
  ]);
  calls: { member: string; path: string }[] = [];
  /** The metadata each call was sent with. */
  sentMetadata: (grpc.Metadata | undefined)[] = [];
  /** When set, every call ends with this instead of an answer. */
  failure: UnaryResult | undefined;

  snapshot(): ClusterSnapshot {
    return {
      leaderId: "leader",
      members: [
        { id: "leader", address: "l:1", isLearner: false, healthy: true, latencyMs: 5 },
        { id: "near", address: "n:1", isLearner: false, healthy: true, latencyMs: 1 },
      ],
    };
  }

  channelFor(memberId: string): MemberChannel {
    const channel = {
      call: (path: string, _request: Buffer, metadata: grpc.Metadata | undefined) => {
        this.calls.push({ member: memberId, path });
        this.sentMetadata.push(metadata);
        const result: UnaryResult = this.failure ?? {
          error: undefined,
          response: answerAt(this.revisions.get(memberId)!, memberId === "leader" ? 1 : 2),
          trailers: undefined,
        };
        return { result: Promise.resolve(result), cancel: () => {} };
      },
    };
    return channel as unknown as MemberChannel;
  }

  markDown(): void {}
  async refresh(): Promise<void> {}
  onChange(_listener: (snapshot: ClusterSnapshot) => void): () => void {
    return () => {};
  }
}

describe("UnaryForwarder with the serializable Range cache", () => {
  let members: FakeMembers;
  let cache: RangeCache;
  let forwarder: UnaryForwarder;

  beforeEach(() => {
    members = new FakeMembers();
    cache = new RangeCache();
    const hub = new WatchHub({
      pickMember: () => undefined,
      open: () => ({ send() {}, close() {} }),
      schedule: () => () => {},
    });
    forwarder = new UnaryForwarder(
      members,
      new GatewayMetrics(),
      pino({ level: "silent" }),
      { maxAttempts: 2, retryBudgetMs: 1_000 },
      new RangeCacheFeed(cache, hub),
    );
  });

  const call = (r: MethodRoute, body: Buffer, metadata = new grpc.Metadata()) =>
    forwarder.forward(r, body, metadata, undefined, undefined);

  it("answers a repeated serializable get from the cache once the watch is live", async () => {
    await call(RANGE, serializableGet);
    assert.equal(members.calls.length, 1, "nothing cached before the watch is live");
    cache.goLive(10);
    await call(RANGE, serializableGet);
    const hit = await call(RANGE, serializableGet);
    assert.deepEqual(hit.response, answerAt(10, 2));
    assert.equal(members.calls.length, 2);
    assert.deepEqual([cache.hits, cache.misses], [1, 2]);
  });

  it("answers a repeated linearizable get from the cache after a read barrier round to the leader", async () => {
    cache.goLive(10);
    const linearizable = Buffer.from(
      RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from("a") })).finish(),
    );
    const first = await call(RANGE, linearizable);
    assert.equal(members.calls.length, 1, "a miss goes to a member");
    members.calls = [];
    const hit = await call(RANGE, linearizable);
    assert.deepEqual(hit.response, first.response, "answered from the cache at the barrier's revision");
    assert.deepEqual(members.calls, [{ member: "leader", path: "/etcdserverpb.KV/Range" }], "only the probe");
    // The leader is ahead of what the watch has delivered: after a short wait, to a member.
    members.revisions.set("leader", 12);
    members.calls = [];
    const behind = await call(RANGE, linearizable);
    assert.equal(members.calls.length, 2, "the probe, then the read itself");
    assert.equal(Number(etcdserverpb.RangeResponse.decode(behind.response!).header!.revision) >= 10, true);
    assert.deepEqual([cache.hits, cache.misses], [1, 2]);
  });

  it("answers a cached serializable get at once (cachedRange), only what forward would serve", async () => {
    const headers = (h: Record<string, string>) => (name: string) => h[name];
    const linearizable = Buffer.from(
      RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from("a") })).finish(),
    );
    cache.goLive(10);
    assert.equal(forwarder.cachedRange(RANGE, serializableGet, headers({})), undefined, "not cached yet");
    await call(RANGE, serializableGet);
    assert.deepEqual(forwarder.cachedRange(RANGE, serializableGet, headers({})), answerAt(10, 2));
    assert.equal(
      forwarder.cachedRange(RANGE, serializableGet, headers({ token: "t" })),
      undefined,
      "a token: forward judges it",
    );
    assert.equal(
      forwarder.cachedRange(RANGE, serializableGet, headers({ authorization: "t" })),
      undefined,
      "so is an authorization header",
    );
    assert.equal(
      forwarder.cachedRange(RANGE, linearizable, headers({})),
      undefined,
      "a linearizable read not held: forward asks a member",
    );
    assert.equal(
      forwarder.cachedRange(route("/etcdserverpb.KV/Put"), serializableGet, headers({})),
      undefined,
    );
    // Behind a write this gateway acknowledged: not served, as forward would not.
    cache.acknowledgeWrite(12);
    assert.equal(forwarder.cachedRange(RANGE, serializableGet, headers({})), undefined);
    assert.equal(members.calls.length, 1);
    assert.deepEqual([cache.hits, cache.misses], [1, 3]);
  });

  it("answers a held linearizable get through cachedRange after its barrier, and forward with cacheTried sends no second probe", async () => {
    const headers = (name: string): string | undefined => (name === "x" ? "" : undefined);
    const linearizable = Buffer.from(
      RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from("a") })).finish(),
    );
    cache.goLive(10);
    assert.equal(
      forwarder.cachedRange(RANGE, linearizable, headers),
      undefined,
      "not held: forward asks a member",
    );
    const first = await call(RANGE, linearizable);
    members.calls = [];
    const pending = forwarder.cachedRange(RANGE, linearizable, headers);
    assert.ok(pending instanceof Promise, "held: answered after the barrier");
    assert.deepEqual(await pending, first.response);
    assert.deepEqual(members.calls, [{ member: "leader", path: "/etcdserverpb.KV/Range" }], "only the probe");
    // The leader is ahead of the watch: no answer from the cache, and the read then goes to a
    // member without another barrier round.
    members.revisions.set("leader", 12);
    members.calls = [];
    const behind = forwarder.cachedRange(RANGE, linearizable, headers);
    assert.ok(behind instanceof Promise);
    assert.equal(await behind, undefined);
    assert.equal(members.calls.length, 1, "the probe");
    const outcome = await forwarder.forward(
      RANGE,
      linearizable,
      new grpc.Metadata(),
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      true,
    );
    assert.equal(members.calls.length, 2, "then the read itself, no second probe");
    assert.equal(outcome.error, undefined);
    assert.deepEqual([cache.hits, cache.misses], [1, 2]);
  });

  it("sends a call that came without metadata with none, and one with a token with it", async () => {
    const put = Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from("a") })).finish());
    const outcome = await forwarder.forward(
      route("/etcdserverpb.KV/Put"),
      put,
      undefined,
      undefined,
      undefined,
    );
    assert.equal(outcome.error, undefined);
    const withToken = new grpc.Metadata();
    withToken.set("token", "t");
    await call(route("/etcdserverpb.KV/Put"), put, withToken);
    assert.deepEqual(
      members.sentMetadata.map((m) => m?.get("token")),
      [undefined, ["t"]],
    );
    // A Range without metadata is still cached (no token: anyone's answer).
    cache.goLive(10);
    for (let i = 0; i < 2; i++)
      await forwarder.forward(RANGE, serializableGet, undefined, undefined, undefined);
    assert.equal(cache.hits, 1);
  });

  it("never caches calls carrying a token", async () => {
    cache.goLive(10);
    const withToken = new grpc.Metadata();
    withToken.set("token", "t");
    for (let i = 0; i < 2; i++) await call(RANGE, serializableGet, withToken);
    assert.equal(members.calls.length, 2);
    assert.equal(cache.size, 0);
  });

  it("raises the floor on acknowledged writes, not on compaction or read-only txns", async () => {
    members.revisions.set("leader", 20);
    await call(
      route("/etcdserverpb.KV/Compact"),
      Buffer.from(CompactionRequest.encode({ revision: 5n, physical: false }).finish()),
    );
    const readOnly = TxnRequest.fromPartial({ success: [{ requestRange: { key: Buffer.from("a") } }] });
    await call(route("/etcdserverpb.KV/Txn"), Buffer.from(TxnRequest.encode(readOnly).finish()));
    assert.equal(cache.floor, 0);
    await call(
      route("/etcdserverpb.KV/Put"),
      Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from("a") })).finish()),
    );
    assert.equal(cache.floor, 20);
    members.revisions.set("leader", 21);
    const write = TxnRequest.fromPartial({ failure: [{ requestPut: { key: Buffer.from("a") } }] });
    await call(route("/etcdserverpb.KV/Txn"), Buffer.from(TxnRequest.encode(write).finish()));
    assert.equal(cache.floor, 21);
  });

  it("takes a lagging member's answer without serving it before the watch passes the write", async () => {
    cache.goLive(10);
    cache.acknowledgeWrite(12);
    members.revisions.set("near", 11);
    const answer = await call(RANGE, serializableGet);
    assert.deepEqual(answer.response, answerAt(11, 2), "the member's answer, as etcd would give it");
    await call(RANGE, serializableGet);
    assert.equal(members.calls.length, 2, "not served from the cache while the watch is behind the write");
    cache.advance(12);
    await call(RANGE, serializableGet);
    assert.equal(members.calls.length, 2, "served once the watch has passed the write");
  });
});

describe("UnaryForwarder and relayed answers", () => {
  const dropped = (relayed: boolean): UnaryResult => ({
    error: { code: grpc.status.UNAVAILABLE, details: "Connection dropped", metadata: new grpc.Metadata() },
    response: undefined,
    trailers: undefined,
    relayed,
  });
  const relay = { start: () => undefined };

  for (const relayed of [false, true]) {
    it(`${relayed ? "does not retry" : "retries"} a Range cut off mid-answer when ${relayed ? "part of it already went" : "nothing went"} to the client`, async () => {
      const members = new FakeMembers();
      members.failure = dropped(relayed);
      const forwarder = new UnaryForwarder(members, new GatewayMetrics(), pino({ level: "silent" }), {
        maxAttempts: 2,
        retryBudgetMs: 1_000,
      });
      const outcome = await forwarder.forward(
        RANGE,
        serializableGet,
        new grpc.Metadata(),
        undefined,
        undefined,
        undefined,
        undefined,
        relay,
      );
      assert.equal(outcome.error?.code, grpc.status.UNAVAILABLE);
      assert.equal(outcome.relayed === true, relayed);
      // A second answer after part of the first would corrupt the client's message.
      assert.equal(members.calls.length, relayed ? 1 : 2);
    });
  }
});

describe("UnaryForwarder waiting for a leader", () => {
  /** The known leader is down; a refresh takes `refreshMs`; `announce` makes `next` the leader. */
  class LeaderlessMembers extends FakeMembers {
    private leader = "old";
    private readonly listeners = new Set<(s: ClusterSnapshot) => void>();
    refreshes = 0;
    constructor(private readonly refreshMs: number) {
      super();
    }
    override snapshot(): ClusterSnapshot {
      return {
        leaderId: this.leader,
        members: [
          { id: "old", address: "o:1", isLearner: false, healthy: false, latencyMs: 1 },
          { id: "next", address: "n:1", isLearner: false, healthy: true, latencyMs: 1 },
        ],
      };
    }
    override async refresh(): Promise<void> {
      this.refreshes++;
      await new Promise((r) => setTimeout(r, this.refreshMs));
    }
    override onChange(listener: (s: ClusterSnapshot) => void): () => void {
      this.listeners.add(listener);
      return () => this.listeners.delete(listener);
    }
    announce(): void {
      this.leader = "next";
      for (const l of this.listeners) l(this.snapshot());
    }
  }

  const put = Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from("a") })).finish());

  it("sends a write to a newly announced leader at once, not after the refresh or backoff it waits on", async () => {
    const members = new LeaderlessMembers(3_000);
    members.revisions.set("next", 7);
    const forwarder = new UnaryForwarder(members, new GatewayMetrics(), pino({ level: "silent" }), {
      maxAttempts: 12,
      retryBudgetMs: 10_000,
    });
    const started = performance.now();
    const answer = forwarder.forward(
      route("/etcdserverpb.KV/Put"),
      put,
      new grpc.Metadata(),
      undefined,
      undefined,
    );
    setTimeout(() => members.announce(), 50);
    const outcome = await answer;
    const elapsed = performance.now() - started;
    assert.equal(outcome.error, undefined);
    assert.deepEqual(members.calls, [{ member: "next", path: "/etcdserverpb.KV/Put" }]);
    // The refresh it was waiting on takes 3 s: it must not have waited for it.
    assert.ok(elapsed < 1_500, `took ${elapsed.toFixed(0)} ms`);
    assert.equal(members.refreshes, 1);
  });
});
