import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { RangeCache, type RangeCacheOptions, type RangeCacheTicket, rangeHolds } from "./range-cache.js";

const { RangeRequest, RangeResponse } = etcdserverpb;

function request(key: string | Buffer, fields: Parameters<typeof RangeRequest.fromPartial>[0] = {}): Buffer {
  return Buffer.from(
    RangeRequest.encode(
      RangeRequest.fromPartial({
        key: typeof key === "string" ? Buffer.from(key) : key,
        serializable: true,
        ...fields,
      }),
    ).finish(),
  );
}

function response(revision: number, value = "v"): Buffer {
  return Buffer.from(
    RangeResponse.encode(
      RangeResponse.fromPartial({
        header: { revision },
        kvs: [{ key: Buffer.from("k"), value: Buffer.from(value), modRevision: revision }],
        count: 1,
      }),
    ).finish(),
  );
}

function liveCache(watchedRevision = 10, options?: Partial<RangeCacheOptions>): RangeCache {
  const cache = new RangeCache({ maxEntries: 100, maxBytes: 1 << 20, maxRangeEntries: 8, ...options });
  cache.goLive(watchedRevision);
  return cache;
}

function ticket(cache: RangeCache, req: Buffer): RangeCacheTicket {
  const t = cache.ticketFor(req, false);
  assert.ok(t, "cacheable");
  return t;
}

/** Caches `req`'s answer at `revision`, asserting the cache took it. */
function store(cache: RangeCache, req: Buffer, revision: number, value = "v"): RangeCacheTicket {
  const t = ticket(cache, req);
  assert.equal(cache.offer(t, response(revision, value), revision), true);
  return t;
}

describe("RangeCache: what is cacheable", () => {
  it("takes requests at the current revision only, serializable or linearizable", () => {
    const cache = liveCache();
    assert.equal(cache.ticketFor(request("a"), false)?.range.serializable, true);
    assert.equal(cache.ticketFor(request("a", { serializable: false }), false)?.range.serializable, false);
    assert.equal(cache.ticketFor(request("a", { revision: 5 }), false), undefined);
    assert.equal(cache.ticketFor(request("a", { revision: 5, serializable: false }), false), undefined);
  });

  it("bypasses calls made with auth metadata", () => {
    const cache = liveCache();
    store(cache, request("a"), 10);
    assert.equal(cache.ticketFor(request("a"), true), undefined);
    assert.equal(cache.hits + cache.misses, 0, "an auth call neither hits nor misses");
  });

  it("keys entries by the whole request: another limit is another entry", () => {
    const cache = liveCache();
    store(cache, request("a"), 10, "all");
    assert.equal(cache.lookup(ticket(cache, request("a", { limit: 1 }))), undefined);
    assert.ok(cache.lookup(ticket(cache, request("a"))));
  });
});

describe("RangeCache: freshness", () => {
  it("serves what it stored, and counts hits and misses", () => {
    const cache = liveCache();
    const t = ticket(cache, request("a"));
    assert.equal(cache.lookup(t), undefined);
    const answer = response(12);
    assert.equal(cache.offer(t, answer, 12), true);
    assert.deepEqual(cache.lookup(t), answer);
    assert.deepEqual([cache.hits, cache.misses], [1, 1]);
  });

  it("refuses an answer older than what the watch has delivered", () => {
    const cache = liveCache(10);
    const t = ticket(cache, request("a"));
    assert.equal(cache.offer(t, response(9), 9), false);
    assert.equal(cache.lookup(t), undefined);
    assert.equal(cache.offer(t, response(10), 10), true);
  });

  it("keeps the newer of two answers to one request", () => {
    const cache = liveCache(10);
    const t = store(cache, request("a"), 12, "new");
    assert.equal(cache.offer(t, response(11, "old"), 11), false);
    assert.deepEqual(cache.lookup(t), response(12, "new"));
  });

  it("serves nothing older than an acknowledged write until the watch has delivered it", () => {
    const cache = liveCache(10);
    const t = store(cache, request("a"), 11);
    cache.acknowledgeWrite(15);
    assert.equal(cache.lookup(t), undefined, "the entry may predate the write");
    cache.advance(14);
    assert.equal(cache.lookup(t), undefined);
    cache.advance(15);
    assert.ok(cache.lookup(t), "the watch would have removed it had the write touched it");
    const newer = store(cache, request("b"), 16);
    cache.acknowledgeWrite(16);
    assert.ok(cache.lookup(newer), "an answer at the write's revision includes it");
    cache.acknowledgeWrite(3);
    assert.equal(cache.floor, 16, "the floor never goes down");
  });

  it("stores and serves nothing while the watch is not established, and forgets everything when it goes", () => {
    const cache = new RangeCache();
    const t = ticket(cache, request("a"));
    assert.equal(cache.offer(t, response(5), 5), false);
    cache.goLive(5);
    store(cache, request("a"), 5);
    store(cache, request("a", { rangeEnd: Buffer.from("z") }), 5);
    cache.goNotLive();
    assert.equal(cache.size, 0);
    assert.equal(cache.sizeBytes, 0);
    assert.equal(cache.lookup(t), undefined);
    assert.equal(cache.offer(t, response(6), 6), false);
    cache.goLive(6);
    assert.equal(cache.lookup(t), undefined, "a new watch starts from an empty cache");
  });
});

describe("RangeCache: linearizable reads", () => {
  const revisionOf = (answer: Buffer | undefined) => Number(RangeResponse.decode(answer!).header!.revision);
  const linearizable = (key: string) => request(key, { serializable: false });

  it("serves an entry only once it shows the read barrier's revision", () => {
    const cache = liveCache(10);
    const t = store(cache, linearizable("a"), 12);
    assert.equal(cache.holds(t), true);
    assert.equal(revisionOf(cache.lookupLinearizable(t, 12)), 12, "stored at the barrier's revision");
    assert.equal(cache.lookupLinearizable(t, 13), undefined, "the watch has not delivered 13 yet");
    cache.advance(15);
    assert.equal(revisionOf(cache.lookupLinearizable(t, 13)), 15, "shown at the watched revision");
    assert.equal(cache.lookupLinearizable(t, 16), undefined);
    assert.equal(cache.hits, 2);
    assert.equal(cache.misses, 2);
  });

  it("keeps the answer's bytes but its header revision", () => {
    const cache = liveCache(10);
    const t = store(cache, linearizable("a"), 10, "value");
    cache.advance(20);
    const served = RangeResponse.decode(cache.lookupLinearizable(t, 20)!);
    const stored = RangeResponse.decode(response(10, "value"));
    assert.deepEqual(served, { ...stored, header: { ...stored.header!, revision: 20n } });
  });

  it("serves nothing once an event removed the entry", () => {
    const cache = liveCache(10);
    const t = store(cache, linearizable("a"), 10);
    cache.invalidate("a");
    cache.advance(11);
    assert.equal(cache.holds(t), false);
    assert.equal(cache.lookupLinearizable(t, 11), undefined);
  });

  it("wakes a read waiting for the watch once it delivers, or when the watch is lost", async () => {
    const cache = liveCache(10);
    const order: string[] = [];
    const first = cache.delivered(12).then(() => order.push("12"));
    const second = cache.delivered(14).then(() => order.push("14"));
    cache.advance(11);
    await Promise.resolve();
    assert.deepEqual(order, []);
    cache.advance(13);
    await first;
    assert.deepEqual(order, ["12"]);
    cache.goNotLive();
    await second;
    assert.deepEqual(order, ["12", "14"]);
    await cache.delivered(1_000);
  });
});

describe("RangeCache: invalidation", () => {
  it("removes a single-key entry on an event for its key only", () => {
    const cache = liveCache();
    const a = store(cache, request("a"), 10);
    const ab = store(cache, request("ab"), 10);
    cache.invalidate("ab");
    assert.ok(cache.lookup(a));
    assert.equal(cache.lookup(ab), undefined);
    assert.equal(cache.invalidations, 1);
  });

  it("removes every answer for the same key, whatever its other fields", () => {
    const cache = liveCache();
    const plain = store(cache, request("a"), 10);
    const counted = store(cache, request("a", { countOnly: true }), 10);
    cache.invalidate("a");
    assert.equal(cache.lookup(plain), undefined);
    assert.equal(cache.lookup(counted), undefined);
    assert.equal(cache.size, 0);
  });

  it("removes a range entry on an event inside [key, range_end) and keeps it otherwise", () => {
    const cache = liveCache();
    const t = store(cache, request("b", { rangeEnd: Buffer.from("d") }), 10);
    for (const outside of ["a", "d", "da", "\u0000"]) {
      cache.invalidate(outside);
      assert.ok(cache.lookup(t), `event on ${JSON.stringify(outside)}`);
    }
    cache.invalidate("c\u00ff");
    assert.equal(cache.lookup(t), undefined);
  });

  it("removes a prefix entry on an event under the prefix", () => {
    const cache = liveCache();
    // etcdctl --prefix "dir/": range_end is the prefix with its last byte incremented.
    const t = store(cache, request("dir/", { rangeEnd: Buffer.from("dir0") }), 10);
    cache.invalidate("dir");
    cache.invalidate("dis");
    assert.ok(cache.lookup(t));
    cache.invalidate("dir/deep/key");
    assert.equal(cache.lookup(t), undefined);
  });

  it("reads range_end \\0 as every key from key on, and key \\0 with it as every key", () => {
    const fromM = { key: "m", rangeEnd: "\u0000" };
    assert.equal(rangeHolds(fromM, "l\u00ff"), false);
    assert.equal(rangeHolds(fromM, "m"), true);
    assert.equal(rangeHolds(fromM, "\u00ff\u00ff"), true);
    const all = { key: "\u0000", rangeEnd: "\u0000" };
    for (const key of ["\u0000", "a", "\u00ff"]) assert.equal(rangeHolds(all, key), true);
    const cache = liveCache();
    const t = store(cache, request(Buffer.from([0]), { rangeEnd: Buffer.from([0]) }), 10);
    cache.invalidate("anything");
    assert.equal(cache.lookup(t), undefined);
  });

  it("compares keys as bytes, beyond ASCII", () => {
    const cache = liveCache();
    const t = store(cache, request(Buffer.from([0x80]), { rangeEnd: Buffer.from([0xff]) }), 10);
    cache.invalidate(Buffer.from([0x7f, 0xff]).toString("latin1"));
    cache.invalidate(Buffer.from([0xff]).toString("latin1"));
    assert.ok(cache.lookup(t));
    cache.invalidate(Buffer.from([0xfe, 0x01]).toString("latin1"));
    assert.equal(cache.lookup(t), undefined);
  });

  it("caps range entries, still caching single keys past the cap", () => {
    const cache = liveCache(10, { maxRangeEntries: 2 });
    store(cache, request("a", { rangeEnd: Buffer.from("b") }), 10);
    store(cache, request("c", { rangeEnd: Buffer.from("d") }), 10);
    const third = ticket(cache, request("e", { rangeEnd: Buffer.from("f") }));
    assert.equal(cache.offer(third, response(10), 10), false);
    store(cache, request("e"), 10);
    cache.invalidate("a");
    assert.equal(cache.offer(third, response(10), 10), true, "room again once one went");
  });
});

describe("RangeCache: bounds", () => {
  it("evicts the least recently used entry beyond max entries, a hit refreshing it", () => {
    const cache = liveCache(10, { maxEntries: 2 });
    const a = store(cache, request("a"), 10);
    const b = store(cache, request("b"), 10);
    assert.ok(cache.lookup(a));
    const c = store(cache, request("c"), 10);
    assert.equal(cache.size, 2);
    assert.equal(cache.lookup(b), undefined, "b was the least recently used");
    assert.ok(cache.lookup(a));
    assert.ok(cache.lookup(c));
    assert.equal(cache.invalidations, 0, "evictions are not invalidations");
  });

  it("evicts beyond max bytes, and refuses an answer larger than the whole budget", () => {
    const one = response(10, "x".repeat(1000));
    const cache = liveCache(10, { maxBytes: 3 * one.length + 600 });
    const tickets = ["a", "b", "c", "d"].map((k) => {
      const t = ticket(cache, request(k));
      assert.equal(cache.offer(t, response(10, "x".repeat(1000)), 10), true);
      return t;
    });
    assert.ok(cache.size < 4);
    assert.ok(cache.sizeBytes <= 3 * one.length + 600);
    assert.equal(cache.lookup(tickets[0]!), undefined);
    assert.ok(cache.lookup(tickets[3]!));
    const huge = ticket(cache, request("huge"));
    assert.equal(cache.offer(huge, response(10, "x".repeat(5000)), 10), false);
  });

  it("does not keep a view's whole backing buffer alive", () => {
    const cache = liveCache();
    const backing = Buffer.alloc(64 * 1024);
    const answer = response(10);
    answer.copy(backing, 100);
    const view = backing.subarray(100, 100 + answer.length);
    const t = ticket(cache, request("a"));
    cache.offer(t, view, 10);
    const served = cache.lookup(t)!;
    assert.deepEqual(served, answer);
    assert.ok(served.buffer.byteLength < backing.length);
  });
});
