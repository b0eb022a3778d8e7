import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AUTH_COLUMN } from "../auth/mod.js";
import { memberConfig, parseFlags } from "../config/flags.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { memberCodec } from "../membership/member-codec.js";
import { MEMBERS_COLUMN, MembersTable } from "../membership/members-table.js";
import { MvccStore } from "../mvcc/mod.js";
import { RocksBackend } from "../mvcc/rocks-backend.js";
import { tempDir, withStore } from "../mvcc/store-fixture.js";
import { Wal } from "../wal/mod.js";
import { BUCKETS } from "./etcd-backend.js";
import { restoreSnapshot } from "./restore.js";
import {
  openSnapshotFile,
  replaceSnapshotBuckets,
  SnapshotFileError,
  snapshotStatus,
  writeBackendFile,
} from "./snapshot-file.js";

const COLUMNS = [LEASE_COLUMN, MEMBERS_COLUMN, AUTH_COLUMN];

/** A snapshot file as Maintenance.Snapshot sends it: our backend file + sha256 trailer. */
async function snapshotOf(
  dir: string,
  fill: (put: (k: string, v: string) => Promise<unknown>) => Promise<void>,
) {
  const file = join(dir, "snap.db");
  let revision = 0;
  await withStore(
    async (store, kv) => {
      await fill((k, v) => kv.put(k, v));
      revision = store.revision;
      const view = await store.openView();
      try {
        await writeBackendFile(view, { memberCodec, clusterVersion: "3.4.0" }, file);
      } finally {
        view.close();
      }
    },
    { extraColumns: COLUMNS },
  );
  await appendFile(
    file,
    createHash("sha256")
      .update(await readFile(file))
      .digest(),
  );
  return { file, revision };
}

function configFor(dataDir: string, name: string) {
  const cluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,c=http://127.0.0.1:2382";
  const port = { a: 2380, b: 2381, c: 2382 }[name];
  return memberConfig(
    parseFlags(
      [
        `--name=${name}`,
        `--data-dir=${dataDir}`,
        `--initial-cluster=${cluster}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${port}`,
        "--initial-cluster-token=t",
      ],
      {},
    ),
  );
}

describe("snapshot restore", () => {
  it("makes a member data dir: the snapshot's revisions, --initial-cluster's members, bootstrap already applied", async () => {
    const dir = await tempDir("restore-");
    try {
      const { file, revision } = await snapshotOf(dir.path, async (put) => {
        for (let i = 0; i < 500; i++) await put(`k${i % 50}`, `v${i}`);
      });
      const dataDir = join(dir.path, "b.etcd");
      const result = await restoreSnapshot(file, configFor(dataDir, "b"));
      assert.equal(result.revision, revision);
      assert.equal(result.keys, 500);
      assert.equal(result.hashChecked, true);
      assert.equal(result.members.length, 3);
      assert.ok(await Wal.exists(join(dataDir, "member", "wal")));
      // The Raft log starts after a snapshot at the bootstrap's index: a member added later is
      // sent the store, not a log from index 1 that holds none of the restored keys.
      const { wal, recovered } = await Wal.open(join(dataDir, "member", "wal"));
      await wal.close();
      assert.equal(recovered.snapshot?.index, 3);
      assert.deepEqual(recovered.entries, []);
      assert.ok(existsSync(join(dataDir, "member", "identity")));
      assert.ok(!existsSync(`${dataDir}.restoring`));

      const store = await MvccStore.open(join(dataDir, "member", "snap", "db"), { extraColumns: COLUMNS });
      try {
        assert.equal(store.revision, revision);
        // The three bootstrap ConfChanges count as applied: replaying them changes nothing.
        assert.equal(store.appliedIndex, 3);
      } finally {
        await store.close();
      }
      const db = await RocksBackend.open(join(dataDir, "member", "snap", "db"), ["meta", ...COLUMNS]);
      try {
        const rows = db.iterator({ column: db.columns[MEMBERS_COLUMN]! }).nextSync(100);
        const table = new MembersTable(memberCodec);
        table.restore(rows.keys.map((key, i) => ({ key, value: rows.values[i]! })));
        assert.deepEqual(
          table
            .list()
            .map((m) => m.peerUrls[0])
            .sort(),
          ["http://127.0.0.1:2380", "http://127.0.0.1:2381", "http://127.0.0.1:2382"],
        );
      } finally {
        await db.close();
      }
    } finally {
      await dir.remove();
    }
  });

  it("refuses a flipped byte, a name missing from --initial-cluster, an existing data dir: nothing written", async () => {
    const dir = await tempDir("restore-bad-");
    try {
      const { file } = await snapshotOf(dir.path, async (put) => {
        await put("a", "1");
      });
      const bytes = await readFile(file);
      bytes[5000]! ^= 1;
      const flipped = join(dir.path, "flipped.db");
      await writeFile(flipped, bytes);
      await assert.rejects(restoreSnapshot(flipped, configFor(join(dir.path, "x"), "a")), (err: Error) => {
        assert.ok(err instanceof SnapshotFileError);
        assert.match(err.message, /is corrupt: sha256 trailer/);
        return true;
      });
      const missing = { ...configFor(join(dir.path, "y"), "a"), name: "zz" };
      await assert.rejects(restoreSnapshot(file, missing), /couldn't find local name "zz"/);
      await writeFile(join(dir.path, "existing"), "");
      await assert.rejects(
        restoreSnapshot(file, configFor(join(dir.path, "existing"), "a")),
        /data-dir ".*" exists/,
      );
      assert.deepEqual((await readdir(dir.path)).sort(), ["existing", "flipped.db", "snap.db"]);
    } finally {
      await dir.remove();
    }
  });

  it("replaceSnapshotBuckets: the named buckets' rows swapped (sorted), every other row as it was, a new trailer", async () => {
    const dir = await tempDir("restore-replace-");
    try {
      const { file, revision } = await snapshotOf(dir.path, async (put) => {
        for (let i = 0; i < 300; i++) await put(`k${i}`, "x".repeat(200));
      });
      const rowsOf = async (path: string, name: string) => {
        const s = await openSnapshotFile(path);
        try {
          const root = s.reader.bucket(name);
          return root === undefined ? [] : [...s.reader.rows(root)].map((r) => `${r.key}=${r.value}`);
        } finally {
          await s.close();
        }
      };
      const out = join(dir.path, "replaced.db");
      const users = [
        { key: Buffer.from("zed"), value: Buffer.from("z") },
        { key: Buffer.from("bob"), value: Buffer.from("b") },
      ];
      await replaceSnapshotBuckets(file, out, { [BUCKETS.authUsers]: users });
      // openSnapshotFile checks the new trailer and the bbolt structure.
      assert.deepEqual(await rowsOf(out, BUCKETS.authUsers), ["bob=b", "zed=z"]);
      for (const name of [BUCKETS.key, BUCKETS.meta, BUCKETS.auth, BUCKETS.members])
        assert.deepEqual(await rowsOf(out, name), await rowsOf(file, name), name);
      const opened = await openSnapshotFile(out);
      try {
        assert.equal(opened.hashChecked, true);
        assert.equal(snapshotStatus(opened.reader).revision, revision);
      } finally {
        await opened.close();
      }
      const restored = await restoreSnapshot(out, configFor(join(dir.path, "a.etcd"), "a"));
      assert.equal(restored.keys, 300);
    } finally {
      await dir.remove();
    }
  });
});
