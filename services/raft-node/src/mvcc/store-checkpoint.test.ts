import assert from "node:assert/strict";
import { readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { INDEX_CHECKPOINT_FILE } from "./database-files.js";
import { rangeRequest } from "./request-builders.js";
import { MvccStore } from "./store.js";
import { Applier, tempDir } from "./store-fixture.js";

/** What a reopened store serves and reports, for comparing a checkpoint's open with a scan's. */
async function observed(store: MvccStore): Promise<unknown> {
  const all = await store.range(rangeRequest({ key: "\0", rangeEnd: "\0" }));
  const atOld = await store.range(
    rangeRequest({ key: "\0", rangeEnd: "\0", revision: store.compactRevision + 1 }),
  );
  const histories = [...store.index.values()].map((ki) => [ki.key, ki.lease, ki.generations()]);
  return {
    revision: store.revision,
    compactRevision: store.compactRevision,
    appliedIndex: store.appliedIndex,
    size: store.backendSize,
    sizeInUse: store.backendSizeInUse,
    hash: (await store.hashKV(0)).hash,
    kvs: all.kvs,
    atOld: atOld.kvs,
    histories,
    leased: [...store.leasedKeys()],
  };
}

/** A history with rewrites, deletes, leases and a compaction. */
async function fill(kv: Applier, store: MvccStore): Promise<void> {
  for (let i = 0; i < 300; i++)
    await kv.put(`key-${i % 120}`, `value-${i}`, i % 5 === 0 ? { lease: BigInt(i + 1) } : {});
  await kv.del("key-1", "key-19");
  await kv.compact(store.revision - 50);
  await store.compactionDone();
  for (let i = 0; i < 40; i++) await kv.put(`key-${i * 3}`, `again-${i}`);
  await kv.del("key-30");
}

describe("index checkpoint", () => {
  it("of a store closed before its first write reopens at revision 1, as a scan does", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location);
      await store.close();
      store = await MvccStore.open(location);
      try {
        assert.equal(store.indexSource.from, "checkpoint");
        assert.equal(store.revision, 1);
        const kv = new Applier(store);
        await kv.compact(1);
        await kv.put("a", "1");
        assert.equal(store.revision, 2, "the first write is revision 2, as on etcd");
        assert.equal(store.compactRevision, 1);
      } finally {
        await store.close();
      }
    } finally {
      await dir.remove();
    }
  });

  it("a reopen loads the checkpoint the close wrote, and serves what a scan rebuilds", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location);
      assert.deepEqual(store.indexSource, { from: "scan", note: "no checkpoint" });
      await fill(new Applier(store), store);
      await store.defragment();
      await store.close();
      store = await MvccStore.open(location);
      assert.equal(store.indexSource.from, "checkpoint");
      await assert.rejects(readFile(join(location, INDEX_CHECKPOINT_FILE)), /ENOENT/, "taken while open");
      const fromCheckpoint = await observed(store);
      await store.close();
      await rm(join(location, INDEX_CHECKPOINT_FILE));
      store = await MvccStore.open(location);
      assert.equal(store.indexSource.from, "scan");
      assert.deepEqual(await observed(store), fromCheckpoint);
      // Both reopens' models go on alike: writes after them grow the same file.
      await new Applier(store).put("key-new", "v");
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("is not trusted when the database moved on after it was written, or when it is damaged", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    const file = join(location, INDEX_CHECKPOINT_FILE);
    try {
      let store = await MvccStore.open(location);
      await fill(new Applier(store), store);
      await store.close();
      const older = await readFile(file);
      store = await MvccStore.open(location);
      await new Applier(store).put("key-later", "v");
      await store.close();
      const expected = await (async () => {
        const s = await MvccStore.open(location);
        assert.equal(s.indexSource.from, "checkpoint");
        const o = await observed(s);
        await s.close();
        return o;
      })();

      // An older checkpoint put back: the database has writes it does not describe.
      await writeFile(file, older);
      store = await MvccStore.open(location);
      assert.equal(store.indexSource.from, "scan");
      assert.match(store.indexSource.note ?? "", /^stale/);
      assert.deepEqual(await observed(store), expected);
      await store.close();

      // Torn (a power cut while it was written) and damaged.
      await truncate(file, (await readFile(file)).length >> 1);
      store = await MvccStore.open(location);
      assert.equal(store.indexSource.from, "scan");
      assert.match(store.indexSource.note ?? "", /checksum/);
      assert.deepEqual(await observed(store), expected);
      await store.close();
      const damaged = await readFile(file);
      damaged[damaged.length - 3]! ^= 1;
      await writeFile(file, damaged);
      store = await MvccStore.open(location);
      assert.match(store.indexSource.note ?? "", /checksum/);
      assert.deepEqual(await observed(store), expected);
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("is written by the close only: a closed (failed) store's second close writes none", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      const store = await MvccStore.open(location);
      await new Applier(store).put("a", "1");
      await store.close();
      // A closed store counts as failed (its index is no longer followed by the disk): a second
      // close writes no checkpoint.
      await rm(join(location, INDEX_CHECKPOINT_FILE));
      await store.close().catch(() => undefined);
      await assert.rejects(readFile(join(location, INDEX_CHECKPOINT_FILE)), /ENOENT/);
    } finally {
      await dir.remove();
    }
  });
});
