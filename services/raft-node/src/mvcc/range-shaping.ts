// What etcd does to a range result after reading it (server/etcdserver/txn/txn.go
// executeRange): revision filters, sorting, limit and `more`, keys_only. Pure, over KeyValues.

import { decodeKeyValue } from "./kv-codec.js";
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

/**
 * The sort a Range's hits need, from the index's ascending key order: a non-key target with no
 * order means ascending (etcd's executeRange), and ascending by key needs no sort at all.
 */
export function sortOrderOf(r: RangeRequest): number {
  if (r.sortTarget !== SortTarget.KEY && r.sortOrder === SortOrder.NONE) return SortOrder.ASCEND;
  if (r.sortTarget === SortTarget.KEY && r.sortOrder === SortOrder.ASCEND) return SortOrder.NONE;
  return r.sortOrder;
}

/** Whether a revision passes the Range's mod and create revision filters (shapeRange's). */
export function passesRevisionFilters(r: RangeRequest, modRevision: number, createRevision: number): boolean {
  return (
    (r.maxModRevision === 0 || modRevision <= r.maxModRevision) &&
    (r.minModRevision === 0 || modRevision >= r.minModRevision) &&
    (r.maxCreateRevision === 0 || createRevision <= r.maxCreateRevision) &&
    (r.minCreateRevision === 0 || createRevision >= r.minCreateRevision)
  );
}

/**
 * Positions 0..n-1 ordered by `compare` of their values (ascending, or descending), equal values
 * by position ascending: the order shapeRange's stable sort gives hits in key order. A bottom-up
 * merge sort that yields after about `slice` elements sorted or merged, so that its caller can
 * give the event loop a turn between slices (none of them long, however many hits).
 */
export function* sortPositions(
  n: number,
  compare: (a: number, b: number) => number,
  descend: boolean,
  slice: number,
): Generator<void, Uint32Array, void> {
  let src = new Uint32Array(n);
  for (let i = 0; i < n; i++) src[i] = i;
  // Whether position a goes before position b: a total order, so any sort gives the same result.
  const before = (a: number, b: number) => {
    const c = descend ? compare(b, a) : compare(a, b);
    return c < 0 || (c === 0 && a < b);
  };
  const inOrder = (a: number, b: number) => (before(a, b) ? -1 : 1);
  // Runs sorted whole first: a run of r costs about r * log2(r) comparisons, so ~slice / 16 each
  // keeps a slice's comparisons near `slice` (a comparison can be a call into C++: by value).
  const run = Math.max(2, Math.floor(slice / 16));
  const runCost = run * Math.ceil(Math.log2(run));
  let moved = 0;
  for (let lo = 0; lo < n; lo += run) {
    src.subarray(lo, Math.min(n, lo + run)).sort(inOrder);
    moved += runCost;
    if (moved >= slice && lo + run < n) {
      moved = 0;
      yield;
    }
  }
  let dst = new Uint32Array(n);
  moved = 0;
  for (let width = run; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      let i = lo;
      let j = mid;
      for (let k = lo; k < hi; k++) {
        if (j >= hi || (i < mid && !before(src[j]!, src[i]!))) dst[k] = src[i++]!;
        else dst[k] = src[j++]!;
        if (++moved >= slice) {
          moved = 0;
          yield;
        }
      }
    }
    [src, dst] = [dst, src];
  }
  return src;
}

/**
 * The stored KeyValues of a Range sorted by value, by position (hits in key order), kept as one
 * buffer per read chunk with offsets: no object per KeyValue lives while the sort runs (held
 * across many turns, a million of them would make every full GC of the member long).
 */
export class StoredChunks {
  private readonly chunks: Buffer[] = [];
  private readonly kvStart: Uint32Array;
  private readonly kvEnd: Uint32Array;
  private readonly valueStart: Uint32Array;
  private readonly valueEnd: Uint32Array;

  /** `n` positions, read `chunkSize` at a time (the last chunk may be shorter). */
  constructor(
    n: number,
    private readonly chunkSize: number,
  ) {
    this.kvStart = new Uint32Array(n);
    this.kvEnd = new Uint32Array(n);
    this.valueStart = new Uint32Array(n);
    this.valueEnd = new Uint32Array(n);
  }

  /** The next chunk's stored KeyValues, in position order. */
  add(stored: readonly Buffer[]): void {
    const joined = Buffer.concat(stored);
    let i = this.chunks.length * this.chunkSize;
    this.chunks.push(joined);
    let pos = 0;
    for (const kv of stored) {
      const value = decodeKeyValue(joined.subarray(pos, pos + kv.length)).value;
      this.kvStart[i] = pos;
      this.kvEnd[i] = pos + kv.length;
      // An empty value is a shared empty buffer, not a view of this one.
      const at = value.length === 0 ? 0 : value.byteOffset - joined.byteOffset;
      this.valueStart[i] = at;
      this.valueEnd[i] = at + value.length;
      pos += kv.length;
      i++;
    }
  }

  /** Position a's value against position b's, as Buffer.compare. */
  compareValues(a: number, b: number): number {
    return this.chunkOf(a).compare(
      this.chunkOf(b),
      this.valueStart[b],
      this.valueEnd[b],
      this.valueStart[a],
      this.valueEnd[a],
    );
  }

  /** Position i's stored KeyValue (a view). */
  kv(i: number): Buffer {
    return this.chunkOf(i).subarray(this.kvStart[i], this.kvEnd[i]);
  }

  private chunkOf(i: number): Buffer {
    return this.chunks[Math.floor(i / this.chunkSize)]!;
  }
}

/** Filters, sorts, truncates in place; returns the surviving kvs and etcd's `more` flag. */
export function shapeRange(r: RangeRequest, kvs: KeyValue[]): { kvs: KeyValue[]; more: boolean } {
  kvs = kvs.filter((kv) => passesRevisionFilters(r, kv.modRevision, kv.createRevision));

  const order = sortOrderOf(r);
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
