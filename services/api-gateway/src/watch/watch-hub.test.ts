import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { etcdserverpb, mvccpb } from "@etcd-ts/api";
import { decodeWatchRequest, type WatchCreate } from "../wire/etcd-messages.js";
import { FakeTransport } from "./fake-upstream.fixture.js";
import { type ClientSink, DUPLICATE_WATCH_ID, WatchHub } from "./watch-hub.js";

const { WatchResponse } = etcdserverpb;

class RecordingSink implements ClientSink {
  responses: etcdserverpb.WatchResponse[] = [];
  send(response: Buffer): void {
    this.responses.push(WatchResponse.decode(response));
  }
  get events(): number[] {
    return this.responses.flatMap((r) => r.events.map((e) => Number(e.kv?.modRevision ?? -1)));
  }
}

const create = (over: Partial<WatchCreate> = {}): { kind: "create"; create: WatchCreate } => ({
  kind: "create",
  create: {
    key: Buffer.from("k"),
    rangeEnd: Buffer.alloc(0),
    startRevision: 0,
    progressNotify: false,
    filters: [],
    prevKv: false,
    watchId: 0,
    fragment: false,
    ...over,
  },
});

const header = (revision: number) => ({ clusterId: 1, memberId: 2, revision, raftTerm: 1 });
const events = (watchId: number, ...revs: number[]) => ({
  header: header(revs.at(-1)!),
  watchId,
  events: revs.map((r) => ({
    type: mvccpb.Event_EventType.PUT,
    kv: { key: Buffer.from("k"), modRevision: r },
  })),
});

describe("WatchHub", () => {
  let transport: FakeTransport;
  let hub: WatchHub;
  beforeEach(() => {
    transport = new FakeTransport();
    hub = new WatchHub(transport);
  });

  it("shares one upstream watch between identical watches and fans events out with each client's ID", () => {
    const a = new RecordingSink();
    const b = new RecordingSink();
    const ca = hub.openClient(a, {});
    const cb = hub.openClient(b, {});
    hub.onClientRequest(ca, create());
    hub.onClientRequest(ca, create({ key: Buffer.from("other") }));
    hub.onClientRequest(cb, create());
    assert.equal(transport.allSent.length, 2, "two distinct watches upstream, not three");
    // New upstream watches go to the least loaded member.
    assert.equal(transport.streams.length, 2);
    assert.deepEqual(hub.stats(), { clientWatches: 3, upstreamWatches: 2, upstreamStreams: 2 });

    const up = transport.streams[0]!;
    up.push({ header: header(5), watchId: 0, created: true });
    transport.streams[1]!.push({ header: header(5), watchId: 0, created: true });
    assert.deepEqual(
      a.responses.map((r) => [Number(r.watchId), r.created]),
      [
        [0, true],
        [1, true],
      ],
    );
    assert.deepEqual(
      b.responses.map((r) => [Number(r.watchId), r.created]),
      [[0, true]],
    );

    up.push(events(0, 6, 7));
    assert.deepEqual(a.events, [6, 7]);
    assert.deepEqual(b.events, [6, 7]);
    assert.equal(a.responses.at(-1)!.watchId, 0n);

    // A third client joining now is told it is created at once, without a new upstream watch.
    const c = new RecordingSink();
    hub.onClientRequest(hub.openClient(c, {}), create());
    assert.equal(transport.allSent.length, 2);
    assert.equal(c.responses[0]!.created, true);
  });

  it("cancels the upstream watch only when its last client leaves", () => {
    const a = new RecordingSink();
    const b = new RecordingSink();
    const ca = hub.openClient(a, {});
    const cb = hub.openClient(b, {});
    hub.onClientRequest(ca, create());
    hub.onClientRequest(cb, create());
    const up = transport.streams[0]!;
    up.push({ header: header(5), watchId: 0, created: true });

    hub.onClientRequest(ca, { kind: "cancel", watchId: 0 });
    assert.equal(a.responses.at(-1)!.canceled, true);
    assert.equal(up.sent.filter((r) => r.cancelRequest).length, 0);
    up.push(events(0, 6));
    assert.deepEqual(a.events, []);
    assert.deepEqual(b.events, [6]);

    hub.closeClient(cb);
    assert.deepEqual(
      up.sent.filter((r) => r.cancelRequest).map((r) => r.cancelRequest!.watchId),
      [0n],
    );
    assert.equal(hub.stats().upstreamWatches, 0);
    // Cancelling an unknown watch is answered with silence, as etcd does.
    const before = a.responses.length;
    hub.onClientRequest(ca, { kind: "cancel", watchId: 42 });
    assert.equal(a.responses.length, before);
  });

  it("closes an upstream stream left without watches once it has been idle a while", () => {
    const a = new RecordingSink();
    const ca = hub.openClient(a, { token: "short-lived" });
    hub.onClientRequest(ca, create());
    const up = transport.streams[0]!;
    up.push({ header: header(5), watchId: 0, created: true });
    hub.onClientRequest(ca, { kind: "cancel", watchId: 0 });
    assert.equal(hub.stats().upstreamStreams, 1);
    // A watch that arrives before the idle check keeps the stream.
    hub.onClientRequest(ca, create({ key: Buffer.from("again") }));
    transport.scheduled.shift()!();
    assert.equal(up.closed, false);
    up.push({ header: header(5), watchId: 1, created: true });
    hub.closeClient(ca);
    transport.scheduled.shift()!();
    assert.equal(up.closed, true);
    assert.equal(hub.stats().upstreamStreams, 0);
  });

  it("keeps auth identities apart", () => {
    hub.onClientRequest(hub.openClient(new RecordingSink(), { token: "alice" }), create());
    hub.onClientRequest(hub.openClient(new RecordingSink(), { token: "bob" }), create());
    assert.equal(transport.streams.length, 2);
    assert.deepEqual(
      transport.streams.map((s) => s.auth.token),
      ["alice", "bob"],
    );
  });

  it("gives a watch with an old start revision its own upstream watch, and lets a caught-up one join", () => {
    const a = new RecordingSink();
    hub.onClientRequest(hub.openClient(a, {}), create());
    const up = transport.streams[0]!;
    up.push({ header: header(10), watchId: 0, created: true });
    up.push(events(0, 11));

    const old = new RecordingSink();
    hub.onClientRequest(hub.openClient(old, {}), create({ startRevision: 3 }));
    assert.equal(transport.allSent.length, 2, "history replay needs its own upstream watch");
    assert.equal(transport.allSent[1]!.createRequest!.startRevision, 3n);

    const future = new RecordingSink();
    hub.onClientRequest(hub.openClient(future, {}), create({ startRevision: 13 }));
    assert.equal(
      transport.allSent.length,
      2,
      "a start revision after what was delivered joins the shared watch",
    );
    assert.equal(future.responses[0]!.created, true);
    up.push(events(0, 12, 13));
    assert.deepEqual(a.events, [11, 12, 13]);
    assert.deepEqual(future.events, [13], "events before its start revision are hidden");
  });

  it("answers a reused client watch ID as etcd does", () => {
    const a = new RecordingSink();
    const ca = hub.openClient(a, {});
    hub.onClientRequest(ca, create({ watchId: 7 }));
    hub.onClientRequest(ca, create({ watchId: 7, key: Buffer.from("x") }));
    const dup = a.responses.at(-1)!;
    assert.equal(dup.watchId, -1n);
    assert.equal(dup.canceled, true);
    assert.equal(dup.cancelReason, DUPLICATE_WATCH_ID);
    transport.streams[0]!.push({ header: header(1), watchId: 0, created: true });
    assert.equal(a.responses.at(-1)!.watchId, 7n);
  });

  it("passes a refused create and a compaction cancel on to every client", () => {
    const a = new RecordingSink();
    const b = new RecordingSink();
    hub.onClientRequest(hub.openClient(a, {}), create());
    hub.onClientRequest(hub.openClient(b, {}), create());
    const up = transport.streams[0]!;
    up.push({ header: header(5), watchId: 3, created: true });
    up.push({ header: header(9), watchId: 3, canceled: true, compactRevision: 8 });
    for (const sink of [a, b]) {
      const last = sink.responses.at(-1)!;
      assert.equal(last.canceled, true);
      assert.equal(last.compactRevision, 8n);
      assert.equal(last.watchId, 0n);
    }
    assert.equal(hub.stats().clientWatches, 0);

    const c = new RecordingSink();
    hub.onClientRequest(hub.openClient(c, {}), create({ key: Buffer.from("z"), rangeEnd: Buffer.from("a") }));
    up.push({ header: header(9), watchId: -1, created: true, canceled: true, cancelReason: "bad range" });
    assert.deepEqual(
      [Number(c.responses[0]!.watchId), c.responses[0]!.created, c.responses[0]!.canceled],
      [-1, true, true],
    );
  });

  it("moves watches to another member after a failure, resuming after the last delivered revision", () => {
    const a = new RecordingSink();
    const b = new RecordingSink();
    hub.onClientRequest(hub.openClient(a, {}), create());
    hub.onClientRequest(hub.openClient(b, {}), create());
    const first = transport.streams[0]!;
    first.push({ header: header(10), watchId: 0, created: true });
    first.push(events(0, 11, 12));
    transport.down.add(first.memberId);
    first.fail({ code: 14, details: "Connection dropped", final: false });

    assert.equal(transport.streams.length, 2);
    const second = transport.streams[1]!;
    assert.notEqual(second.memberId, first.memberId);
    assert.equal(second.sent[0]!.createRequest!.startRevision, 13n);
    second.push({ header: header(12), watchId: 0, created: true });
    // A member that replays a delivered revision does not produce a duplicate.
    second.push(events(0, 12, 13));
    second.push(events(0, 14));
    assert.deepEqual(a.events, [11, 12, 13, 14]);
    assert.deepEqual(b.events, [11, 12, 13, 14]);
    assert.equal(a.responses.filter((r) => r.created).length, 1, "the resumption is invisible");
  });

  it("retries later when no member can take a watch, and ends watches on auth failures", () => {
    transport.down = new Set(transport.members);
    const a = new RecordingSink();
    const ca = hub.openClient(a, {});
    hub.onClientRequest(ca, create());
    assert.equal(transport.streams.length, 0);
    assert.equal(transport.scheduled.length, 1);
    transport.down.clear();
    transport.scheduled.shift()!();
    assert.equal(transport.streams.length, 1);
    const up = transport.streams[0]!;
    up.push({ header: header(1), watchId: 0, created: true });
    up.fail({ code: 16, details: "etcdserver: invalid auth token", final: true });
    const last = a.responses.at(-1)!;
    assert.equal(last.canceled, true);
    assert.equal(last.cancelReason, "etcdserver: invalid auth token");
    assert.equal(transport.streams.length, 1);
  });

  it("tries each member once when they all fail a watch, then waits for the retry", () => {
    // Members that still count as usable (a probe has not marked them down yet) but refuse
    // every stream, as when they are all stopped: no open-fail loop between them.
    const a = new RecordingSink();
    hub.onClientRequest(hub.openClient(a, {}), create());
    for (let i = 0; i < transport.members.length; i++)
      transport.last.fail({ code: 14, details: "connect ECONNREFUSED", final: false });
    assert.deepEqual(
      transport.streams.map((s) => s.memberId).sort(),
      [...transport.members].sort(),
      "one stream per member, none tried twice",
    );
    assert.equal(transport.scheduled.length, 1);
    transport.scheduled.shift()!();
    assert.equal(transport.streams.length, transport.members.length + 1, "the retry tries again");
    const up = transport.last;
    up.push({ header: header(3), watchId: 0, created: true });
    // Created: a later failure may move it to any other member at once again.
    up.fail({ code: 14, details: "Connection dropped", final: false });
    assert.equal(transport.streams.length, transport.members.length + 2);
    assert.notEqual(transport.last.memberId, up.memberId);
  });

  it("answers progress requests with the upstream's revision", () => {
    const a = new RecordingSink();
    const ca = hub.openClient(a, {});
    hub.onClientRequest(ca, create());
    const up = transport.streams[0]!;
    up.push({ header: header(4), watchId: 0, created: true });
    hub.onClientRequest(ca, { kind: "progress" });
    assert.ok(up.sent.at(-1)!.progressRequest);
    up.push({ header: header(9), watchId: -1 });
    const last = a.responses.at(-1)!;
    assert.equal(last.watchId, -1n);
    assert.equal(last.header?.revision, 9n);
  });

  it("leaves the gateway's own watches out of the client count, sharing them all the same", () => {
    const internal = hub.openClient(new RecordingSink(), {}, { internal: true });
    const client = hub.openClient(new RecordingSink(), {});
    hub.onClientRequest(internal, create());
    hub.onClientRequest(client, create());
    assert.deepEqual(hub.stats(), { clientWatches: 1, upstreamWatches: 1, upstreamStreams: 1 });
    transport.streams[0]!.push({ header: header(5), watchId: 3, created: true });
    transport.streams[0]!.push({ header: header(6), watchId: 3, canceled: true, compactRevision: 4 });
    assert.equal(hub.stats().clientWatches, 0);
    hub.onClientRequest(internal, create());
    hub.closeClient(internal);
    assert.equal(hub.stats().clientWatches, 0);
  });

  it("decodes what clients send through the shared request decoder", () => {
    const raw = Buffer.from(etcdserverpb.WatchRequest.encode({ cancelRequest: { watchId: 3n } }).finish());
    assert.deepEqual(decodeWatchRequest(raw), { kind: "cancel", watchId: 3 });
  });
});
