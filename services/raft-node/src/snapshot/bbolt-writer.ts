// Lays out a bbolt database page by page from rows that arrive in key order, bucket by bucket
// in bucket-name order: no npm library writes bbolt, so this is the project's own (see
// bbolt-format.ts for the format). Pure: it hands back finished pages for the caller to write.
//
// Trees are built bottom-up, as a bulk load: leaves are filled in key order and written as soon
// as they are full; each level above keeps only the branch page it is filling. Memory is one
// page per tree level, whatever the number of rows. The page IDs follow write order, so the
// file is written sequentially from page 2; the meta pages, which name the root, come last and
// belong at offset 0 (`finish`). Every bucket, even an empty one, gets its own root page (bbolt
// reads those as well as the inline buckets it writes itself for small ones).
import {
  BRANCH_PAGE,
  BUCKET_LEAF_FLAG,
  DEFAULT_PAGE_SIZE,
  ELEMENT_SIZE,
  encodeBucketHeader,
  encodeMetaPage,
  FREELIST_PAGE,
  LEAF_PAGE,
  PAGE_HEADER_SIZE,
  writePageHeader,
} from "./bbolt-format.js";

/** A finished page (or run of pages, with overflow) and the ID of its first page. */
export interface WrittenPage {
  id: number;
  bytes: Buffer;
}

interface Element {
  key: Buffer;
  value: Buffer;
  flags: number;
}

/**
 * The leaves of one key range written by another BboltWriter in leaf-run mode: their page IDs
 * count from 0 in that writer's own file, `firstKeys[i]` is leaf i's first key.
 */
export interface LeafRun {
  pageCount: number;
  ids: number[];
  firstKeys: Buffer[];
}

/** Children collected for one branch page: first key of each child and its page ID. */
interface BranchLevel {
  keys: Buffer[];
  children: number[];
  bytes: number;
}

const MAX_ELEMENTS = 0xffff;
const NO_PAGES: WrittenPage[] = [];

export class BboltWriter {
  private nextId: number;
  private readonly buckets: { name: Buffer; root: number }[] = [];
  private bucketName: Buffer | undefined;
  private leaf: Element[] = [];
  private leafBytes = 0;
  private levels: BranchLevel[] = [];
  private lastKey: Buffer | undefined;
  /** The open bucket adopted a leaf run: its last keys are the run's, so no row may follow. */
  private adopted = false;
  private out: WrittenPage[] = [];
  /** Leaf-run mode: the leaves written, instead of branch levels above them. */
  private readonly run: LeafRun | undefined;

  /**
   * `leafRun`: write only the leaves of one bucket's key range, with page IDs from 0, for
   * another writer to adopt (adoptLeaves) after its own leaves of the keys before that range.
   */
  constructor(
    readonly pageSize = DEFAULT_PAGE_SIZE,
    options: { leafRun?: boolean } = {},
  ) {
    this.run = options.leafRun ? { pageCount: 0, ids: [], firstKeys: [] } : undefined;
    this.nextId = this.run === undefined ? 2 : 0;
  }

  /** Pages written so far, including the two meta pages. */
  get pageCount(): number {
    return this.nextId;
  }

  beginBucket(name: Buffer): void {
    if (this.bucketName !== undefined) throw new Error("bbolt writer: a bucket is already open");
    const previous = this.buckets.at(-1);
    if (previous !== undefined && Buffer.compare(previous.name, name) >= 0) {
      throw new Error(`bbolt writer: bucket ${name} is out of order`);
    }
    this.bucketName = Buffer.from(name);
    this.lastKey = undefined;
  }

  /** Adds a row to the open bucket; returns the pages that filled up. Keys must ascend. */
  put(key: Buffer, value: Buffer): WrittenPage[] {
    if (this.bucketName === undefined) throw new Error("bbolt writer: no bucket is open");
    if (this.adopted) throw new Error("bbolt writer: no row may follow adopted leaves");
    if (this.lastKey !== undefined && Buffer.compare(this.lastKey, key) >= 0) {
      throw new Error("bbolt writer: keys must be unique and in ascending order");
    }
    if (key.length === 0) throw new Error("bbolt writer: empty key");
    this.lastKey = key;
    const size = ELEMENT_SIZE + key.length + value.length;
    if (
      this.leaf.length > 0 &&
      (PAGE_HEADER_SIZE + this.leafBytes + size > this.pageSize || this.leaf.length === MAX_ELEMENTS)
    ) {
      this.flushLeaf();
    }
    this.leaf.push({ key, value, flags: 0 });
    this.leafBytes += size;
    return this.take();
  }

  /** Leaf-run mode: writes the last leaf; returns its pages and the run to adopt. */
  endLeafRun(): { pages: WrittenPage[]; run: LeafRun } {
    if (this.run === undefined) throw new Error("bbolt writer: not a leaf run");
    if (this.leaf.length > 0) this.flushLeaf();
    this.run.pageCount = this.nextId;
    return { pages: this.take(), run: this.run };
  }

  /**
   * Places another writer's leaf run after the open bucket's rows so far (every key of the run
   * must be greater): its pages take the next `run.pageCount` IDs from `base`, and the caller
   * writes them there (their page headers' IDs shifted by `base`). Returns `base` and the
   * branch pages that filled up.
   */
  adoptLeaves(run: LeafRun): { base: number; pages: WrittenPage[] } {
    if (this.bucketName === undefined) throw new Error("bbolt writer: no bucket is open");
    if (this.run !== undefined) throw new Error("bbolt writer: a leaf run cannot adopt leaves");
    this.adopted = true;
    if (run.ids.length === 0) return { base: this.nextId, pages: this.take() };
    const first = run.firstKeys[0]!;
    if (this.lastKey !== undefined && Buffer.compare(this.lastKey, first) >= 0) {
      throw new Error("bbolt writer: adopted leaves must follow the bucket's keys");
    }
    if (this.leaf.length > 0) this.flushLeaf();
    const base = this.nextId;
    this.nextId += run.pageCount;
    for (let i = 0; i < run.ids.length; i++) this.addChild(0, run.firstKeys[i]!, base + run.ids[i]!);
    return { base, pages: this.take() };
  }

  /** Closes the open bucket: writes its remaining pages, the root last. */
  endBucket(): WrittenPage[] {
    const name = this.bucketName;
    if (name === undefined) throw new Error("bbolt writer: no bucket is open");
    if (this.run !== undefined) throw new Error("bbolt writer: a leaf run ends with endLeafRun");
    let root: number;
    if (this.levels.length === 0) {
      root = this.writeLeaf(this.leaf);
    } else {
      if (this.leaf.length > 0) this.flushLeaf();
      root = this.closeLevels();
    }
    this.leaf = [];
    this.leafBytes = 0;
    this.levels = [];
    this.adopted = false;
    this.buckets.push({ name, root });
    this.bucketName = undefined;
    return this.take();
  }

  /**
   * Writes the top-level bucket and an empty freelist; returns those pages and the two meta
   * pages (for offset 0). `txid` is meta 0's; meta 1 gets txid - 1, as bbolt's Tx.WriteTo does.
   */
  finish(txid = 2n): { pages: WrittenPage[]; metaPages: Buffer; pageCount: number } {
    if (this.bucketName !== undefined) throw new Error("bbolt writer: a bucket is still open");
    const rootElements = this.buckets.map((b) => ({
      key: b.name,
      value: encodeBucketHeader(b.root),
      flags: BUCKET_LEAF_FLAG,
    }));
    const root = this.writeLeaf(rootElements);
    const freelist = this.nextId++;
    const freelistPage = Buffer.alloc(this.pageSize);
    writePageHeader(freelistPage, { id: freelist, flags: FREELIST_PAGE, count: 0, overflow: 0 });
    this.out.push({ id: freelist, bytes: freelistPage });
    const meta = {
      pageSize: this.pageSize,
      flags: 0,
      root,
      rootSequence: 0n,
      freelist: BigInt(freelist),
      pgid: this.nextId,
    };
    const metaPages = Buffer.concat([
      encodeMetaPage(0, { ...meta, txid }),
      encodeMetaPage(1, { ...meta, txid: txid - 1n }),
    ]);
    return { pages: this.take(), metaPages, pageCount: this.nextId };
  }

  private take(): WrittenPage[] {
    // Most puts fill no page: no new array for those.
    if (this.out.length === 0) return NO_PAGES;
    const out = this.out;
    this.out = [];
    return out;
  }

  private flushLeaf(): void {
    const first = this.leaf[0]!.key;
    const id = this.writeLeaf(this.leaf);
    this.leaf = [];
    this.leafBytes = 0;
    if (this.run === undefined) {
      this.addChild(0, first, id);
    } else {
      // A copy: the key may be a view into a reused read buffer.
      this.run.ids.push(id);
      this.run.firstKeys.push(Buffer.from(first));
    }
  }

  /** Records a finished child page in the branch level above it, writing that level if full. */
  private addChild(level: number, firstKey: Buffer, id: number): void {
    if (this.levels.length === level) this.levels.push({ keys: [], children: [], bytes: 0 });
    const branch = this.levels[level]!;
    const size = ELEMENT_SIZE + firstKey.length;
    if (
      branch.children.length > 0 &&
      (PAGE_HEADER_SIZE + branch.bytes + size > this.pageSize || branch.children.length === MAX_ELEMENTS)
    ) {
      const first = branch.keys[0]!;
      const written = this.writeBranch(branch);
      this.levels[level] = { keys: [], children: [], bytes: 0 };
      this.addChild(level + 1, first, written);
    }
    const target = this.levels[level]!;
    // A copy: the caller's key buffer may be a view into a reused read buffer.
    target.keys.push(Buffer.from(firstKey));
    target.children.push(id);
    target.bytes += size;
  }

  /** Writes every partly filled branch level bottom-up; returns the root's page ID. */
  private closeLevels(): number {
    for (let level = 0; ; level++) {
      const branch = this.levels[level]!;
      const isTop = level === this.levels.length - 1;
      if (isTop && branch.children.length === 1) return branch.children[0]!;
      const id = this.writeBranch(branch);
      if (isTop) return id;
      this.addChild(level + 1, branch.keys[0]!, id);
    }
  }

  private allocate(bytes: number): { id: number; page: Buffer; overflow: number } {
    const pages = Math.max(1, Math.ceil(bytes / this.pageSize));
    const id = this.nextId;
    this.nextId += pages;
    return { id, page: Buffer.alloc(pages * this.pageSize), overflow: pages - 1 };
  }

  private writeLeaf(elements: Element[]): number {
    let bytes = PAGE_HEADER_SIZE;
    for (const e of elements) bytes += ELEMENT_SIZE + e.key.length + e.value.length;
    const { id, page, overflow } = this.allocate(bytes);
    writePageHeader(page, { id, flags: LEAF_PAGE, count: elements.length, overflow });
    let data = PAGE_HEADER_SIZE + elements.length * ELEMENT_SIZE;
    elements.forEach((e, i) => {
      const at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
      page.writeUInt32LE(e.flags, at);
      page.writeUInt32LE(data - at, at + 4);
      page.writeUInt32LE(e.key.length, at + 8);
      page.writeUInt32LE(e.value.length, at + 12);
      data += e.key.copy(page, data);
      data += e.value.copy(page, data);
    });
    this.out.push({ id, bytes: page });
    return id;
  }

  private writeBranch(branch: BranchLevel): number {
    const { id, page, overflow } = this.allocate(PAGE_HEADER_SIZE + branch.bytes);
    writePageHeader(page, { id, flags: BRANCH_PAGE, count: branch.children.length, overflow });
    let data = PAGE_HEADER_SIZE + branch.children.length * ELEMENT_SIZE;
    branch.keys.forEach((key, i) => {
      const at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
      page.writeUInt32LE(data - at, at);
      page.writeUInt32LE(key.length, at + 4);
      page.writeBigUInt64LE(BigInt(branch.children[i]!), at + 8);
      data += key.copy(page, data);
    });
    this.out.push({ id, bytes: page });
    return id;
  }
}
