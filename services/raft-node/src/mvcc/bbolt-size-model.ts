// The size etcd's backend would have for the same writes: what --quota-backend-bytes, Status's
// dbSize/dbSizeInUse and etcd_mvcc_db_total_size_* measure. Our RocksDB files say nothing
// comparable (compressed, compacted in the background), so the quota is judged on this model
// of etcd 3.4's bbolt file instead. It is pure arithmetic over key and value lengths.
//
// What etcd measures (mvcc/backend, bbolt 1.3): Size() = meta.pgid * 4096, the page high-water
// mark, read when a transaction begins; SizeInUse() = Size() minus the free pages the freelist
// held when the last write transaction closed. So what matters is how bbolt allocates pages:
//
// - Revisions live in the "key" bucket, a B+tree: leaf elements are 16 bytes of header + the
//   17-byte revision key (18 for a tombstone) + the marshaled mvccpb.KeyValue; branch elements
//   16 bytes + the child's first key; every page has a 16-byte header. A bucket whose one leaf
//   is under a quarter page is stored inline in its parent's page (the key bucket of a fresh
//   member is). The other buckets (meta, members, lease, alarm, auth, cluster) are modelled as
//   inline, in the root bucket's one leaf page, which every commit rewrites.
// - A commit copies every node on the path to each changed element (copy-on-write): each is
//   split when over a page (at 90% fill: etcd sets FillPercent 0.9 for its sequential revision
//   puts; a node is never split below 2×2 elements), merged with a sibling when under a
//   quarter page after deletes, written to ceil(size/4096) contiguous pages taken first-fit
//   from the freelist (bbolt's array freelist) or from the end of the file; its old pages are
//   freed as pending, reusable from the next write transaction on (etcd closes its read
//   transaction before it begins the next write one). etcd 3.4 on Linux does not write the
//   freelist (NoFreelistSync), so it takes no pages.
// - One commit per apply batch that writes (etcd commits every 100 ms; writes further apart,
//   such as separate etcdctl calls, each get one), one per compaction slice.
// - Defragmentation copies every element into a fresh file (0.9 fill, a commit every 10,000
//   keys, as etcd's defrag) and reopens it: the pages no tree reaches are the freelist.
// - A restart loads the revisions as defragmentation would lay them out, at the high-water
//   mark the store saved with its last write (etcd's file keeps its size across restarts; the
//   pages beyond the compact layout are free, as bbolt's freelist scan on open finds them):
//   Size(), which the quota judges, is exact across restarts; SizeInUse() may read lower.

import {
  isTombstoneKey,
  mainOfKey,
  REVISION_KEY_LENGTH,
  subOfKey,
  TOMBSTONE_KEY_LENGTH,
} from "./revision.js";

export const BBOLT_PAGE_SIZE = 4096;
const PAGE_HEADER = 16;
const ELEMENT_HEADER = 16;
const MIN_KEYS_PER_PAGE = 2;
const FILL_PERCENT = 0.9;
const MAX_INLINE_BUCKET_SIZE = BBOLT_PAGE_SIZE / 4;
const REBALANCE_THRESHOLD = BBOLT_PAGE_SIZE / 4;
/** meta 0 and 1, the freelist page bbolt's init writes, the root bucket's first leaf. */
const FRESH_FILE_PAGES = 4;
const DEFRAG_KEYS_PER_COMMIT = 10_000;

// A revision key (8-byte main, '_', 8-byte sub, 't' for a tombstone) is held as two numbers:
// its main revision and sub * 2 + tombstone, whose order is the keys' bytewise order. A leaf
// keeps its elements in one flat number array, [main, sub, valueLength] each: no string or
// Buffer per revision (a million revisions held as 17-char strings cost ~40 MB more).
const STRIDE = 3;

/**
 * A number read from a Float64Array, as a small integer when it is one. V8 keeps a double it
 * cannot prove integral as a double: stored in an object's field it makes that field a boxed
 * double for every object of the class (a million KeyIndexes: +30 MB), in an array it makes the
 * array doubles. Revisions, versions and lengths are integers, almost all below 2^30.
 */
export const smallInteger = (n: number): number => (n >= 0 && n < 0x40000000 ? n | 0 : n);

/** The key length a revision's packed sub stands for. */
const keyLength = (packedSub: number): number =>
  packedSub % 2 === 1 ? TOMBSTONE_KEY_LENGTH : REVISION_KEY_LENGTH;

class TreeNode {
  /** Leaf: [main, sub * 2 + tombstone, valueLength] per element, in key order. */
  elements: number[] = [];
  /** Branch: the children, in key order. */
  children: TreeNode[] = [];
  pgid = 0;
  pages = 0;
  /** Copied into the current write transaction (bbolt "materialized" it): rewritten at commit. */
  dirty = false;
  unbalanced = false;
  /** Taken out of the tree by a rebalance (merged away, emptied, or a collapsed root). */
  removed = false;

  constructor(
    readonly leaf: boolean,
    public parent: TreeNode | undefined,
  ) {}

  get count(): number {
    return this.leaf ? this.elements.length / STRIDE : this.children.length;
  }

  /** The key its parent knows it by (bbolt keeps it while deletes empty the node). */
  private keyMain = 0;
  private keySub = 0;

  /** Refreshes the key its parent knows it by from its first element. */
  private refreshKey(): void {
    if (this.count === 0) return;
    if (this.leaf) {
      this.keyMain = this.elements[0]!;
      this.keySub = this.elements[1]!;
    } else {
      const first = this.children[0]!;
      first.refreshKey();
      this.keyMain = first.keyMain;
      this.keySub = first.keySub;
    }
  }

  /** Whether this node's first key is <= (main, sub). */
  firstKeyAtMost(main: number, sub: number): boolean {
    this.refreshKey();
    return this.keyMain < main || (this.keyMain === main && this.keySub <= sub);
  }

  firstKeyLength(): number {
    this.refreshKey();
    return keyLength(this.keySub);
  }

  elementSize(i: number): number {
    if (this.leaf) {
      const at = i * STRIDE;
      return ELEMENT_HEADER + keyLength(this.elements[at + 1]!) + this.elements[at + 2]!;
    }
    return ELEMENT_HEADER + this.children[i]!.firstKeyLength();
  }

  size(): number {
    let size = PAGE_HEADER;
    for (let i = 0; i < this.count; i++) size += this.elementSize(i);
    return size;
  }
}

/** Pages free now (sorted) and pages freed by the transaction in progress. */
class Freelist {
  free: number[] = [];
  pending: number[] = [];

  release(): void {
    if (this.pending.length === 0) return;
    this.free.push(...this.pending);
    this.free.sort((a, b) => a - b);
    this.pending = [];
  }

  /** First run of `n` contiguous free pages (bbolt's array freelist), or 0. */
  allocate(n: number): number {
    let start = 0;
    let previous = 0;
    for (let i = 0; i < this.free.length; i++) {
      const id = this.free[i]!;
      if (previous === 0 || id - previous !== 1) start = id;
      if (id - start + 1 === n) {
        this.free.splice(i - n + 1, n);
        return start;
      }
      previous = id;
    }
    return 0;
  }
}

export class BboltSizeModel {
  private root = new TreeNode(true, undefined);
  private freelist = new Freelist();
  private highWater = FRESH_FILE_PAGES;
  /** The root bucket's leaf (holding the inline buckets). */
  private rootLeafPage = 3;
  private freeAtLastCommit = 0;
  private changed = false;
  private staleFreelistPage = false;
  /**
   * Set if the tree model ever fails (a state it does not model): the member must not crash on
   * its apply path for a size estimate, so from then until the next defragment() (a defrag or a
   * restart rebuilds the tree) writes only grow the file by their element bytes, no page is
   * reused and everything counts as in use: an upper bound, erring toward the quota.
   */
  private degradedBytes: number | undefined;
  /** Revisions added by addDefragmented since its last commit. */
  private defragInBatch = 0;

  /**
   * A fresh member's file: etcd's bootstrap commits (buckets, member, cluster version) leave 5
   * pages, one of them free (measured on etcd 3.4.23: dbSize 20480, dbSizeInUse 16384).
   */
  constructor() {
    this.defragment([]);
    this.touch();
    this.commit();
  }

  /** etcd's backend Size(): the file's page high-water mark in bytes. */
  get size(): number {
    return this.highWater * BBOLT_PAGE_SIZE;
  }

  /** etcd's SizeInUse(): Size() less the pages free when the last write transaction closed. */
  get sizeInUse(): number {
    return (this.highWater - this.freeAtLastCommit) * BBOLT_PAGE_SIZE;
  }

  /** A revision written (or overwritten) in the current transaction. */
  put(key: Buffer, valueLength: number): void {
    if (this.degradedBytes !== undefined) {
      this.degradedBytes += ELEMENT_HEADER + key.length + valueLength;
      this.changed = true;
      return;
    }
    try {
      this.putInTree(key, valueLength);
    } catch {
      this.degrade();
      this.put(key, valueLength);
    }
  }

  private putInTree(key: Buffer, valueLength: number): void {
    this.putPacked(mainOfKey(key), packedSubOf(key), valueLength);
  }

  private putPacked(main: number, sub: number, valueLength: number): void {
    const leaf = this.descend(main, sub);
    const at = lowerBound(leaf.elements, main, sub);
    const elements = leaf.elements;
    if (at < elements.length && elements[at] === main && elements[at + 1] === sub)
      elements[at + 2] = valueLength;
    // Appending (every put of a reopen or a defragmentation, and most live ones) needs no splice.
    else if (at === elements.length) elements.push(main, sub, valueLength);
    else elements.splice(at, 0, main, sub, valueLength);
    this.changed = true;
  }

  /** A revision deleted in the current transaction (compaction). */
  delete(key: Buffer): void {
    if (this.degradedBytes !== undefined) return;
    try {
      this.deleteInTree(key);
    } catch {
      this.degrade();
    }
  }

  private deleteInTree(key: Buffer): void {
    const main = mainOfKey(key);
    const sub = packedSubOf(key);
    const leaf = this.descend(main, sub);
    const at = lowerBound(leaf.elements, main, sub);
    const elements = leaf.elements;
    if (at < elements.length && elements[at] === main && elements[at + 1] === sub) {
      elements.splice(at, STRIDE);
      leaf.unbalanced = true;
    }
    this.changed = true;
  }

  /** Something outside the key bucket changed (meta, alarm, lease...): the root leaf is rewritten. */
  touch(): void {
    this.changed = true;
  }

  /** Ends the write transaction as bbolt's Commit does; nothing to commit, nothing written. */
  commit(): void {
    if (!this.changed) return;
    this.changed = false;
    if (this.degradedBytes === undefined) {
      try {
        this.commitTree();
        return;
      } catch {
        this.degrade();
      }
    }
    // Degraded: the bytes written go on new pages at the end of the file.
    this.highWater += Math.ceil(this.degradedBytes! / BBOLT_PAGE_SIZE);
    this.degradedBytes = 0;
    this.freeAtLastCommit = 0;
  }

  private degrade(): void {
    this.degradedBytes = 0;
    this.changed = true;
  }

  private commitTree(): void {
    // Pages freed by the previous transaction are reusable now (no read transaction holds them).
    this.freelist.release();
    this.rebalance(this.root);
    if (this.staleFreelistPage) {
      // The freelist page bbolt's init wrote: the first commit frees it (the freelist is not synced).
      this.freelist.pending.push(2);
      this.staleFreelistPage = false;
    }
    if (this.root.leaf && this.root.size() < MAX_INLINE_BUCKET_SIZE) {
      // A key bucket this small is stored inline in the root leaf; its own pages are freed.
      this.freePages(this.root);
      this.root.dirty = false;
    } else if (this.root.dirty) {
      this.spill(this.root);
      this.root = topOf(this.root);
    }
    this.freePages({ pgid: this.rootLeafPage, pages: 1 });
    this.rootLeafPage = this.allocate(1);
    this.freeAtLastCommit = this.freelist.free.length;
  }

  /**
   * etcd's defrag: every revision copied in key order into a fresh file, then reopened; pages
   * no tree reaches (freed or pending) are free on reopen.
   */
  defragment(revisions: Iterable<{ key: Buffer; valueLength: number }>): void {
    this.startDefragment();
    for (const { key, valueLength } of revisions) this.addDefragmented(key, valueLength);
    this.finishDefragment();
  }

  /**
   * defragment() in steps, for a caller that reads the revisions a chunk at a time (an online
   * copy): startDefragment(), addDefragmented() for each revision in key order, finishDefragment().
   */
  startDefragment(): void {
    this.degradedBytes = undefined;
    this.root = new TreeNode(true, undefined);
    this.freelist = new Freelist();
    this.highWater = FRESH_FILE_PAGES;
    this.rootLeafPage = 3;
    this.staleFreelistPage = true;
    this.defragInBatch = 0;
  }

  addDefragmented(key: Buffer, valueLength: number): void {
    this.put(key, valueLength);
    if (++this.defragInBatch === DEFRAG_KEYS_PER_COMMIT) {
      this.commit();
      this.defragInBatch = 0;
    }
  }

  finishDefragment(): void {
    this.touch();
    this.commit();
    this.freelist.release();
    this.freeAtLastCommit = this.freelist.free.length;
  }

  /**
   * A reopen: the revisions laid out as defragment() does, in a file that had grown to
   * `highWaterBytes` (Size() when the store last wrote); the pages past the layout are free.
   */
  reopen(revisions: Iterable<{ key: Buffer; valueLength: number }>, highWaterBytes: number): void {
    this.defragment(revisions);
    this.reopenAt(highWaterBytes);
  }

  /**
   * reopen() from the revisions as leaves() gave them (flat [main, sub * 2 + tombstone, value
   * length], in revision order): what a store restored from an index checkpoint does.
   */
  reopenFromElements(elements: Float64Array, highWaterBytes: number): void {
    this.startDefragment();
    for (let i = 0; i < elements.length; i += STRIDE) {
      const sub = elements[i + 1]!;
      const valueLength = elements[i + 2]!;
      // As put(): a state the tree does not model degrades it rather than failing the open.
      if (this.degradedBytes === undefined) {
        try {
          this.putPacked(elements[i]!, sub, valueLength);
        } catch {
          this.degrade();
        }
      }
      if (this.degradedBytes !== undefined) {
        this.degradedBytes += ELEMENT_HEADER + keyLength(sub) + valueLength;
        this.changed = true;
      }
      if (++this.defragInBatch === DEFRAG_KEYS_PER_COMMIT) {
        this.commit();
        this.defragInBatch = 0;
      }
    }
    this.finishDefragment();
    this.reopenAt(highWaterBytes);
  }

  /** Whether the tree is modelled (leaves() describes every revision); see degradedBytes. */
  get exact(): boolean {
    return this.degradedBytes === undefined;
  }

  /** Every leaf's elements ([main, sub * 2 + tombstone, value length] each), in revision order. */
  *leaves(): Generator<readonly number[]> {
    const stack: TreeNode[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.leaf) yield node.elements;
      else for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
    }
  }

  /**
   * The model as numbers, for an index checkpoint: counters, freelist, then the tree's nodes in
   * preorder (flags, pgid, pages, child or element count each); the leaves' elements are what
   * leaves() yields, in the same order. fromShape() rebuilds the same model from both.
   */
  shape(): number[] {
    if (this.degradedBytes !== undefined) throw new Error("bbolt size model: a degraded model has no shape");
    const out = [
      this.highWater,
      this.rootLeafPage,
      this.freeAtLastCommit,
      this.changed ? 1 : 0,
      this.staleFreelistPage ? 1 : 0,
      this.defragInBatch,
    ];
    for (const list of [this.freelist.free, this.freelist.pending]) {
      out.push(list.length);
      for (const id of list) out.push(id);
    }
    const stack: TreeNode[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      const flags = (node.leaf ? 1 : 0) | (node.dirty ? 2 : 0) | (node.unbalanced ? 4 : 0);
      out.push(flags, node.pgid, node.pages, node.leaf ? node.elements.length : node.children.length);
      if (!node.leaf) for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
    }
    return out;
  }

  /** The model shape() and leaves() described (elements flat, in leaves() order). */
  static fromShape(shape: ArrayLike<number>, elements: ArrayLike<number>): BboltSizeModel {
    const model = new BboltSizeModel();
    let s = 0;
    let e = 0;
    const next = (): number => {
      if (s >= shape.length) throw new RangeError("bbolt size model: shape past its end");
      return shape[s++]!;
    };
    model.highWater = next();
    model.rootLeafPage = next();
    model.freeAtLastCommit = next();
    model.changed = next() === 1;
    model.staleFreelistPage = next() === 1;
    model.defragInBatch = next();
    const list = (): number[] => {
      const out: number[] = new Array(next());
      for (let i = 0; i < out.length; i++) out[i] = next();
      return out;
    };
    model.freelist = new Freelist();
    model.freelist.free = list();
    model.freelist.pending = list();
    const node = (parent: TreeNode | undefined): TreeNode => {
      const flags = next();
      const n = new TreeNode((flags & 1) === 1, parent);
      n.dirty = (flags & 2) !== 0;
      n.unbalanced = (flags & 4) !== 0;
      n.pgid = next();
      n.pages = next();
      const count = next();
      if (n.leaf) {
        if (e + count > elements.length) throw new RangeError("bbolt size model: elements past their end");
        // Allocated at its size (push would leave growth slack in each of ~100k leaves).
        const leaf: number[] = new Array(count);
        for (let i = 0; i < count; i++) leaf[i] = smallInteger(elements[e + i]!);
        n.elements = leaf;
        e += count;
      } else {
        n.children = new Array(count);
        for (let i = 0; i < count; i++) n.children[i] = node(n);
      }
      return n;
    };
    model.root = node(undefined);
    if (s !== shape.length || e !== elements.length)
      throw new RangeError("bbolt size model: shape and elements disagree");
    return model;
  }

  private reopenAt(highWaterBytes: number): void {
    const pages = Math.floor(highWaterBytes / BBOLT_PAGE_SIZE);
    if (pages <= this.highWater) return;
    for (let id = this.highWater; id < pages; id++) this.freelist.free.push(id);
    this.highWater = pages;
    this.freeAtLastCommit = this.freelist.free.length;
  }

  private descend(main: number, sub: number): TreeNode {
    if (!this.root.leaf && this.root.children.length === 0) {
      // Every revision was deleted: the bucket is an empty leaf again (rebalance does this too).
      this.freePages(this.root);
      this.root = new TreeNode(true, undefined);
    }
    let node = this.root;
    node.dirty = true;
    while (!node.leaf) {
      if (node.children.length === 0) {
        // Not a state rebalance leaves, but a size model must never fail a write: give the
        // childless branch an empty leaf to hold the key (an estimate, one page more at most).
        const leaf = new TreeNode(true, node);
        node.children.push(leaf);
      }
      // bbolt's branch search: the last child whose first key is <= key (the first child if none).
      let lo = 0;
      let hi = node.children.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (node.children[mid]!.firstKeyAtMost(main, sub)) lo = mid;
        else hi = mid - 1;
      }
      node = node.children[lo]!;
      node.dirty = true;
    }
    return node;
  }

  private allocate(pages: number): number {
    const id = this.freelist.allocate(pages);
    if (id !== 0) return id;
    const start = this.highWater;
    this.highWater += pages;
    return start;
  }

  private freePages(node: { pgid: number; pages: number }): void {
    if (node.pgid === 0) return;
    for (let i = 0; i < node.pages; i++) this.freelist.pending.push(node.pgid + i);
    node.pgid = 0;
    node.pages = 0;
  }

  /** bbolt's node.rebalance, children first (a merge can unbalance the parent). */
  private rebalance(node: TreeNode): void {
    // A child's merge rebalances this node again from inside this loop and can take siblings
    // still in the snapshot out of the tree: those are skipped, as bbolt skips nodes it freed.
    if (!node.leaf) {
      for (const child of [...node.children]) {
        if (child.dirty && !child.removed && child.parent === node) this.rebalance(child);
      }
    }
    if (node.removed || !node.unbalanced) return;
    node.unbalanced = false;
    const minKeys = node.leaf ? 1 : 2;
    if (node.size() > REBALANCE_THRESHOLD && node.count > minKeys) return;
    const parent = node.parent;
    if (parent === undefined) {
      if (node !== this.root) return;
      if (!node.leaf && node.children.length === 1) {
        // A branch root with one child gives way to that child's contents.
        const collapsed = node.children[0]!;
        collapsed.parent = undefined;
        collapsed.dirty = true;
        this.freePages(node);
        node.removed = true;
        this.root = collapsed;
      } else if (!node.leaf && node.children.length === 0) {
        // Every child emptied in one commit: bbolt collapses the root into its last child,
        // whose elements were all deleted, so the bucket is an empty leaf again.
        this.freePages(node);
        node.removed = true;
        this.root = new TreeNode(true, undefined);
        this.root.dirty = true;
      }
      return;
    }
    const index = parent.children.indexOf(node);
    if (index < 0) return; // no longer in the tree (defensive: removed nodes are skipped above)
    if (node.count === 0) {
      parent.children.splice(index, 1);
      node.removed = true;
      this.freePages(node);
      parent.unbalanced = true;
      this.rebalance(parent);
      return;
    }
    // Merge with the right sibling when first, else into the left one.
    const [target, source] = index === 0 ? [node, parent.children[1]] : [parent.children[index - 1]!, node];
    if (source === undefined) return;
    target.dirty = true;
    if (target.leaf) {
      for (const n of source.elements) target.elements.push(n);
    } else {
      for (const c of source.children) c.parent = target;
      target.children.push(...source.children);
    }
    parent.children.splice(parent.children.indexOf(source), 1);
    source.removed = true;
    this.freePages(source);
    parent.unbalanced = true;
    this.rebalance(parent);
  }

  /** bbolt's node.spill: children first, then this node, split into page-sized nodes. */
  private spill(node: TreeNode): void {
    if (!node.leaf) {
      // New siblings from a child's split are inserted as it spills; they are written already.
      for (let i = 0; i < node.children.length; i++) {
        const child = node.children[i]!;
        if (child.dirty) this.spill(child);
      }
    }
    const parentBefore = node.parent;
    for (const part of this.split(node)) {
      this.freePages(part);
      const pages = Math.ceil(part.size() / BBOLT_PAGE_SIZE);
      part.pgid = this.allocate(pages);
      part.pages = pages;
      part.dirty = false;
    }
    // A split of the root made a new root: it is written too.
    if (parentBefore === undefined && node.parent !== undefined) this.spill(node.parent);
  }

  /**
   * bbolt's node.split: page-sized parts at FILL_PERCENT, each with at least MIN_KEYS_PER_PAGE
   * elements. The parts' bounds are found in one pass and each part's elements copied once: a
   * defrag commit (or a restart) splits a 10,000-element leaf into ~900 parts, and splicing the
   * tail off again for every part was quadratic and left each part holding a large array's page.
   */
  private split(node: TreeNode): TreeNode[] {
    const count = node.count;
    const starts = splitStarts(count, (i) => node.elementSize(i));
    if (starts.length === 1) return [node];
    if (node.parent === undefined) {
      const parent = new TreeNode(false, undefined);
      parent.children = [node];
      node.parent = parent;
    }
    const parent = node.parent;
    const parts = [node];
    for (let p = 1; p < starts.length; p++) {
      const from = starts[p]!;
      const to = p + 1 < starts.length ? starts[p + 1]! : count;
      const part = new TreeNode(node.leaf, parent);
      if (node.leaf) part.elements = node.elements.slice(from * STRIDE, to * STRIDE);
      else {
        part.children = node.children.slice(from, to);
        for (const c of part.children) c.parent = part;
      }
      parts.push(part);
    }
    if (node.leaf) node.elements = node.elements.slice(0, starts[1]! * STRIDE);
    else node.children = node.children.slice(0, starts[1]!);
    const at = parent.children.indexOf(node);
    parent.children = parent.children.slice(0, at + 1).concat(parts.slice(1), parent.children.slice(at + 1));
    return parts;
  }
}

function topOf(node: TreeNode): TreeNode {
  let top = node;
  while (top.parent !== undefined) top = top.parent;
  return top;
}

/**
 * Where each part of a node split by bbolt's node.split starts (the first is 0): a part is cut
 * where the next element would take it past FILL_PERCENT of a page, keeps at least
 * MIN_KEYS_PER_PAGE elements, and splitting stops once the rest fits a page or is too few to
 * split. One pass over the elements, however many parts.
 */
export function splitStarts(count: number, elementSize: (i: number) => number): number[] {
  const threshold = BBOLT_PAGE_SIZE * FILL_PERCENT;
  const starts = [0];
  let start = 0;
  // The size the elements from `start` on would take as one node.
  let remaining = PAGE_HEADER;
  for (let i = 0; i < count; i++) remaining += elementSize(i);
  for (;;) {
    const n = count - start;
    if (n <= MIN_KEYS_PER_PAGE * 2 || remaining < BBOLT_PAGE_SIZE) return starts;
    let index = 0;
    let size = PAGE_HEADER;
    let kept = 0;
    for (let i = 0; i < n - MIN_KEYS_PER_PAGE; i++) {
      index = i;
      kept = size - PAGE_HEADER;
      const element = elementSize(start + i);
      if (index >= MIN_KEYS_PER_PAGE && size + element > threshold) break;
      size += element;
    }
    start += index;
    remaining -= kept;
    starts.push(start);
  }
}

/** The offset of the first element of flat `elements` whose key is >= (main, sub). */
function lowerBound(elements: readonly number[], main: number, sub: number): number {
  let lo = 0;
  let hi = elements.length / STRIDE;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const m = elements[mid * STRIDE]!;
    if (m < main || (m === main && elements[mid * STRIDE + 1]! < sub)) lo = mid + 1;
    else hi = mid;
  }
  return lo * STRIDE;
}

/** A revision key's sub revision and tombstone mark as one number (sub * 2 + tombstone). */
function packedSubOf(key: Buffer): number {
  if (key.length !== REVISION_KEY_LENGTH && key.length !== TOMBSTONE_KEY_LENGTH)
    throw new Error(`bbolt size model: ${key.length}-byte key is not a revision key`);
  return subOfKey(key) * 2 + (isTombstoneKey(key) ? 1 : 0);
}
