import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openBboltBuffer } from "./bbolt-buffer.fixture.js";
import { BRANCH_PAGE, LEAF_PAGE, PAGE_HEADER_SIZE, readPageHeader } from "./bbolt-format.js";
import { BboltFormatError, type BboltReader } from "./bbolt-reader.js";
import { BboltWriter, type WrittenPage } from "./bbolt-writer.js";
import { copyLeafRun, packLeafRun, unpackLeafRun } from "./leaf-run.js";

type Bucket = { name: string; rows: [Buffer, Buffer][] };

function build(buckets: Bucket[], pageSize = 4096): Buffer {
  const writer = new BboltWriter(pageSize);
  const pages: Buffer[] = [];
  for (const b of buckets) {
    writer.beginBucket(Buffer.from(b.name));
    for (const [k, v] of b.rows) for (const p of writer.put(k, v)) pages.push(p.bytes);
    for (const p of writer.endBucket()) pages.push(p.bytes);
  }
  const done = writer.finish();
  for (const p of done.pages) pages.push(p.bytes);
  const file = Buffer.concat([done.metaPages, ...pages]);
  assert.equal(file.length, done.pageCount * pageSize);
  return file;
}

/** A file as laid out in memory from pages at their IDs (the meta pages at 0). */
function assemble(metaPages: Buffer, pageCount: number, pages: WrittenPage[], pageSize = 4096): Buffer {
  const file = Buffer.alloc(pageCount * pageSize);
  metaPages.copy(file, 0);
  for (const p of pages) p.bytes.copy(file, p.id * pageSize);
  return file;
}

/**
 * The key bucket written as two threads write it: `rows` before `splitAt` by the main writer,
 * the rest as a leaf run (its own file, from page 0) adopted and copied in.
 */
function buildSplit(before: Bucket[], rows: [Buffer, Buffer][], splitAt: number): Buffer {
  const runWriter = new BboltWriter(4096, { leafRun: true });
  runWriter.beginBucket(Buffer.from("key"));
  const runPages: WrittenPage[] = [];
  for (const [k, v] of rows.slice(splitAt)) runPages.push(...runWriter.put(k, v));
  const ended = runWriter.endLeafRun();
  runPages.push(...ended.pages);
  const runFile = assemble(Buffer.alloc(0), ended.run.pageCount, runPages);
  // Across threads the run travels packed.
  const run = unpackLeafRun(structuredClone(packLeafRun(ended.run)));

  const writer = new BboltWriter();
  const pages: WrittenPage[] = [];
  for (const b of before) {
    writer.beginBucket(Buffer.from(b.name));
    for (const [k, v] of b.rows) pages.push(...writer.put(k, v));
    pages.push(...writer.endBucket());
  }
  writer.beginBucket(Buffer.from("key"));
  for (const [k, v] of rows.slice(0, splitAt)) pages.push(...writer.put(k, v));
  const adopted = writer.adoptLeaves(run);
  pages.push(...adopted.pages);
  copyLeafRun(
    run,
    adopted.base,
    4096,
    (into, offset) => runFile.copy(into, 0, offset, offset + into.length),
    // The copy reuses its buffer: a page keeps its own bytes.
    (bytes, offset) => pages.push({ id: offset / 4096, bytes: Buffer.from(bytes) }),
  );
  assert.throws(() => writer.put(Buffer.alloc(17, 0xff), Buffer.from("x")), /adopted/);
  pages.push(...writer.endBucket());
  const done = writer.finish();
  pages.push(...done.pages);
  return assemble(done.metaPages, done.pageCount, pages);
}

function rowsOf(reader: BboltReader, name: string): [Buffer, Buffer][] {
  const bucket = reader.bucket(name);
  assert.ok(bucket, `bucket ${name}`);
  return [...reader.rows(bucket)].map((r) => [Buffer.from(r.key), Buffer.from(r.value)]);
}

function revisionRows(count: number, valueSize: (i: number) => number): [Buffer, Buffer][] {
  const rows: [Buffer, Buffer][] = [];
  for (let i = 1; i <= count; i++) {
    const key = Buffer.alloc(17);
    key.writeBigUInt64BE(BigInt(i), 0);
    key[8] = 0x5f;
    rows.push([key, Buffer.alloc(valueSize(i), i % 251)]);
  }
  return rows;
}

describe("bbolt layout", () => {
  it("reads back what it wrote: several buckets, an empty one, one key per leaf page", () => {
    const buckets: Bucket[] = [
      { name: "alarm", rows: [] },
      { name: "key", rows: revisionRows(10, () => 30) },
      { name: "meta", rows: [[Buffer.from("consistent_index"), Buffer.from([0, 0, 0, 0, 0, 0, 0, 9])]] },
    ];
    const reader = openBboltBuffer(build(buckets));
    reader.check();
    for (const b of buckets) assert.deepEqual(rowsOf(reader, b.name), b.rows);
    assert.equal(reader.bucket("lease"), undefined);
    const names = [...reader.rows(reader.root)].map((r) => r.key.toString());
    assert.deepEqual(names, ["alarm", "key", "meta"]);
  });

  it("builds a multi-level B+tree for 20,000 rows and keeps every row in order", () => {
    const rows = revisionRows(20_000, (i) => 20 + (i % 40));
    const file = build([{ name: "key", rows }]);
    const reader = openBboltBuffer(file);
    reader.check();
    assert.deepEqual(rowsOf(reader, "key"), rows);
    const root = reader.bucket("key");
    assert.ok(root && "page" in root);
    // Root branch -> branches -> leaves: at least three levels.
    const top = reader.page(root.page);
    assert.equal(top.header.flags, BRANCH_PAGE);
    const firstChild = Number(top.page.readBigUInt64LE(PAGE_HEADER_SIZE + 8));
    assert.equal(reader.page(firstChild).header.flags, BRANCH_PAGE);
  });

  it("stores a value bigger than a page on overflow pages", () => {
    const big = Buffer.alloc(70_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 256;
    const rows = revisionRows(5, () => 10);
    rows[2]![1] = big;
    const reader = openBboltBuffer(build([{ name: "key", rows }]));
    reader.check();
    assert.deepEqual(rowsOf(reader, "key"), rows);
    let overflowPages = 0;
    for (let id = 2; id < reader.meta.pgid; ) {
      const header = readPageHeader(reader.page(id).page);
      if (header.flags === LEAF_PAGE) overflowPages += header.overflow;
      id += header.overflow + 1;
    }
    assert.equal(overflowPages, Math.ceil((big.length + 16 + 16 + 17) / 4096) - 1);
  });

  it("adopts another writer's leaf run: the same rows, every page reachable once, IDs in the headers", () => {
    // Values of 20 to 5,000 bytes: some leaves overflow onto several pages.
    const rows = revisionRows(30_000, (i) => (i % 997 === 0 ? 5000 : 20 + (i % 300)));
    const alarm: Bucket = { name: "alarm", rows: [] };
    for (const splitAt of [0, 1, 12_345, 29_999, 30_000]) {
      const reader = openBboltBuffer(buildSplit([alarm], rows, splitAt));
      reader.check();
      assert.deepEqual(rowsOf(reader, "key"), rows, `split at ${splitAt}`);
      for (let id = 2; id < reader.meta.pgid; ) {
        const { header } = reader.page(id);
        assert.equal(header.id, id, `page ${id}'s header (split at ${splitAt})`);
        id += header.overflow + 1;
      }
    }
  });

  it("refuses keys out of order and a second open bucket", () => {
    const writer = new BboltWriter();
    writer.beginBucket(Buffer.from("b"));
    writer.put(Buffer.from("2"), Buffer.from("x"));
    assert.throws(() => writer.put(Buffer.from("1"), Buffer.from("x")), /ascending/);
    assert.throws(() => writer.beginBucket(Buffer.from("c")), /already open/);
    writer.endBucket();
    assert.throws(() => writer.beginBucket(Buffer.from("a")), /out of order/);
  });

  it("check() finds a page that nothing references and a page referenced twice", () => {
    const file = build([{ name: "key", rows: revisionRows(500, () => 30) }]);
    const reader = openBboltBuffer(file);
    const root = reader.bucket("key");
    assert.ok(root && "page" in root);
    // Point the root branch's second child at its first: one page twice, one page orphaned.
    const broken = Buffer.from(file);
    const at = root.page * 4096 + PAGE_HEADER_SIZE;
    broken.writeBigUInt64LE(broken.readBigUInt64LE(at + 8), at + 16 + 8);
    assert.throws(() => openBboltBuffer(broken).check(), /multiple references/);
  });

  it("refuses a file whose meta pages are both damaged, naming the problem", () => {
    const file = build([{ name: "key", rows: revisionRows(3, () => 3) }]);
    const broken = Buffer.from(file);
    broken[PAGE_HEADER_SIZE + 20] ^= 0xff;
    broken[4096 + PAGE_HEADER_SIZE + 20] ^= 0xff;
    assert.throws(
      () => openBboltBuffer(broken),
      (err: Error) => {
        assert.ok(err instanceof BboltFormatError);
        assert.match(
          err.message,
          /meta 0: meta page 0 checksum mismatch; meta 1: meta page 1 checksum mismatch/,
        );
        return true;
      },
    );
    // One damaged meta page is survivable: bbolt falls back to the other.
    const oneBroken = Buffer.from(file);
    oneBroken[PAGE_HEADER_SIZE + 20] ^= 0xff;
    openBboltBuffer(oneBroken).check();
  });
});
