import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { putRequest, rangeRequest } from "./request-builders.js";
import { MvccStore } from "./store.js";
import { Applier, tempDir } from "./store-fixture.js";
import { AlarmAction, AlarmType } from "./types.js";

const QUOTA = 512 * 1024;
// Incompressible, so RocksDB's compression cannot hide how much is stored.
const value = randomBytes(1024);

describe("quota and NOSPACE alarm", () => {
  it("keeps etcd's file size across a restart, and the defragmented size after a defrag", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location, { quotaBytes: QUOTA });
      const kv = new Applier(store);
      for (let i = 0; i < 200; i++) await kv.put(`k${i % 20}`, randomBytes(value.length));
      await kv.compact(store.revision);
      await store.compactionDone();
      const grown = store.backendSize;
      await store.close();
      store = await MvccStore.open(location, { quotaBytes: QUOTA });
      // Without the saved size, a reopen would lay the live revisions out compactly (the size
      // a defrag gives, asserted below to be under half of this).
      assert.equal(store.backendSize, grown, "a restart keeps the file's size, as etcd's does");
      await store.defragment();
      const compact = store.backendSize;
      assert.ok(compact < grown / 2, `defragment shrank ${grown} to ${compact}`);
      await store.close();
      store = await MvccStore.open(location, { quotaBytes: QUOTA });
      assert.equal(store.backendSize, compact, "and a restart after a defrag keeps the defragmented size");
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("refuses writes past the quota until compaction, defragmentation and disarm", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location, { quotaBytes: QUOTA });
      let kv = new Applier(store);
      // The server's pre-proposal check: write until the quota says no (bounded).
      let written = 0;
      while (store.quotaAvailable({ put: putRequest({ key: "k0", value }) })) {
        assert.ok(written < 2000, "quota never reached");
        await kv.put(`k${written % 50}`, randomBytes(value.length));
        written++;
      }
      assert.ok(store.backendSize + 256 + value.length + 2 >= QUOTA);
      // Deletes and reads cost nothing and stay available.
      assert.equal(
        store.quotaAvailable({
          deleteRange: { key: Buffer.from("k"), rangeEnd: Buffer.alloc(0), prevKv: false },
        }),
        true,
      );

      // The server then proposes the alarm; once applied, every member refuses writes.
      const raised = await kv.alarm(AlarmAction.ACTIVATE, AlarmType.NOSPACE, 7n);
      assert.deepEqual(raised.alarms, [{ memberID: 7n, alarm: AlarmType.NOSPACE }]);
      await assert.rejects(kv.put("x", "y"), (e) => isEtcdError(e, "NoSpace"));
      await assert.rejects(kv.txn({ success: [{ requestPut: putRequest({ key: "x", value: "y" }) }] }), (e) =>
        isEtcdError(e, "NoSpace"),
      );
      // Read-only txns, deletes and compaction still go through.
      await kv.txn({ success: [{ requestRange: rangeRequest({ key: "k1" }) }] });
      const deleted = await kv.del("k1", "k2");
      assert.ok(deleted.deleted > 0);

      // The alarm is replicated state: it survives a restart.
      await store.close();
      store = await MvccStore.open(location, { quotaBytes: QUOTA });
      kv = new Applier(store);
      assert.deepEqual(store.alarms(), [{ memberID: 7n, alarm: AlarmType.NOSPACE }]);
      await assert.rejects(kv.put("x", "y"), (e) => isEtcdError(e, "NoSpace"));

      const before = store.backendSize;
      await kv.compact(store.revision);
      await store.compactionDone();
      await store.defragment();
      assert.ok(store.backendSize < before / 2, `defragment shrank ${before} to ${store.backendSize}`);
      assert.ok(store.quotaAvailable({ put: putRequest({ key: "x", value }) }));
      // Live data survived the copy.
      const live = await store.range(rangeRequest({ key: "k", rangeEnd: "l", countOnly: true }));
      assert.ok(live.count > 0);
      assert.equal((await store.range(rangeRequest({ key: "k3" }))).kvs[0]!.value.length, value.length);

      const disarmed = await kv.alarm(AlarmAction.DEACTIVATE, AlarmType.NOSPACE, 7n);
      assert.equal(disarmed.alarms.length, 1);
      assert.deepEqual(store.alarms(), []);
      await kv.put("x", "y");
      await store.close();
      store = await MvccStore.open(location, { quotaBytes: QUOTA });
      assert.deepEqual(store.alarms(), []);
      assert.equal((await store.range(rangeRequest({ key: "x" }))).kvs[0]!.value.toString(), "y");
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("applies and reads go on while a defragmentation copies; the copy holds them and a compaction", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      let store = await MvccStore.open(location);
      let kv = new Applier(store);
      const keys = 400;
      // Every key twice, then compacted: half the revisions are garbage the copy leaves out.
      for (let round = 0; round < 2; round++) {
        await store.applyBatch(
          Array.from({ length: keys }, (_, i) => ({
            index: store.appliedIndex + 1 + i,
            term: 1,
            request: { put: putRequest({ key: `k${i}`, value: randomBytes(value.length) }) },
          })),
        );
      }
      const compactAt = store.revision;
      const grown = store.backendSize;
      let done = false;
      const defrag = store.defragment().finally(() => {
        done = true;
      });
      // Started after the copy's snapshot: its deletes reach the copy by the replay.
      await kv.compact(compactAt);
      let duringDefrag = 0;
      const written = new Map<string, string>();
      for (let i = 0; i < 5_000 && !done; i++) {
        const v = `v${i}`;
        await kv.put(`k${i % keys}`, v);
        written.set(`k${i % keys}`, v);
        if (!done) duringDefrag++;
        // Reads are served meanwhile too.
        assert.equal((await store.range(rangeRequest({ key: `k${i % keys}` }))).kvs[0]!.value.toString(), v);
      }
      await defrag;
      assert.ok(duringDefrag > 0, "no put completed while the defragmentation ran");
      await store.compactionDone();
      const revision = store.revision;
      const size = store.backendSize;
      assert.ok(size < grown, `defragment shrank ${grown} to ${size}`);
      const check = async (s: MvccStore) => {
        assert.equal(s.revision, revision);
        const all = await s.range(rangeRequest({ key: "k", rangeEnd: "l" }));
        assert.equal(all.count, keys);
        for (const kvp of all.kvs) {
          const want = written.get(kvp.key.toString());
          if (want !== undefined) assert.equal(kvp.value.toString(), want);
          else assert.equal(kvp.value.length, value.length);
        }
        // The compaction reached the copy: nothing below compactAt is readable.
        await assert.rejects(s.range(rangeRequest({ key: "k0", revision: compactAt - 1 })), (e) =>
          isEtcdError(e, "Compacted"),
        );
      };
      await check(store);
      // A second one copies back into `location` (the store lives in the first one's copy).
      await store.defragment();
      await check(store);
      assert.equal(store.backendSize, size, "nothing to shrink the second time");
      await store.defragment();
      await store.close();
      // Closed, the database is at `location` again, alone.
      assert.deepEqual(await readdir(dir.path), ["db"]);
      store = await MvccStore.open(location);
      kv = new Applier(store);
      await check(store);
      assert.equal(store.backendSize, size, "a restart keeps the size the defragmentation left");
      await kv.put("after", "reopen");
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("a physical compaction frees pages as etcd's 1,000-revision commits do: in use drops before any defrag", async () => {
    const dir = await tempDir();
    try {
      const store = await MvccStore.open(join(dir.path, "db"));
      const kv = new Applier(store);
      const keys = 2_500;
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < keys; i += 100) {
          await store.applyBatch(
            Array.from({ length: 100 }, (_, j) => ({
              index: store.appliedIndex + 1 + j,
              term: 1,
              request: { put: putRequest({ key: `k${i + j}`, value }) },
            })),
          );
        }
      }
      const size = store.backendSize;
      assert.ok(store.backendSizeInUse > size * 0.9);
      await kv.compact(store.revision);
      await store.compactionDone();
      // Half the revisions are gone. etcd (measured: 100 MiB of 4 KiB values written twice,
      // compacted) reports half its file in use; one commit for the whole compaction would leave
      // every freed page pending, the whole file "in use" until the next write.
      const after = store.backendSize;
      assert.ok(after >= size, "a compaction's commits never shrink the file");
      assert.ok(
        store.backendSizeInUse < after * 0.65,
        `in use ${store.backendSizeInUse} of ${after} after compacting half the revisions`,
      );
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it("keeps applies in order and reads consistent across a defragmentation", async () => {
    const dir = await tempDir();
    const location = join(dir.path, "db");
    try {
      const store = await MvccStore.open(location);
      const kv = new Applier(store);
      for (let i = 0; i < 200; i++) await kv.put(`k${i}`, value);
      const defrag = store.defragment();
      // Submitted while the store is held: they wait, then apply in order.
      const first = store.apply({
        index: store.appliedIndex + 1,
        term: 1,
        request: { put: putRequest({ key: "k0", value: "a" }) },
      });
      const second = store.apply({
        index: store.appliedIndex + 2,
        term: 1,
        request: { put: putRequest({ key: "k0", value: "b" }) },
      });
      const read = store.range(rangeRequest({ key: "k0" }));
      await defrag;
      assert.equal((await first).status, "applied");
      assert.equal((await second).status, "applied");
      const got = await read;
      assert.ok(
        ["a", "b", value.toString("hex")].includes(
          got.kvs[0]!.value.toString(got.kvs[0]!.value.length > 1 ? "hex" : "utf8"),
        ),
      );
      assert.equal((await store.range(rangeRequest({ key: "k0" }))).kvs[0]!.value.toString(), "b");
      assert.equal(store.revision, 203);
      await store.close();
    } finally {
      await dir.remove();
    }
  });
});

describe("corrupt alarm", () => {
  it("refuses writes while a CORRUPT alarm is active", async () => {
    const dir = await tempDir();
    try {
      const store = await MvccStore.open(join(dir.path, "db"));
      const kv = new Applier(store);
      await kv.alarm(AlarmAction.ACTIVATE, AlarmType.CORRUPT, 1n);
      await assert.rejects(kv.put("a", "b"), (e) => isEtcdError(e, "Corrupt"));
      await assert.rejects(kv.del("a"), (e) => isEtcdError(e, "Corrupt"));
      const listed = await kv.alarm(AlarmAction.GET, AlarmType.NONE);
      assert.deepEqual(listed.alarms, [{ memberID: 1n, alarm: AlarmType.CORRUPT }]);
      await store.close();
    } finally {
      await dir.remove();
    }
  });
});
