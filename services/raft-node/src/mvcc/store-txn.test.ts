import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { compareRequest, deleteRangeRequest, putRequest, rangeRequest } from "./request-builders.js";
import { pairs, withStore } from "./store-fixture.js";
import type { RequestOp } from "./types.js";
import { CompareResult, CompareTarget } from "./types.js";

const put = (key: string, value: string, extra = {}): RequestOp => ({
  requestPut: putRequest({ key, value, ...extra }),
});
const del = (key: string, rangeEnd?: string): RequestOp => ({
  requestDeleteRange: deleteRangeRequest({ key, rangeEnd }),
});
const get = (key: string, rangeEnd?: string): RequestOp => ({
  requestRange: rangeRequest({ key, rangeEnd }),
});
const { EQUAL, GREATER, LESS, NOT_EQUAL } = CompareResult;

describe("txn compares", () => {
  it("compares value, version, create, mod and lease with every operator", () =>
    withStore(async (_store, kv) => {
      await kv.put("k", "b", { lease: 3n }); // rev 2
      await kv.put("k", "b"); // rev 3, version 2, lease 0
      await kv.put("k", "b", { lease: 3n }); // rev 4, version 3
      const holds = async (target: number, result: number, field: Record<string, unknown>) =>
        (await kv.txn({ compare: [compareRequest({ key: "k", target, result, ...field })] })).succeeded;
      const v = (s: string) => ({ value: Buffer.from(s) });
      assert.equal(await holds(CompareTarget.VALUE, EQUAL, v("b")), true);
      assert.equal(await holds(CompareTarget.VALUE, GREATER, v("a")), true);
      assert.equal(await holds(CompareTarget.VALUE, LESS, v("c")), true);
      assert.equal(await holds(CompareTarget.VALUE, NOT_EQUAL, v("b")), false);
      assert.equal(await holds(CompareTarget.VERSION, EQUAL, { version: 3 }), true);
      assert.equal(await holds(CompareTarget.VERSION, LESS, { version: 3 }), false);
      assert.equal(await holds(CompareTarget.CREATE, EQUAL, { createRevision: 2 }), true);
      assert.equal(await holds(CompareTarget.CREATE, GREATER, { createRevision: 1 }), true);
      assert.equal(await holds(CompareTarget.MOD, EQUAL, { modRevision: 4 }), true);
      assert.equal(await holds(CompareTarget.MOD, NOT_EQUAL, { modRevision: 4 }), false);
      assert.equal(await holds(CompareTarget.LEASE, EQUAL, { lease: 3 }), true);
      assert.equal(await holds(CompareTarget.LEASE, GREATER, { lease: 2 }), true);
    }));

  it("treats a missing key as zero, except for value compares which fail", () =>
    withStore(async (_store, kv) => {
      const holds = async (target: number, result: number, field: Record<string, unknown>) =>
        (await kv.txn({ compare: [compareRequest({ key: "nope", target, result, ...field })] })).succeeded;
      assert.equal(await holds(CompareTarget.CREATE, EQUAL, { createRevision: 0 }), true);
      assert.equal(await holds(CompareTarget.VERSION, EQUAL, { version: 0 }), true);
      assert.equal(await holds(CompareTarget.VALUE, EQUAL, { value: Buffer.alloc(0) }), false);
      assert.equal(await holds(CompareTarget.VALUE, NOT_EQUAL, { value: Buffer.from("x") }), false);
    }));

  it("requires every key in a compare's range to satisfy it", () =>
    withStore(async (_store, kv) => {
      await kv.put("p/a", "1");
      await kv.put("p/b", "2");
      const inRange = (value: string, result: number, rangeEnd = "p0") =>
        kv.txn({
          compare: [compareRequest({ key: "p/", rangeEnd, target: CompareTarget.VALUE, result, value })],
        });
      assert.equal((await inRange("0", GREATER)).succeeded, true);
      assert.equal((await inRange("1", GREATER)).succeeded, false);
      assert.equal((await inRange("3", LESS, "\0")).succeeded, true);
    }));
});

describe("txn execution", () => {
  it("runs the success or failure branch, with per-op responses and one revision", () =>
    withStore(async (store, kv) => {
      await kv.put("a", "1"); // 2
      const cmp = [compareRequest({ key: "a", target: CompareTarget.VALUE, result: EQUAL, value: "1" })];
      const ok = await kv.txn({
        compare: cmp,
        success: [put("a", "2", { prevKv: true }), put("b", "1"), get("a")],
        failure: [put("z", "z")],
      });
      assert.equal(ok.succeeded, true);
      assert.equal(ok.header?.revision, 3);
      assert.equal(ok.responses[0]!.responsePut?.prevKv?.value.toString(), "1");
      assert.equal(ok.responses[0]!.responsePut?.header?.revision, 3);
      // A range after a put in the same txn sees the put (etcd 3.5/3.6 behaviour).
      assert.deepEqual(pairs(ok.responses[2]!.responseRange!), ["a=2"]);
      const b = (await kv.get("b")).kvs[0]!;
      assert.deepEqual([b.modRevision, b.createRevision], [3, 3]);
      const a = (await kv.get("a")).kvs[0]!;
      assert.equal(a.version, 2);
      const failed = await kv.txn({
        compare: cmp,
        success: [put("z", "s")],
        failure: [put("z", "f"), del("b")],
      });
      assert.equal(failed.succeeded, false);
      assert.equal(failed.header?.revision, 4);
      assert.equal(failed.responses[1]!.responseDeleteRange?.deleted, 1);
      assert.deepEqual(pairs(await kv.get("\0", { rangeEnd: "\0" })), ["a=2", "z=f"]);
      assert.equal(store.revision, 4);
    }));

  it("evaluates nested txns with their own compares against the state before the txn", () =>
    withStore(async (_store, kv) => {
      await kv.put("a", "1");
      const r = await kv.txn({
        success: [
          put("a", "2"),
          {
            requestTxn: {
              // Sees a=1 although the outer txn has just written a=2.
              compare: [compareRequest({ key: "a", target: CompareTarget.VALUE, result: EQUAL, value: "1" })],
              success: [put("inner", "yes")],
              failure: [put("inner", "no")],
            },
          },
        ],
      });
      assert.equal(r.responses[1]!.responseTxn?.succeeded, true);
      assert.equal(r.responses[1]!.responseTxn?.header?.revision, 0);
      assert.deepEqual(pairs(await kv.get("inner")), ["inner=yes"]);
      assert.equal(r.header?.revision, 3);
    }));

  it("applies a committed txn of any size: --max-txn-ops is the proposer's RPC check, not apply's", () =>
    withStore(async (store, kv) => {
      // 300 ops is past etcd's default limit (128): a member started with a higher limit may
      // have proposed it, and every member must apply it alike (v3rpc/request-validation.ts).
      const many = Array.from({ length: 300 }, (_, i) => put(`k${i}`, "v"));
      const r = await kv.txn({ success: many });
      assert.equal(r.succeeded, true);
      assert.equal(r.header?.revision, 2);
      assert.equal(store.revision, 2);
      assert.equal((await kv.get("k", { rangeEnd: "l", countOnly: true })).count, 300);
    }));

  it("fails the whole txn before writing when an op's check fails", () =>
    withStore(async (store, kv) => {
      await kv.put("a", "1");
      await assert.rejects(
        kv.txn({ success: [put("b", "1"), put("missing", "", { ignoreValue: true })] }),
        (err) => isEtcdError(err, "KeyNotFound"),
      );
      await assert.rejects(
        kv.txn({ success: [put("b", "1"), { requestRange: rangeRequest({ key: "a", revision: 99 }) }] }),
        (err) => isEtcdError(err, "FutureRev"),
      );
      assert.equal(store.revision, 2);
      assert.equal((await kv.get("b")).kvs.length, 0);
    }));
});
