import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import { isEtcdError } from "@etcd-ts/api";
import { RangeReadThreads } from "./range-reader.js";
import { putRequest, rangeRequest } from "./request-builders.js";
import { RocksBackend } from "./rocks-backend.js";
import { MvccStore } from "./store.js";
import { Applier, keys, pairs, tempDir, withStore } from "./store-fixture.js";
import { SortOrder, SortTarget } from "./types.js";

const rejectsWith = (promise: Promise<unknown>, kind: Parameters<typeof isEtcdError>[1]) =>
  assert.rejects(promise, (err) => isEtcdError(err, kind));

describe("revisions", () => {
  it("starts at revision 1 and raises it once per write txn", () =>
    withStore(async (store, kv) => {
      assert.equal(store.revision, 1);
      const r = await kv.put("a", "1");
      assert.equal(r.header?.revision, 2);
      assert.equal(store.revision, 2);
      await kv.txn({
        success: [
          {
            requestPut: {
              key: Buffer.from("b"),
              value: Buffer.from("1"),
              lease: 0n,
              prevKv: false,
              ignoreValue: false,
              ignoreLease: false,
            },
          },
          {
            requestPut: {
              key: Buffer.from("c"),
              value: Buffer.from("1"),
              lease: 0n,
              prevKv: false,
              ignoreValue: false,
              ignoreLease: false,
            },
          },
        ],
      });
      assert.equal(store.revision, 3);
      const got = await kv.get("b", { rangeEnd: "d" });
      assert.deepEqual(
        got.kvs.map((x) => [x.key.toString(), x.modRevision, x.createRevision, x.version]),
        [
          ["b", 3, 3, 1],
          ["c", 3, 3, 1],
        ],
      );
    }));

  it("tracks create_revision, mod_revision and version; a delete resets them", () =>
    withStore(async (_store, kv) => {
      await kv.put("k", "v1"); // 2
      await kv.put("k", "v2"); // 3
      let got = (await kv.get("k")).kvs[0]!;
      assert.deepEqual([got.createRevision, got.modRevision, got.version], [2, 3, 2]);
      const del = await kv.del("k"); // 4
      assert.equal(del.deleted, 1);
      assert.equal(del.header?.revision, 4);
      assert.equal((await kv.get("k")).kvs.length, 0);
      await kv.put("k", "v3"); // 5
      got = (await kv.get("k")).kvs[0]!;
      assert.deepEqual([got.createRevision, got.modRevision, got.version], [5, 5, 1]);
      // History stays readable at every revision not compacted.
      assert.deepEqual(pairs(await kv.get("k", { revision: 3 })), ["k=v2"]);
      assert.equal((await kv.get("k", { revision: 4 })).kvs.length, 0);
      assert.equal((await kv.get("k", { revision: 1 })).kvs.length, 0);
    }));

  it("does not raise the revision for writes that change nothing or for read-only txns", () =>
    withStore(async (store, kv) => {
      await kv.put("a", "1");
      const del = await kv.del("missing");
      assert.equal(del.deleted, 0);
      assert.equal(del.header?.revision, 2);
      const ro = await kv.txn({ success: [{ requestRange: rangeRequest({ key: "a" }) }] });
      assert.equal(ro.header?.revision, 2);
      assert.equal(store.revision, 2);
      // A txn whose only write deletes nothing is not a write either.
      await kv.txn({
        success: [
          { requestDeleteRange: { key: Buffer.from("zz"), rangeEnd: Buffer.alloc(0), prevKv: false } },
        ],
      });
      assert.equal(store.revision, 2);
    }));

  it("stores the lease per key and lets the lessor list leased keys", () =>
    withStore(async (store, kv) => {
      await kv.put("a", "1", { lease: 7n });
      await kv.put("b", "1", { lease: 8n });
      await kv.put("b", "2");
      assert.equal((await kv.get("a")).kvs[0]!.lease, 7n);
      assert.equal((await kv.get("b", { revision: 3 })).kvs[0]!.lease, 8n);
      assert.deepEqual(
        [...store.leasedKeys()].map((x) => [x.key.toString(), x.lease]),
        [["a", 7n]],
      );
    }));
});

describe("range", () => {
  const seed = async (kv: Applier) => {
    await kv.put("a", "5"); // 2
    await kv.put("b", "4"); // 3
    await kv.put("b/1", "3"); // 4
    await kv.put("b/2", "2"); // 5
    await kv.put("c", "1"); // 6
    await kv.put("a", "0"); // 7: a has version 2
  };

  it("reads a single key, [key, end), a prefix, from-key and all keys", () =>
    withStore(async (_store, kv) => {
      await seed(kv);
      assert.deepEqual(keys(await kv.get("b")), ["b"]);
      assert.deepEqual(keys(await kv.get("a", { rangeEnd: "b/2" })), ["a", "b", "b/1"]);
      assert.deepEqual(keys(await kv.get("b/", { rangeEnd: "b0" })), ["b/1", "b/2"]);
      assert.deepEqual(keys(await kv.get("b/1", { rangeEnd: "\0" })), ["b/1", "b/2", "c"]);
      assert.deepEqual(keys(await kv.get("\0", { rangeEnd: "\0" })), ["a", "b", "b/1", "b/2", "c"]);
      assert.deepEqual(keys(await kv.get("c", { rangeEnd: "a" })), []);
    }));

  it("limits with more, counts independently of the limit, count_only and keys_only", () =>
    withStore(async (_store, kv) => {
      await seed(kv);
      const limited = await kv.get("\0", { rangeEnd: "\0", limit: 2 });
      assert.deepEqual(keys(limited), ["a", "b"]);
      assert.equal(limited.more, true);
      assert.equal(limited.count, 5);
      const exact = await kv.get("\0", { rangeEnd: "\0", limit: 5 });
      assert.equal(exact.more, false);
      const counted = await kv.get("b", { rangeEnd: "c", countOnly: true });
      assert.deepEqual([counted.kvs.length, counted.count], [0, 3]);
      const keysOnly = await kv.get("a", { keysOnly: true });
      assert.equal(keysOnly.kvs[0]!.value.length, 0);
      assert.deepEqual(
        [keysOnly.kvs[0]!.createRevision, keysOnly.kvs[0]!.modRevision, keysOnly.kvs[0]!.version],
        [2, 7, 2],
      );
      // keys_only at a past revision reads stored fields, not the current ones.
      const pastKeysOnly = await kv.get("a", { keysOnly: true, revision: 6 });
      assert.deepEqual([pastKeysOnly.kvs[0]!.modRevision, pastKeysOnly.kvs[0]!.version], [2, 1]);
    }));

  it("sorts by every target in both orders, NONE with a non-key target ascending", () =>
    withStore(async (_store, kv) => {
      await seed(kv);
      const all = { rangeEnd: "\0" };
      const sorted = async (sortTarget: number, sortOrder: number) =>
        keys(await kv.get("\0", { ...all, sortTarget, sortOrder }));
      assert.deepEqual(await sorted(SortTarget.KEY, SortOrder.DESCEND), ["c", "b/2", "b/1", "b", "a"]);
      assert.deepEqual(await sorted(SortTarget.KEY, SortOrder.ASCEND), ["a", "b", "b/1", "b/2", "c"]);
      assert.deepEqual(await sorted(SortTarget.VALUE, SortOrder.ASCEND), ["a", "c", "b/2", "b/1", "b"]);
      assert.deepEqual(await sorted(SortTarget.VALUE, SortOrder.NONE), ["a", "c", "b/2", "b/1", "b"]);
      assert.deepEqual(await sorted(SortTarget.MOD, SortOrder.DESCEND), ["a", "c", "b/2", "b/1", "b"]);
      assert.deepEqual(await sorted(SortTarget.CREATE, SortOrder.ASCEND), ["a", "b", "b/1", "b/2", "c"]);
      assert.deepEqual((await sorted(SortTarget.VERSION, SortOrder.DESCEND))[0], "a");
      const limitedSorted = await kv.get("\0", {
        ...all,
        sortTarget: SortTarget.MOD,
        sortOrder: SortOrder.DESCEND,
        limit: 2,
      });
      assert.deepEqual(keys(limitedSorted), ["a", "c"]);
      assert.equal(limitedSorted.more, true);
    }));

  it("filters on mod and create revisions; count stays the unfiltered total", () =>
    withStore(async (_store, kv) => {
      await seed(kv);
      const all = { rangeEnd: "\0" };
      const modWindow = await kv.get("\0", { ...all, minModRevision: 4, maxModRevision: 6 });
      assert.deepEqual(keys(modWindow), ["b/1", "b/2", "c"]);
      assert.equal(modWindow.count, 5);
      assert.deepEqual(keys(await kv.get("\0", { ...all, minCreateRevision: 5 })), ["b/2", "c"]);
      assert.deepEqual(keys(await kv.get("\0", { ...all, maxCreateRevision: 3 })), ["a", "b"]);
      const limited = await kv.get("\0", { ...all, minModRevision: 3, limit: 1 });
      assert.deepEqual([keys(limited), limited.more], [["a"], true]);
    }));

  it("refuses compacted and future revisions with etcd's errors", () =>
    withStore(async (store, kv) => {
      await seed(kv);
      await rejectsWith(kv.get("a", { revision: 8 }), "FutureRev");
      await kv.compact(4);
      await store.compactionDone();
      await rejectsWith(kv.get("a", { revision: 3 }), "Compacted");
      assert.deepEqual(pairs(await kv.get("a", { revision: 4 })), ["a=5"]);
    }));

  it("reads large ranges on the thread pool with the same result", () =>
    withStore(
      async (_store, kv) => {
        for (let i = 0; i < 40; i++) await kv.put(`k${String(i).padStart(2, "0")}`, `v${i}`);
        const r = await kv.get("k", { rangeEnd: "l" });
        assert.equal(r.kvs.length, 40);
        assert.equal(r.kvs[39]!.value.toString(), "v39");
      },
      { syncReadMaxKeys: 4 },
    ));
});

describe("syncToDisk", () => {
  it("makes the applied state durable on a read thread, resolving with the index it covers", async () => {
    const dir = await tempDir();
    try {
      const store = await MvccStore.open(`${dir.path}/db`);
      const kv = new Applier(store);
      for (let i = 0; i < 5; i++) await kv.put(`k${i}`, `v${i}`);
      const syncing = store.syncToDisk();
      // Applied after the sync was asked: not covered by its answer (but written in order).
      await kv.put("k5", "v5");
      assert.equal(await syncing, 5);
      await store.close();
      const reopened = await MvccStore.open(`${dir.path}/db`);
      assert.equal(reopened.appliedIndex, 6);
      await reopened.close();
    } finally {
      await dir.remove();
    }
  });
});

describe("syncToDisk with its thread started ahead (prepareSync)", () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const running = (threads: RangeReadThreads) =>
    (threads as unknown as { workers: (Worker | undefined)[] }).workers.filter((w) => w !== undefined);

  it("covers every batch written before the sync, those written after the thread started too", async () => {
    const dir = await tempDir();
    try {
      const store = await MvccStore.open(`${dir.path}/db`);
      const kv = new Applier(store);
      await kv.put("k0", "v0");
      store.prepareSync();
      for (let i = 1; i < 5; i++) await kv.put(`k${i}`, `v${i}`);
      assert.equal(await store.syncToDisk(), 5);
      await store.close();
      const reopened = await MvccStore.open(`${dir.path}/db`);
      assert.equal(reopened.appliedIndex, 5);
      assert.equal((await reopened.range(rangeRequest({ key: "k", rangeEnd: "l" }))).count, 5);
      await reopened.close();
    } finally {
      await dir.remove();
    }
  });

  it("keeps the thread though idle until the sync, which runs on it, then stops it when idle", async () => {
    const dir = await tempDir();
    const db = await RocksBackend.open(join(dir.path, "db"), []);
    const threads = new RangeReadThreads(20);
    try {
      await threads.prepareSync(db.handle);
      const [worker] = running(threads);
      assert.ok(worker !== undefined, "started and attached ahead");
      await sleep(150);
      assert.deepEqual(running(threads), [worker], "kept though idle for longer than the idle stop");
      await threads.sync(db.handle);
      assert.deepEqual(running(threads), [worker], "the sync ran on it (no other thread started)");
      const deadline = Date.now() + 5000;
      while (running(threads).length > 0 && Date.now() < deadline) await sleep(10);
      assert.deepEqual(running(threads), [], "stopped when idle once the sync is done");
    } finally {
      await threads.close();
      await db.close();
      await dir.remove();
    }
  });

  it("stops a thread started ahead on close, even one still attaching: no worker outlives the store", async () => {
    const dir = await tempDir();
    try {
      const store = await MvccStore.open(`${dir.path}/db`);
      store.prepareSync();
      const threads = (store as unknown as { rangeThreads: RangeReadThreads }).rangeThreads;
      const [worker] = running(threads);
      assert.ok(worker !== undefined);
      const exited = new Promise((resolve) => worker.once("exit", resolve));
      await store.close();
      assert.deepEqual(running(threads), []);
      await exited;
      store.prepareSync(); // closed: starts nothing
      assert.deepEqual(running(threads), []);
    } finally {
      await dir.remove();
    }
  });
});

describe("atomic visibility", () => {
  it("shows a concurrent read all or none of a txn, even when the read goes to the thread pool", () =>
    withStore(
      async (store, kv) => {
        const names = Array.from({ length: 100 }, (_, i) => `k${String(i).padStart(3, "0")}`);
        await kv.txn({
          success: names.map((name) => ({ requestPut: putRequest({ key: name, value: "old" }) })),
        });
        for (let round = 0; round < 5; round++) {
          const read = kv.get("k", { rangeEnd: "l" });
          const write = store.apply({
            index: store.appliedIndex + 1,
            term: 1,
            request: {
              txn: {
                compare: [],
                success: names.map((name) => ({
                  requestPut: putRequest({ key: name, value: `new${round}` }),
                })),
                failure: [],
              },
            },
          });
          const [got] = await Promise.all([read, write]);
          assert.equal(got.kvs.length, 100);
          assert.equal(new Set(got.kvs.map((x) => x.modRevision)).size, 1);
          assert.equal(new Set(got.kvs.map((x) => x.value.toString())).size, 1);
        }
      },
      { syncReadMaxKeys: 8 },
    ));
});

describe("put", () => {
  it("returns prev_kv, keeps value or lease when asked, and refuses ignore_* on a missing key", () =>
    withStore(async (_store, kv) => {
      const first = await kv.put("k", "v1", { lease: 5n, prevKv: true });
      assert.equal(first.prevKv, undefined);
      const second = await kv.put("k", "v2", { prevKv: true });
      assert.equal(second.prevKv?.value.toString(), "v1");
      assert.equal(second.prevKv?.lease, 5n);
      await kv.put("k", "", { ignoreValue: true, lease: 9n });
      let got = (await kv.get("k")).kvs[0]!;
      assert.deepEqual([got.value.toString(), got.lease, got.version], ["v2", 9n, 3]);
      await kv.put("k", "v4", { ignoreLease: true });
      got = (await kv.get("k")).kvs[0]!;
      assert.deepEqual([got.value.toString(), got.lease], ["v4", 9n]);
      await rejectsWith(kv.put("missing", "", { ignoreValue: true }), "KeyNotFound");
      await rejectsWith(kv.put("missing", "x", { ignoreLease: true }), "KeyNotFound");
      assert.equal((await kv.get("k")).header?.revision, 5);
    }));

  it("checks leases with the lessor when one is wired in", () =>
    withStore(
      async (_store, kv) => {
        await kv.put("k", "v", { lease: 1n });
        await rejectsWith(kv.put("k", "v", { lease: 2n }), "LeaseNotFound");
      },
      { leaseExists: (lease) => lease === 1n },
    ));
});

describe("delete range", () => {
  it("deletes a range, counts, returns prev_kvs, and leaves history readable", () =>
    withStore(async (_store, kv) => {
      await kv.put("a", "1");
      await kv.put("b", "2");
      await kv.put("c", "3");
      const r = await kv.del("a", "c", { prevKv: true });
      assert.equal(r.deleted, 2);
      assert.deepEqual(
        r.prevKvs.map((x) => x.key.toString()),
        ["a", "b"],
      );
      assert.deepEqual(keys(await kv.get("\0", { rangeEnd: "\0" })), ["c"]);
      assert.deepEqual(keys(await kv.get("\0", { rangeEnd: "\0", revision: 4 })), ["a", "b", "c"]);
      const all = await kv.del("\0", "\0");
      assert.equal(all.deleted, 1);
    }));
});

describe("replay and persistence", () => {
  it("skips entries at or below the applied index and restores state at reopen", async () => {
    const dir = await tempDir();
    try {
      let store = await MvccStore.open(`${dir.path}/db`);
      await store.applyBatch([
        { index: 1, term: 1, request: { put: putRequest({ key: "a", value: "1" }) } },
        { index: 2, term: 1, request: undefined },
        { index: 3, term: 2, request: { put: putRequest({ key: "b", value: "2", lease: 4n }) } },
      ]);
      const replay = await store.applyBatch([
        { index: 2, term: 1, request: { put: putRequest({ key: "a", value: "again" }) } },
        { index: 3, term: 2, request: { put: putRequest({ key: "b", value: "again" }) } },
        { index: 4, term: 2, request: { put: putRequest({ key: "a", value: "3" }) } },
      ]);
      assert.deepEqual(
        replay.map((r) => r.status),
        ["skipped", "skipped", "applied"],
      );
      await store.close();
      store = await MvccStore.open(`${dir.path}/db`);
      assert.deepEqual([store.appliedIndex, store.appliedIndexTerm, store.revision], [4, 2, 4]);
      const got = await store.range(rangeRequest({ key: "\0", rangeEnd: "\0" }));
      assert.deepEqual(pairs(got), ["a=3", "b=2"]);
      assert.deepEqual(
        got.kvs.map((x) => [x.createRevision, x.modRevision, x.version, x.lease]),
        [
          [2, 4, 2, 0n],
          [3, 3, 1, 4n],
        ],
      );
      await store.close();
    } finally {
      await dir.remove();
    }
  });
});
