// Complete requests from partial ones, filled with proto3 defaults the way a decoder fills them:
// for internal callers (lease revocation, tests, benchmarks) that build requests by hand.
import type { Compare, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest } from "./types.js";

const EMPTY = Buffer.alloc(0);

type Bytes = Buffer | string;
const bytes = (b: Bytes | undefined): Buffer =>
  b === undefined ? EMPTY : typeof b === "string" ? Buffer.from(b) : b;

export function rangeRequest(
  r: Omit<Partial<RangeRequest>, "key" | "rangeEnd"> & { key: Bytes; rangeEnd?: Bytes },
): RangeRequest {
  return {
    limit: 0,
    revision: 0,
    sortOrder: 0,
    sortTarget: 0,
    serializable: false,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
    ...r,
    key: bytes(r.key),
    rangeEnd: bytes(r.rangeEnd),
  };
}

export function putRequest(
  p: Omit<Partial<PutRequest>, "key" | "value"> & { key: Bytes; value?: Bytes },
): PutRequest {
  return {
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
    ...p,
    key: bytes(p.key),
    value: bytes(p.value),
  };
}

export function deleteRangeRequest(
  d: Omit<Partial<DeleteRangeRequest>, "key" | "rangeEnd"> & { key: Bytes; rangeEnd?: Bytes },
): DeleteRangeRequest {
  return { prevKv: false, ...d, key: bytes(d.key), rangeEnd: bytes(d.rangeEnd) };
}

export function compareRequest(
  c: Omit<Partial<Compare>, "key" | "rangeEnd" | "value"> & { key: Bytes; rangeEnd?: Bytes; value?: Bytes },
): Compare {
  return {
    result: 0,
    target: 0,
    ...c,
    key: bytes(c.key),
    rangeEnd: bytes(c.rangeEnd),
    value: c.value === undefined ? undefined : bytes(c.value),
  };
}

export function txnRequest(t: Partial<TxnRequest>): TxnRequest {
  return { compare: [], success: [], failure: [], ...t };
}
