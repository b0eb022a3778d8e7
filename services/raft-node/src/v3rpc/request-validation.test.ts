import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type EtcdErrorKind, isEtcdError } from "@etcd-ts/api";
import {
  compareRequest,
  deleteRangeRequest,
  putRequest,
  type RequestOp,
  rangeRequest,
  type TxnRequest,
  txnRequest,
} from "../mvcc/mod.js";
import { checkPutRequest, checkRangeRequest, checkTxnRequest, isTxnReadOnly } from "./request-validation.js";

const put = (key: string): RequestOp => ({ requestPut: putRequest({ key, value: "v" }) });
const del = (key: string, rangeEnd?: string): RequestOp => ({
  requestDeleteRange: deleteRangeRequest({ key, rangeEnd }),
});
const nested = (success: RequestOp[], failure: RequestOp[] = []): RequestOp => ({
  requestTxn: txnRequest({ success, failure }),
});
const refuses = (t: Partial<TxnRequest>, kind: EtcdErrorKind) =>
  assert.throws(
    () => checkTxnRequest(txnRequest(t)),
    (e) => isEtcdError(e, kind),
  );

describe("txn validation (etcd's checkTxnRequest and checkIntervals)", () => {
  it("refuses puts that collide with puts or deletes at any nesting level", () => {
    refuses({ success: [put("a"), put("a")] }, "DuplicateKey");
    refuses({ failure: [del("a", "c"), put("b")] }, "DuplicateKey");
    refuses({ success: [nested([put("a")]), put("a")] }, "DuplicateKey");
    refuses({ success: [del("a"), nested([], [put("a")])] }, "DuplicateKey");
    refuses({ success: [nested([del("a", "z")]), put("m")] }, "DuplicateKey");
    refuses({ success: [nested([put("x")]), nested([put("x")])] }, "DuplicateKey");
  });

  it("allows what etcd allows", () => {
    const allowed = (t: Partial<TxnRequest>) => checkTxnRequest(txnRequest(t));
    allowed({ success: [put("a"), put("b")], failure: [put("a")] });
    allowed({ success: [del("a", "c"), del("b", "d"), put("d")] });
    allowed({ success: [nested([put("a")], [put("a")])] });
    allowed({ success: [del("a", "\0"), put("b")] });
    allowed({ success: [put("a"), { requestRange: rangeRequest({ key: "a" }) }] });
  });

  it("counts ops per level against the limit, nested budgets included", () => {
    const ops = (n: number, prefix = "k") => Array.from({ length: n }, (_, i) => put(`${prefix}${i}`));
    checkTxnRequest(txnRequest({ success: ops(128) }));
    refuses({ success: ops(129) }, "TooManyOps");
    refuses({ compare: Array.from({ length: 129 }, () => compareRequest({ key: "k" })) }, "TooManyOps");
    // The outer txn uses 100, leaving 28 for the nested one.
    refuses({ success: [...ops(99), { requestTxn: txnRequest({ success: ops(29, "n") }) }] }, "TooManyOps");
    checkTxnRequest(
      txnRequest({ success: [...ops(99), { requestTxn: txnRequest({ success: ops(28, "n") }) }] }),
    );
  });

  it("checks keys, empty ops and put flags", () => {
    refuses({ compare: [compareRequest({ key: "" })] }, "EmptyKey");
    refuses({ success: [{}] }, "KeyNotFound");
    refuses(
      { success: [{ requestPut: putRequest({ key: "k", value: "v", ignoreValue: true }) }] },
      "ValueProvided",
    );
    assert.throws(
      () => checkPutRequest(putRequest({ key: "k", lease: 1n, ignoreLease: true })),
      (e) => isEtcdError(e, "LeaseProvided"),
    );
    assert.throws(
      () => checkRangeRequest(rangeRequest({ key: "k", sortOrder: 3 })),
      (e) => isEtcdError(e, "InvalidSortOption"),
    );
  });

  it("tells read-only txns apart", () => {
    assert.equal(
      isTxnReadOnly(txnRequest({ success: [{ requestRange: rangeRequest({ key: "a" }) }] })),
      true,
    );
    assert.equal(isTxnReadOnly(txnRequest({ failure: [del("a")] })), false);
  });
});
