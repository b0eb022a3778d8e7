import { RaftError } from "./errors.js";
import type { Entry, EntryType } from "./types.js";

// Why not an Entry object per entry: a member keeps up to --snapshot-count (100,000) persisted
// entries in memory, as etcd does. As objects, each was an Entry and a data view (~150 bytes
// of V8 heap) pinning part of a received frame or proposal; a follower after 40,000 puts held
// 81,000 more heap objects than with this store, and a leader's RSS was 30-40 MiB higher at
// many clients (bench/JOURNAL.md, "raftlog"). Here a run of entries is a few typed arrays and
// one byte buffer, and Entry objects exist only while a caller holds what entries() returned.

/** Slots and bytes a segment starts with, grown by doubling up to the caps below. */
const FIRST_SLOTS = 64;
const FIRST_BYTES = 4096;
/** Beyond these a new segment starts: compaction drops whole segments, and a view handed out pins one. */
export const SEGMENT_SLOTS = 2048;
export const SEGMENT_BYTES = 256 * 1024;

/**
 * Consecutive entries from `first` on, their payloads copied into `data`. Bytes are only
 * ever appended (a truncated entry's bytes are not reused), so a view handed out by
 * entries() never changes under its holder.
 */
class Segment {
  count = 0;
  used = 0;
  terms: Float64Array;
  types: Uint8Array;
  starts: Uint32Array;
  ends: Uint32Array;
  data: Buffer;

  constructor(
    readonly first: number,
    bytes: number,
  ) {
    this.terms = new Float64Array(FIRST_SLOTS);
    this.types = new Uint8Array(FIRST_SLOTS);
    this.starts = new Uint32Array(FIRST_SLOTS);
    this.ends = new Uint32Array(FIRST_SLOTS);
    // Not from Buffer's shared pool: a pooled slab would tie this segment to unrelated buffers.
    this.data = Buffer.allocUnsafeSlow(bytes);
  }

  /** Room for one more entry of `len` bytes, growing up to the caps; false when full. */
  reserve(len: number): boolean {
    if (this.count === this.terms.length) {
      if (this.count >= SEGMENT_SLOTS) return false;
      const slots = Math.min(this.count * 2, SEGMENT_SLOTS);
      this.terms = grown(this.terms, new Float64Array(slots));
      this.types = grown(this.types, new Uint8Array(slots));
      this.starts = grown(this.starts, new Uint32Array(slots));
      this.ends = grown(this.ends, new Uint32Array(slots));
    }
    const need = this.used + len;
    if (need > this.data.length) {
      // A segment holding one oversized entry is allowed; otherwise past the cap, a new one.
      if (this.count > 0 && need > SEGMENT_BYTES) return false;
      let bytes = this.data.length * 2;
      while (bytes < need) bytes *= 2;
      const data = Buffer.allocUnsafeSlow(Math.max(need, Math.min(bytes, SEGMENT_BYTES)));
      // Views handed out keep the old buffer, whose bytes stay as they were.
      this.data.copy(data, 0, 0, this.used);
      this.data = data;
    }
    return true;
  }

  push(term: number, type: EntryType, payload: Uint8Array): void {
    const i = this.count++;
    const start = this.used;
    this.terms[i] = term;
    this.types[i] = type;
    this.starts[i] = start;
    this.data.set(payload, start);
    this.used = start + payload.length;
    this.ends[i] = this.used;
  }
}

function grown<T extends Float64Array | Uint8Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/**
 * The persisted entries of a Raft log, compactly: indexes (base, last], plus the term of
 * `base` (the compaction point, or 0 for an empty log) so that appends can be matched
 * against it. Pure bookkeeping; MemoryStorage gives it etcd-raft's Storage contract.
 */
export class EntryStore {
  private base = 0;
  private baseTerm = 0;
  /** In index order, contiguous; entries of the first segment at or below `base` are dead. */
  private segments: Segment[] = [];

  /** The index below the first entry (the snapshot's), whose term stays known. */
  baseIndex(): number {
    return this.base;
  }

  lastIndex(): number {
    const n = this.segments.length;
    if (n === 0) return this.base;
    const last = this.segments[n - 1];
    return Math.max(this.base, last.first + last.count - 1);
  }

  /** The term at `index`, for base <= index <= lastIndex() (the caller checks). */
  term(index: number): number {
    if (index === this.base) return this.baseTerm;
    const seg = this.segmentOf(index);
    return seg.terms[index - seg.first];
  }

  /**
   * Entries in [lo, hi), base < lo <= hi <= lastIndex() + 1 (the caller checks): the longest
   * prefix whose payload fits in maxSize but at least one (limitSize's rule). Their data
   * are views into the store's buffers.
   */
  entries(lo: number, hi: number, maxSize: number): Entry[] {
    const out: Entry[] = [];
    if (lo >= hi) return out;
    let k = this.segmentAt(lo);
    let seg = this.segments[k];
    let size = 0;
    for (let index = lo; index < hi; index++) {
      let i = index - seg.first;
      if (i >= seg.count) {
        seg = this.segments[++k];
        i = 0;
      }
      const start = seg.starts[i];
      const end = seg.ends[i];
      size += end - start;
      if (out.length > 0 && size > maxSize) break;
      out.push({
        term: seg.terms[i],
        index,
        type: seg.types[i] as EntryType,
        data: seg.data.subarray(start, end),
      });
    }
    return out;
  }

  /**
   * Copies `entries` (consecutive, the first at most lastIndex() + 1 and above base) in,
   * replacing whatever the store held from the first one's index on.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const from = entries[0].index;
    const last = this.lastIndex();
    if (from <= this.base || from > last + 1) {
      throw new RaftError(`append at ${from} outside (${this.base}, ${last + 1}]`);
    }
    if (from <= last) this.truncateFrom(from);
    let seg = this.segments.length > 0 ? this.segments[this.segments.length - 1] : undefined;
    for (let j = 0; j < entries.length; j++) {
      const e = entries[j];
      const len = e.data.length;
      if (seg === undefined || !seg.reserve(len)) {
        seg = new Segment(from + j, Math.max(FIRST_BYTES, len));
        seg.reserve(len);
        this.segments.push(seg);
      }
      seg.push(e.term, e.type, e.data);
    }
  }

  /** Drops entries up to and including `index` (base < index <= lastIndex()), keeping its term. */
  compact(index: number): void {
    this.baseTerm = this.term(index);
    this.base = index;
    let drop = 0;
    while (drop < this.segments.length) {
      const seg = this.segments[drop];
      if (seg.first + seg.count - 1 > index) break;
      drop++;
    }
    if (drop > 0) this.segments.splice(0, drop);
  }

  /** Forgets every entry: the log restarts after (index, term). */
  reset(index: number, term: number): void {
    this.base = index;
    this.baseTerm = term;
    this.segments = [];
  }

  private truncateFrom(index: number): void {
    const k = this.segmentAt(index);
    const seg = this.segments[k];
    seg.count = index - seg.first;
    // An emptied segment stays only if it is the first (its slots below base are dead anyway).
    this.segments.length = seg.count === 0 && k > 0 ? k : k + 1;
  }

  private segmentOf(index: number): Segment {
    return this.segments[this.segmentAt(index)];
  }

  /** The position of the segment holding `index` (base < index <= lastIndex()). */
  private segmentAt(index: number): number {
    const segs = this.segments;
    let hi = segs.length - 1;
    // Most lookups are for recent entries.
    if (index >= segs[hi].first) return hi;
    let lo = 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (segs[mid].first <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
