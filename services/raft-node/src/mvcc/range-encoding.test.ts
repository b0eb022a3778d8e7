// The chunked Range encoding (what the member sends) against the one-piece encoder and the
// generated (ts-proto) encoder: the same bytes for random answers, and for every request shape
// the store serves, with the worker thread's and the thread pool's reads forced.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import { etcdserverpb, isEtcdError } from "@etcd-ts/api";
import { seededRandom } from "@etcd-ts/raft";
import { apiHeader, apiKeyValue } from "./api-shapes.js";
import { encodeKeyValue, keyValueFields } from "./kv-codec.js";
import type { HeldPart, RangeReadThreads } from "./range-reader.js";
import { rangeRequest } from "./request-builders.js";
import { encodeRangeResponse, rangeResponseParts } from "./response-codec.js";
import { withStore } from "./store-fixture.js";
import type { KeyValue, RangeRequest, RangeResponse, ResponseHeader } from "./types.js";
import { SortOrder, SortTarget } from "./types.js";

/** Seeded, so a failure can be replayed. */
const random = seededRandom;

function randomKeyValue(rand: () => number): KeyValue {
  const int = (max: number) => Math.floor(rand() * max);
  const bytes = (max: number) => Buffer.from(Array.from({ length: int(max) }, () => int(256)));
  const revision = () => (rand() < 0.2 ? 0 : rand() < 0.1 ? -int(1000) - 1 : int(2 ** 40));
  return {
    key: bytes(rand() < 0.1 ? 300 : 20),
    createRevision: revision(),
    modRevision: revision(),
    version: revision(),
    value: bytes(rand() < 0.1 ? 5000 : 200),
    lease: rand() < 0.5 ? 0n : rand() < 0.5 ? BigInt(int(2 ** 50)) : -BigInt(int(2 ** 50)) - 1n,
  };
}

function chunked(kvs: KeyValue[], size: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < kvs.length; i += size) {
    parts.push(keyValueFields(2, kvs.slice(i, i + size).map(encodeKeyValue)));
  }
  return parts;
}

describe("chunked RangeResponse encoding", () => {
  it("writes the bytes of the one-piece and the generated encoders for random answers", () => {
    const rand = random(15);
    for (let round = 0; round < 300; round++) {
      const kvs = Array.from({ length: Math.floor(rand() * (round % 10 === 0 ? 3000 : 40)) }, () =>
        randomKeyValue(rand),
      );
      const header: ResponseHeader | undefined =
        rand() < 0.1
          ? undefined
          : {
              clusterId: rand() < 0.2 ? 0n : BigInt(Math.floor(rand() * 2 ** 53)) * 1024n,
              memberId: BigInt(Math.floor(rand() * 2 ** 53)),
              revision: rand() < 0.1 ? 0 : Math.floor(rand() * 2 ** 40),
              raftTerm: Math.floor(rand() * 100),
            };
      const res: RangeResponse = {
        header,
        kvs,
        more: rand() < 0.3,
        count: rand() < 0.1 ? 0 : kvs.length + Math.floor(rand() * 1000),
      };
      const one = encodeRangeResponse(res);
      const chunkSize = 1 + Math.floor(rand() * 100);
      const parts = rangeResponseParts({
        header,
        kvParts: chunked(kvs, chunkSize),
        more: res.more,
        count: res.count,
      });
      assert.deepEqual(Buffer.concat(parts), one, `round ${round}`);
      const generated = etcdserverpb.RangeResponse.encode({
        header: header === undefined ? undefined : apiHeader(header),
        kvs: kvs.map(apiKeyValue),
        more: res.more,
        count: BigInt(res.count),
      }).finish();
      assert.deepEqual(Buffer.concat(parts), Buffer.from(generated), `round ${round} (generated)`);
      for (const p of parts) assert.ok(p.length > 0, "no empty piece is sent");
    }
  });
});

describe("MvccStore.rangeEncoded", () => {
  const requests: Partial<RangeRequest>[] = [
    {},
    { limit: 1 },
    { limit: 7 },
    { limit: 1000 },
    { keysOnly: true },
    { keysOnly: true, limit: 3 },
    { countOnly: true },
    { countOnly: true, limit: 5 },
    { countOnly: true, revision: 40 },
    { keysOnly: true, revision: 40 },
    { keysOnly: true, revision: 70, limit: 6 },
    { revision: 5 },
    { revision: 40, limit: 9 },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.KEY },
    { sortOrder: SortOrder.ASCEND, sortTarget: SortTarget.KEY, limit: 4 },
    { sortOrder: SortOrder.NONE, sortTarget: SortTarget.MOD },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.VALUE, limit: 5 },
    { minModRevision: 20 },
    { maxModRevision: 30, limit: 2 },
    { minCreateRevision: 10, maxCreateRevision: 50 },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.KEY, limit: 3 },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.MOD, keysOnly: true },
    { sortOrder: SortOrder.ASCEND, sortTarget: SortTarget.CREATE, revision: 60 },
    { sortOrder: SortOrder.NONE, sortTarget: SortTarget.VERSION, limit: 4 },
    { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.VERSION, minModRevision: 30, revision: 90 },
    { countOnly: true, sortOrder: SortOrder.DESCEND, minModRevision: 50 },
  ];

  /** A random Range shape: every sort order and target, revision filters, limits, old revisions. */
  function randomShape(rand: () => number, currentRev: number): Partial<RangeRequest> {
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
    const revision = () => 1 + Math.floor(rand() * currentRev);
    const shape: Partial<RangeRequest> = {
      sortOrder: pick([SortOrder.NONE, SortOrder.ASCEND, SortOrder.DESCEND]),
      sortTarget: pick([
        SortTarget.KEY,
        SortTarget.CREATE,
        SortTarget.MOD,
        SortTarget.VERSION,
        SortTarget.VALUE,
      ]),
    };
    if (rand() < 0.4) shape.limit = 1 + Math.floor(rand() * 12);
    if (rand() < 0.3) shape.revision = revision();
    if (rand() < 0.25) shape.minModRevision = revision();
    if (rand() < 0.25) shape.maxModRevision = revision();
    if (rand() < 0.25) shape.minCreateRevision = revision();
    if (rand() < 0.25) shape.maxCreateRevision = revision();
    if (rand() < 0.2) shape.keysOnly = true;
    else if (rand() < 0.05) shape.countOnly = true;
    return shape;
  }

  // rangeReadThread: answers of more than one index batch read on worker threads (the
  // default), or on libuv's pool.
  for (const [syncReadMaxKeys, rangeBatchKeys, rangeReadThread] of [
    [4, 7, true],
    [4, 7, false],
    [4, 1, true],
    [4, 4096, true],
    [10_000, 1024, true],
    [10_000, 3, true],
  ] as const) {
    it(`answers every request shape with range's bytes (syncReadMaxKeys ${syncReadMaxKeys}, rangeBatchKeys ${rangeBatchKeys}, rangeReadThread ${rangeReadThread})`, () =>
      withStore(
        async (store, kv) => {
          const rand = random(syncReadMaxKeys + rangeBatchKeys);
          for (let i = 0; i < 120; i++) {
            const key = `k${String(Math.floor(rand() * 60)).padStart(2, "0")}`;
            if (rand() < 0.15) await kv.del(key);
            else await kv.put(key, Buffer.alloc(Math.floor(rand() * 300), i % 251), { lease: 0n });
          }
          for (const bounds of [
            { key: "k", rangeEnd: "l" },
            { key: "\0", rangeEnd: "\0" },
            { key: "k10" },
            { key: "k1", rangeEnd: "k3" },
            { key: "zz", rangeEnd: "zzz" },
          ]) {
            for (const extra of requests) {
              const r = rangeRequest({ ...bounds, ...extra });
              const expected = encodeRangeResponse(await store.range(r));
              const got = Buffer.concat(rangeResponseParts(await store.rangeEncoded(r)));
              assert.deepEqual(got, expected, JSON.stringify({ ...bounds, ...extra }));
            }
          }
          // Random shapes over keys deleted and recreated (versions and create revisions differ
          // from mod revisions), at the current and at old revisions.
          for (let i = 0; i < 150; i++) {
            const bounds = rand() < 0.8 ? { key: "k", rangeEnd: "l" } : { key: "k2", rangeEnd: "k4" };
            const extra = randomShape(rand, store.currentRev);
            const r = rangeRequest({ ...bounds, ...extra });
            const expected = encodeRangeResponse(await store.range(r));
            const got = Buffer.concat(rangeResponseParts(await store.rangeEncoded(r)));
            assert.deepEqual(got, expected, JSON.stringify({ ...bounds, ...extra }));
          }
          await kv.compact(30);
          await store.compactionDone();
          await assert.rejects(
            store.rangeEncoded(
              rangeRequest({ key: "k", rangeEnd: "l", revision: 20, sortOrder: SortOrder.DESCEND }),
            ),
            (err) => isEtcdError(err, "Compacted"),
          );
          await assert.rejects(
            store.rangeEncoded(rangeRequest({ key: "k", rangeEnd: "l", revision: 20 })),
            (err) => isEtcdError(err, "Compacted"),
          );
          await assert.rejects(
            store.rangeEncoded(rangeRequest({ key: "k", rangeEnd: "l", revision: 10_000 })),
            (err) => isEtcdError(err, "FutureRev"),
          );
        },
        { syncReadMaxKeys, rangeBatchKeys, rangeReadThread },
      ));
  }
});

describe("a Range read on the threads while the store changes under it", () => {
  const keys = 2_000;
  const name = (i: number) => `k${String(i).padStart(4, "0")}`;

  it("answers as of its revision or fails Compacted when a compaction passes it mid-read, never a mix", () =>
    withStore(
      async (store, kv) => {
        // Rounds of one put per key: round j's revisions end at ends[j]; a Range at ends[j]
        // needs every one of them, and compacting at ends[j + 1] deletes them all.
        const ends: number[] = [];
        for (let round = 0; round < 7; round++) {
          for (let i = 0; i < keys; i++) await kv.put(name(i), `r${round}-${i}`, { lease: 0n });
          ends.push(store.currentRev);
        }
        const outcomes: string[] = [];
        // Turns of the event loop between the Range's start and the compaction's apply: from
        // before its second index batch to after its end; plain, and shaped (sorted by mod
        // revision, by value on a read thread).
        for (const [j, [turns, extra]] of (
          [
            [0, {}],
            [1, { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.VALUE }],
            [4, {}],
            [16, { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.MOD }],
            [64, { sortOrder: SortOrder.ASCEND, sortTarget: SortTarget.VALUE }],
            [100_000, {}],
          ] as const
        ).entries()) {
          const r = rangeRequest({ key: "k", rangeEnd: "l", revision: ends[j]!, ...extra });
          const expected = encodeRangeResponse(await store.range(r));
          const reading = store.rangeEncoded(r).then(
            (got) => Buffer.concat(rangeResponseParts(got)),
            (err: unknown) => err,
          );
          let finished = false;
          void reading.then(() => {
            finished = true;
          });
          for (let t = 0; t < turns && !finished; t++) await new Promise((resolve) => setImmediate(resolve));
          await kv.compact(ends[j + 1]!);
          await store.compactionDone();
          const got = await reading;
          if (Buffer.isBuffer(got)) {
            assert.deepEqual(got, expected, `turns ${turns}`);
            outcomes.push("answered");
          } else {
            assert.ok(isEtcdError(got, "Compacted"), `turns ${turns}: ${String(got)}`);
            outcomes.push("compacted");
          }
        }
        // Both ends are reached (so each assertion above was exercised): a compaction applied
        // before the second batch fails the Range; one applied after its end does not.
        assert.equal(outcomes[0], "compacted");
        assert.equal(outcomes.at(-1), "answered");
      },
      { rangeBatchKeys: 16 },
    ));

  it("fails Compacted when a compaction takes a revision before a read thread sorts it by value", () =>
    withStore(
      async (store, kv) => {
        for (let round = 0; round < 2; round++) {
          for (let i = 0; i < 100; i++) await kv.put(name(i), `r${round}-${i}`, { lease: 0n });
        }
        const first = store.currentRev - 100;
        const r = rangeRequest({ key: "k", rangeEnd: "l", revision: first, sortTarget: SortTarget.VALUE });
        const threads = (store as unknown as { rangeThreads: RangeReadThreads }).rangeThreads;
        const sortByValue = threads.sortByValue.bind(threads);
        let sorted = 0;
        threads.sortByValue = async (...args) => {
          // The walk is done: a compaction now removes every revision it found.
          await kv.compact(store.currentRev);
          await store.compactionDone();
          sorted++;
          return sortByValue(...args);
        };
        await assert.rejects(store.rangeEncoded(r), (err) => isEtcdError(err, "Compacted"));
        assert.equal(sorted, 1, "sorted on a read thread");
      },
      { rangeBatchKeys: 16 },
    ));

  it("walks the index a batch of keys per turn when sorted or filtered, not the whole range in one", () =>
    withStore(
      async (store, kv) => {
        for (let i = 0; i < keys; i++) await kv.put(name(i), `v${i}`, { lease: 0n });
        for (let i = 0; i < keys; i += 3) await kv.put(name(i), `again${i}`, { lease: 0n });
        // Keys the index visits between two turns of other work (every walk goes through `walk`).
        const index = (store as unknown as { index: { walk: (b: unknown, v: Visit) => void } }).index;
        type Visit = (leaf: unknown, i: number) => boolean | undefined;
        const walk = index.walk.bind(index);
        let visited = 0;
        let most = 0;
        index.walk = (b, visit) =>
          walk(b, (leaf, i) => {
            most = Math.max(most, ++visited);
            return visit(leaf, i);
          });
        for (const extra of [
          { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.KEY },
          { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.MOD },
          { sortOrder: SortOrder.ASCEND, sortTarget: SortTarget.VERSION, keysOnly: true },
          { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.VALUE },
          { minModRevision: keys / 2 },
        ]) {
          const r = rangeRequest({ key: "k", rangeEnd: "l", ...extra });
          const expected = encodeRangeResponse(await store.range(r));
          let done = false;
          const tick = () => {
            visited = 0;
            if (!done) setImmediate(tick);
          };
          tick();
          most = 0;
          const got = await store.rangeEncoded(r);
          done = true;
          assert.deepEqual(Buffer.concat(rangeResponseParts(got)), expected, JSON.stringify(extra));
          // A batch is 16 keys (and the one that ends it); built whole, the answer walked 2,000.
          assert.ok(most <= 4 * 16, `${JSON.stringify(extra)}: ${most} keys walked in one turn`);
        }
      },
      { rangeBatchKeys: 16 },
    ));

  it("holds a large answer's chunks on the threads until taken (rangeEncoded's bytes), or dropped", () =>
    withStore(
      async (store, kv) => {
        for (let i = 0; i < keys; i++) await kv.put(name(i), `v${i}`, { lease: 0n });
        const r = rangeRequest({ key: "k", rangeEnd: "l" });
        const expected = Buffer.concat(rangeResponseParts(await store.rangeEncoded(r)));
        const threads = (store as unknown as { rangeThreads: { held: number } }).rangeThreads;
        const held = await store.rangeHeld(r);
        const heldParts = held.kvParts.filter((p): p is HeldPart => !Buffer.isBuffer(p));
        assert.equal(heldParts.length, held.kvParts.length, "every chunk read on a thread is held there");
        assert.ok(heldParts.length > 1);
        assert.equal(threads.held, heldParts.length);
        const parts: Buffer[] = [];
        for (const p of rangeResponseParts(held)) parts.push(Buffer.isBuffer(p) ? p : await p.take());
        assert.deepEqual(Buffer.concat(parts), expected);
        assert.equal(threads.held, 0);
        await assert.rejects(heldParts[0]!.take(), /taken or dropped already/);
        const again = await store.rangeHeld(r);
        assert.ok(threads.held > 0);
        for (const p of again.kvParts) if (!Buffer.isBuffer(p)) p.drop();
        assert.equal(threads.held, 0);
      },
      { rangeBatchKeys: 16 },
    ));

  it("fails a Range whose read thread dies mid-read, and serves the next one on a new thread", () =>
    withStore(
      async (store, kv) => {
        for (let i = 0; i < keys; i++) await kv.put(name(i), `v${i}`, { lease: 0n });
        const r = rangeRequest({ key: "k", rangeEnd: "l" });
        const expected = encodeRangeResponse(await store.range(r));
        // Starts the threads (the first large Range does), then kills them under the next one.
        assert.deepEqual(Buffer.concat(rangeResponseParts(await store.rangeEncoded(r))), expected);
        const threads = (store as unknown as { rangeThreads: { workers: (Worker | undefined)[] } })
          .rangeThreads;
        const reading = store.rangeEncoded(r).then(
          () => undefined,
          (err: unknown) => err,
        );
        await Promise.all(threads.workers.map((w) => w?.terminate()));
        assert.match(String(await reading), /range read thread exited/);
        assert.deepEqual(Buffer.concat(rangeResponseParts(await store.rangeEncoded(r))), expected);
      },
      { rangeBatchKeys: 16 },
    ));
});
