import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { etcdserverpb, mvccpb } from "@etcd-ts/api";
import { type FakeStream, FakeTransport } from "../watch/fake-upstream.fixture.js";
import { WatchHub } from "../watch/watch-hub.js";
import { RangeCache } from "./range-cache.js";
import { RangeCacheFeed, REWATCH_DELAY_MS } from "./range-cache-feed.js";

const { RangeRequest, RangeResponse } = etcdserverpb;

const rangeOf = (key: string, rangeEnd = "") =>
  Buffer.from(
    RangeRequest.encode(
      RangeRequest.fromPartial({
        key: Buffer.from(key),
        rangeEnd: Buffer.from(rangeEnd),
        serializable: true,
      }),
    ).finish(),
  );
const answerAt = (revision: number) =>
  Buffer.from(RangeResponse.encode(RangeResponse.fromPartial({ header: { revision } })).finish());
const put = (key: string, modRevision: number) => ({
  type: mvccpb.Event_EventType.PUT,
  kv: { key: Buffer.from(key), value: Buffer.from("v"), modRevision },
});

describe("RangeCacheFeed", () => {
  let transport: FakeTransport;
  let hub: WatchHub;
  let cache: RangeCache;
  let clock: number;
  let feed: RangeCacheFeed;

  beforeEach(() => {
    transport = new FakeTransport();
    hub = new WatchHub(transport);
    cache = new RangeCache();
    clock = 1_000;
    feed = new RangeCacheFeed(cache, hub, () => clock);
  });

  /** Caches an answer to a serializable get of `key` at `revision`. */
  function cached(key: string, revision: number, rangeEnd = "") {
    const ticket = feed.ticketFor(rangeOf(key, rangeEnd), undefined);
    assert.ok(ticket);
    assert.equal(cache.offer(ticket, answerAt(revision), revision), true);
    return ticket;
  }

  /** Starts the feed's watch and has the member create it at `revision`. */
  function established(revision: number): FakeStream {
    assert.equal(feed.ticketFor(rangeOf("start"), undefined) !== undefined, true);
    const stream = transport.last;
    stream.push({ header: { revision }, watchId: 7, created: true });
    return stream;
  }

  it("opens no watch until the first cacheable request, then one over every key", () => {
    const pastRevision = Buffer.from(
      RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from("a"), revision: 3 })).finish(),
    );
    assert.equal(feed.ticketFor(pastRevision, undefined), undefined);
    assert.equal(
      feed.ticketFor(rangeOf("a"), { claims: undefined }),
      undefined,
      "auth calls do not start it",
    );
    assert.equal(transport.streams.length, 0);
    feed.ticketFor(rangeOf("a"), undefined);
    feed.ticketFor(rangeOf("b"), undefined);
    assert.equal(transport.streams.length, 1);
    const [create] = transport.last.sent;
    assert.deepEqual(Buffer.from(create!.createRequest!.key), Buffer.from([0]));
    assert.deepEqual(Buffer.from(create!.createRequest!.rangeEnd), Buffer.from([0]));
    assert.equal(create!.createRequest!.startRevision, 0n);
    assert.equal(create!.createRequest!.progressNotify, true);
    assert.equal(cache.live, false, "not live before the member answers");
  });

  it("goes live at the created revision, invalidates on events, advances on events and progress", () => {
    const stream = established(20);
    assert.deepEqual([cache.live, cache.watchedRevision], [true, 20]);
    const a = cached("a", 20);
    const b = cached("b", 20);
    const dir = cached("dir/", 20, "dir0");
    stream.push({ header: { revision: 22 }, watchId: 7, events: [put("a", 21), put("dir/x", 22)] });
    assert.equal(cache.watchedRevision, 22);
    assert.equal(cache.lookup(a), undefined);
    assert.equal(cache.lookup(dir), undefined);
    assert.ok(cache.lookup(b));
    stream.push({ header: { revision: 30 }, watchId: 7 });
    assert.equal(cache.watchedRevision, 30, "a progress notification is fully delivered");
  });

  it("advances through a fragmented response only once its last fragment is in", () => {
    const stream = established(20);
    const b = cached("b", 20);
    stream.push({ header: { revision: 23 }, watchId: 7, fragment: true, events: [put("a", 21)] });
    assert.equal(cache.watchedRevision, 20);
    stream.push({ header: { revision: 23 }, watchId: 7, fragment: true, events: [put("b", 22)] });
    assert.equal(cache.lookup(b), undefined, "each fragment invalidates as it arrives");
    assert.equal(cache.watchedRevision, 20);
    stream.push({ header: { revision: 23 }, watchId: 7, events: [put("c", 23)] });
    assert.equal(cache.watchedRevision, 23);
  });

  it("trusts event revisions over a header that runs ahead of them (a catch-up batch)", () => {
    const stream = established(20);
    stream.push({ header: { revision: 5_000 }, watchId: 7, events: [put("a", 21), put("b", 25)] });
    assert.equal(cache.watchedRevision, 25);
  });

  it("stays live, entries kept, when the hub moves the watch to another member", () => {
    const first = established(20);
    const a = cached("a", 20);
    const b = cached("b", 20);
    first.push({ header: { revision: 21 }, watchId: 7, events: [put("x", 21)] });
    first.fail({ code: 14, details: "member down", final: false });
    const second = transport.last;
    assert.notEqual(second.memberId, first.memberId);
    assert.equal(second.sent[0]?.createRequest?.startRevision, 22n, "resumed after what was delivered");
    second.push({ header: { revision: 23 }, watchId: 1, created: true });
    assert.equal(cache.live, true);
    assert.ok(cache.lookup(a));
    second.push({ header: { revision: 23 }, watchId: 1, events: [put("b", 22), put("y", 23)] });
    assert.equal(cache.lookup(b), undefined);
    assert.equal(cache.watchedRevision, 23);
  });

  it("clears and goes not-live when the watch is canceled, and watches again after a pause", () => {
    const stream = established(20);
    const a = cached("a", 20);
    stream.push({ header: { revision: 40 }, watchId: 7, canceled: true, compactRevision: 30 });
    assert.deepEqual([cache.live, cache.size], [false, 0]);
    assert.equal(cache.lookup(a), undefined);
    const streamsBefore = transport.streams.flatMap((s) => s.sent).length;
    feed.ticketFor(rangeOf("a"), undefined);
    assert.equal(transport.streams.flatMap((s) => s.sent).length, streamsBefore, "no new watch at once");
    clock += REWATCH_DELAY_MS;
    feed.ticketFor(rangeOf("a"), undefined);
    const creates = transport.streams.flatMap((s) => s.sent).filter((r) => r.createRequest !== undefined);
    assert.equal(creates.length, 2);
    transport.last.push({ header: { revision: 41 }, watchId: 8, created: true });
    assert.deepEqual([cache.live, cache.watchedRevision], [true, 41]);
  });

  it("treats a refused create like a cancellation", () => {
    feed.ticketFor(rangeOf("a"), undefined);
    transport.last.push({ header: { revision: 3 }, watchId: -1, created: true, canceled: true });
    assert.equal(cache.live, false);
  });

  it("ends its watch and stays not-live once closed", () => {
    const stream = established(20);
    cached("a", 20);
    feed.close();
    assert.deepEqual([cache.live, cache.size], [false, 0]);
    assert.equal(stream.sent.at(-1)?.cancelRequest?.watchId, 7n);
    clock += REWATCH_DELAY_MS;
    feed.ticketFor(rangeOf("a"), undefined);
    assert.equal(transport.streams.flatMap((s) => s.sent).filter((r) => r.createRequest).length, 1);
  });

  it("answers nothing and drops its watch once auth is enabled, until it is disabled", () => {
    established(10);
    const ticket = cached("a", 10);
    assert.ok(cache.lookup(ticket), "served while auth is off");
    feed.setAuthEnabled(true);
    assert.equal(cache.lookup(ticket), undefined, "the cached answer is gone");
    assert.equal(feed.ticketFor(rangeOf("a"), undefined), undefined, "no ticket for a call without a token");
    assert.equal(feed.watching, false);
    clock += REWATCH_DELAY_MS;
    assert.equal(feed.ticketFor(rangeOf("a"), undefined), undefined);
    assert.equal(feed.watching, false, "no new watch while auth is on");
    feed.setAuthEnabled(false);
    assert.ok(feed.ticketFor(rangeOf("a"), undefined));
    assert.equal(feed.watching, true);
  });

  it("keeps auth on when a probe sent before the enable reports it off", () => {
    established(10);
    const probeSent = clock;
    clock += 50;
    feed.setAuthEnabled(true); // an AuthEnable this gateway forwarded, answered now
    feed.setAuthEnabled(false, probeSent); // the tracker's older AuthStatus answer arrives late
    assert.equal(feed.ticketFor(rangeOf("a"), undefined), undefined, "still no cached answers");
    feed.setAuthEnabled(false, clock + 1); // a probe sent after it: auth really is off
    assert.ok(feed.ticketFor(rangeOf("a"), undefined));
  });

  describe("with auth on and a user of its own", () => {
    const as = (username: string, revision: number) => ({ claims: { username, revision } });

    /** Auth on, the cache's watch authenticated as root and created at `revision`. */
    async function authedAndEstablished(revision: number): Promise<FakeStream> {
      let logins = 0;
      feed.authenticate = async () => `root-token-${++logins}`;
      feed.setAuthEnabled(true);
      assert.ok(feed.ticketFor(rangeOf("start"), as("root", 5)));
      await new Promise((resolve) => setImmediate(resolve));
      const stream = transport.last;
      assert.deepEqual(stream.auth, { token: "root-token-1" }, "the watch carries the cache user's token");
      stream.push({ header: { revision }, watchId: 7, created: true });
      return stream;
    }

    it("serves a user only the ranges a member let them read, at the newest auth revision", async () => {
      await authedAndEstablished(10);
      const ticket = feed.ticketFor(rangeOf("/alice/a"), as("alice", 5));
      assert.ok(ticket);
      assert.equal(feed.lookup(ticket, as("alice", 5)), undefined, "not known to be allowed yet");
      feed.answered(ticket, as("alice", 5), answerAt(10), 10);
      assert.ok(feed.lookup(ticket, as("alice", 5)), "a member let alice read it at revision 5");
      assert.equal(feed.lookup(ticket, as("bob", 5)), undefined, "bob never was");
      assert.ok(feed.lookup(ticket, as("root", 5)), "root reads everything");
      const other = feed.ticketFor(rangeOf("/alice/b"), as("alice", 5));
      assert.ok(other);
      feed.answered(other, as("alice", 5), answerAt(10), 10);
      assert.equal(
        feed.lookup(feed.ticketFor(rangeOf("/alice/a", "/alice/z"), as("alice", 5))!, as("alice", 5)),
        undefined,
      );

      feed.authChanged(); // a revoke went through this gateway
      assert.equal(feed.lookup(ticket, as("alice", 5)), undefined, "nothing learnt at 5 holds");
      assert.equal(feed.lookup(ticket, as("root", 5)), undefined, "an old token, even root's");
      assert.equal(feed.lookup(ticket, as("alice", 6)), undefined, "alice at 6: ask a member again");
      feed.answered(ticket, as("alice", 6), answerAt(10), 10);
      assert.ok(feed.lookup(ticket, as("alice", 6)));

      feed.authRevisionSeen(7); // an AuthStatus answer: someone changed auth elsewhere
      assert.equal(feed.lookup(ticket, as("alice", 6)), undefined);
      assert.equal(feed.lookup(ticket, as("alice", 7)), undefined);
      feed.ticketFor(rangeOf("/alice/a"), as("carol", 8)); // a newer token proves a newer store
      feed.answered(ticket, as("alice", 7), answerAt(10), 10);
      assert.equal(feed.lookup(ticket, as("alice", 7)), undefined, "learnt at an old revision: not kept");
    });

    it("gives no ticket to tokenless, unverified or linearizable reads", async () => {
      await authedAndEstablished(10);
      assert.equal(feed.ticketFor(rangeOf("a"), undefined), undefined, "no token");
      assert.equal(feed.ticketFor(rangeOf("a"), { claims: undefined }), undefined, "a simple token");
      const linearizable = Buffer.from(
        RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from("a") })).finish(),
      );
      assert.equal(feed.ticketFor(linearizable, as("root", 5)), undefined);
    });

    it("authenticates anew for each watch it creates, and starts over when auth goes off", async () => {
      const first = await authedAndEstablished(10);
      const ticket = feed.ticketFor(rangeOf("/a"), as("root", 5))!;
      feed.answered(ticket, as("root", 5), answerAt(10), 10);
      assert.ok(feed.lookup(ticket, as("root", 5)));
      first.push({ watchId: 7, canceled: true, cancelReason: "etcdserver: invalid auth token" });
      assert.equal(feed.watching, false);
      clock += REWATCH_DELAY_MS;
      feed.ticketFor(rangeOf("/a"), as("root", 5));
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(transport.last.auth, { token: "root-token-2" });
      feed.setAuthEnabled(false, clock + 1);
      assert.equal(feed.watching, false, "the authenticated watch is dropped");
      assert.ok(feed.ticketFor(rangeOf("/a"), undefined));
      assert.deepEqual(transport.last.auth, {}, "a tokenless watch again");
    });

    it("stays off under auth without a user of its own", () => {
      feed.setAuthEnabled(true);
      assert.equal(feed.ticketFor(rangeOf("a"), as("root", 5)), undefined);
      assert.equal(feed.watching, false);
    });
  });
});
