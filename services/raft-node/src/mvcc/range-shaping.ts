// What etcd does to a range result after reading it (server/etcdserver/txn/txn.go
// executeRange): revision filters, sorting, limit and `more`, keys_only. Pure, over KeyValues.

import type { KeyValue, RangeRequest } from "./types.js";
import { SortOrder, SortTarget } from "./types.js";

/**
 * How many revisions to read from the index: everything when the result is filtered or sorted
 * afterwards, else one past the limit so `more` can be told.
 */
export function indexLimit(r: RangeRequest): number {
  if (
    r.sortOrder !== SortOrder.NONE ||
    r.minModRevision !== 0 ||
    r.maxModRevision !== 0 ||
    r.minCreateRevision !== 0 ||
    r.maxCreateRevision !== 0
  ) {
    return 0;
  }
  return r.limit > 0 ? r.limit + 1 : 0;
}

/**
 * Whether the answer is the index's hits in key order cut at the limit: no revision filter and
 * no sort but ascending by key (shapeRange would only cut), so values may go out as stored.
 */
export function inIndexOrder(r: RangeRequest): boolean {
  return (
    r.minModRevision === 0 &&
    r.maxModRevision === 0 &&
    r.minCreateRevision === 0 &&
    r.maxCreateRevision === 0 &&
    r.sortTarget === SortTarget.KEY &&
    (r.sortOrder === SortOrder.NONE || r.sortOrder === SortOrder.ASCEND)
  );
}

/** Filters, sorts, truncates in place; returns the surviving kvs and etcd's `more` flag. */
export function shapeRange(r: RangeRequest, kvs: KeyValue[]): { kvs: KeyValue[]; more: boolean } {
  if (r.maxModRevision !== 0) kvs = kvs.filter((kv) => kv.modRevision <= r.maxModRevision);
  if (r.minModRevision !== 0) kvs = kvs.filter((kv) => kv.modRevision >= r.minModRevision);
  if (r.maxCreateRevision !== 0) kvs = kvs.filter((kv) => kv.createRevision <= r.maxCreateRevision);
  if (r.minCreateRevision !== 0) kvs = kvs.filter((kv) => kv.createRevision >= r.minCreateRevision);

  let order = r.sortOrder;
  // The index yields keys in ascending order already: a non-key target with no order means
  // ascending, and ascending by key needs no sort at all.
  if (r.sortTarget !== SortTarget.KEY && order === SortOrder.NONE) order = SortOrder.ASCEND;
  else if (r.sortTarget === SortTarget.KEY && order === SortOrder.ASCEND) order = SortOrder.NONE;
  if (order !== SortOrder.NONE) {
    const compare = comparatorFor(r.sortTarget);
    kvs.sort(order === SortOrder.DESCEND ? (a, b) => compare(b, a) : compare);
  }

  let more = false;
  if (r.limit > 0 && kvs.length > r.limit) {
    kvs.length = r.limit;
    more = true;
  }
  if (r.keysOnly) for (const kv of kvs) kv.value = EMPTY;
  return { kvs, more };
}

const EMPTY = Buffer.alloc(0);

function comparatorFor(target: number): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case SortTarget.KEY:
      return (a, b) => Buffer.compare(a.key, b.key);
    case SortTarget.VERSION:
      return (a, b) => a.version - b.version;
    case SortTarget.CREATE:
      return (a, b) => a.createRevision - b.createRevision;
    case SortTarget.MOD:
      return (a, b) => a.modRevision - b.modRevision;
    case SortTarget.VALUE:
      return (a, b) => Buffer.compare(a.value, b.value);
    default:
      throw new Error(`mvcc: unexpected sort target ${target}`);
  }
}
