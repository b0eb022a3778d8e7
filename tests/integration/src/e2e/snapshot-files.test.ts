// Snapshots in etcd's file format, both ways, with real etcd 3.4 and etcdctl 3.4:
// - `etcdctl snapshot save` from our member; `etcdctl snapshot status` reads it; `etcdctl
//   snapshot restore` + a real etcd on it serves every key with the same revisions, and the
//   same HashKV as our member; the same for a store large enough to be written by two threads;
// - a real etcd's snapshot restored with `raft-node snapshot restore` into 1- and 3-member
//   clusters of ours serves the same keys, revisions and HashKV, and keeps its users, roles
//   and enabled auth;
// - bad files are refused with a clear error, and nothing is written.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { BUCKETS, LocalCluster, type MemberProcess, openSnapshotFile } from "@etcd-ts/raft-node";
import { EtcdEndpoint } from "../cluster/etcd-client.js";
import { type TargetKind, targetClusterOptions } from "../cluster/targets.js";
import { type CommandResult, ETCDCTL, etcdctl } from "./stack.js";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const ETCD = process.env.ETCD_BIN ?? "/usr/bin/etcd";
const TOKEN = `snapshot-files-${process.pid}`;

function ok(r: CommandResult): string {
  assert.equal(r.code, 0, `command failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** `raft-node snapshot ...`, from the sources. */
function raftNodeSnapshot(args: string[]): Promise<CommandResult> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ["--conditions=source", "--import", "tsx", "services/raft-node/src/main.ts", "snapshot", ...args],
      { cwd: REPO_ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        done({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** The history both sides get: puts, overwrites, deletes, a txn, a compaction, more writes. */
async function writeHistory(endpoint: string): Promise<void> {
  const ctl = (args: string[], input?: string) =>
    etcdctl(endpoint, args, input === undefined ? {} : { input }).then(ok);
  for (let i = 0; i < 30; i++) await ctl(["put", `k/${String(i).padStart(2, "0")}`, `v${i}`]);
  for (let i = 0; i < 10; i++) await ctl(["put", `k/${String(i).padStart(2, "0")}`, `w${i}`]);
  await ctl(["del", "k/2", "--prefix"]);
  await ctl(["txn"], `\nput t/a 1\nput t/b 2\n\n\n`);
  await ctl(["compact", "25"]);
  await ctl(["put", "big", "x".repeat(20_000)]);
  await ctl(["put", "k/05", "last"]);
}

interface Snapshot {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

async function etcdctlStatus(file: string): Promise<Snapshot> {
  return JSON.parse(ok(await etcdctl("127.0.0.1:1", ["snapshot", "status", file, "-w", "json"])));
}

/** Every live key with its revisions (raw JSON text of the kvs, so 64-bit numbers stay exact). */
async function keysAndRevisions(endpoint: string): Promise<{ revision: number; kvs: string }> {
  const out = ok(await etcdctl(endpoint, ["get", "", "--prefix", "-w", "json"]));
  const revision = Number(/"revision":(\d+)/.exec(out)![1]);
  return { revision, kvs: out.slice(out.indexOf('"kvs"')) };
}

async function hashKv(endpoint: string, revision: number): Promise<string> {
  const out = ok(await etcdctl(endpoint, ["endpoint", "hashkv", `--rev=${revision}`, "-w", "json"]));
  return /"hash":(\d+)/.exec(out)![1]!;
}

async function startCluster(
  target: TargetKind,
  size: number,
  restore?: (m: MemberProcess, cluster: LocalCluster) => Promise<void>,
): Promise<LocalCluster> {
  const cluster = await LocalCluster.create(
    targetClusterOptions(target, { size, peerProxy: false, token: TOKEN }),
  );
  if (restore) for (const m of cluster.members) await restore(m, cluster);
  cluster.startAll();
  await cluster.agreedLeader(60_000);
  return cluster;
}

function restoreFlags(m: MemberProcess, cluster: LocalCluster): string[] {
  return [
    `--name=${m.name}`,
    `--data-dir=${m.dataDir}`,
    `--initial-cluster=${cluster.initialCluster()}`,
    `--initial-cluster-token=${TOKEN}`,
    `--initial-advertise-peer-urls=${m.peerUrl}`,
  ];
}

describe("snapshot files in etcd's format", {
  timeout: 480_000,
  skip: existsSync(ETCDCTL) && existsSync(ETCD) ? false : "etcd/etcdctl 3.4 not installed",
}, () => {
  let scratch: string;
  const clusters: LocalCluster[] = [];
  let ours: LocalCluster;
  let etcd: LocalCluster;

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "snapshot-files-"));
    ours = await startCluster("etcd-ts", 1);
    etcd = await startCluster("etcd", 1);
    clusters.push(ours, etcd);
    await writeHistory(ours.addresses[0]!);
    await writeHistory(etcd.addresses[0]!);
  });
  after(async () => {
    for (const c of clusters) await c.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("etcdctl snapshot save/status on our member: etcd's revision and key count", async () => {
    const file = join(scratch, "ours.db");
    ok(await etcdctl(ours.addresses[0]!, ["snapshot", "save", file]));
    const etcdFile = join(scratch, "etcd.db");
    ok(await etcdctl(etcd.addresses[0]!, ["snapshot", "save", etcdFile]));
    const mine = await etcdctlStatus(file);
    const theirs = await etcdctlStatus(etcdFile);
    const { revision } = await keysAndRevisions(ours.addresses[0]!);
    assert.equal(mine.revision, revision);
    assert.equal(mine.revision, theirs.revision);
    assert.equal(mine.totalKey, theirs.totalKey);
    // Our own status command reads both files as etcdctl does.
    for (const [path, expected] of [
      [file, mine],
      [etcdFile, theirs],
    ] as const) {
      const status = JSON.parse(ok(await raftNodeSnapshot(["status", path, "-w", "json"])));
      assert.deepEqual(status, expected);
    }
    const table = ok(await raftNodeSnapshot(["status", etcdFile, "-w", "table"]));
    const etcdTable = ok(await etcdctl("127.0.0.1:1", ["snapshot", "status", etcdFile, "-w", "table"]));
    assert.equal(table, etcdTable);
    // Bucket by bucket: everything but what describes the member is byte-identical to etcd's.
    const bucketsOf = async (path: string) => {
      const opened = await openSnapshotFile(path);
      try {
        const out = new Map<string, string[]>();
        for (const bucket of opened.reader.rows(opened.reader.root)) {
          const rows = [...opened.reader.rows(opened.reader.bucket(bucket.key.toString())!)];
          out.set(
            bucket.key.toString(),
            rows.map((r) => `${r.key.toString("hex")}=${r.value.toString("hex")}`),
          );
        }
        return out;
      } finally {
        await opened.close();
      }
    };
    const ourBuckets = await bucketsOf(file);
    const etcdBuckets = await bucketsOf(etcdFile);
    assert.deepEqual([...ourBuckets.keys()], [...etcdBuckets.keys()]);
    assert.deepEqual([...ourBuckets.keys()].sort(), Object.values(BUCKETS).sort());
    for (const name of [
      "key",
      "lease",
      "alarm",
      "auth",
      "authUsers",
      "authRoles",
      "members_removed",
      "cluster",
    ]) {
      assert.deepEqual(ourBuckets.get(name), etcdBuckets.get(name), `bucket ${name}`);
    }
    const withoutIndex = (rows: string[] | undefined) =>
      rows?.filter((r) => !r.startsWith(Buffer.from("consistent_index").toString("hex")));
    assert.deepEqual(withoutIndex(ourBuckets.get("meta")), withoutIndex(etcdBuckets.get("meta")));
    assert.equal(ourBuckets.get("members")?.length, 1);
    console.log(
      `# ours: hash ${mine.hash.toString(16)} rev ${mine.revision} keys ${mine.totalKey} size ${mine.totalSize}; ` +
        `etcd: hash ${theirs.hash.toString(16)} rev ${theirs.revision} keys ${theirs.totalKey} size ${theirs.totalSize}`,
    );
  });

  test("etcdctl snapshot restore of our snapshot: a real etcd serves every key with the same revisions", async () => {
    const file = join(scratch, "ours.db");
    const restored = await startCluster("etcd", 1, async (m, cluster) => {
      ok(await etcdctl("127.0.0.1:1", ["snapshot", "restore", file, ...restoreFlags(m, cluster)]));
    });
    clusters.push(restored);
    const source = await keysAndRevisions(ours.addresses[0]!);
    const copy = await keysAndRevisions(restored.addresses[0]!);
    assert.equal(copy.revision, source.revision);
    assert.equal(copy.kvs, source.kvs);
    assert.equal(
      await hashKv(restored.addresses[0]!, source.revision),
      await hashKv(ours.addresses[0]!, source.revision),
    );
    // History survives: an old revision above the compaction, and the compaction itself.
    const old = ok(await etcdctl(restored.addresses[0]!, ["get", "k/05", "--rev=30"]));
    assert.equal(old, "k/05\nv5\n");
    const compacted = await etcdctl(restored.addresses[0]!, ["get", "k/05", "--rev=24"]);
    assert.match(compacted.stderr, /required revision has been compacted/);
    await restored.close();
  });

  test("data dirs etcdctl snapshot restore wrote: our members start on them as etcd does; a data dir etcd ran on is refused", async () => {
    const etcdFile = join(scratch, "etcd.db");
    if (!existsSync(etcdFile)) ok(await etcdctl(etcd.addresses[0]!, ["snapshot", "save", etcdFile]));
    const imported = await startCluster("etcd-ts", 3, async (m, cluster) => {
      ok(await etcdctl("127.0.0.1:1", ["snapshot", "restore", etcdFile, ...restoreFlags(m, cluster)]));
    });
    clusters.push(imported);
    const source = await keysAndRevisions(etcd.addresses[0]!);
    for (const [i, address] of imported.addresses.entries()) {
      const copy = await keysAndRevisions(address);
      assert.equal(copy.revision, source.revision, `member ${i}`);
      assert.equal(copy.kvs, source.kvs, `member ${i}`);
      // etcd's files are kept beside the data dir, as they were.
      assert.ok(existsSync(join(imported.members[i]!.dataDir, "member.etcd", "snap", "db")));
    }
    assert.equal(
      await hashKv(imported.addresses[0]!, source.revision),
      await hashKv(etcd.addresses[0]!, source.revision),
    );
    ok(await etcdctl(imported.addresses[1]!, ["put", "after-import", "1"]));
    assert.equal(ok(await etcdctl(imported.addresses[2]!, ["get", "after-import"])), "after-import\n1\n");
    await imported.close();

    // A real etcd's own data dir (its WAL holds the history's entries): refused, nothing changed.
    const ran = join(scratch, "etcd-ran");
    await cp(etcd.members[0]!.dataDir, ran, { recursive: true });
    const started = await new Promise<CommandResult>((done) =>
      execFile(
        process.execPath,
        [
          "--conditions=source",
          "--import",
          "tsx",
          "services/raft-node/src/main.ts",
          // etcd's default name, URLs and cluster: the data dir is refused before anything listens.
          `--data-dir=${ran}`,
        ],
        { cwd: REPO_ROOT, timeout: 60_000 },
        (err, stdout, stderr) =>
          done({
            code: err ? (typeof err.code === "number" ? err.code : 1) : 0,
            stdout: String(stdout),
            stderr: String(stderr),
          }),
      ),
    );
    assert.equal(started.code, 1, started.stderr);
    assert.match(started.stderr, /was written by etcd .* entries beyond the cluster's bootstrap/);
    assert.match(started.stderr, /etcdctl snapshot save FILE/);
    assert.ok(existsSync(join(ran, "member", "snap", "db")) && !existsSync(join(ran, "member.etcd")));
  });

  test("a snapshot taken while writes go on is one revision of the store, restorable as such", async () => {
    const endpoint = ours.addresses[0]!;
    const client = new EtcdEndpoint(endpoint);
    let writing = true;
    let written = 0;
    // Four writers, bounded, until the snapshot has been saved.
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 5000 && writing; i++) {
        await client.put(`busy/${w}/${i % 100}`, `v${i}`.repeat(20), 10_000);
        written++;
      }
    });
    try {
      while (written < 200) await new Promise((r) => setTimeout(r, 20));
      const file = join(scratch, "busy.db");
      ok(await etcdctl(endpoint, ["snapshot", "save", file]));
      writing = false;
      await Promise.all(writers);
      const { revision } = await etcdctlStatus(file);
      const restored = await startCluster("etcd-ts", 1, async (m, cluster) => {
        ok(await raftNodeSnapshot(["restore", file, ...restoreFlags(m, cluster)]));
      });
      clusters.push(restored);
      const copy = restored.addresses[0]!;
      assert.equal((await keysAndRevisions(copy)).revision, revision);
      assert.equal(await hashKv(copy, revision), await hashKv(endpoint, revision));
      const atRevision = ok(
        await etcdctl(endpoint, ["get", "busy/", "--prefix", `--rev=${revision}`, "-w", "json"]),
      );
      const restoredNow = ok(await etcdctl(copy, ["get", "busy/", "--prefix", "-w", "json"]));
      assert.equal(
        restoredNow.slice(restoredNow.indexOf('"kvs"')),
        atRevision.slice(atRevision.indexOf('"kvs"')),
      );
      await restored.close();
    } finally {
      writing = false;
      await Promise.all(writers);
      client.close();
    }
  });

  test("a store of 101,000 revisions, written by two threads: etcdctl reads it, a real etcd restores it", async () => {
    // SPLIT_MIN_REVISIONS (100,000 after the compaction) and two cores: the key bucket is
    // split between two threads, each writing its own pages; real bbolt must read the joint.
    const large = await startCluster("etcd-ts", 1);
    clusters.push(large);
    const endpoint = large.addresses[0]!;
    const client = new EtcdEndpoint(endpoint);
    let next = 0;
    const putUntil = (end: number) =>
      Promise.all(
        Array.from({ length: 128 }, async () => {
          for (let i = next++; i < end; i = next++) {
            await client.put(`large/${String(i % 20_000).padStart(5, "0")}`, `v${i}`, 30_000);
          }
        }),
      );
    const started = Date.now();
    try {
      await putUntil(1_000);
      ok(await etcdctl(endpoint, ["compact", "500"]));
      next = 1_000;
      await putUntil(101_000);
    } finally {
      client.close();
    }
    const written = Date.now();
    const file = join(scratch, "large.db");
    ok(await etcdctl(endpoint, ["snapshot", "save", file]));
    console.log(
      `# 101,000 puts in ${((written - started) / 1000).toFixed(1)} s, saved in ${((Date.now() - written) / 1000).toFixed(1)} s`,
    );
    assert.match(large.members[0]!.output, /"threads":2.*"sent database snapshot to client"/);
    const status = await etcdctlStatus(file);
    const source = await keysAndRevisions(endpoint);
    assert.equal(status.revision, source.revision);
    const restored = await startCluster("etcd", 1, async (m, cluster) => {
      ok(await etcdctl("127.0.0.1:1", ["snapshot", "restore", file, ...restoreFlags(m, cluster)]));
    });
    clusters.push(restored);
    const copy = await keysAndRevisions(restored.addresses[0]!);
    assert.equal(copy.revision, source.revision);
    assert.equal(copy.kvs, source.kvs);
    assert.equal(
      await hashKv(restored.addresses[0]!, source.revision),
      await hashKv(endpoint, source.revision),
    );
    await restored.close();
    await large.close();
  });

  test("a real etcd's lease (a 64-bit ID) is part of the snapshot", async () => {
    const endpoint = etcd.addresses[0]!;
    const granted = ok(await etcdctl(endpoint, ["lease", "grant", "600"]));
    const lease = /lease ([0-9a-f]+) granted/.exec(granted)![1]!;
    assert.ok(BigInt(`0x${lease}`) > 2n ** 53n, `etcd's lease IDs use the high bits: ${lease}`);
    ok(await etcdctl(endpoint, ["put", "leased", "v", `--lease=${lease}`]));
    // The reverse restores below use this newer snapshot.
    ok(await etcdctl(endpoint, ["snapshot", "save", join(scratch, "etcd.db")]));
  });

  for (const size of [1, 3]) {
    test(`raft-node snapshot restore of a real etcd's snapshot: ${size}-member cluster of ours serves it`, async () => {
      const file = join(scratch, "etcd.db");
      const restored = await startCluster("etcd-ts", size, async (m, cluster) => {
        const out = ok(await raftNodeSnapshot(["restore", file, ...restoreFlags(m, cluster)]));
        assert.match(out, /restored snapshot .* revision \d+/);
      });
      clusters.push(restored);
      const source = await keysAndRevisions(etcd.addresses[0]!);
      for (const endpoint of restored.addresses) {
        const copy = await keysAndRevisions(endpoint);
        assert.equal(copy.revision, source.revision);
        assert.equal(copy.kvs, source.kvs);
        assert.equal(
          await hashKv(endpoint, source.revision),
          await hashKv(etcd.addresses[0]!, source.revision),
        );
      }
      // Leases keep their 64-bit IDs and their keys.
      const leases = ok(await etcdctl(etcd.addresses[0]!, ["lease", "list"]));
      assert.match(leases, /found 1 leases/);
      assert.equal(ok(await etcdctl(restored.addresses[0]!, ["lease", "list"])), leases);
      const id = leases.trim().split("\n")[1]!;
      assert.match(
        ok(await etcdctl(restored.addresses[0]!, ["lease", "timetolive", id, "--keys"])),
        new RegExp(`lease ${id} granted with TTL\\(600s\\).*attached keys\\(\\[leased\\]\\)`),
      );
      // The restored cluster takes writes, continuing the revision sequence.
      const put = ok(await etcdctl(restored.addresses[0]!, ["put", "after", "restore", "-w", "json"]));
      assert.match(put, new RegExp(`"revision":${source.revision + 1}\\b`));
      await restored.close();
    });
  }

  test("bad files are refused, naming what is wrong, and nothing is written", async () => {
    const good = await readFile(join(scratch, "etcd.db"));
    const cases: [string, Buffer, RegExp][] = [
      ["truncated", good.subarray(0, good.length - 1000), /truncated or not a snapshot/],
      ["flipped", flip(good, 5000), /is corrupt: sha256 trailer [0-9a-f]{64} does not match/],
      [
        "wrong-trailer",
        Buffer.concat([good.subarray(0, good.length - 32), Buffer.alloc(32, 7)]),
        /is corrupt: sha256 trailer/,
      ],
      [
        "not-a-snapshot",
        Buffer.alloc(4096 * 3 + 32, "not a snapshot"),
        /is not a snapshot: it does not start with a bbolt meta page/,
      ],
      ["no-trailer", good.subarray(0, good.length - 32), /has no sha256 trailer/],
    ];
    // A valid trailer over a damaged database (meta 0 and 1 both hit): bbolt's own checks refuse it.
    const damaged = flip(flip(good.subarray(0, good.length - 32), 16 + 20), 4096 + 16 + 20);
    cases.push([
      "damaged-with-trailer",
      Buffer.concat([damaged, createHash("sha256").update(damaged).digest()]),
      /not a valid bbolt database: no valid meta page \(meta 0: meta page 0 checksum mismatch/,
    ]);
    for (const [name, bytes, message] of cases) {
      const file = join(scratch, `${name}.db`);
      await writeFile(file, bytes);
      const dataDir = join(scratch, `${name}.restored`);
      const r = await raftNodeSnapshot([
        "restore",
        file,
        "--name=x",
        `--data-dir=${dataDir}`,
        "--initial-cluster=x=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
      ]);
      assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /^Error: /, name);
      assert.match(r.stderr, message, name);
      assert.ok(!existsSync(dataDir), `${name}: the data dir was created`);
    }
    assert.deepEqual(
      (await readdir(scratch)).filter((f) => f.includes("restoring")),
      [],
    );
    // An existing data dir is never overwritten.
    const existing = join(scratch, "existing");
    await copyFile(join(scratch, "etcd.db"), join(scratch, "copy.db"));
    await writeFile(existing, "");
    const r = await raftNodeSnapshot([
      "restore",
      join(scratch, "copy.db"),
      "--name=x",
      `--data-dir=${existing}`,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /data-dir ".*existing" exists/);
  });

  test("a real etcd's users, roles and enabled auth come over with raft-node snapshot restore", async () => {
    const endpoint = etcd.addresses[0]!;
    const root = ["--user=root:rootpw"];
    const setup = [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["role", "add", "reader"],
      ["role", "grant-permission", "reader", "read", "k/", "--prefix"],
      ["user", "grant-role", "alice", "reader"],
      ["auth", "enable"],
    ];
    for (const args of setup) ok(await etcdctl(endpoint, args));
    const file = join(scratch, "etcd-auth.db");
    try {
      ok(await etcdctl(endpoint, [...root, "snapshot", "save", file]));
    } finally {
      // The other tests share this etcd: leave it as it was.
      ok(await etcdctl(endpoint, [...root, "auth", "disable"]));
    }
    const restored = await startCluster("etcd-ts", 1, async (m, cluster) => {
      const out = ok(await raftNodeSnapshot(["restore", file, ...restoreFlags(m, cluster)]));
      assert.doesNotMatch(out, /not restored/);
    });
    clusters.push(restored);
    const copy = restored.addresses[0]!;
    // Auth is on: an anonymous read is refused, alice reads what her role allows and no more.
    const anonymous = await etcdctl(copy, ["get", "k/05"]);
    assert.notEqual(anonymous.code, 0);
    assert.match(anonymous.stderr, /user name is empty/);
    assert.match(ok(await etcdctl(copy, ["--user=alice:alicepw", "get", "k/05"])), /^k\/05\nlast\n$/);
    const outside = await etcdctl(copy, ["--user=alice:alicepw", "get", "big"]);
    assert.match(outside.stderr, /permission denied/);
    const wrong = await etcdctl(copy, ["--user=alice:nope", "get", "k/05"]);
    assert.match(wrong.stderr, /authentication failed, invalid user ID or password/);
    // Root and the role's permission are the snapshot's, and root can still administer.
    assert.match(
      ok(await etcdctl(copy, [...root, "role", "get", "reader"])),
      /Role reader\nKV Read:\n\t\[k\/, k0\) \(prefix k\/\)/,
    );
    assert.equal(ok(await etcdctl(copy, [...root, "user", "list"])), "alice\nroot\n");
    ok(await etcdctl(copy, [...root, "put", "k/new", "v"]));
    await restored.close();
  });
});

function flip(bytes: Buffer, at: number): Buffer {
  const out = Buffer.from(bytes);
  out[at]! ^= 0x01;
  return out;
}
