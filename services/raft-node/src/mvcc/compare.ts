// Txn compare semantics (etcd's applyCompare/compareKV): every key in the compare's range must
// satisfy it; over no keys, a VALUE compare fails and the others compare against a zero KeyValue.

import type { Compare, KeyValue } from "./types.js";
import { CompareResult, CompareTarget } from "./types.js";

const EMPTY = Buffer.alloc(0);
const ZERO_KV: KeyValue = {
  key: EMPTY,
  createRevision: 0,
  modRevision: 0,
  version: 0,
  value: EMPTY,
  lease: 0n,
};

export function compareHolds(c: Compare, kvs: readonly KeyValue[]): boolean {
  if (kvs.length === 0) {
    if (c.target === CompareTarget.VALUE) return false;
    return compareKeyValue(c, ZERO_KV);
  }
  for (const kv of kvs) if (!compareKeyValue(c, kv)) return false;
  return true;
}

export function compareKeyValue(c: Compare, kv: KeyValue): boolean {
  let result: number;
  switch (c.target) {
    case CompareTarget.VALUE:
      result = Buffer.compare(kv.value, c.value ?? EMPTY);
      break;
    case CompareTarget.CREATE:
      result = Math.sign(kv.createRevision - (c.createRevision ?? 0));
      break;
    case CompareTarget.MOD:
      result = Math.sign(kv.modRevision - (c.modRevision ?? 0));
      break;
    case CompareTarget.VERSION:
      result = Math.sign(kv.version - (c.version ?? 0));
      break;
    case CompareTarget.LEASE:
      {
        const want = c.lease ?? 0n;
        result = kv.lease < want ? -1 : kv.lease > want ? 1 : 0;
      }
      break;
    default:
      result = 0;
  }
  switch (c.result) {
    case CompareResult.EQUAL:
      return result === 0;
    case CompareResult.NOT_EQUAL:
      return result !== 0;
    case CompareResult.GREATER:
      return result > 0;
    case CompareResult.LESS:
      return result < 0;
    default:
      // etcd treats an unknown result as satisfied.
      return true;
  }
}
