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

// Keys are held as latin1 strings, one char per byte: their `<` order is bytewise order, and a
// 17-char string costs ~40 heap bytes where a Buffer pinned its 8 KiB allocation-pool slab
// (measured: ~900 bytes retained per revision on a loaded member, most of its RSS growth).
class TreeNode {
  keys: string[] = [];
  /** Leaf: each element's value length. */
  valueLengths: number[] = [];
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
    return this.leaf ? this.keys.length : this.children.length;
  }

  /** The key its parent knows it by (bbolt keeps it while deletes empty the node). */
  private key = "";

  firstKey(): string {
    if (this.count > 0) this.key = this.leaf ? this.keys[0]! : this.children[0]!.firstKey();
    return this.key;
  }

  elementSize(i: number): number {
    if (this.leaf) return ELEMENT_HEADER + this.keys[i]!.length + this.valueLengths[i]!;
    return ELEMENT_HEADER + this.children[i]!.firstKey().length;
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
      this.putInTree(key.toString("latin1"), valueLength);
    } catch {
      this.degrade();
      this.put(key, valueLength);
    }
  }

  private putInTree(key: string, valueLength: number): void {
    const leaf = this.descend(key);
    const i = lowerBound(leaf.keys, key);
    if (i < leaf.keys.length && leaf.keys[i] === key) leaf.valueLengths[i] = valueLength;
    else {
      leaf.keys.splice(i, 0, key);
      leaf.valueLengths.splice(i, 0, valueLength);
    }
    this.changed = true;
  }

  /** A revision deleted in the current transaction (compaction). */
  delete(key: Buffer): void {
    if (this.degradedBytes !== undefined) return;
    try {
      this.deleteInTree(key.toString("latin1"));
    } catch {
      this.degrade();
    }
  }

  private deleteInTree(key: string): void {
    const leaf = this.descend(key);
    const i = lowerBound(leaf.keys, key);
    if (i < leaf.keys.length && leaf.keys[i] === key) {
      leaf.keys.splice(i, 1);
      leaf.valueLengths.splice(i, 1);
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
    this.degradedBytes = undefined;
    this.root = new TreeNode(true, undefined);
    this.freelist = new Freelist();
    this.highWater = FRESH_FILE_PAGES;
    this.rootLeafPage = 3;
    this.staleFreelistPage = true;
    let inBatch = 0;
    for (const { key, valueLength } of revisions) {
      this.put(key, valueLength);
      if (++inBatch === DEFRAG_KEYS_PER_COMMIT) {
        this.commit();
        inBatch = 0;
      }
    }
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
    const pages = Math.floor(highWaterBytes / BBOLT_PAGE_SIZE);
    if (pages <= this.highWater) return;
    for (let id = this.highWater; id < pages; id++) this.freelist.free.push(id);
    this.highWater = pages;
    this.freeAtLastCommit = this.freelist.free.length;
  }

  private descend(key: string): TreeNode {
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
        if (node.children[mid]!.firstKey() <= key) lo = mid;
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
      target.keys.push(...source.keys);
      target.valueLengths.push(...source.valueLengths);
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

  private split(node: TreeNode): TreeNode[] {
    const parts = [node];
    let current = node;
    for (;;) {
      if (current.count <= MIN_KEYS_PER_PAGE * 2 || current.size() < BBOLT_PAGE_SIZE) break;
      const threshold = BBOLT_PAGE_SIZE * FILL_PERCENT;
      let index = 0;
      let size = PAGE_HEADER;
      for (let i = 0; i < current.count - MIN_KEYS_PER_PAGE; i++) {
        index = i;
        const element = current.elementSize(i);
        if (index >= MIN_KEYS_PER_PAGE && size + element > threshold) break;
        size += element;
      }
      if (current.parent === undefined) {
        const parent = new TreeNode(false, undefined);
        parent.children = [current];
        current.parent = parent;
      }
      const next = new TreeNode(current.leaf, current.parent);
      if (current.leaf) {
        next.keys = current.keys.splice(index);
        next.valueLengths = current.valueLengths.splice(index);
      } else {
        next.children = current.children.splice(index);
        for (const c of next.children) c.parent = next;
      }
      const siblings = current.parent.children;
      siblings.splice(siblings.indexOf(current) + 1, 0, next);
      parts.push(next);
      current = next;
    }
    return parts;
  }
}

function topOf(node: TreeNode): TreeNode {
  let top = node;
  while (top.parent !== undefined) top = top.parent;
  return top;
}

function lowerBound(keys: string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
