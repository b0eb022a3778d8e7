// rocks-backend.ts calls @nxtedition/rocksdb's private batch, iterator and getMany primitives
// (a measured saving on every apply, see its header). They are not API: the version is pinned
// exactly in package.json, and this test names the primitive that moved when an upgrade breaks it.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { replayWrites } from "./database-files.js";
import { copyOffThread } from "./defrag-copy.js";
import { RocksBackend } from "./rocks-backend.js";

const require = createRequire(import.meta.url);

describe("the @nxtedition/rocksdb binding rocks-backend.ts relies on", () => {
  it("is the exact version package.json pins", async () => {
    const ours = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const pinned = ours.dependencies["@nxtedition/rocksdb"];
    assert.match(pinned ?? "", /^\d+\.\d+\.\d+$/, "pin @nxtedition/rocksdb to an exact version");
    const main = require.resolve("@nxtedition/rocksdb");
    let dir = dirname(main);
    let installed: string | undefined;
    for (let i = 0; i < 4 && installed === undefined; i++, dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as {
          name?: string;
          version: string;
        };
        if (pkg.name === "@nxtedition/rocksdb") installed = pkg.version;
      } catch {}
    }
    assert.equal(installed, pinned);
  });

  it("writes a batch, reads it back by key and by iterator, through the private primitives", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rocks-binding-"));
    const db = await RocksBackend.open(join(dir, "db"), ["side"]);
    try {
      const batch = db.batch();
      batch.put(Buffer.from("a"), Buffer.from("1"));
      batch.put(Buffer.from("b"), Buffer.from("2"));
      batch.put(Buffer.from("s"), Buffer.from("3"), db.columns.side);
      batch.del(Buffer.from("b"));
      batch.write(true);
      assert.deepEqual(
        db.getManySync([Buffer.from("a"), Buffer.from("b")]).map((v) => v?.toString()),
        ["1", undefined],
      );
      assert.deepEqual(
        (await db.getMany([Buffer.from("s")], db.columns.side)).map((v) => v?.toString()),
        ["3"],
      );
      const it = db.iterator({});
      try {
        const chunk = it.nextSync(10);
        assert.deepEqual(
          chunk.keys.map((k) => k.toString()),
          ["a"],
        );
        assert.deepEqual(
          chunk.values.map((v) => v.toString()),
          ["1"],
        );
        assert.equal(chunk.finished, true);
      } finally {
        it.close();
      }
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reuses batches cleared: a written or discarded batch leaves nothing in the next one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rocks-binding-"));
    const db = await RocksBackend.open(join(dir, "db"), []);
    try {
      const discarded = db.batch();
      discarded.put(Buffer.from("d"), Buffer.from("never"));
      discarded.discard();
      assert.throws(() => discarded.put(Buffer.from("e"), Buffer.from("x")), /used after write or discard/);
      const first = db.batch();
      assert.equal(first.length, 0);
      first.put(Buffer.from("a"), Buffer.from("1"));
      first.write(false);
      assert.throws(() => first.write(false), /used after write or discard/);
      const second = db.batch();
      assert.equal(second.length, 0);
      second.put(Buffer.from("b"), Buffer.from("2"));
      second.write(false);
      assert.deepEqual(
        db.getManySync(["a", "b", "d"].map((k) => Buffer.from(k))).map((v) => v?.toString()),
        ["1", "2", undefined],
      );
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("leaves no finished batch or iterator in abstract-level's resource set (each held ~30 KiB until close)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rocks-binding-"));
    const db = await RocksBackend.open(join(dir, "db"), []);
    try {
      const native = (db as unknown as { db: object }).db;
      const symbol = Object.getOwnPropertySymbols(native).find((s) => s.description === "resources");
      assert.ok(symbol, "abstract-level keeps its open resources under Symbol(resources)");
      const resources = (native as Record<symbol, Set<object>>)[symbol];
      const before = resources.size;
      for (let i = 0; i < 20; i++) {
        const batch = db.batch();
        // Big enough not to be kept for reuse: such batches must be left to the collector.
        batch.put(Buffer.from(`k${i}`), Buffer.alloc(2 * 1024 * 1024));
        batch.write(false);
        const it = db.iterator({ keysOnly: true });
        it.nextSync(1);
        it.close();
      }
      assert.equal(resources.size, before);
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("recording writes for an online copy", () => {
  it("a snapshot copied (on a worker) and the batches recorded since, replayed, equal the database", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rocks-record-"));
    const db = await RocksBackend.open(join(dir, "db"), ["side"]);
    const copy = await RocksBackend.open(join(dir, "copy"), ["side"]);
    const rows = async (from: RocksBackend, column?: "side") => {
      const it = from.iterator(column === undefined ? {} : { column: from.columns[column] });
      try {
        const out: string[] = [];
        for (;;) {
          const chunk = await it.next(100);
          for (let i = 0; i < chunk.keys.length; i++) out.push(`${chunk.keys[i]}=${chunk.values[i]}`);
          if (chunk.finished) return out;
        }
      } finally {
        it.close();
      }
    };
    try {
      const write = (ops: [string, string | undefined, "side"?][]) => {
        const b = db.batch();
        for (const [k, v, c] of ops) {
          const column = c === undefined ? undefined : db.columns[c];
          if (v === undefined) b.del(Buffer.from(k), column);
          else b.put(Buffer.from(k), Buffer.from(v), column);
        }
        b.write(false);
      };
      for (let i = 0; i < 50; i++) write([[`k${i}`, "old"]]);
      write([["s", "old", "side"]]);
      // Written while the worker copies (the first revision it reports comes after its
      // snapshot): an overwrite, a delete, a new key, a side column write.
      let written = false;
      const copied: string[] = [];
      const recorder = await copyOffThread(db, copy, ["side"], {
        atSnapshot: () => db.recordWrites(),
        onRevision: (key, valueLength) => {
          copied.push(`${key}:${valueLength}`);
          if (written) return;
          written = true;
          write([
            ["k1", "new"],
            ["k2", undefined],
          ]);
          write([
            ["k99", "new"],
            ["s", "new", "side"],
          ]);
        },
        stopIf: () => {},
      });
      assert.equal(recorder.pending, 4);
      assert.equal(copied.length, 50, "every revision of the snapshot is reported");
      assert.ok(copied.includes("k1:3"));
      // The copy holds the snapshot: the old values, k2, no k99.
      assert.ok((await rows(copy)).includes("k1=old"));
      assert.ok((await rows(copy)).includes("k2=old"));
      // The side column, read after those writes, as of the snapshot too.
      assert.deepEqual(await rows(copy, "side"), ["s=old"]);
      replayWrites(recorder.take(), copy);
      assert.equal(recorder.pending, 0);
      db.stopRecording();
      write([["k3", "unrecorded"]]);
      assert.equal(recorder.pending, 0, "nothing is recorded once stopped");
      const expected = (await rows(db)).map((r) => (r === "k3=unrecorded" ? "k3=old" : r));
      assert.deepEqual(await rows(copy), expected);
      assert.deepEqual(await rows(copy, "side"), ["s=new"]);
    } finally {
      await db.close();
      await copy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a copy stopped part-way fails with the reason, its worker's iterators closed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rocks-record-"));
    const db = await RocksBackend.open(join(dir, "db"), []);
    const copy = await RocksBackend.open(join(dir, "copy"), []);
    try {
      // Several chunks (1,000 rows each), so the stop comes before the end.
      for (let i = 0; i < 5; i++) {
        const b = db.batch();
        for (let j = 0; j < 1000; j++)
          b.put(Buffer.from(`k${i}-${String(j).padStart(4, "0")}`), Buffer.from("v"));
        b.write(false);
      }
      let seen = 0;
      await assert.rejects(
        copyOffThread(db, copy, [], {
          atSnapshot: () => undefined,
          onRevision: () => {
            seen++;
          },
          stopIf: () => {
            throw new Error("closing");
          },
        }),
        /closing/,
      );
      assert.equal(seen, 1000, "nothing is reported after the stop");
      let copied = 0;
      const it = copy.iterator({});
      for (let chunk = it.nextSync(10_000); ; chunk = it.nextSync(10_000)) {
        copied += chunk.keys.length;
        if (chunk.finished) break;
      }
      it.close();
      assert.ok(copied < 5000, `the worker stopped before the end (${copied} rows copied)`);
    } finally {
      await db.close();
      await copy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
