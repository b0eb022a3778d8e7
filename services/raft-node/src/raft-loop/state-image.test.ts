import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { RocksBackend } from "../mvcc/rocks-backend.js";
import {
  encodeImageEnd,
  encodeImageHeader,
  encodeRowBlock,
  importStateImage,
  type RowBlock,
  StateImageParser,
  writeStateImage,
} from "./state-image.js";

const block = (column: string, n: number): RowBlock => ({
  column,
  keys: Array.from({ length: n }, (_, i) => Buffer.from(`${column}-k${i}`)),
  values: Array.from({ length: n }, (_, i) => Buffer.alloc(i, i)),
});

async function* rows(blocks: RowBlock[]) {
  yield* blocks;
}

describe("state image", () => {
  it("parses what it encodes, fed in arbitrary pieces", () => {
    const blocks = [block("default", 3), block("meta", 1), block("lease", 0)];
    const bytes = Buffer.concat([encodeImageHeader(), ...blocks.map(encodeRowBlock), encodeImageEnd()]);
    for (const step of [1, 7, bytes.length]) {
      const parser = new StateImageParser();
      const out: RowBlock[] = [];
      for (let i = 0; i < bytes.length; i += step) out.push(...parser.push(bytes.subarray(i, i + step)));
      assert.equal(parser.finished, true);
      assert.deepEqual(out, blocks);
    }
  });

  it("refuses a foreign file and trailing bytes", () => {
    assert.throws(() => new StateImageParser().push(Buffer.from("not an image at all")), /not a state image/);
    const bytes = Buffer.concat([encodeImageHeader(), encodeImageEnd(), Buffer.from([1])]);
    assert.throws(() => new StateImageParser().push(bytes), /after the end/);
  });

  it("rebuilds a RocksDB database with every column from an image file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "state-image-"));
    try {
      const path = join(dir, "x.image");
      const size = await writeStateImage(rows([block("default", 5), block("meta", 2)]), path);
      assert.equal((await readFile(path)).length, size);
      await importStateImage(path, join(dir, "db"), ["meta"]);
      const db = await RocksBackend.open(join(dir, "db"), ["meta"]);
      try {
        assert.deepEqual(db.getManySync([Buffer.from("default-k4")]), [Buffer.alloc(4, 4)]);
        assert.deepEqual(db.getManySync([Buffer.from("meta-k1")], db.columns.meta), [Buffer.alloc(1, 1)]);
      } finally {
        await db.close();
      }
      await rm(path);
      const truncated = join(dir, "t.image");
      await writeStateImage(rows([block("default", 2)]), truncated);
      const whole = await readFile(truncated);
      const { writeFile } = await import("node:fs/promises");
      await writeFile(truncated, whole.subarray(0, whole.length - 2));
      await assert.rejects(importStateImage(truncated, join(dir, "db2"), ["meta"]), /truncated/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
