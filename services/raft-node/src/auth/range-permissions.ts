// etcd's unified range permissions (auth/range_perm_cache.go): the union of a user's READ (or
// WRITE) permissions, as key intervals, and the two questions etcd asks of it: does a single key
// fall in the union (a request without range_end), and does the union cover a whole range.
//
// Intervals are [start, end) over raw key bytes. A permission without range_end is the single
// key [key, key+"\0"); range_end "\0" (etcd's from-key) means no upper bound (end null).

export interface KeyInterval {
  start: Buffer;
  /** null: unbounded above. */
  end: Buffer | null;
}

const ZERO = Buffer.from([0]);

/** The interval a permission or a request names (etcd's affine interval / point). */
export function intervalOf(key: Buffer, rangeEnd: Buffer): KeyInterval {
  if (rangeEnd.length === 0) return { start: key, end: Buffer.concat([key, ZERO]) };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: null };
  return { start: key, end: rangeEnd };
}

const endBefore = (a: Buffer | null, b: Buffer | null): boolean =>
  a !== null && (b === null || Buffer.compare(a, b) < 0);

/** A sorted union of disjoint, non-adjacent intervals. */
export class RangeUnion {
  private readonly parts: KeyInterval[];

  constructor(intervals: readonly KeyInterval[]) {
    const sorted = intervals
      .filter((i) => i.end === null || Buffer.compare(i.start, i.end) < 0)
      .sort((a, b) => Buffer.compare(a.start, b.start));
    const parts: KeyInterval[] = [];
    for (const i of sorted) {
      const last = parts[parts.length - 1];
      // Overlapping or touching intervals merge, so a range spanning both is covered.
      if (last !== undefined && (last.end === null || Buffer.compare(i.start, last.end) <= 0)) {
        if (endBefore(last.end, i.end)) last.end = i.end;
      } else {
        parts.push({ start: i.start, end: i.end });
      }
    }
    this.parts = parts;
  }

  /** The part that starts at or before `key`, if any. */
  private partAt(key: Buffer): KeyInterval | undefined {
    let lo = 0;
    let hi = this.parts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (Buffer.compare(this.parts[mid]!.start, key) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : this.parts[lo - 1];
  }

  /** etcd's checkKeyPoint: `key` lies in the union. */
  containsKey(key: Buffer): boolean {
    const part = this.partAt(key);
    return part !== undefined && (part.end === null || Buffer.compare(key, part.end) < 0);
  }

  /** etcd's checkKeyInterval: the union covers all of `range`. */
  covers(range: KeyInterval): boolean {
    const part = this.partAt(range.start);
    if (part === undefined) return false;
    if (part.end === null) return true;
    if (Buffer.compare(range.start, part.end) >= 0) return false;
    return range.end !== null && Buffer.compare(range.end, part.end) <= 0;
  }
}
