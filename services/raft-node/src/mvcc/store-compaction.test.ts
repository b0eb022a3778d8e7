import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { crc32c } from "@node-rs/crc32";
import { encodeKeyValue } from "./kv-codec.js";
import { putRequest } from "./request-builders.js";
import { isTombstoneKey, mainOfKey, revisionKey, subOfKey } from "./revision.js";
import { RocksBackend } from "./rocks-backend.js";
import { MvccStore } from "./store.js";
import { Applier, keys, pairs, tempDir, withStore } from "./store-fixture.js";

/** Every revision physically stored, as "main.sub" (+"t" for tombstones), read after close. */
async function storedRevisions(location: string): Promise<string[]> {
  const db = await RocksBackend.open(location, ["meta"]);
  const it = db.iterator({ keysOnly: true });
  const out: string[] = [];
  for (;;) {
    const chunk = it.nextSync(1000);
    for (const k of chunk.keys) out.push(`${mainOfKey(k)}.${subOfKey(k)}${isTombstoneKey(k) ? "t" : ""}`);
    if (chunk.finished) break;
  }
  it.close();
  await db.close();
  return out;
}

async function reopen(store: MvccStore, location: string): Promise<MvccStore> {
  await store.close();
  return MvccStore.open(location);
}

describe("compaction", () => {
  it("removes superseded revisions physically, keeps what is visible at the compacted revision", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location);
      const kv = new Applier(store);
      await kv.put("a", "1"); // 2
      await kv.put("a", "2"); // 3
      await kv.put("b", "1"); // 4
      await kv.del("b"); // 5 (tombstone)
      await kv.put("c", "1"); // 6
      await kv.del("c"); // 7 (tombstone)
      await kv.put("a", "3"); // 8
      await kv.compact(7);
      await store.compactionDone();
      // a@3 is what a was at 7; b's whole generation ended before 7; c's tombstone is exactly 7.
      await store.close();
      assert.deepEqual(await storedRevisions(location), ["3.0", "7.0t", "8.0"]);
      store = await MvccStore.open(location);
      assert.equal(store.compactRevision, 7);
      await assert.rejects(new Applier(store).get("a", { revision: 6 }), (e) => isEtcdError(e, "Compacted"));
      assert.deepEqual(pairs(await new Applier(store).get("a", { revision: 7 })), ["a=2"]);
      assert.deepEqual(keys(await new Applier(store).get("\0", { rangeEnd: "\0", revision: 7 })), ["a"]);
      const again = new Applier(store);
      await assert.rejects(again.compact(7), (e) => isEtcdError(e, "Compacted"));
      await assert.rejects(again.compact(5), (e) => isEtcdError(e, "Compacted"));
      await assert.rejects(again.compact(9), (e) => isEtcdError(e, "FutureRev"));
      // c's tombstone goes once a later compaction passes it; the key leaves the index.
      await again.put("d", "1"); // 9
      await again.compact(9);
      await store.compactionDone();
      store = await reopen(store, location);
      assert.equal(store.compactRevision, 9);
      await store.close();
      assert.deepEqual(await storedRevisions(location), ["8.0", "9.0"]);
    } finally {
      await dir.remove();
    }
  });

  it("finishes a compaction cut short by close at the next open", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location, { compactionSliceKeys: 1 });
      const kv = new Applier(store);
      for (let i = 0; i < 20; i++) await kv.put(`k${i}`, "old");
      for (let i = 0; i < 20; i++) await kv.put(`k${i}`, "new");
      await kv.compact(store.revision);
      // close() stops compaction between slices: most superseded revisions are still stored.
      await store.close();
      assert.ok((await storedRevisions(location)).length > 20);
      store = await MvccStore.open(location);
      assert.equal(store.compactRevision, 41);
      await store.compactionDone();
      await store.close();
      assert.equal((await storedRevisions(location)).length, 20);
    } finally {
      await dir.remove();
    }
  });

  it("serves reads at and above the compacted revision while compaction runs in slices", () =>
    withStore(
      async (store, kv) => {
        for (let i = 0; i < 50; i++) await kv.put(`k${String(i).padStart(2, "0")}`, "1");
        for (let i = 0; i < 50; i++) await kv.put(`k${String(i).padStart(2, "0")}`, "2");
        const compactAt = store.revision - 10;
        await kv.compact(compactAt);
        const during = await kv.get("k", { rangeEnd: "l", revision: compactAt });
        await kv.put("k00", "3");
        await store.compactionDone();
        const after = await kv.get("k", { rangeEnd: "l", revision: compactAt });
        assert.deepEqual(pairs(during), pairs(after));
        assert.equal(after.kvs.filter((x) => x.value.toString() === "2").length, 40);
      },
      { compactionSliceKeys: 3 },
    ));
});

/** The same deterministic history applied to a store (optionally diverging at the end). */
async function applyScript(store: MvccStore, diverge = false): Promise<void> {
  const kv = new Applier(store);
  for (let i = 0; i < 30; i++) await kv.put(`key/${i % 7}`, `value-${i}`, { lease: BigInt(i % 3) });
  await kv.del("key/3");
  await kv.txn({
    success: [
      { requestPut: putRequest({ key: "t/1", value: "x" }) },
      { requestPut: putRequest({ key: "t/2", value: "y" }) },
    ],
  });
  await kv.compact(20);
  for (let i = 0; i < 5; i++) await kv.put(`late/${i}`, "z");
  if (diverge) await kv.put("late/0", "different");
  else await kv.put("late/0", "z2");
}

describe("hash", () => {
  it("agrees across stores applying the same log, whatever their compaction progress", async () => {
    const dirA = await tempDir();
    const dirB = await tempDir();
    try {
      const a = await MvccStore.open(join(dirA.path, "db"));
      const b = await MvccStore.open(join(dirB.path, "db"), { compactionSliceKeys: 1 });
      await applyScript(a);
      await a.compactionDone();
      await applyScript(b);
      // b's compaction is still running (one key per slice); hashKV skips what it will drop.
      const rev = a.revision;
      assert.equal(b.revision, rev);
      const hashA = await a.hashKV(rev);
      const hashB = await b.hashKV(rev);
      assert.equal(hashA.hash, hashB.hash);
      assert.equal(hashA.compactRevision, 20);
      assert.equal(hashA.hashRevision, rev);
      assert.equal((await a.hashKV(25)).hash, (await b.hashKV(25)).hash);
      await b.compactionDone();
      assert.equal((await b.hashKV(rev)).hash, hashA.hash);
      assert.equal((await a.hash()).hash, (await b.hash()).hash);
      await assert.rejects(a.hashKV(19), (e) => isEtcdError(e, "Compacted"));
      await assert.rejects(a.hashKV(rev + 1), (e) => isEtcdError(e, "FutureRev"));
      await a.close();
      await b.close();
    } finally {
      await dirA.remove();
      await dirB.remove();
    }
  });

  it("differs after a divergent write", async () => {
    const dirA = await tempDir();
    const dirB = await tempDir();
    try {
      const a = await MvccStore.open(join(dirA.path, "db"));
      const b = await MvccStore.open(join(dirB.path, "db"));
      await applyScript(a, false);
      await applyScript(b, true);
      await a.compactionDone();
      await b.compactionDone();
      assert.equal(a.revision, b.revision);
      assert.notEqual((await a.hashKV(0)).hash, (await b.hashKV(0)).hash);
      // Before the divergent revision they still agree.
      assert.equal((await a.hashKV(a.revision - 1)).hash, (await b.hashKV(b.revision - 1)).hash);
      assert.notEqual((await a.hash()).hash, (await b.hash()).hash);
      await a.close();
      await b.close();
    } finally {
      await dirA.remove();
      await dirB.remove();
    }
  });

  it('hashes etcd\'s bytes: crc32c of "key", the revision key and the protobuf KeyValue', () =>
    withStore(async (store, kv) => {
      await kv.put("foo", "bar", { lease: 5n });
      const stored = encodeKeyValue({
        key: Buffer.from("foo"),
        createRevision: 2,
        modRevision: 2,
        version: 1,
        value: Buffer.from("bar"),
        lease: 5n,
      });
      // The protobuf bytes etcd's gogoproto Marshal produces for this KeyValue.
      assert.equal(stored.toString("hex"), "0a03666f6f1002180220012a036261723005");
      const expected = crc32c(stored, crc32c(revisionKey(2, 0), crc32c(Buffer.from("key"))));
      assert.equal((await store.hashKV(0)).hash, expected);
    }));
});
