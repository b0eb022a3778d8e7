// The in-memory key index: key (latin1 string, so string order is byte order) -> that key's
// history. Ranges walk it to find which revisions to read from RocksDB; it is rebuilt from
// RocksDB (or from its checkpoint) at open, like etcd's treeIndex.
//
// Almost every key of a large store has one live revision, so the index is not a map to one
// object per key: it is a list of leaves in key order, each holding up to LEAF_CAPACITY keys as
// one concatenated latin1 string with end offsets and, for a key whose history is one live
// revision (a "row"), that revision's numbers in the leaf's array of numbers and its lease in an
// array the leaf makes only once it holds a leased key. A key with any other history (written
// again, deleted) keeps a KeyIndex object in the leaf's `histories`, until a compaction leaves it
// one live revision again. A million single-revision keys of 8 bytes then cost ~50 bytes each
// (8 of text, 8 of offset, 32 of numbers) instead of a key string, a KeyIndex object and B-tree
// slots (~150 bytes), and a restart loads one string per leaf, not a million objects
// (bench/src/mvcc/memory-restart.ts). Plain arrays rather than typed ones: V8 keeps their small
// integers unboxed in its own heap, whose pages it gives back, where thousands of small typed
// array backing stores are native allocations (in one run on a loaded machine a reopened store's
// RSS was ~110 MiB higher with them).
//
// Reads hand out KeyIndex objects: the stored one, or for a row a snapshot of it made for the
// read (a view). A view answers as of the read that made it, which is what a range needs (a
// revision it found was the latest then, with that lease). Writes go through this class's
// methods (put, tombstone, replay), never through a KeyIndex it handed out.
import { smallInteger as small } from "./bbolt-size-model.js";
import { KeyIndex, type KeyRevision, RevisionSet } from "./key-index.js";
import { REVISION_KEY_LENGTH, writeRevisionKey } from "./revision.js";

/** Keys per leaf: an insert shifts at most this many rows and rebuilds their keys' text. */
const LEAF_CAPACITY = 64;
/** A row's numbers: [main, sub, created, version] of its one live revision. */
const STRIDE = 4;
const MAIN = 0;
const SUB = 1;
const CREATED = 2;
const VERSION = 3;

export interface RangeHit extends KeyRevision {
  index: KeyIndex;
}

/** A key's live head as a put found it (TreeIndex.put's `previous`); the other fields only when live. */
export interface PreviousHead {
  live: boolean;
  created: number;
  version: number;
  headMain: number;
  headSub: number;
}

/**
 * Bounds of a key range as etcd reads them: no end means the single key `start`; an empty end
 * means every key from `start` on (the wire's "\0" range_end); otherwise [start, end).
 */
export interface KeyBounds {
  start: string;
  end: string | undefined;
}

/** A checkpoint's keys as columns (index-checkpoint.ts), in strictly ascending key order. */
export interface KeyColumns {
  /** The keys' bytes from `start` to `end` (offsets into the concatenated keys) as a latin1 string. */
  keyText: (start: number, end: number) => string;
  /** Where each key ends in the concatenated keys. */
  keyEnds: Uint32Array;
  created: Float64Array;
  version: Float64Array;
  headMain: Float64Array;
  headSub: Float64Array;
  lease: BigInt64Array;
  /** The lease column as pairs of 32-bit words: reading a zero pair allocates no BigInt. */
  leaseWords: Int32Array;
  /** The keys (by position) whose history is more than one live revision. */
  histories: ReadonlyMap<number, KeyIndex>;
}

/** Position of `key` in the leaf's keys, or ~(where it would go) when absent. */
function search(leaf: Leaf, key: string): number {
  let lo = 0;
  let hi = leaf.size - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const order = leaf.compare(key, mid);
    if (order > 0) lo = mid + 1;
    else if (order < 0) hi = mid - 1;
    else return mid;
  }
  return ~lo;
}

function noLeases(): bigint[] {
  return new Array<bigint>(LEAF_CAPACITY).fill(0n);
}

/** Copies src[from, to) to dst from dstAt on. */
function copy<T>(dst: T[], dstAt: number, src: readonly T[], from: number, to: number): void {
  for (let i = from; i < to; i++) dst[dstAt + i - from] = src[i]!;
}

/** Array.prototype.copyWithin for a few hundred numbers, without its generic element access. */
function moveWithin<T>(a: T[], target: number, from: number, to: number): void {
  if (target > from) for (let i = to - 1; i >= from; i--) a[target + i - from] = a[i]!;
  else for (let i = from; i < to; i++) a[target + i - from] = a[i]!;
}

class Leaf {
  readonly rows: number[] = new Array<number>(LEAF_CAPACITY * STRIDE).fill(0);
  leases: bigint[] | null = null;
  /** One slot per key while any key of the leaf has a KeyIndex; null otherwise. */
  histories: (KeyIndex | undefined)[] | null = null;
  historyCount = 0;

  /**
   * The leaf's keys, concatenated in order (one latin1 string: a few hundred bytes of V8 heap
   * for the leaf instead of a ~24-byte string per key), and where each ends in it.
   */
  private text: string;
  private readonly ends: number[];

  constructor(text = "", ends: number[] = []) {
    this.text = text;
    this.ends = ends;
  }

  get size(): number {
    return this.ends.length;
  }

  private start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  /** Key i, as a string of its own (reads that hand it out allocate it). */
  keyAt(i: number): string {
    return this.text.slice(this.start(i), this.ends[i]!);
  }

  /** Byte order of `key` against key i: negative, zero or positive, as key - keyAt(i). */
  compare(key: string, i: number): number {
    const text = this.text;
    const start = this.start(i);
    const length = this.ends[i]! - start;
    const common = Math.min(length, key.length);
    for (let j = 0; j < common; j++) {
      const d = key.charCodeAt(j) - text.charCodeAt(start + j);
      if (d !== 0) return d;
    }
    return key.length - length;
  }

  history(i: number): KeyIndex | undefined {
    return this.histories === null ? undefined : this.histories[i];
  }

  lease(i: number): bigint {
    return this.leases === null ? 0n : this.leases[i]!;
  }

  /** The key's history: its KeyIndex, or a snapshot of its row. */
  view(i: number): KeyIndex {
    const ki = this.history(i);
    if (ki !== undefined) return ki;
    const r = i * STRIDE;
    const rows = this.rows;
    return KeyIndex.single(
      this.keyAt(i),
      rows[r + CREATED]!,
      rows[r + VERSION]!,
      rows[r + MAIN]!,
      rows[r + SUB]!,
      this.lease(i),
    );
  }

  /** The revision of key i visible at atRev. */
  get(i: number, atRev: number): KeyRevision | undefined {
    const ki = this.history(i);
    if (ki !== undefined) return ki.get(atRev);
    const r = i * STRIDE;
    const rows = this.rows;
    if (rows[r + MAIN]! > atRev) return undefined;
    return {
      main: rows[r + MAIN]!,
      sub: rows[r + SUB]!,
      created: rows[r + CREATED]!,
      version: rows[r + VERSION]!,
    };
  }

  /** As get, writing the revision's key into `out` at `pos` instead: false when none is visible. */
  writeRevisionKeyAt(i: number, atRev: number, out: Buffer, pos: number): boolean {
    const ki = this.history(i);
    if (ki !== undefined) {
      const rev = ki.get(atRev);
      if (rev === undefined) return false;
      writeRevisionKey(out, pos, rev.main, rev.sub);
      return true;
    }
    const r = i * STRIDE;
    const rows = this.rows;
    if (rows[r + MAIN]! > atRev) return false;
    writeRevisionKey(out, pos, rows[r + MAIN]!, rows[r + SUB]!);
    return true;
  }

  /** Key i's live head into `out` (out.live false when its last generation ended). */
  head(i: number, out: PreviousHead): void {
    const ki = this.history(i);
    if (ki !== undefined) {
      out.live = ki.isLive;
      out.created = ki.created;
      out.version = ki.version;
      out.headMain = ki.headMain;
      out.headSub = ki.headSub;
      return;
    }
    // A row is always one live revision.
    const r = i * STRIDE;
    const rows = this.rows;
    out.live = true;
    out.created = rows[r + CREATED]!;
    out.version = rows[r + VERSION]!;
    out.headMain = rows[r + MAIN]!;
    out.headSub = rows[r + SUB]!;
  }

  isLive(i: number): boolean {
    const ki = this.history(i);
    return ki === undefined || ki.isLive;
  }

  setRow(i: number, main: number, sub: number, created: number, version: number, lease: bigint): void {
    const r = i * STRIDE;
    this.rows[r + MAIN] = main;
    this.rows[r + SUB] = sub;
    this.rows[r + CREATED] = created;
    this.rows[r + VERSION] = version;
    if (lease !== 0n) this.leases ??= noLeases();
    if (this.leases !== null) this.leases[i] = lease;
    this.setHistory(i, undefined);
  }

  setHistory(i: number, ki: KeyIndex | undefined): void {
    const had = this.history(i) !== undefined;
    if (ki === undefined) {
      if (!had) return;
      this.histories![i] = undefined;
      if (--this.historyCount === 0) this.histories = null;
      return;
    }
    if (this.histories === null) this.histories = new Array<KeyIndex | undefined>(this.size).fill(undefined);
    this.histories[i] = ki;
    if (!had) this.historyCount++;
  }

  /** Turns key i's KeyIndex back into a row (it must hold one live revision). */
  demote(i: number, ki: KeyIndex): void {
    this.setRow(i, ki.headMain, ki.headSub, ki.created, ki.version, ki.lease);
  }

  /** Opens a slot for `key` at i (the leaf must have room); the caller fills it. */
  insertAt(i: number, key: string): void {
    const n = this.size;
    const at = this.start(i);
    this.text = this.text.slice(0, at) + key + this.text.slice(at);
    const ends = this.ends;
    ends.push(0);
    for (let j = n; j > i; j--) ends[j] = ends[j - 1]! + key.length;
    ends[i] = at + key.length;
    moveWithin(this.rows, (i + 1) * STRIDE, i * STRIDE, n * STRIDE);
    if (this.leases !== null) moveWithin(this.leases, i + 1, i, n);
    this.histories?.splice(i, 0, undefined);
  }

  removeAt(i: number): void {
    const n = this.size;
    if (this.history(i) !== undefined) this.setHistory(i, undefined);
    const at = this.start(i);
    const length = this.ends[i]! - at;
    this.text = this.text.slice(0, at) + this.text.slice(at + length);
    const ends = this.ends;
    for (let j = i; j < n - 1; j++) ends[j] = ends[j + 1]! - length;
    ends.pop();
    moveWithin(this.rows, i * STRIDE, (i + 1) * STRIDE, n * STRIDE);
    if (this.leases !== null) {
      moveWithin(this.leases, i, i + 1, n);
      this.leases[n - 1] = 0n;
    }
    this.histories?.splice(i, 1);
  }

  /** Moves rows [from, size) to a new leaf, returned. */
  splitOff(from: number): Leaf {
    const n = this.size;
    const at = this.start(from);
    const right = new Leaf(
      this.text.slice(at),
      this.ends.splice(from).map((end) => end - at),
    );
    this.text = this.text.slice(0, at);
    copy(right.rows, 0, this.rows, from * STRIDE, n * STRIDE);
    if (this.leases !== null) {
      right.leases = noLeases();
      copy(right.leases, 0, this.leases, from, n);
      this.leases.fill(0n, from, n);
    }
    if (this.histories !== null) {
      const moved = this.histories.splice(from);
      const count = moved.reduce((c, ki) => (ki === undefined ? c : c + 1), 0);
      if (count > 0) {
        right.histories = moved;
        right.historyCount = count;
      }
      this.historyCount -= count;
      if (this.historyCount === 0) this.histories = null;
    }
    return right;
  }

  /** Appends every row of `right` (there must be room). */
  absorb(right: Leaf): void {
    const n = this.size;
    const m = right.size;
    copy(this.rows, n * STRIDE, right.rows, 0, m * STRIDE);
    if (right.leases !== null) {
      this.leases ??= noLeases();
      copy(this.leases, n, right.leases, 0, m);
    }
    if (this.histories !== null || right.histories !== null) {
      const left = this.histories ?? new Array<KeyIndex | undefined>(n).fill(undefined);
      this.histories = left.concat(right.histories ?? new Array<KeyIndex | undefined>(m).fill(undefined));
      this.historyCount += right.historyCount;
    }
    const at = this.text.length;
    this.text += right.text;
    for (const end of right.ends) this.ends.push(at + end);
  }
}

export class TreeIndex {
  /** In key order; never empty (an empty index is one empty leaf), and only a lone leaf is empty. */
  private leaves: Leaf[] = [new Leaf()];
  /**
   * Each leaf's first key ("" for a lone empty leaf): finding a key's leaf compares strings
   * natively instead of reading every visited leaf's text.
   */
  private firsts: string[] = [""];
  private keyCount = 0;

  get size(): number {
    return this.keyCount;
  }

  /** The leaf that holds `key` or would: the last whose first key is <= key (the first if none). */
  private leafFor(key: string): number {
    let lo = 0;
    let hi = this.leaves.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.firsts[mid]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  lookup(key: string): KeyIndex | undefined {
    const leaf = this.leaves[this.leafFor(key)]!;
    const i = search(leaf, key);
    return i < 0 ? undefined : leaf.view(i);
  }

  /**
   * Records a put of `key` at (main, sub) with `lease`. With `previous`, first fills it with the
   * key's live head before the put (what a write needs for its created revision, version and
   * prev_kv): one search of the index per put, and no KeyIndex view made for a key that has none.
   */
  put(key: string, main: number, sub: number, lease: bigint, previous?: PreviousHead): void {
    const l = this.leafFor(key);
    const leaf = this.leaves[l]!;
    const i = search(leaf, key);
    if (i < 0) {
      if (previous !== undefined) previous.live = false;
      const [at, slot] = this.insert(l, ~i, key);
      at.setRow(slot, main, sub, main, 1, lease);
      return;
    }
    if (previous !== undefined) leaf.head(i, previous);
    const ki = this.promote(leaf, i);
    ki.put(main, sub);
    ki.lease = lease;
  }

  /** Ends `key`'s live generation with a tombstone at (main, sub); false if it is not live. */
  tombstone(key: string, main: number, sub: number): boolean {
    const leaf = this.leaves[this.leafFor(key)]!;
    const i = search(leaf, key);
    if (i < 0 || !leaf.isLive(i)) return false;
    return this.promote(leaf, i).tombstone(main, sub);
  }

  /**
   * etcd's restore of one stored revision, oldest first: a key's first surviving revision gives
   * its created revision and version (after a compaction they can no longer be derived), a lone
   * tombstone is kept so compaction can remove it, later ones are puts and tombstones.
   */
  replay(
    key: string,
    main: number,
    sub: number,
    tombstone: boolean,
    created: number,
    version: number,
    lease: bigint,
  ): void {
    const l = this.leafFor(key);
    const i = search(this.leaves[l]!, key);
    if (i >= 0) {
      if (tombstone) this.tombstone(key, main, sub);
      else this.put(key, main, sub, lease);
      return;
    }
    const [leaf, slot] = this.insert(l, ~i, key);
    if (tombstone) {
      const ki = new KeyIndex(key);
      ki.restoreTombstone(main, sub);
      leaf.setHistory(slot, ki);
    } else {
      leaf.setRow(slot, main, sub, created, version, lease);
    }
  }

  /** Key i's KeyIndex, made from its row if it has none: a write is about to give it history. */
  private promote(leaf: Leaf, i: number): KeyIndex {
    let ki = leaf.history(i);
    if (ki === undefined) {
      ki = leaf.view(i);
      leaf.setHistory(i, ki);
    }
    return ki;
  }

  /** Opens a slot for a new key at position i of leaf l, splitting a full leaf; the caller fills it. */
  private insert(l: number, i: number, key: string): [Leaf, number] {
    let leaf = this.leaves[l]!;
    if (leaf.size === LEAF_CAPACITY) {
      if (i === LEAF_CAPACITY) {
        // Past the leaf's last key: a new leaf, so keys added in order fill leaves completely.
        leaf = new Leaf();
        l++;
        i = 0;
        this.leaves.splice(l, 0, leaf);
        this.firsts.splice(l, 0, key);
      } else {
        const half = LEAF_CAPACITY >> 1;
        const right = leaf.splitOff(half);
        this.leaves.splice(l + 1, 0, right);
        this.firsts.splice(l + 1, 0, right.keyAt(0));
        if (i > half) {
          leaf = right;
          l++;
          i -= half;
        }
      }
    }
    leaf.insertAt(i, key);
    if (i === 0) this.firsts[l] = key;
    this.keyCount++;
    return [leaf, i];
  }

  private remove(key: string): void {
    const l = this.leafFor(key);
    const leaf = this.leaves[l]!;
    const i = search(leaf, key);
    if (i < 0) return;
    leaf.removeAt(i);
    this.keyCount--;
    if (leaf.size === 0) {
      if (this.leaves.length > 1) {
        this.leaves.splice(l, 1);
        this.firsts.splice(l, 1);
      } else {
        this.firsts[0] = "";
      }
      return;
    }
    if (i === 0) this.firsts[l] = leaf.keyAt(0);
    // Leaves emptied by deletions merge, so a store that shrank does not keep sparse leaves.
    const next = this.leaves[l + 1];
    if (next !== undefined && leaf.size + next.size <= LEAF_CAPACITY >> 1) {
      leaf.absorb(next);
      this.leaves.splice(l + 1, 1);
      this.firsts.splice(l + 1, 1);
    }
  }

  /** Fills an empty index with a checkpoint's keys (in key order), rows copied from its columns. */
  load(columns: KeyColumns): void {
    if (this.keyCount !== 0) throw new Error("mvcc: loading a key index that is not empty");
    const { keyText, keyEnds, created, version, headMain, headSub, lease, leaseWords, histories } = columns;
    const count = keyEnds.length;
    const leaves: Leaf[] = [];
    for (let first = 0; first < count; first += LEAF_CAPACITY) {
      const last = Math.min(first + LEAF_CAPACITY, count);
      // One string per leaf, its keys' bytes as the checkpoint holds them: no string per key.
      const at = first === 0 ? 0 : keyEnds[first - 1]!;
      const ends: number[] = new Array(last - first);
      for (let k = first; k < last; k++) ends[k - first] = keyEnds[k]! - at;
      const leaf = new Leaf(keyText(at, keyEnds[last - 1]!), ends);
      for (let k = first; k < last; k++) {
        const ki = histories.get(k);
        if (ki !== undefined) {
          leaf.setHistory(k - first, ki);
          continue;
        }
        const leased = leaseWords[k * 2] !== 0 || leaseWords[k * 2 + 1] !== 0;
        // Small integers, not doubles: a double in the rows would reach KeyIndex fields through
        // views and box those fields for every KeyIndex (see smallInteger).
        leaf.setRow(
          k - first,
          small(headMain[k]!),
          small(headSub[k]!),
          small(created[k]!),
          small(version[k]!),
          leased ? lease[k]! : 0n,
        );
      }
      leaves.push(leaf);
    }
    this.leaves = leaves.length === 0 ? [new Leaf()] : leaves;
    this.firsts = leaves.length === 0 ? [""] : leaves.map((leaf) => leaf.keyAt(0));
    this.keyCount = count;
  }

  /** Calls visit(leaf, i) for each key in bounds, in key order, until it returns false. */
  private walk(bounds: KeyBounds, visit: (leaf: Leaf, i: number) => boolean | undefined): void {
    const { start, end } = bounds;
    let l = this.leafFor(start);
    if (end === undefined) {
      const i = search(this.leaves[l]!, start);
      if (i >= 0) visit(this.leaves[l]!, i);
      return;
    }
    if (end !== "" && end <= start) return;
    let i = search(this.leaves[l]!, start);
    if (i < 0) i = ~i;
    for (; l < this.leaves.length; l++, i = 0) {
      const leaf = this.leaves[l]!;
      for (; i < leaf.size; i++) {
        if (end !== "" && leaf.compare(end, i) <= 0) return;
        if (visit(leaf, i) === false) return;
      }
    }
  }

  /** Calls visit for each key's history in bounds, in key order, until it returns false. */
  visit(bounds: KeyBounds, visit: (ki: KeyIndex) => boolean | undefined): void {
    this.walk(bounds, (leaf, i) => visit(leaf.view(i)));
  }

  /**
   * The revisions visible at atRev in bounds, the first `limit` of them (all when limit <= 0),
   * and how many there are in total (etcd's count ignores the limit).
   */
  revisions(bounds: KeyBounds, atRev: number, limit: number): { hits: RangeHit[]; total: number } {
    const hits: RangeHit[] = [];
    let total = 0;
    this.walk(bounds, (leaf, i) => {
      const rev = leaf.get(i, atRev);
      if (rev !== undefined) {
        if (limit <= 0 || hits.length < limit) hits.push(hitOf(leaf, i, rev));
        total++;
      }
      return true;
    });
    return { hits, total };
  }

  /**
   * `revisions` a batch at a time: the revisions visible at atRev among the next `maxKeys` keys
   * in bounds after `after` (from the start when undefined), the last key visited, and whether
   * the bounds are done. A walk over a million keys then yields to the event loop between
   * batches; a key added meanwhile is not visible at atRev, so the batches add up to `revisions`.
   */
  revisionsBatch(
    bounds: KeyBounds,
    atRev: number,
    after: string | undefined,
    maxKeys: number,
  ): { hits: RangeHit[]; last: string | undefined; done: boolean } {
    const hits: RangeHit[] = [];
    const batch = this.walkBatch(bounds, after, maxKeys, (leaf, i) => {
      const rev = leaf.get(i, atRev);
      if (rev !== undefined) hits.push(hitOf(leaf, i, rev));
    });
    return { hits, ...batch };
  }

  /**
   * The walk of one batch of `revisionsBatch` and its kin: `visit` sees the next `maxKeys` keys
   * in bounds after `after` (from the start when undefined); returns the last key visited and
   * whether the bounds are done.
   */
  private walkBatch(
    bounds: KeyBounds,
    after: string | undefined,
    maxKeys: number,
    visit: (leaf: Leaf, i: number) => void,
  ): { last: string | undefined; done: boolean } {
    // The next key after `after` in byte order is `after` + "\0".
    const from =
      after === undefined || bounds.end === undefined ? bounds : { start: `${after}\0`, end: bounds.end };
    if (after !== undefined && bounds.end === undefined) return { last: after, done: true };
    let visited = 0;
    let lastLeaf: Leaf | undefined;
    let lastAt = 0;
    this.walk(from, (leaf, i) => {
      if (visited === maxKeys) return false;
      visited++;
      lastLeaf = leaf;
      lastAt = i;
      visit(leaf, i);
      return true;
    });
    return { last: lastLeaf?.keyAt(lastAt), done: visited < maxKeys || bounds.end === undefined };
  }

  /**
   * As revisionsBatch, for a Range whose values are read by revision key alone: the first
   * `maxWrite` hits' revision keys are written into `out` (REVISION_KEY_LENGTH bytes each), with
   * no object made per key (a full list walks millions). `hits` counts every hit of the batch.
   */
  revisionKeysBatch(
    bounds: KeyBounds,
    atRev: number,
    after: string | undefined,
    maxKeys: number,
    out: Buffer,
    maxWrite: number,
  ): { hits: number; written: number; last: string | undefined; done: boolean } {
    let hits = 0;
    let written = 0;
    const batch = this.walkBatch(bounds, after, maxKeys, (leaf, i) => {
      if (written < maxWrite) {
        if (leaf.writeRevisionKeyAt(i, atRev, out, written * REVISION_KEY_LENGTH)) {
          hits++;
          written++;
        }
      } else if (leaf.get(i, atRev) !== undefined) hits++;
    });
    return { hits, written, ...batch };
  }

  /**
   * As revisionsBatch, handing each visible revision's numbers to `each` rather than making an
   * object (and a KeyIndex view) per key: a sorted or filtered Range walks every key in bounds
   * before it reads a value, a million of them for a full list.
   */
  revisionsEach(
    bounds: KeyBounds,
    atRev: number,
    after: string | undefined,
    maxKeys: number,
    each: (main: number, sub: number, created: number, version: number) => void,
  ): { last: string | undefined; done: boolean } {
    return this.walkBatch(bounds, after, maxKeys, (leaf, i) => {
      const ki = leaf.history(i);
      if (ki !== undefined) {
        const rev = ki.get(atRev);
        if (rev !== undefined) each(rev.main, rev.sub, rev.created, rev.version);
        return;
      }
      const r = i * STRIDE;
      const rows = leaf.rows;
      if (rows[r + MAIN]! <= atRev)
        each(rows[r + MAIN]!, rows[r + SUB]!, rows[r + CREATED]!, rows[r + VERSION]!);
    });
  }

  count(bounds: KeyBounds, atRev: number): number {
    let total = 0;
    this.walk(bounds, (leaf, i) => {
      if (leaf.get(i, atRev) !== undefined) total++;
      return true;
    });
    return total;
  }

  /** Keys live at the latest revision, in the whole index. */
  liveCount(): number {
    let live = 0;
    for (const leaf of this.leaves) {
      if (leaf.histories === null) live += leaf.size;
      else for (let i = 0; i < leaf.size; i++) if (leaf.isLive(i)) live++;
    }
    return live;
  }

  /** Keys live at the latest revision in bounds, for DeleteRange. */
  liveKeys(bounds: KeyBounds): KeyIndex[] {
    const keys: KeyIndex[] = [];
    this.walk(bounds, (leaf, i) => {
      if (leaf.isLive(i)) keys.push(leaf.view(i));
      return true;
    });
    return keys;
  }

  keep(atRev: number): RevisionSet {
    const set = new RevisionSet();
    for (const leaf of this.leaves) {
      const rows = leaf.rows;
      for (let i = 0; i < leaf.size; i++) {
        const ki = leaf.history(i);
        if (ki !== undefined) ki.keep(atRev, set);
        // One live revision: kept once it is visible at atRev (it is no tombstone).
        else if (rows[i * STRIDE + MAIN]! <= atRev)
          set.add(rows[i * STRIDE + MAIN]!, rows[i * STRIDE + SUB]!);
      }
    }
    return set;
  }

  /**
   * Compacts up to `maxKeys` key histories starting at `fromKey`, removing keys left empty, and
   * returns the key to resume from (undefined when done). Done in slices so applies and reads
   * interleave with a large compaction instead of stalling behind it. A history left with one
   * live revision goes back to being a row.
   */
  compactSlice(atRev: number, fromKey: string, maxKeys: number, removed: number[]): string | undefined {
    const emptied: string[] = [];
    let next: string | undefined;
    let seen = 0;
    this.walk({ start: fromKey, end: "" }, (leaf, i) => {
      if (seen === maxKeys) {
        next = leaf.keyAt(i);
        return false;
      }
      seen++;
      const ki = leaf.history(i);
      // A row's one live revision is never superseded.
      if (ki === undefined) return true;
      ki.compact(atRev, removed);
      if (ki.isEmpty) emptied.push(ki.key);
      else if (ki.isSingleRevision) leaf.demote(i, ki);
      return true;
    });
    for (const key of emptied) this.remove(key);
    return next;
  }

  *entries(): IterableIterator<[string, KeyIndex]> {
    for (const leaf of this.leaves) for (let i = 0; i < leaf.size; i++) yield [leaf.keyAt(i), leaf.view(i)];
  }

  /** The key histories in key order (views for rows). */
  *values(): IterableIterator<KeyIndex> {
    for (const leaf of this.leaves) for (let i = 0; i < leaf.size; i++) yield leaf.view(i);
  }
}

function hitOf(leaf: Leaf, i: number, rev: KeyRevision): RangeHit {
  return { index: leaf.view(i), main: rev.main, sub: rev.sub, created: rev.created, version: rev.version };
}
