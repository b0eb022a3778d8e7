import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AUTH_COLUMN } from "../auth/mod.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { memberCodec } from "../membership/member-codec.js";
import { MEMBERS_COLUMN } from "../membership/members-table.js";
import { tempDir, withStore } from "../mvcc/store-fixture.js";
import { keySplitAt, writeBackendFileOffThread } from "./backend-file-worker.js";
import type { ThreadStagesMs } from "./backend-thread-protocol.js";
import { keepBusy } from "./busy-loop.fixture.js";
import { BUCKETS } from "./etcd-backend.js";
import { WriteLoad } from "./paced-view.js";
import { openSnapshotFile, snapshotStatus, writeBackendFile } from "./snapshot-file.js";

const extraColumns = [LEASE_COLUMN, MEMBERS_COLUMN, AUTH_COLUMN];
const context = { memberCodec, clusterVersion: "3.4.0" };

describe("backend file written on a worker thread", () => {
  it("is byte for byte the file the member's thread writes for the same state, with its sha256", async () => {
    const dir = await tempDir("backend-worker-");
    try {
      await withStore(
        async (store, kv) => {
          for (let i = 0; i < 2000; i++) await kv.put(`key/${i}`, `value-${i}`.repeat(1 + (i % 7)));
          await kv.del("key/1", "key/2");
          await kv.compact(50);
          const here = join(dir.path, "here.db");
          const view = await store.openView();
          try {
            await writeBackendFile(view, context, here);
          } finally {
            view.close();
          }
          const there = join(dir.path, "there.db");
          const { size, sha256 } = await writeBackendFileOffThread(store, context, there);
          const bytes = await readFile(there);
          assert.equal(bytes.length, size);
          assert.deepEqual(await sha256, createHash("sha256").update(bytes).digest());
          assert.ok(bytes.equals(await readFile(here)), "the two files differ");
        },
        { extraColumns },
      );
    } finally {
      await dir.remove();
    }
  });

  it("with the key bucket split between two threads, holds the same rows, hash and sha256", async () => {
    const dir = await tempDir("backend-worker-");
    try {
      await withStore(
        async (store, kv) => {
          for (let i = 0; i < 3000; i++) await kv.put(`key/${i % 700}`, `value-${i}`.repeat(1 + (i % 9)));
          await kv.del("key/1", "key/2");
          await kv.compact(100);
          const here = join(dir.path, "here.db");
          const view = await store.openView();
          try {
            await writeBackendFile(view, context, here);
          } finally {
            view.close();
          }
          const splitKey = keySplitAt(store.compactRevision, store.revision, 2, 1);
          assert.ok(splitKey !== undefined);
          const there = join(dir.path, "there.db");
          const { size, sha256 } = await writeBackendFileOffThread(store, context, there, splitKey);
          const bytes = await readFile(there);
          assert.equal(bytes.length, size);
          assert.deepEqual(await sha256, createHash("sha256").update(bytes).digest());
          await assert.rejects(readFile(`${there}.run`), /ENOENT/, "the leaf run's file is removed");
          const statusOf = async (path: string) => {
            const snapshot = await openSnapshotFile(path, { skipHashCheck: true });
            try {
              return snapshotStatus(snapshot.reader);
            } finally {
              await snapshot.close();
            }
          };
          const expected = await statusOf(here);
          const actual = await statusOf(there);
          assert.deepEqual({ ...actual, totalSize: 0 }, { ...expected, totalSize: 0 });
          assert.ok(expected.totalKey > 3000);
        },
        { extraColumns },
      );
    } finally {
      await dir.remove();
    }
  });

  it("pauses between pieces by how busy the member's thread is with writes: hardly for a trickle, not for a busy thread with no writes; the same bytes", async () => {
    const dir = await tempDir("backend-worker-");
    try {
      await withStore(
        async (store, kv) => {
          // Several 512-row pieces per thread.
          for (let i = 0; i < 4000; i++) await kv.put(`key/${i % 900}`, `value-${i}`);
          const splitKey = keySplitAt(store.compactRevision, store.revision, 2, 1);
          let applied = 0;
          const write = async (name: string, busyMs: number, writes?: () => number) => {
            // This thread busy `busyMs` of every 10 ms while the file is written.
            const stopBusy = keepBusy(busyMs, 10);
            // A trickle of writes: about 20 a second.
            const trickling = setInterval(() => applied++, 50);
            const load = writes === undefined ? undefined : new WriteLoad(writes);
            try {
              const file = join(dir.path, name);
              const { sha256, stagesMs } = await writeBackendFileOffThread(
                store,
                context,
                file,
                splitKey,
                load === undefined ? undefined : () => load.busy,
              );
              const digest = await sha256;
              const ms = ["backend", "leafRun"].map((t) => stagesMs[t] as ThreadStagesMs);
              return { digest, paused: ms.map((m) => m.paused), all: ms.map((m) => m.all) };
            } finally {
              stopBusy();
              clearInterval(trickling);
            }
          };
          // Writes moving each time the member's thread looks, as under a steady load of writes.
          const busy = await write("busy.db", 8, () => applied++);
          const trickle = await write("trickle.db", 0, () => applied);
          const still = await write("still.db", 8, () => 7);
          const unpaced = await write("unpaced.db", 8);
          // A member thread 80% busy with writes: pauses of about 6 x the work.
          assert.ok(
            busy.paused.every((ms, i) => ms > 0.5 * busy.all[i]!),
            `paused ${busy.paused} ms of ${busy.all} with writes moving on a busy thread`,
          );
          // A trickle of writes on an idle thread: at most a quarter of the time paused, against
          // more than half above (and some ms: the snapshot's own start on this thread counts as
          // its load, and this file is small; on a machine loaded by other work this thread's
          // turns take longer, so it looks busier: a tenth failed once at load ~11).
          assert.ok(
            trickle.paused.every((ms, i) => ms <= 0.25 * trickle.all[i]! + 50),
            `paused ${trickle.paused} ms of ${trickle.all} under a trickle of writes`,
          );
          assert.deepEqual(still.paused, [0, 0]);
          assert.deepEqual(unpaced.paused, [0, 0]);
          assert.deepEqual(busy.digest, unpaced.digest);
          assert.deepEqual(trickle.digest, unpaced.digest);
          assert.deepEqual(still.digest, unpaced.digest);
        },
        { extraColumns },
      );
    } finally {
      await dir.remove();
    }
  });

  it("splits only a large key space, on more than one core, halfway through its revisions", () => {
    assert.equal(keySplitAt(0, 50_000, 2), undefined);
    assert.equal(keySplitAt(0, 1_000_000, 1), undefined);
    assert.equal(keySplitAt(200_000, 1_000_000, 2)!.readBigUInt64BE(0), 600_000n);
  });

  it("holds one state across columns while writes keep being applied", async () => {
    const dir = await tempDir("backend-worker-");
    try {
      await withStore(
        async (store, kv) => {
          for (let i = 0; i < 3000; i++) await kv.put(`key/${i % 500}`, `value-${i}`);
          const file = join(dir.path, "snap.db");
          let writing = true;
          const writes = (async () => {
            // Bounded: stops when the file is done, or after 200,000 puts.
            for (let i = 0; writing && i < 200_000; i++) {
              await kv.put(`more/${i}`, "x".repeat(100));
              // Applies resolve in microtasks: let the worker's messages in.
              if (i % 50 === 0) await new Promise((r) => setImmediate(r));
            }
          })();
          await (await writeBackendFileOffThread(store, context, file)).sha256;
          writing = false;
          await writes;
          const snapshot = await openSnapshotFile(file, { skipHashCheck: true });
          try {
            const { reader } = snapshot;
            const meta = new Map(
              [...reader.rows(reader.bucket(BUCKETS.meta)!)].map((r) => [
                r.key.toString(),
                Buffer.from(r.value),
              ]),
            );
            // One put per entry, each a new revision: the revisions held are those of the
            // applied index recorded in the same file (entry i made revision i + 1).
            const index = Number(meta.get("consistent_index")!.readBigUInt64BE(0));
            const status = snapshotStatus(reader);
            assert.ok(index >= 3000, `consistent_index ${index}`);
            assert.equal(status.revision, index + 1);
            const revisions = [...reader.rows(reader.bucket(BUCKETS.key)!)].length;
            assert.equal(revisions, index);
            assert.ok(
              store.appliedIndex > index,
              `writes went on while the worker wrote the file: ${store.appliedIndex} ${index}`,
            );
          } finally {
            await snapshot.close();
          }
        },
        { extraColumns },
      );
    } finally {
      await dir.remove();
    }
  });

  it("is stopped by the store's close, which waits for it (no read of a closed database)", async () => {
    const dir = await tempDir("backend-worker-");
    try {
      await withStore(
        async (store, kv) => {
          for (let i = 0; i < 20_000; i++) await kv.put(`key/${i}`, "v".repeat(200));
          const writing = writeBackendFileOffThread(store, context, join(dir.path, "snap.db"));
          const outcome = writing.then(
            async (w) => {
              await w.sha256;
              return "done";
            },
            (err: Error) => err.message,
          );
          // Once the worker has its view (the store counts it), close the store under it.
          for (let i = 0; i < 500 && (store as unknown as { readers: number }).readers === 0; i++)
            await new Promise((r) => setTimeout(r, 10));
          await store.close();
          const result = await outcome;
          assert.ok(
            result === "done" || /snapshot worker exited/.test(result),
            `the write ended with: ${result}`,
          );
          await assert.rejects(writeBackendFileOffThread(store, context, join(dir.path, "after.db")));
        },
        { extraColumns },
      );
    } finally {
      await dir.remove();
    }
  });
});
