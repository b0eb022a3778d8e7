import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { etcdserverpb, isEtcdError, mvccpb } from "@etcd-ts/api";
import {
  apiHeader,
  apiKeyValue,
  compactionRequestFromApi,
  rangeRequestFromApi,
  txnRequestFromApi,
} from "./api-shapes.js";
import { encodeEvent, encodePutResponse, encodeRangeResponse, encodeTxnResponse } from "./response-codec.js";
import { withStore } from "./store-fixture.js";
import type { KeyValue, RangeResponse, TxnResponse } from "./types.js";

const BEYOND = 2n ** 62n;

describe("API int64s at the store's boundary", () => {
  it("answers client values beyond 2^53 as etcd does", () =>
    withStore(async (store, kv) => {
      await kv.put("a", "1");
      await kv.put("b", "2", { lease: 0n });
      // A Range at revision 2^62: etcd's ErrFutureRev, not a rounding accident.
      await assert.rejects(
        store.range(
          rangeRequestFromApi(
            etcdserverpb.RangeRequest.fromPartial({ key: Buffer.from("a"), revision: BEYOND }),
          ),
        ),
        (e) => isEtcdError(e, "FutureRev"),
      );
      await assert.rejects(
        kv.request({ compaction: compactionRequestFromApi({ revision: BEYOND, physical: false }) }),
        (e) => isEtcdError(e, "FutureRev"),
      );
      // A limit of 2^62 is no limit; min_mod_revision 2^62 filters everything out.
      const all = (await store.range(
        rangeRequestFromApi(
          etcdserverpb.RangeRequest.fromPartial({
            key: Buffer.from("a"),
            rangeEnd: Buffer.from("c"),
            limit: BEYOND,
          }),
        ),
      )) as RangeResponse;
      assert.equal(all.kvs.length, 2);
      const none = (await store.range(
        rangeRequestFromApi(
          etcdserverpb.RangeRequest.fromPartial({
            key: Buffer.from("a"),
            rangeEnd: Buffer.from("c"),
            minModRevision: BEYOND,
          }),
        ),
      )) as RangeResponse;
      assert.equal(none.kvs.length, 0);
      // mod_revision("a") < 2^62 holds; = 2^62 does not.
      const txn = (cmp: etcdserverpb.Compare_CompareResult) =>
        kv.request({
          txn: txnRequestFromApi(
            etcdserverpb.TxnRequest.fromPartial({
              compare: [
                {
                  key: Buffer.from("a"),
                  target: etcdserverpb.Compare_CompareTarget.MOD,
                  result: cmp,
                  modRevision: BEYOND,
                },
              ],
            }),
          ),
        }) as Promise<TxnResponse>;
      assert.equal((await txn(etcdserverpb.Compare_CompareResult.LESS)).succeeded, true);
      assert.equal((await txn(etcdserverpb.Compare_CompareResult.EQUAL)).succeeded, false);
    }));
});

describe("mvcc's response codec", () => {
  const kv = (lease: bigint, i: number): KeyValue => ({
    key: Buffer.from(`k${i}`),
    createRevision: 2 ** 40 + i,
    modRevision: 7 + i,
    version: i,
    value: Buffer.from(i === 0 ? "" : `v${i}`),
    lease,
  });
  const header = { clusterId: 0xcdf818194e3a8c32n, memberId: 0x8e9e05c52164694dn, revision: 9, raftTerm: 2 };

  it("writes the bytes ts-proto writes for the same message, 64-bit IDs and leases included", () => {
    const res: RangeResponse = {
      header,
      kvs: [kv(0n, 0), kv(2n ** 63n - 1n, 1), kv(-5n, 2), kv(0x694d_0000_0000_0001n, 3)],
      more: true,
      count: 4,
    };
    const generated = etcdserverpb.RangeResponse.encode({
      header: apiHeader(header),
      kvs: res.kvs.map(apiKeyValue),
      more: true,
      count: 4n,
    }).finish();
    assert.equal(encodeRangeResponse(res).toString("hex"), Buffer.from(generated).toString("hex"));
    const back = etcdserverpb.RangeResponse.decode(encodeRangeResponse(res));
    assert.deepEqual(
      back.kvs.map((k) => k.lease),
      [0n, 2n ** 63n - 1n, -5n, 0x694d_0000_0000_0001n],
    );
  });

  it("writes a Put answer's bytes as ts-proto does, with and without prev_kv", () => {
    const headers = [
      header,
      { ...header, revision: 0, raftTerm: 0 },
      { ...header, revision: 2 ** 40 + 3, raftTerm: 300 },
      { clusterId: 0n, memberId: 7n, revision: 1, raftTerm: 1 },
    ];
    for (const h of headers) {
      for (const prevKv of [undefined, kv(0n, 1)]) {
        const generated = etcdserverpb.PutResponse.encode({
          header: apiHeader(h),
          prevKv: prevKv === undefined ? undefined : apiKeyValue(prevKv),
        }).finish();
        assert.equal(
          encodePutResponse({ header: h, prevKv }).toString("hex"),
          Buffer.from(generated).toString("hex"),
        );
      }
    }
  });

  it("nests Txn responses and writes events as mvccpb.Event", () => {
    const inner: TxnResponse = {
      header,
      succeeded: true,
      responses: [{ responsePut: { header, prevKv: kv(3n, 1) } }],
    };
    const res: TxnResponse = {
      header,
      succeeded: false,
      responses: [
        { responseRange: { header, kvs: [kv(0n, 1)], more: false, count: 1 } },
        { responseDeleteRange: { header, deleted: 2, prevKvs: [kv(0n, 2)] } },
        { responseTxn: inner },
      ],
    };
    const decoded = etcdserverpb.TxnResponse.decode(encodeTxnResponse(res));
    assert.equal(decoded.succeeded, false);
    assert.equal(decoded.responses[1]?.responseDeleteRange?.deleted, 2n);
    assert.equal(decoded.responses[2]?.responseTxn?.responses[0]?.responsePut?.prevKv?.lease, 3n);
    assert.equal(decoded.header?.memberId, 0x8e9e05c52164694dn);
    const event = { type: 1, kv: kv(0n, 1), prevKv: kv(9n, 2) };
    assert.deepEqual(mvccpb.Event.decode(encodeEvent(event)), {
      type: 1,
      kv: apiKeyValue(event.kv),
      prevKv: apiKeyValue(event.prevKv),
    });
  });
});
