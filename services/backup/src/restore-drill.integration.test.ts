// The restore drill of issue 11: a known history (puts, overwrites, deletes, a multi-op txn, a
// range delete, leases and a revoke, a user) backed up full + deltas to a real S3-speaking server
// (s3rver, its own process), every member destroyed, restored at a chosen revision into a new
// 3-member cluster, and compared with the original: every key with its revisions, and HashKV.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { LocalCluster } from "@etcd-ts/raft-node";
import {
  BUCKET,
  backupCli,
  type S3rver,
  startS3rver,
  stopProcess,
  useS3rverEnv,
} from "./s3rver-process.testing.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);

describe("restore drill through S3", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let scratch: string;
  let s3: S3rver;
  const saved = { ...process.env };

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "backup-drill-"));
    s3 = await startS3rver(join(scratch, "s3"));
    useS3rverEnv(s3);
  });
  after(async () => {
    process.env = saved;
    if (s3) await stopProcess(s3.child);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("restore drill: full + deltas in S3, every member destroyed, a new 3-member cluster at a chosen revision", async () => {
    // A cluster of its own: the history is exactly what this test writes.
    const cluster = await LocalCluster.start({ size: 3 });
    const endpoints = cluster.members.map((m) => m.clientUrl.replace("http://", "")).join(",");
    const ctl = async (...args: string[]) =>
      (await run("etcdctl", [`--endpoints=${endpoints}`, ...args])).stdout;
    const prefix = ["--s3-bucket", BUCKET, "--s3-prefix", "drill"];
    const revisionOf = (json: string) => Number(/"revision":"?(\d+)/.exec(json)![1]);
    // History before the full backup: puts, overwrites, a delete, leases, a user.
    const lease = /lease ([0-9a-f]+) granted/.exec(await ctl("lease", "grant", "600"))![1]!;
    const grant = async (ttl: number) =>
      /lease ([0-9a-f]+) granted/.exec(await ctl("lease", "grant", String(ttl)))![1]!;
    const doomed = await grant(600);
    const spare = await grant(650); // no keys; revoked after the full backup
    for (let i = 0; i < 20; i++) await ctl("put", `d/${i}`, `v${i}`);
    await ctl("put", "d/0", "again");
    await ctl("del", "d/1");
    await ctl("put", "leased", "1", `--lease=${lease}`);
    await ctl("put", "doomed", "1", `--lease=${doomed}`);
    await ctl("user", "add", "alice", "--new-user-password=secret");
    const full = await backupCli(["now", "--endpoints", endpoints, ...prefix]);
    assert.equal(full.code, 0, full.err);
    const id = /^backup (\S+)/.exec(full.out)![1]!;
    const fullRevision = revisionOf(await ctl("get", "d/0", "-w", "json"));

    // After it: a txn of several changes in one revision, a range delete, a revoke that deletes
    // a leased key, a put on a lease from before the backup; two deltas.
    await ctl("put", "d/2", "after-full");
    const txn = spawnSync("etcdctl", [`--endpoints=${endpoints}`, "txn"], {
      input: "\nput t/a 1\nput t/b 2\ndel d/3\n\n\n",
    });
    assert.equal(txn.status, 0, String(txn.stderr));
    await ctl("del", "d/1", "--prefix"); // d/1, d/10..d/19
    // What a watch does not show: leases granted (with and without keys) and revoked without
    // keys, and auth changes (a user, a role with a permission, the role granted).
    const fresh = await grant(900);
    await ctl("put", "fresh-key", "f", `--lease=${fresh}`);
    const bare = await grant(700);
    const gone = await grant(800);
    await ctl("lease", "revoke", gone);
    await ctl("lease", "revoke", spare);
    await ctl("user", "add", "bob", "--new-user-password=bob-secret");
    await ctl("role", "add", "reader");
    await ctl("role", "grant-permission", "reader", "read", "d/", "--prefix");
    await ctl("user", "grant-role", "bob", "reader");
    const first = await backupCli(["delta", "--endpoints", endpoints, ...prefix]);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, new RegExp(`revisions ${fullRevision + 1}\\.\\.\\d+`));
    await ctl("lease", "revoke", doomed);
    await ctl("put", "leased-later", "x", `--lease=${lease}`);
    const late = await grant(1000); // granted after the first delta: its TTL is in the second's state
    await ctl("put", "late-key", "l", `--lease=${late}`);
    await ctl("put", "d/4", "target");
    const target = revisionOf(await ctl("get", "d/4", "-w", "json"));
    await ctl("put", "d/5", "after-target");
    await ctl("del", "t/a");
    const second = await backupCli(["delta", "--endpoints", endpoints, ...prefix]);
    assert.equal(second.code, 0, second.err);
    const nothing = await backupCli(["delta", "--endpoints", endpoints, ...prefix]);
    assert.match(nothing.out, /no changes since the last backup/);
    // A lease granted with no key written: a delta of the state alone (at the second delta's revision).
    const idle = await grant(500);
    const stateOnly = await backupCli(["delta", "--endpoints", endpoints, ...prefix]);
    assert.match(stateOnly.out, /lease and auth state at revision \d+ \(no key changed\)/, stateOnly.err);
    const listed = await backupCli(["list", ...prefix]);
    assert.equal(
      listed.out
        .trim()
        .split("\n")
        .filter((l) => l.includes("\tdelta\t")).length,
      3,
      listed.out,
    );

    // The original as it was at the target revision, and at the full backup's.
    const original = {
      kvs: (await ctl("get", "", "--prefix", `--rev=${target}`, "-w", "json")).replace(/^.*"kvs"/s, ""),
      hash: /"hash":(\d+)/.exec(await ctl("endpoint", "hashkv", `--rev=${target}`, "-w", "json"))![1],
      fullHash: /"hash":(\d+)/.exec(
        await ctl("endpoint", "hashkv", `--rev=${fullRevision}`, "-w", "json"),
      )![1],
    };
    await cluster.close(); // every member killed, every data dir removed

    const restored = await LocalCluster.start({
      size: 3,
      prepare: async (members, initialCluster) => {
        for (const m of members) {
          const r = await backupCli([
            "restore",
            id,
            ...prefix,
            `--to-revision=${target}`,
            `--name=${m.name}`,
            `--data-dir=${m.dataDir}`,
            `--initial-cluster=${initialCluster}`,
            "--initial-cluster-token=test-cluster",
            `--initial-advertise-peer-urls=${m.peerUrl}`,
          ]);
          assert.equal(r.code, 0, r.err);
          // The auth store comes over with the full backup: nothing is left behind.
          assert.doesNotMatch(r.out + r.err, /not restored/);
          assert.match(
            r.err,
            new RegExp(
              `revision ${fullRevision}\\) \\+ ${target - fullRevision} revisions from deltas -> revision ${target}`,
            ),
          );
        }
      },
    });
    try {
      const at = restored.members.map((m) => m.clientUrl.replace("http://", "")).join(",");
      const rctl = async (...args: string[]) => (await run("etcdctl", [`--endpoints=${at}`, ...args])).stdout;
      for (const m of restored.members) {
        const one = m.clientUrl.replace("http://", "");
        const got = (await run("etcdctl", [`--endpoints=${one}`, "get", "", "--prefix", "-w", "json"]))
          .stdout;
        assert.equal(revisionOf(got), target);
        assert.equal(got.replace(/^.*"kvs"/s, ""), original.kvs, `${m.name}: keys and revisions`);
        const hash = (rev: number) =>
          run("etcdctl", [`--endpoints=${one}`, "endpoint", "hashkv", `--rev=${rev}`, "-w", "json"]).then(
            (r) => /"hash":(\d+)/.exec(r.stdout)![1],
          );
        assert.equal(await hash(target), original.hash, `${m.name}: HashKV at ${target}`);
        assert.equal(await hash(fullRevision), original.fullHash, `${m.name}: HashKV at ${fullRevision}`);
      }
      assert.match(
        await rctl("lease", "timetolive", lease, "--keys"),
        /attached keys\(\[(leased leased-later|leased-later leased)\]\)/,
      );
      // Leases: the target's state (the newest read at the second delta's end revision: the
      // state-only delta's) and those its keys need, with their granted TTLs; those revoked are gone.
      const leaseIds = (await rctl("lease", "list")).match(/[0-9a-f]{6,}/g)!.sort();
      assert.deepEqual(leaseIds, [lease, fresh, bare, late, idle].sort(), "restored leases");
      for (const [id, ttl, keys] of [
        [fresh, 900, "fresh-key"],
        [bare, 700, ""],
        [late, 1000, "late-key"],
        [idle, 500, ""],
      ] as const) {
        const ttlOut = await rctl("lease", "timetolive", id, "--keys");
        assert.match(ttlOut, new RegExp(`granted with TTL\\(${ttl}s\\)`), ttlOut);
        assert.match(ttlOut, new RegExp(`attached keys\\(\\[${keys}\\]\\)`), ttlOut);
      }
      // Users before and after the full backup, the role and its permission (auth store of the delta).
      assert.equal(await rctl("user", "list"), "alice\nbob\n");
      assert.match(await rctl("user", "get", "bob"), /Roles: reader/);
      assert.match(await rctl("role", "get", "reader"), /\[d\/, d0\)/);
      // The new cluster goes on from the target revision.
      assert.equal(revisionOf(await rctl("put", "new", "1", "-w", "json")), target + 1);
      // bob's password hash came over: with auth on, bob logs in and reads what his role allows.
      await rctl("user", "add", "root", "--new-user-password=root-secret");
      await rctl("user", "grant-role", "root", "root");
      await rctl("auth", "enable");
      assert.match(await rctl("--user=bob:bob-secret", "get", "d/0"), /again/);
      await assert.rejects(rctl("--user=bob:wrong", "get", "d/0"), /authentication failed/);

      // Past the deltas, or before the full backup: refused, nothing written.
      const dataDir = join(scratch, "never");
      for (const [rev, message] of [
        [target + 100, /reach revision \d+; \d+ is past them/],
        [fullRevision - 1, /is before backup .*'s own revision/],
      ] as const) {
        const r = await backupCli([
          "restore",
          id,
          ...prefix,
          `--to-revision=${rev}`,
          "--name=x",
          `--data-dir=${dataDir}`,
        ]);
        assert.equal(r.code, 1);
        assert.match(r.err, message);
      }
      await assert.rejects(readdir(dataDir));
    } finally {
      await restored.close();
    }
  });
});
