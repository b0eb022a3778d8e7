// The in-memory key index: a B+ tree from key (latin1 string, so string order is byte order)
// to that key's history. Ranges walk it to find which revisions to read from RocksDB; it is
// rebuilt from RocksDB at open, like etcd's treeIndex.
import sortedBtree from "sorted-btree";
import { KeyIndex, type KeyRevision, RevisionSet } from "./key-index.js";

const BTree = sortedBtree.default;
type Tree = InstanceType<typeof BTree<string, KeyIndex>>;

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface RangeHit extends KeyRevision {
  index: KeyIndex;
}

/**
 * Bounds of a key range as etcd reads them: no end means the single key `start`; an empty end
 * means every key from `start` on (the wire's "\0" range_end); otherwise [start, end).
 */
export interface KeyBounds {
  start: string;
  end: string | undefined;
}

export class TreeIndex {
  private readonly tree: Tree = new BTree<string, KeyIndex>(undefined, compareKeys, 128);

  get size(): number {
    return this.tree.size;
  }

  lookup(key: string): KeyIndex | undefined {
    return this.tree.get(key);
  }

  getOrCreate(key: string): KeyIndex {
    let ki = this.tree.get(key);
    if (ki === undefined) {
      ki = new KeyIndex(key);
      this.tree.set(key, ki);
    }
    return ki;
  }

  insert(ki: KeyIndex): void {
    this.tree.set(ki.key, ki);
  }

  /** Fills an empty index with histories already in key order (a checkpoint's). */
  load(sorted: readonly KeyIndex[]): void {
    if (this.tree.size !== 0) throw new Error("mvcc: loading a key index that is not empty");
    // In key order every set appends to the rightmost leaf: no search goes down another path.
    for (const ki of sorted) this.tree.set(ki.key, ki);
    if (this.tree.size !== sorted.length) throw new Error("mvcc: a checkpoint's keys are not distinct");
  }

  delete(key: string): void {
    this.tree.delete(key);
  }

  /** Calls visit for each key index in bounds, in key order, until it returns false. */
  visit(bounds: KeyBounds, visit: (ki: KeyIndex) => boolean | undefined): void {
    if (bounds.end === undefined) {
      const ki = this.tree.get(bounds.start);
      if (ki !== undefined) visit(ki);
      return;
    }
    if (bounds.end !== "" && bounds.end <= bounds.start) return;
    const stop = { break: true };
    const onFound = (_k: string, ki: KeyIndex) => (visit(ki) === false ? stop : undefined);
    if (bounds.end === "") {
      const max = this.tree.maxKey();
      if (max !== undefined) this.tree.forRange(bounds.start, max, true, onFound);
    } else {
      this.tree.forRange(bounds.start, bounds.end, false, onFound);
    }
  }

  /**
   * The revisions visible at atRev in bounds, the first `limit` of them (all when limit <= 0),
   * and how many there are in total (etcd's count ignores the limit).
   */
  revisions(bounds: KeyBounds, atRev: number, limit: number): { hits: RangeHit[]; total: number } {
    const hits: RangeHit[] = [];
    let total = 0;
    this.visit(bounds, (ki) => {
      const rev = ki.get(atRev);
      if (rev !== undefined) {
        if (limit <= 0 || hits.length < limit) hits.push({ index: ki, ...rev });
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
    // The next key after `after` in byte order is `after` + "\0".
    const from =
      after === undefined || bounds.end === undefined ? bounds : { start: `${after}\0`, end: bounds.end };
    if (after !== undefined && bounds.end === undefined) return { hits, last: after, done: true };
    let visited = 0;
    let last: string | undefined;
    this.visit(from, (ki) => {
      if (visited === maxKeys) return false;
      visited++;
      last = ki.key;
      const rev = ki.get(atRev);
      if (rev !== undefined) hits.push({ index: ki, ...rev });
      return true;
    });
    return { hits, last, done: visited < maxKeys || bounds.end === undefined };
  }

  count(bounds: KeyBounds, atRev: number): number {
    let total = 0;
    this.visit(bounds, (ki) => {
      if (ki.get(atRev) !== undefined) total++;
      return true;
    });
    return total;
  }

  /** Keys live at the latest revision in bounds, for DeleteRange. */
  liveKeys(bounds: KeyBounds): KeyIndex[] {
    const keys: KeyIndex[] = [];
    this.visit(bounds, (ki) => {
      if (ki.isLive) keys.push(ki);
      return true;
    });
    return keys;
  }

  keep(atRev: number): RevisionSet {
    const set = new RevisionSet();
    this.tree.forEachPair((_k, ki) => {
      ki.keep(atRev, set);
    });
    return set;
  }

  /**
   * Compacts up to `maxKeys` key histories starting at `fromKey`, removing keys left empty, and
   * returns the key to resume from (undefined when done). Done in slices so applies and reads
   * interleave with a large compaction instead of stalling behind it.
   */
  compactSlice(atRev: number, fromKey: string, maxKeys: number, removed: number[]): string | undefined {
    const emptied: string[] = [];
    let next: string | undefined;
    let seen = 0;
    for (const [key, ki] of this.tree.entries(fromKey)) {
      if (seen === maxKeys) {
        next = key;
        break;
      }
      ki.compact(atRev, removed);
      if (ki.isEmpty) emptied.push(key);
      seen++;
    }
    for (const key of emptied) this.tree.delete(key);
    return next;
  }

  entries(): IterableIterator<[string, KeyIndex]> {
    return this.tree.entries();
  }

  /** The key histories in key order. */
  values(): IterableIterator<KeyIndex> {
    return this.tree.values();
  }
}
