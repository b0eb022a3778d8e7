import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { AUTH_COLUMN } from "../auth/mod.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { memberCodec } from "../membership/member-codec.js";
import { MEMBERS_COLUMN, memberRowKey, removedRowKey } from "../membership/members-table.js";
import { AlarmAction, AlarmType } from "../mvcc/mod.js";
import { tempDir, withStore } from "../mvcc/store-fixture.js";
import { AUTH_REVISION_KEY, authBuckets, BUCKETS, memberJson, memberRows } from "./etcd-backend.js";
import {
  formatStatus,
  humanizeBytes,
  openSnapshotFile,
  snapshotStatus,
  writeBackendFile,
} from "./snapshot-file.js";

const context = { memberCodec, clusterVersion: "3.4.0" };

describe("etcd backend mapping", () => {
  it("writes the store as etcd 3.4's buckets: revisions as stored, etcd's meta only, alarms in their bucket", async () => {
    const dir = await tempDir("etcd-backend-");
    try {
      await withStore(
        async (store, kv) => {
          for (let i = 0; i < 3000; i++) await kv.put(`key/${i}`, `value-${i}`.repeat(1 + (i % 5)));
          await kv.request({
            deleteRange: { key: Buffer.from("key/1"), rangeEnd: Buffer.alloc(0), prevKv: false },
          });
          await kv.compact(100);
          await kv.alarm(AlarmAction.ACTIVATE, AlarmType.NOSPACE, 7n);
          const file = join(dir.path, "snap.db");
          const view = await store.openView();
          let size: number;
          try {
            size = await writeBackendFile(view, context, file);
          } finally {
            view.close();
          }
          const snapshot = await openSnapshotFile(file, { skipHashCheck: true });
          try {
            const { reader } = snapshot;
            assert.equal(reader.size, size);
            const names = [...reader.rows(reader.root)].map((r) => r.key.toString());
            assert.deepEqual(names, [
              "alarm",
              "auth",
              "authRoles",
              "authUsers",
              "cluster",
              "key",
              "lease",
              "members",
              "members_removed",
              "meta",
            ]);
            const rows = (name: string) =>
              [...reader.rows(reader.bucket(name)!)].map((r) => [Buffer.from(r.key), Buffer.from(r.value)]);
            // Every revision since the compaction, byte for byte what the store holds.
            const stored: Buffer[][] = [];
            const storeView = await store.openView();
            try {
              for await (const chunk of storeView.rows("default"))
                chunk.keys.forEach((k, i) => {
                  stored.push([k, chunk.values[i]!]);
                });
            } finally {
              storeView.close();
            }
            assert.deepEqual(rows(BUCKETS.key), stored);
            assert.ok(stored.length > 2900);
            const meta = new Map(rows(BUCKETS.meta).map(([k, v]) => [k!.toString(), v!]));
            assert.deepEqual(
              [...meta.keys()],
              ["consistent_index", "finishedCompactRev", "scheduledCompactRev"],
            );
            assert.equal(meta.get("consistent_index")!.readBigUInt64BE(0), BigInt(store.appliedIndex));
            assert.equal(meta.get("finishedCompactRev")!.readBigUInt64BE(0), 100n);
            assert.equal(meta.get("finishedCompactRev")!.length, 17);
            assert.deepEqual(rows(BUCKETS.alarm), [
              [
                Buffer.from(
                  etcdserverpb.AlarmMember.encode({ memberID: 7n, alarm: AlarmType.NOSPACE }).finish(),
                ),
                Buffer.alloc(0),
              ],
            ]);
            assert.deepEqual(rows(BUCKETS.auth), [
              [Buffer.from("authRevision"), Buffer.from([0, 0, 0, 0, 0, 0, 0, 1])],
            ]);
            assert.deepEqual(rows(BUCKETS.cluster), [[Buffer.from("clusterVersion"), Buffer.from("3.4.0")]]);
            const status = snapshotStatus(reader);
            assert.equal(status.revision, store.revision);
            assert.equal(status.totalKey, stored.length + 3 + 1 + 1 + 1);
          } finally {
            await snapshot.close();
          }
        },
        { extraColumns: [LEASE_COLUMN, MEMBERS_COLUMN, AUTH_COLUMN] },
      );
    } finally {
      await dir.remove();
    }
  });

  it('members as etcd\'s JSON, keyed by hex ID in byte order; removed members as "removed"', () => {
    const a = {
      id: 0xabcn,
      name: "n1",
      peerUrls: ["http://a:2380"],
      clientUrls: ["http://a:2379"],
      isLearner: false,
    };
    const b = { id: 0x1fn, name: "", peerUrls: ["http://b:2380"], clientUrls: [], isLearner: true };
    const buckets = memberRows(
      [
        { key: memberRowKey(a.id), value: memberCodec.encode(a) },
        { key: memberRowKey(b.id), value: memberCodec.encode(b) },
        { key: removedRowKey(0x5n), value: Buffer.alloc(0) },
      ],
      memberCodec,
    );
    // "1f" < "abc" bytewise.
    assert.deepEqual(
      buckets[BUCKETS.members]!.map((r) => [r.key.toString(), r.value.toString()]),
      [
        ["1f", '{"id":31,"peerURLs":["http://b:2380"],"isLearner":true}'],
        ["abc", '{"id":2748,"peerURLs":["http://a:2380"],"name":"n1","clientURLs":["http://a:2379"]}'],
      ],
    );
    assert.deepEqual(
      buckets[BUCKETS.membersRemoved]!.map((r) => [r.key.toString(), r.value.toString()]),
      [["5", "removed"]],
    );
    assert.equal(
      memberJson(a),
      '{"id":2748,"peerURLs":["http://a:2380"],"name":"n1","clientURLs":["http://a:2379"]}',
    );
  });

  it("prints status as etcdctl 3.4 does", () => {
    const status = { hash: 0xc918dc93, revision: 6, totalKey: 12, totalSize: 20480 };
    // Captured from `etcdctl snapshot status -w table|simple|json` on a real etcd 3.4.23 snapshot.
    assert.equal(
      formatStatus(status, "table"),
      [
        "+----------+----------+------------+------------+",
        "|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |",
        "+----------+----------+------------+------------+",
        "| c918dc93 |        6 |         12 |      20 kB |",
        "+----------+----------+------------+------------+",
        "",
      ].join("\n"),
    );
    assert.equal(formatStatus(status, "simple"), "c918dc93, 6, 12, 20 kB\n");
    assert.equal(
      formatStatus(status, "json"),
      '{"hash":3373849747,"revision":6,"totalKey":12,"totalSize":20480}\n',
    );
    assert.equal(humanizeBytes(57344), "57 kB");
    assert.equal(humanizeBytes(4096), "4.1 kB");
    assert.equal(humanizeBytes(1_500_000), "1.5 MB");
    assert.equal(humanizeBytes(5), "5 B");
    // Go's %.0f rounds a half to even: 20.5 kB prints as 20 kB, 21.5 kB as 22 kB.
    assert.equal(humanizeBytes(20_500), "20 kB");
    assert.equal(humanizeBytes(21_500), "22 kB");
  });
});

describe("auth buckets", () => {
  it("split the auth column into etcd's auth, authUsers and authRoles buckets, keyed by name", () => {
    const row = (key: string, value: string) => ({ key: Buffer.from(key), value: Buffer.from(value) });
    const buckets = authBuckets([
      row("authEnabled", "\x01"),
      row("authRevision", "\x00\x00\x00\x00\x00\x00\x00\x07"),
      row("r/root", "role-root"),
      row("u/alice", "user-alice"),
      row("u/root", "user-root"),
    ]);
    assert.deepEqual(
      buckets.auth.map((r) => r.key.toString()),
      ["authEnabled", "authRevision"],
    );
    assert.deepEqual(
      buckets.authUsers.map((r) => [r.key.toString(), r.value.toString()]),
      [
        ["alice", "user-alice"],
        ["root", "user-root"],
      ],
    );
    assert.deepEqual(
      buckets.authRoles.map((r) => r.key.toString()),
      ["root"],
    );
    // A store that never touched auth: etcd's initial revision 1, nothing else.
    const fresh = authBuckets([]);
    assert.deepEqual(fresh.auth, [{ key: AUTH_REVISION_KEY, value: Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]) }]);
    assert.deepEqual([fresh.authUsers, fresh.authRoles], [[], []]);
  });
});
