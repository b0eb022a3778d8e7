import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { mvccpb } from "@etcd-ts/api";
import { BackupCatalog } from "./backup-catalog.js";
import { progressLine, runBackupCommand } from "./backup-command.js";
import { decodeEvent, encodeEvent, replayTxn, revisionsBetween } from "./delta-events.js";
import { DirectoryStore } from "./directory-store.js";
import { BackupError } from "./object-store.js";
import { snapshotLike } from "./snapshot-like.testing.js";
import { pickSource } from "./snapshot-source.js";

async function* lines(...text: string[]) {
  for (const t of text) yield Buffer.from(t);
}

describe("backup catalog on a directory store", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "backup-store-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores a stream whose trailer matches, with its sha256 beside it, and lists it", async () => {
    const catalog = new BackupCatalog(new DirectoryStore(join(dir, "ok")));
    const body = Buffer.alloc(10_000, 3);
    const seen: number[] = [];
    const entry = await catalog.writeFull("b1", snapshotLike(body), (p) => seen.push(p.bytes));
    assert.equal(entry.size, 10_032);
    assert.equal(seen.at(-1), 10_032);
    const whole = createHash("sha256")
      .update(Buffer.concat([body, createHash("sha256").update(body).digest()]))
      .digest("hex");
    assert.equal(entry.sha256, whole);
    assert.equal(await readFile(join(dir, "ok", "b1.db.sha256"), "utf8"), `${whole}  b1.db\n`);
    assert.deepEqual(await catalog.list(), [entry]);
    assert.deepEqual(await catalog.checkHash("b1"), entry);
    await assert.rejects(catalog.writeFull("b1", snapshotLike(body)), /already exists/);
  });

  it("takes the store from ETCD_BACKUP_* when no flag names one, and a flag's store over them", async () => {
    await new BackupCatalog(new DirectoryStore(join(dir, "env"))).writeFull(
      "e1",
      snapshotLike(Buffer.alloc(10)),
    );
    const listed = async (argv: string[], env: NodeJS.ProcessEnv) => {
      let out = "";
      let err = "";
      const code = await runBackupCommand(argv, { out: (t) => (out += t), err: (t) => (err += t) }, env);
      return { code, out, err };
    };
    const fromEnv = await listed(["list"], { ETCD_BACKUP_DIR: join(dir, "env") });
    assert.equal(fromEnv.code, 0, fromEnv.err);
    assert.match(fromEnv.out, /^e1\t42\t[0-9a-f]{64}\n$/);
    // A --dir given on the command line is not mixed with the environment's S3 bucket.
    const flagWins = await listed(["list", "--dir", join(dir, "env")], {
      ETCD_BACKUP_S3_BUCKET: "elsewhere",
    });
    assert.equal(flagWins.code, 0, flagWins.err);
    assert.equal(flagWins.out, fromEnv.out);
    const none = await listed(["list"], {});
    assert.equal(none.code, 1);
    assert.match(none.err, /--dir is required/);
  });

  it("refuses a stream with a wrong trailer, cut short or failing, leaving nothing behind", async () => {
    const catalog = new BackupCatalog(new DirectoryStore(join(dir, "bad")));
    const body = Buffer.alloc(5000, 9);
    await assert.rejects(
      catalog.writeFull("wrong", snapshotLike(body, Buffer.alloc(32))),
      /snapshot stream is corrupt: trailer 0{64}/,
    );
    await assert.rejects(
      catalog.writeFull("short", snapshotLike(Buffer.alloc(0), Buffer.alloc(10))),
      /too short/,
    );
    const failing = async function* () {
      yield { blob: Buffer.alloc(100) };
      throw new Error("member went away");
    };
    await assert.rejects(catalog.writeFull("gone", failing()), /failed after 100 bytes: member went away/);
    assert.deepEqual(await readdir(join(dir, "bad")), []);
    assert.deepEqual(await catalog.list(), []);
  });

  it("finds a backup that changed on disk; one without its .sha256 is not listed", async () => {
    const store = new DirectoryStore(join(dir, "rot"));
    const catalog = new BackupCatalog(store);
    await catalog.writeFull("b1", snapshotLike(Buffer.alloc(3000, 1)));
    await writeFile(store.localPath("b1.db"), Buffer.alloc(3032, 2));
    await assert.rejects(
      catalog.checkHash("b1"),
      (err: Error) => err instanceof BackupError && /backup b1 is corrupt: sha256/.test(err.message),
    );
    await rm(store.localPath("b1.db.sha256"));
    assert.deepEqual(await catalog.list(), []);
    await assert.rejects(catalog.checkHash("nope"), /no backup nope in directory /);
  });

  it("keeps deltas beside their full backup, checks them before reading, removes them with it", async () => {
    const store = new DirectoryStore(join(dir, "deltas"));
    const catalog = new BackupCatalog(store);
    await catalog.writeFull("b1", snapshotLike(Buffer.alloc(100, 1)));
    await catalog.writeFull("b2", snapshotLike(Buffer.alloc(100, 2)));
    const d1 = await catalog.writeDelta("b1", 5, 9, lines("a\n", "b\n"));
    await catalog.writeDelta("b1", 10, 10, lines("c\n"));
    await catalog.writeDelta("b2", 3, 4, lines("x\n"));
    assert.equal(d1.key, "b1.delta-00000000000000000005-00000000000000000009.jsonl");
    assert.deepEqual(
      (await catalog.deltas("b1")).map((d) => [d.fromRevision, d.toRevision]),
      [
        [5, 9],
        [10, 10],
      ],
    );
    const read = async (key: string) => {
      const out: string[] = [];
      for await (const l of catalog.deltaLines(key)) out.push(l);
      return out;
    };
    assert.deepEqual(await read(d1.key), ["a", "b"]);
    await writeFile(store.localPath(d1.key), "a\nB\n");
    await assert.rejects(read(d1.key), /delta b1\.delta-.* is corrupt/);
    // A delta whose body failed is not stored at all.
    const failing = async function* () {
      yield Buffer.from("y\n");
      throw new BackupError("watch canceled");
    };
    await assert.rejects(catalog.writeDelta("b2", 5, 6, failing()), /watch canceled/);
    assert.equal((await catalog.deltas("b2")).length, 1);
    await catalog.remove("b1");
    assert.deepEqual(
      (await store.list()).map((o) => o.key),
      [
        "b2.db",
        "b2.db.sha256",
        "b2.delta-00000000000000000003-00000000000000000004.jsonl",
        "b2.delta-00000000000000000003-00000000000000000004.jsonl.sha256",
      ],
    );
  });

  it("prints progress with rate and ETA", () => {
    assert.equal(progressLine(20e6, 60e6, 2000), "20.0 MB, 10.0 MB/s, ETA 6 s");
    assert.equal(progressLine(0, undefined, 0), "0.0 MB, 0.0 MB/s");
  });

  it("takes the snapshot from a follower, the leader only when no follower answers, avoiding one that failed", () => {
    const leader = { endpoint: "a", memberId: "1", leaderId: "1" };
    const follower = { endpoint: "b", memberId: "2", leaderId: "1" };
    const other = { endpoint: "e", memberId: "5", leaderId: "1" };
    const down = { endpoint: "c" };
    assert.equal(pickSource([leader, down, follower])?.endpoint, "b");
    assert.equal(pickSource([leader, down])?.endpoint, "a");
    assert.equal(
      pickSource([{ endpoint: "l", memberId: "3", leaderId: "1", isLearner: true }, leader])?.endpoint,
      "a",
    );
    assert.equal(pickSource([down, { endpoint: "d", memberId: "4", leaderId: "0" }]), undefined);
    assert.equal(pickSource([leader, follower, other], new Set(["b"]))?.endpoint, "e");
    assert.equal(pickSource([leader, follower], new Set(["b"]))?.endpoint, "a");
    assert.equal(pickSource([follower], new Set(["b"]))?.endpoint, "b");
  });
});

describe("delta events", () => {
  const kv = (key: string, mod: number, create: number, version: number, lease = 0n) =>
    mvccpb.KeyValue.fromPartial({
      key: Buffer.from(key),
      value: Buffer.from(`v@${mod}`),
      modRevision: BigInt(mod),
      createRevision: BigInt(create),
      version: BigInt(version),
      lease,
    });
  const put = (key: string, mod: number, create: number, version: number, lease = 0n) =>
    decodeEvent(encodeEvent({ type: mvccpb.Event_EventType.PUT, kv: kv(key, mod, create, version, lease) }));
  const del = (key: string, mod: number) =>
    decodeEvent(
      encodeEvent({
        type: mvccpb.Event_EventType.DELETE,
        kv: kv(key, mod, 0, 0),
        prevKv: kv(key, mod - 1, 3, 2, 77n),
      }),
    );

  it("round-trips an event with its previous value, 64-bit lease ids exact", () => {
    const e = put("k", 12, 10, 3, 0x7fff_ffff_ffff_fff1n);
    assert.equal(e.lease, 0x7fff_ffff_ffff_fff1n);
    assert.deepEqual([e.revision, e.type, e.key.toString(), e.value.toString()], [12, "put", "k", "v@12"]);
    const d = del("k", 13);
    assert.equal(d.type, "delete");
    assert.deepEqual(d.prev, {
      value: Buffer.from("v@12"),
      createRevision: 3,
      modRevision: 12,
      version: 2,
      lease: 77n,
    });
    assert.throws(() => decodeEvent("{"), /not JSON/);
    assert.throws(
      () => decodeEvent('{"rev":-1,"type":"put","key":"aw==","create":1,"version":1}'),
      /bad "rev"/,
    );
  });

  it("groups by revision inside (after, upTo] and refuses a hole or a short chain", async () => {
    const events = [put("a", 4, 4, 1), put("a", 5, 4, 2), put("b", 6, 6, 1), del("a", 6), put("c", 7, 7, 1)];
    const collect = async (it: AsyncIterable<{ revision: number; events: unknown[] }>) => {
      const out: [number, number][] = [];
      for await (const c of it) out.push([c.revision, c.events.length]);
      return out;
    };
    assert.deepEqual(await collect(revisionsBetween(events, 4, 6)), [
      [5, 1],
      [6, 2],
    ]);
    await assert.rejects(
      collect(revisionsBetween([put("a", 5, 5, 1), put("b", 7, 7, 1)], 4, 7)),
      /gap: revision 6 is missing/,
    );
    await assert.rejects(collect(revisionsBetween([put("a", 5, 5, 1)], 4, 6)), /end at revision 5, before 6/);
    await assert.rejects(collect(revisionsBetween([], 4, 5)), /end at revision 4, before 5/);
  });

  it("replays a revision as one txn in the watch's order, dropping leases that are gone", async () => {
    const changes = { revision: 6, events: [put("b", 6, 6, 1, 5n), del("a", 6), put("c", 6, 6, 1, 9n)] };
    const txn = replayTxn(changes, (l) => l === 5n);
    assert.deepEqual(txn.compare, []);
    assert.deepEqual(
      txn.success.map((op) =>
        op.requestPut
          ? ["put", op.requestPut.key.toString(), op.requestPut.lease]
          : ["del", op.requestDeleteRange!.key.toString(), op.requestDeleteRange!.rangeEnd.length],
      ),
      [
        ["put", "b", 5n],
        ["del", "a", 0],
        ["put", "c", 0n],
      ],
    );
  });
});
