import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openBboltBuffer } from "./bbolt-buffer.fixture.js";
import type { BboltWriter, WrittenPage } from "./bbolt-writer.js";
import { type PageProducer, streamPages } from "./paged-stream.js";

type Rows = [Buffer, Buffer][];

function revisionRows(count: number, valueSize: (i: number) => number): Rows {
  const rows: Rows = [];
  for (let i = 1; i <= count; i++) {
    const key = Buffer.alloc(17);
    key.writeBigUInt64BE(BigInt(i), 0);
    key[8] = 0x5f;
    rows.push([key, Buffer.alloc(valueSize(i), i % 251)]);
  }
  return rows;
}

/** A producer of the given buckets; `rowsFor(pass)` may change what the second pass sees. */
function producer(buckets: (pass: number) => Record<string, Rows>): PageProducer {
  let pass = 0;
  return async (writer: BboltWriter, writePages: (pages: WrittenPage[]) => Promise<void>) => {
    const current = buckets(pass++);
    for (const name of Object.keys(current).sort()) {
      writer.beginBucket(Buffer.from(name));
      for (const [k, v] of current[name]!) await writePages(writer.put(k, v));
      await writePages(writer.endBucket());
    }
  };
}

/** Collects the stream (copying each chunk: the streamer reuses its buffer). */
async function collect(produce: PageProducer, chunkBytes?: number) {
  const chunks: Buffer[] = [];
  let announced = -1;
  const size = await streamPages(
    produce,
    {
      begin: (bytes) => {
        assert.equal(chunks.length, 0, "the size comes before any bytes");
        announced = bytes;
      },
      write: async (chunk) => {
        chunks.push(Buffer.from(chunk));
      },
    },
    chunkBytes === undefined ? {} : { chunkBytes },
  );
  return { size, announced, chunks, file: Buffer.concat(chunks) };
}

describe("streamed bbolt database", () => {
  it("is the database front to back: metas first, chunks of the asked size, overflow pages split across chunks", async () => {
    const buckets = {
      key: revisionRows(5000, (i) => (i % 997 === 0 ? 9000 : 20 + (i % 300))),
      lease: revisionRows(3, () => 10),
      meta: [[Buffer.from("consistent_index"), Buffer.alloc(8, 1)]] as Rows,
    };
    // 1000 bytes: not a multiple of the page size, smaller than a page and than an overflow run.
    const { size, announced, chunks, file } = await collect(
      producer(() => buckets),
      1000,
    );
    assert.equal(announced, size);
    assert.equal(file.length, size);
    assert.ok(chunks.slice(0, -1).every((c) => c.length === 1000));
    const reader = openBboltBuffer(file);
    reader.check();
    for (const [name, rows] of Object.entries(buckets)) {
      const read = [...reader.rows(reader.bucket(name)!)].map((r) => [
        Buffer.from(r.key),
        Buffer.from(r.value),
      ]);
      assert.deepEqual(read, rows);
    }
  });

  it("refuses to finish when the second pass reads other rows than the first (its metas would lie)", async () => {
    const first = revisionRows(2000, () => 100);
    const second = revisionRows(2100, () => 100);
    const chunks: Buffer[] = [];
    let announced = 0;
    await assert.rejects(
      streamPages(
        producer((pass) => ({ key: pass === 0 ? first : second })),
        {
          begin: (bytes) => {
            announced = bytes;
          },
          write: async (chunk) => {
            chunks.push(Buffer.from(chunk));
          },
        },
      ),
      /the rows changed between the layout pass and the encoding pass/,
    );
    // What was sent falls short of the announced size: no client takes it for a whole file.
    assert.ok(Buffer.concat(chunks).length < announced);
  });

  it("refuses a second pass whose rows are as many but one is longer (one more page)", async () => {
    const first = revisionRows(50, () => 10);
    const second = revisionRows(50, (i) => (i === 50 ? 5000 : 10));
    await assert.rejects(
      collect(producer((pass) => ({ key: pass === 0 ? first : second }))),
      /the rows changed/,
    );
  });

  it("takes a second pass whose rows differ only in bytes, not in sizes: the metas still describe the file", async () => {
    const first = revisionRows(3000, () => 40);
    const second = first.map(([k, v]) => [k, Buffer.alloc(v.length, 7)] as [Buffer, Buffer]);
    const { file } = await collect(producer((pass) => ({ key: pass === 0 ? first : second })));
    const reader = openBboltBuffer(file);
    reader.check();
    const read = [...reader.rows(reader.bucket("key")!)].map((r) => [
      Buffer.from(r.key),
      Buffer.from(r.value),
    ]);
    assert.deepEqual(read, second);
  });
});
