// bbolt's on-disk format (go.etcd.io/bbolt v1.3.x, what etcd 3.4 vendors), as facts: no npm
// library reads or writes bbolt files, so this project has its own writer and reader.
//
// A file is a sequence of pages of `pageSize` bytes; a page that needs more space spans
// `1 + overflow` consecutive pages. Every page starts with a 16-byte header
// {id u64, flags u16, count u16, overflow u32}. Integers are the machine's native order, which
// for every platform etcd ships is little-endian. Pages 0 and 1 are meta pages; a reader uses the
// valid one with the higher transaction ID.
//
//   meta (at offset 16): magic u32, version u32, pageSize u32, flags u32, root bucket
//     {root pgid u64, sequence u64}, freelist pgid u64, high-water pgid u64, txid u64,
//     checksum u64 = FNV-1a 64 of the 56 bytes before it.
//   branch element (16 bytes): pos u32, ksize u32, child pgid u64.
//   leaf element (16 bytes): flags u32 (1 = the value is a nested bucket), pos u32, ksize u32,
//     vsize u32. `pos` is counted from the element's own first byte.
//   nested bucket value: {root pgid u64, sequence u64}; root 0 means an inline bucket, whose
//     leaf page (header + elements) follows in the value itself.
//   freelist: `count` pgids u64 (count 0xffff: the real count is the first u64).

export const PAGE_HEADER_SIZE = 16;
export const ELEMENT_SIZE = 16;
export const BUCKET_HEADER_SIZE = 16;
export const META_SIZE = 64;
export const DEFAULT_PAGE_SIZE = 4096;

export const BRANCH_PAGE = 0x01;
export const LEAF_PAGE = 0x02;
export const META_PAGE = 0x04;
export const FREELIST_PAGE = 0x10;
export const BUCKET_LEAF_FLAG = 0x01;

export const MAGIC = 0xed0cdaed;
export const VERSION = 2;
export const NO_FREELIST = 0xffff_ffff_ffff_ffffn;
const CHECKSUM_OFFSET = 56;

export interface PageHeader {
  id: number;
  flags: number;
  count: number;
  overflow: number;
}

export interface Meta {
  pageSize: number;
  flags: number;
  root: number;
  rootSequence: bigint;
  freelist: bigint;
  /** The high-water mark: pages [0, pgid) make up the database. */
  pgid: number;
  txid: bigint;
}

export function writePageHeader(page: Buffer, header: PageHeader): void {
  page.writeBigUInt64LE(BigInt(header.id), 0);
  page.writeUInt16LE(header.flags, 8);
  page.writeUInt16LE(header.count, 10);
  page.writeUInt32LE(header.overflow, 12);
}

export function readPageHeader(page: Buffer): PageHeader {
  return {
    id: Number(page.readBigUInt64LE(0)),
    flags: page.readUInt16LE(8),
    count: page.readUInt16LE(10),
    overflow: page.readUInt32LE(12),
  };
}

/** FNV-1a, 64-bit: bbolt's meta checksum. */
export function fnv1a64(bytes: Uint8Array): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of bytes) hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n);
  return hash;
}

/** A whole meta page (page `id`, 0 or 1) holding `meta`, checksummed. */
export function encodeMetaPage(id: number, meta: Meta): Buffer {
  const page = Buffer.alloc(meta.pageSize);
  writePageHeader(page, { id, flags: META_PAGE, count: 0, overflow: 0 });
  const m = page.subarray(PAGE_HEADER_SIZE, PAGE_HEADER_SIZE + META_SIZE);
  m.writeUInt32LE(MAGIC, 0);
  m.writeUInt32LE(VERSION, 4);
  m.writeUInt32LE(meta.pageSize, 8);
  m.writeUInt32LE(meta.flags, 12);
  m.writeBigUInt64LE(BigInt(meta.root), 16);
  m.writeBigUInt64LE(meta.rootSequence, 24);
  m.writeBigUInt64LE(meta.freelist, 32);
  m.writeBigUInt64LE(BigInt(meta.pgid), 40);
  m.writeBigUInt64LE(meta.txid, 48);
  m.writeBigUInt64LE(fnv1a64(m.subarray(0, CHECKSUM_OFFSET)), CHECKSUM_OFFSET);
  return page;
}

/** Decodes and validates the meta in a meta page; the reason it is unusable otherwise. */
export function decodeMetaPage(page: Buffer): Meta | string {
  if (page.length < PAGE_HEADER_SIZE + META_SIZE) return "meta page is truncated";
  const header = readPageHeader(page);
  if ((header.flags & META_PAGE) === 0) return `page ${header.id} is not a meta page`;
  const m = page.subarray(PAGE_HEADER_SIZE, PAGE_HEADER_SIZE + META_SIZE);
  if (m.readUInt32LE(0) !== MAGIC) return "invalid bbolt magic (not a bbolt database)";
  if (m.readUInt32LE(4) !== VERSION) return `unsupported bbolt version ${m.readUInt32LE(4)}`;
  const checksum = m.readBigUInt64LE(CHECKSUM_OFFSET);
  if (checksum !== 0n && checksum !== fnv1a64(m.subarray(0, CHECKSUM_OFFSET))) {
    return `meta page ${header.id} checksum mismatch`;
  }
  return {
    pageSize: m.readUInt32LE(8),
    flags: m.readUInt32LE(12),
    root: Number(m.readBigUInt64LE(16)),
    rootSequence: m.readBigUInt64LE(24),
    freelist: m.readBigUInt64LE(32),
    pgid: Number(m.readBigUInt64LE(40)),
    txid: m.readBigUInt64LE(48),
  };
}

/** The value of a nested bucket stored as its own pages (never inline). */
export function encodeBucketHeader(root: number, sequence = 0n): Buffer {
  const out = Buffer.alloc(BUCKET_HEADER_SIZE);
  out.writeBigUInt64LE(BigInt(root), 0);
  out.writeBigUInt64LE(sequence, 8);
  return out;
}
