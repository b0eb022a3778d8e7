// Reads a bbolt database (see bbolt-format.ts) through a positional read function, one page at a
// time: iterating a bucket holds one page per tree level. `check` walks every page and refuses a
// file that bbolt's own Tx.Check would refuse (a page out of bounds, referenced twice, of the
// wrong type, unreachable and not free), plus keys out of order and elements outside their page.
import {
  BRANCH_PAGE,
  BUCKET_HEADER_SIZE,
  BUCKET_LEAF_FLAG,
  decodeMetaPage,
  ELEMENT_SIZE,
  FREELIST_PAGE,
  LEAF_PAGE,
  type Meta,
  NO_FREELIST,
  PAGE_HEADER_SIZE,
  type PageHeader,
  readPageHeader,
} from "./bbolt-format.js";

export class BboltFormatError extends Error {}

/** Reads `length` bytes at `offset`; a short read returns fewer bytes. */
export type ReadAt = (offset: number, length: number) => Buffer;

export interface BboltRow {
  key: Buffer;
  value: Buffer;
  /** A nested bucket: `value` is its header (and inline page). */
  isBucket: boolean;
}

/** Where a bucket's tree lives: its root page, or an inline page inside its parent's value. */
export type BucketRoot = { page: number } | { inline: Buffer };

const MAX_DEPTH = 64;
const MIN_PAGE_SIZE = 512;

export class BboltReader {
  readonly meta: Meta;

  private constructor(
    private readonly readAt: ReadAt,
    readonly fileSize: number,
    meta: Meta,
  ) {
    this.meta = meta;
  }

  /** Opens the database in the first `dbSize` bytes reachable through `readAt`. */
  static open(readAt: ReadAt, dbSize: number): BboltReader {
    if (dbSize < PAGE_HEADER_SIZE + 64)
      throw new BboltFormatError("file size too small for a bbolt database");
    const first = decodeMetaPage(readAt(0, PAGE_HEADER_SIZE + 64));
    // Meta 1 sits one page further; its page size is meta 0's if meta 0 is readable.
    const candidates: Meta[] = [];
    const problems: string[] = [];
    if (typeof first === "string") problems.push(`meta 0: ${first}`);
    else candidates.push(first);
    const pageSize = typeof first === "string" ? 4096 : first.pageSize;
    if (pageSize >= MIN_PAGE_SIZE && dbSize >= pageSize + PAGE_HEADER_SIZE + 64) {
      const second = decodeMetaPage(readAt(pageSize, PAGE_HEADER_SIZE + 64));
      if (typeof second === "string") problems.push(`meta 1: ${second}`);
      else candidates.push(second);
    }
    const meta = candidates.sort((a, b) => (a.txid > b.txid ? -1 : a.txid < b.txid ? 1 : 0))[0];
    if (meta === undefined) throw new BboltFormatError(`no valid meta page (${problems.join("; ")})`);
    if (meta.pageSize < MIN_PAGE_SIZE || (meta.pageSize & (meta.pageSize - 1)) !== 0) {
      throw new BboltFormatError(`invalid page size ${meta.pageSize}`);
    }
    if (meta.pgid * meta.pageSize > dbSize) {
      throw new BboltFormatError(
        `file is truncated: the database needs ${meta.pgid * meta.pageSize} bytes, the file has ${dbSize}`,
      );
    }
    if (meta.root < 2 || meta.root >= meta.pgid)
      throw new BboltFormatError(`root page ${meta.root} out of bounds`);
    return new BboltReader(readAt, dbSize, meta);
  }

  /** The database's size as bbolt reports it (Tx.Size: high-water mark x page size). */
  get size(): number {
    return this.meta.pgid * this.meta.pageSize;
  }

  get root(): BucketRoot {
    return { page: this.meta.root };
  }

  /** The bucket stored under `name` in `parent`, if any. */
  bucket(name: string, parent: BucketRoot = this.root): BucketRoot | undefined {
    for (const row of this.rows(parent)) {
      const order = Buffer.compare(row.key, Buffer.from(name));
      if (order === 0) return row.isBucket ? bucketRootOf(row.value) : undefined;
      if (order > 0) return undefined;
    }
    return undefined;
  }

  /** Every row of a bucket in key order. */
  *rows(bucket: BucketRoot): Generator<BboltRow> {
    if ("inline" in bucket) {
      yield* leafRows(bucket.inline, readPageHeader(bucket.inline));
      return;
    }
    yield* this.rowsOfPage(bucket.page, 0);
  }

  private *rowsOfPage(id: number, depth: number): Generator<BboltRow> {
    if (depth > MAX_DEPTH) throw new BboltFormatError(`page ${id}: tree deeper than ${MAX_DEPTH}`);
    const { page, header } = this.page(id);
    if (header.flags & LEAF_PAGE) {
      yield* leafRows(page, header);
    } else if (header.flags & BRANCH_PAGE) {
      for (const child of branchChildren(page, header)) yield* this.rowsOfPage(child, depth + 1);
    } else {
      throw new BboltFormatError(`page ${id}: invalid type ${header.flags} inside a bucket`);
    }
  }

  /** A page with its overflow, read whole. */
  page(id: number): { page: Buffer; header: PageHeader } {
    if (id < 2 || id >= this.meta.pgid) {
      throw new BboltFormatError(`page ${id}: out of bounds (high-water mark ${this.meta.pgid})`);
    }
    const size = this.meta.pageSize;
    const head = this.readAt(id * size, PAGE_HEADER_SIZE);
    if (head.length < PAGE_HEADER_SIZE) throw new BboltFormatError(`page ${id}: truncated`);
    const header = readPageHeader(head);
    if (header.id !== id) throw new BboltFormatError(`page ${id}: header says page ${header.id}`);
    if (id + header.overflow >= this.meta.pgid) {
      throw new BboltFormatError(`page ${id}: overflow ${header.overflow} runs past the high-water mark`);
    }
    const length = (header.overflow + 1) * size;
    const page = this.readAt(id * size, length);
    if (page.length < length) throw new BboltFormatError(`page ${id}: truncated`);
    return { page, header };
  }

  /**
   * Walks the whole file as bbolt's Tx.Check does; throws naming the first problem. Costs one
   * bit per page and one page per tree level.
   */
  check(): void {
    const seen = new Uint8Array(Math.ceil(this.meta.pgid / 8));
    const mark = (id: number, what: string) => {
      if (seen[id >> 3]! & (1 << (id & 7)))
        throw new BboltFormatError(`page ${id}: multiple references (${what})`);
      seen[id >> 3]! |= 1 << (id & 7);
    };
    mark(0, "meta");
    mark(1, "meta");
    const freed: number[] = [];
    if (this.meta.freelist !== NO_FREELIST) {
      const id = Number(this.meta.freelist);
      const { page, header } = this.page(id);
      if ((header.flags & FREELIST_PAGE) === 0) throw new BboltFormatError(`page ${id}: not a freelist page`);
      for (let i = 0; i <= header.overflow; i++) mark(id + i, "freelist");
      let count = header.count;
      let at = PAGE_HEADER_SIZE;
      if (count === 0xffff) {
        count = Number(page.readBigUInt64LE(at));
        at += 8;
      }
      if (at + count * 8 > page.length) throw new BboltFormatError(`page ${id}: freelist runs past its page`);
      for (let i = 0; i < count; i++) freed.push(Number(page.readBigUInt64LE(at + i * 8)));
    }
    this.checkTree({ page: this.meta.root }, mark, 0);
    for (const id of freed) {
      if (id >= this.meta.pgid) throw new BboltFormatError(`freed page ${id} out of bounds`);
      mark(id, "freed");
    }
    // Without a stored freelist (etcd opens bbolt with NoFreelistSync), bbolt counts every
    // unreachable page as free.
    if (this.meta.freelist === NO_FREELIST) return;
    for (let id = 0; id < this.meta.pgid; id++) {
      if (!(seen[id >> 3]! & (1 << (id & 7)))) throw new BboltFormatError(`page ${id}: unreachable unfreed`);
    }
  }

  private checkTree(bucket: BucketRoot, mark: (id: number, what: string) => void, depth: number): void {
    if (depth > MAX_DEPTH) throw new BboltFormatError(`buckets nested deeper than ${MAX_DEPTH}`);
    if ("page" in bucket) this.checkPages(bucket.page, mark, 0);
    let previous: Buffer | undefined;
    for (const row of this.rows(bucket)) {
      if (previous !== undefined && Buffer.compare(previous, row.key) >= 0) {
        throw new BboltFormatError(`keys out of order after ${previous.toString("hex")}`);
      }
      previous = row.key;
      if (row.isBucket) this.checkTree(bucketRootOf(row.value), mark, depth + 1);
    }
  }

  private checkPages(id: number, mark: (id: number, what: string) => void, depth: number): void {
    if (depth > MAX_DEPTH) throw new BboltFormatError(`page ${id}: tree deeper than ${MAX_DEPTH}`);
    const { page, header } = this.page(id);
    for (let i = 0; i <= header.overflow; i++) mark(id + i, "bucket page");
    if (header.flags & BRANCH_PAGE) {
      for (const child of branchChildren(page, header)) this.checkPages(child, mark, depth + 1);
    } else if ((header.flags & LEAF_PAGE) === 0) {
      throw new BboltFormatError(`page ${id}: invalid type ${header.flags} inside a bucket`);
    }
  }
}

export function bucketRootOf(value: Buffer): BucketRoot {
  if (value.length < BUCKET_HEADER_SIZE) throw new BboltFormatError("bucket header is truncated");
  const root = Number(value.readBigUInt64LE(0));
  if (root !== 0) return { page: root };
  const inline = value.subarray(BUCKET_HEADER_SIZE);
  if (inline.length < PAGE_HEADER_SIZE) throw new BboltFormatError("inline bucket page is truncated");
  return { inline };
}

function* leafRows(page: Buffer, header: PageHeader): Generator<BboltRow> {
  for (let i = 0; i < header.count; i++) {
    const at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
    if (at + ELEMENT_SIZE > page.length)
      throw new BboltFormatError(`page ${header.id}: elements run past the page`);
    const flags = page.readUInt32LE(at);
    const start = at + page.readUInt32LE(at + 4);
    const keyEnd = start + page.readUInt32LE(at + 8);
    const valueEnd = keyEnd + page.readUInt32LE(at + 12);
    if (valueEnd > page.length)
      throw new BboltFormatError(`page ${header.id}: element ${i} runs past the page`);
    yield {
      key: page.subarray(start, keyEnd),
      value: page.subarray(keyEnd, valueEnd),
      isBucket: (flags & BUCKET_LEAF_FLAG) !== 0,
    };
  }
}

function branchChildren(page: Buffer, header: PageHeader): number[] {
  const children: number[] = [];
  for (let i = 0; i < header.count; i++) {
    const at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
    if (at + ELEMENT_SIZE > page.length)
      throw new BboltFormatError(`page ${header.id}: elements run past the page`);
    children.push(Number(page.readBigUInt64LE(at + 8)));
  }
  return children;
}
