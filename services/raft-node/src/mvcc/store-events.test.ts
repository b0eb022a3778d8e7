import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EtcdError, isEtcdError } from "@etcd-ts/api";
import { putRequest, rangeRequest } from "./request-builders.js";
import type { AppliedTxn, DeleteKeysResponse } from "./store.js";
import { MvccStore } from "./store.js";
import { tempDir, withStore } from "./store-fixture.js";
import type { Event } from "./types.js";
import { EventType } from "./types.js";

const describeEvent = (e: Event) =>
  `${e.type === EventType.PUT ? "PUT" : "DELETE"} ${e.kv!.key.toString()}@${e.kv!.modRevision}` +
  (e.type === EventType.PUT ? `=${e.kv!.value.toString()} v${e.kv!.version}` : "") +
  (e.prevKv ? ` prev=${e.prevKv.value.toString()}` : "");

describe("apply listeners", () => {
  it("receive each write txn's events once written, with prev kvs when asked", () =>
    withStore(async (store, kv) => {
      const plain: AppliedTxn[] = [];
      const withPrev: AppliedTxn[] = [];
      store.subscribe((t) => plain.push(t));
      const unsubscribe = store.subscribe((t) => withPrev.push(t), { prevKv: true });
      await kv.put("a", "1");
      await kv.put("a", "2");
      await kv.txn({
        success: [
          { requestPut: putRequest({ key: "b", value: "1" }) },
          { requestDeleteRange: { key: Buffer.from("a"), rangeEnd: Buffer.alloc(0), prevKv: false } },
        ],
      });
      await kv.del("nothing");
      await assert.rejects(kv.put("missing", "", { ignoreValue: true }));
      await store.applyBatch([
        { index: store.appliedIndex + 1, term: 1, request: { put: putRequest({ key: "c", value: "1" }) } },
        { index: store.appliedIndex + 2, term: 1, request: { put: putRequest({ key: "c", value: "2" }) } },
      ]);
      assert.deepEqual(
        withPrev.map((t) => [t.revision, t.events.map(describeEvent)]),
        [
          [2, ["PUT a@2=1 v1"]],
          [3, ["PUT a@3=2 v2 prev=1"]],
          [4, ["PUT b@4=1 v1", "DELETE a@4 prev=2"]],
          [5, ["PUT c@5=1 v1"]],
          // The previous value comes from the same, not yet written, batch.
          [6, ["PUT c@6=2 v2 prev=1"]],
        ],
      );
      assert.deepEqual(
        plain.map((t) => t.events.every((e) => e.prevKv === undefined)),
        [true, true, true, true, true],
      );
      unsubscribe();
      await kv.put("d", "1");
      assert.equal(withPrev.length, 5);
      assert.equal(plain.length, 6);
    }));

  it("read prev kvs only while a listener's prevKv function says so", () =>
    withStore(async (store, kv) => {
      let wanted = false;
      const seen: AppliedTxn[] = [];
      store.subscribe((t) => seen.push(t), { prevKv: () => wanted });
      await kv.put("a", "1");
      await kv.put("a", "2");
      wanted = true;
      await kv.put("a", "3");
      wanted = false;
      await kv.del("a");
      assert.deepEqual(
        seen.map((t) => [t.prevKvs, t.events.map(describeEvent)]),
        [
          [false, ["PUT a@2=1 v1"]],
          [false, ["PUT a@3=2 v2"]],
          [true, ["PUT a@4=3 v3 prev=2"]],
          [false, ["DELETE a@5"]],
        ],
      );
    }));
});

describe("history", () => {
  it("returns events from a revision for a key range, with limits at revision boundaries", () =>
    withStore(async (store, kv) => {
      await kv.put("w/a", "1"); // 2
      await kv.put("x", "1"); // 3
      await kv.txn({
        success: [
          { requestPut: putRequest({ key: "w/b", value: "1" }) },
          { requestPut: putRequest({ key: "w/c", value: "1" }) },
        ],
      }); // 4
      await kv.put("w/a", "2"); // 5
      await kv.del("w/b"); // 6
      const all = await store.history({
        fromRevision: 1,
        key: Buffer.from("w/"),
        rangeEnd: Buffer.from("w0"),
      });
      assert.deepEqual(all.events.map(describeEvent), [
        "PUT w/a@2=1 v1",
        "PUT w/b@4=1 v1",
        "PUT w/c@4=1 v1",
        "PUT w/a@5=2 v2",
        "DELETE w/b@6",
      ]);
      assert.equal(all.nextRevision, 7);
      // A limit of 2 still returns the whole of revision 4.
      const first = await store.history({
        fromRevision: 2,
        key: Buffer.from("\0"),
        rangeEnd: Buffer.from("\0"),
        limit: 2,
      });
      assert.deepEqual(first.events.map(describeEvent), ["PUT w/a@2=1 v1", "PUT x@3=1 v1"]);
      assert.equal(first.nextRevision, 4);
      // A filter drops rows before the limit counts them: a watch catch-up's matching events.
      const filtered = await store.history({
        fromRevision: 2,
        key: Buffer.from("\0"),
        rangeEnd: Buffer.from("\0"),
        matches: (key) => key !== "w/a",
        limit: 2,
      });
      assert.deepEqual(filtered.events.map(describeEvent), [
        "PUT x@3=1 v1",
        "PUT w/b@4=1 v1",
        "PUT w/c@4=1 v1",
      ]);
      assert.equal(filtered.nextRevision, 5);
      const rest = await store.history({
        fromRevision: first.nextRevision,
        toRevision: 5,
        key: Buffer.from("w/a"),
        prevKv: true,
      });
      assert.deepEqual(rest.events.map(describeEvent), ["PUT w/a@5=2 v2 prev=1"]);
      assert.equal(rest.nextRevision, 6);
      await kv.compact(5);
      await store.compactionDone();
      await assert.rejects(store.history({ fromRevision: 4, key: Buffer.from("w/a") }), (e) =>
        isEtcdError(e, "Compacted"),
      );
      const afterCompaction = await store.history({
        fromRevision: 5,
        key: Buffer.from("w/"),
        rangeEnd: Buffer.from("w0"),
      });
      assert.deepEqual(afterCompaction.events.map(describeEvent), ["PUT w/a@5=2 v2", "DELETE w/b@6"]);
    }));
});

describe("history from the key index (ranges)", () => {
  it("returns what the scan returns, for random writes, ranges, limits and a compaction", () =>
    withStore(async (store, kv) => {
      // A seeded generator: the same workload every run.
      let seed = 7;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const key = () => `k/${String.fromCharCode(97 + random(12))}${random(3)}`;
      const step = async () => {
        const op = random(10);
        if (op < 6) await kv.put(key(), String(random(1000)));
        else if (op < 8) await kv.del(key());
        else if (op < 9) await kv.del("k/c", "k/h");
        else
          await kv.txn({
            success: [
              { requestPut: putRequest({ key: key(), value: "t" }) },
              { requestPut: putRequest({ key: key(), value: "u" }) },
              { requestDeleteRange: { key: Buffer.from(key()), rangeEnd: Buffer.alloc(0), prevKv: false } },
            ],
          });
      };
      for (let i = 0; i < 300; i++) await step();
      await kv.compact(120);
      await store.compactionDone();
      for (let i = 0; i < 100; i++) await step();
      const head = store.revision;
      const rangesOf = (n: number) =>
        Array.from({ length: n }, () => {
          const start = key();
          const kind = random(3);
          return kind === 0
            ? { start, end: undefined }
            : kind === 1
              ? { start, end: "" }
              : { start, end: `k/${String.fromCharCode(97 + random(13))}` };
        });
      const inRanges = (ranges: { start: string; end: string | undefined }[]) => (k: string) =>
        ranges.some((r) =>
          r.end === undefined ? k === r.start : k >= r.start && (r.end === "" || k < r.end),
        );
      let compared = 0;
      for (let i = 0; i < 150; i++) {
        const ranges = rangesOf(1 + random(3));
        const matches = inRanges(ranges);
        const query = {
          fromRevision: 120 + random(head - 119),
          key: Buffer.from("\0"),
          rangeEnd: Buffer.from("\0"),
          matches,
          prevKv: random(2) === 0,
          ...(random(2) === 0 ? { limit: 1 + random(8) } : {}),
        };
        const scanned = await store.history(query);
        const before = store.indexedHistoryReads;
        const indexed = await store.history({ ...query, ranges });
        assert.equal(store.indexedHistoryReads, before + 1, "answered from the index");
        assert.deepEqual(
          indexed.events,
          scanned.events,
          `query ${i}: ${JSON.stringify({ ...query, matches: undefined, ranges })}`,
        );
        // The index knows where the next matching revision is: it may resume further on, never
        // past an event.
        assert.ok(indexed.nextRevision >= scanned.nextRevision);
        if (indexed.nextRevision > scanned.nextRevision) {
          const skipped = await store.history({
            ...query,
            fromRevision: scanned.nextRevision,
            toRevision: indexed.nextRevision - 1,
            limit: undefined,
          });
          assert.deepEqual(skipped.events, [], "nothing between where the two resume");
        }
        compared += scanned.events.length;
      }
      assert.ok(compared > 200, `the queries found events (${compared})`);
      // Below the compaction: refused as the scan refuses it.
      await assert.rejects(
        store.history({
          fromRevision: 100,
          key: Buffer.from("\0"),
          rangeEnd: Buffer.from("\0"),
          ranges: [{ start: "k/a0", end: undefined }],
        }),
        (e) => isEtcdError(e, "Compacted"),
      );
    }));

  it("scans instead when the ranges hold many of the revisions asked for", () =>
    withStore(async (store, kv) => {
      for (let i = 0; i < 1_500; i++) await kv.put(`m/${i % 10}`, String(i));
      const before = store.indexedHistoryReads;
      const all = await store.history({
        fromRevision: 1,
        key: Buffer.from("\0"),
        rangeEnd: Buffer.from("\0"),
        ranges: [{ start: "m/", end: "m0" }],
      });
      assert.equal(all.events.length, 1_500);
      assert.equal(store.indexedHistoryReads, before, "1,500 of 1,500 revisions: a scan");
      const one = await store.history({
        fromRevision: 1,
        key: Buffer.from("\0"),
        rangeEnd: Buffer.from("\0"),
        ranges: [{ start: "m/7", end: undefined }],
      });
      assert.equal(one.events.length, 150);
      assert.equal(store.indexedHistoryReads, before + 1, "150 of 1,500: from the index");
    }));
});

describe("history and defragmentation", () => {
  it("a long history read across a defragmentation sees every event once, in order", () =>
    withStore(async (store) => {
      const puts = 3_000;
      await store.applyBatch(
        Array.from({ length: puts }, (_, i) => ({
          index: store.appliedIndex + 1 + i,
          term: 1,
          request: { put: putRequest({ key: `h/${i % 7}`, value: String(i) }) },
        })),
      );
      const all = { fromRevision: 2, key: Buffer.from("\0"), rangeEnd: Buffer.from("\0") };
      const read = store.history(all);
      // The read may end early at a revision boundary if the swap waits for it; the rest follows.
      const defrag = store.defragment();
      const first = await read;
      await defrag;
      assert.ok(first.nextRevision > 2 && first.nextRevision <= puts + 2, `stopped at ${first.nextRevision}`);
      assert.equal(first.events.at(-1)!.kv!.modRevision, first.nextRevision - 1);
      const rest = await store.history({ ...all, fromRevision: first.nextRevision });
      assert.deepEqual(
        [...first.events, ...rest.events].map((e) => e.kv!.modRevision),
        Array.from({ length: puts }, (_, i) => i + 2),
      );
    }));
});

describe("lease revocation and external state", () => {
  it("deletes a lease's keys in one revision, sorted, skipping keys already gone", () =>
    withStore(async (store, kv) => {
      await kv.put("k2", "v", { lease: 9n });
      await kv.put("k1", "v", { lease: 9n });
      const seen: AppliedTxn[] = [];
      store.subscribe((t) => seen.push(t));
      const r = (await kv.request({
        deleteKeys: { keys: [Buffer.from("k2"), Buffer.from("k1"), Buffer.from("gone")] },
      })) as DeleteKeysResponse;
      assert.deepEqual(r, { deleted: 2, revision: 4 });
      assert.deepEqual(seen[0]!.events.map(describeEvent), ["DELETE k1@4", "DELETE k2@4"]);
      assert.deepEqual([...store.leasedKeys()], []);
    }));

  it("writes other state machines' columns in the same batch as the applied index", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location, { extraColumns: ["lease"] });
      await store.applyBatch([
        {
          index: 1,
          term: 1,
          request: {
            external: (ctx) => {
              ctx.put("lease", Buffer.from("lease/1"), Buffer.from("ttl=10"));
              return "granted";
            },
          },
        },
        {
          index: 2,
          term: 1,
          request: {
            external: (ctx) => {
              // Reads see committed state only: this batch's own write is not visible yet.
              assert.equal(ctx.get("lease", Buffer.from("lease/1")), undefined);
              return ctx.deleteKeys([Buffer.from("nothing")]);
            },
          },
        },
      ]);
      await store.close();
      store = await MvccStore.open(location, { extraColumns: ["lease"] });
      const result = await store.apply({
        index: 3,
        term: 1,
        request: { external: (ctx) => ctx.get("lease", Buffer.from("lease/1"))?.toString() },
      });
      assert.deepEqual(result, { status: "applied", response: "ttl=10" });
      assert.equal(store.appliedIndex, 3);
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("treats an external apply that fails after writing as fatal: nothing half-applied is kept", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location, { extraColumns: ["lease"] });
      await assert.rejects(
        store.applyBatch([
          { index: 1, term: 1, request: { put: putRequest({ key: "a", value: "1" }) } },
          {
            index: 2,
            term: 1,
            request: {
              external: (ctx) => {
                ctx.put("lease", Buffer.from("lease/1"), Buffer.from("x"));
                throw new EtcdError("LeaseNotFound");
              },
            },
          },
        ]),
        /failed after writing/,
      );
      await assert.rejects(store.range(rangeRequest({ key: "a" })), /failed after writing/);
      await store.close();
      store = await MvccStore.open(location, { extraColumns: ["lease"] });
      assert.equal(store.appliedIndex, 0);
      assert.equal((await store.range(rangeRequest({ key: "a" }))).kvs.length, 0);
      await store.close();
    } finally {
      await dir.remove();
    }
  });
});
