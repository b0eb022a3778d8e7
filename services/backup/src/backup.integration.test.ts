// `backup now|list|verify|restore` against a real 3-member cluster of ours on loopback.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { LocalCluster } from "@etcd-ts/raft-node";
import { runBackupCommand } from "./backup-command.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);

async function backup(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runBackupCommand(args, {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  });
  return { code, out, err };
}

describe("backup CLI against a 3-member cluster", {
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  let cluster: LocalCluster;
  let endpoints: string;
  let dir: string;

  before(async () => {
    cluster = await LocalCluster.start({ size: 3 });
    endpoints = cluster.members.map((m) => m.clientUrl.replace("http://", "")).join(",");
    dir = await mkdtemp(join(tmpdir(), "backup-it-"));
    for (let i = 0; i < 20; i++) await run("etcdctl", [`--endpoints=${endpoints}`, "put", `b/${i}`, `v${i}`]);
  });
  after(async () => {
    await cluster?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("backs up from a follower, keeps the last 2, verifies and restores", async () => {
    const store = join(dir, "store");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await backup(["now", "--endpoints", endpoints, "--dir", store, "--keep-last", "2"]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^backup \S+ from \S+ \(follower [0-9a-f]+\): \d+ bytes, sha256 [0-9a-f]{64}/);
      ids.push(/^backup (\S+)/.exec(r.out)![1]!);
      if (i === 2) assert.match(r.out, new RegExp(`removed backup ${ids[0]} \\(keeping the last 2\\)`));
      // Distinct ids (they carry the time to the millisecond).
      await new Promise((r) => setTimeout(r, 5));
    }
    const list = await backup(["list", "--dir", store]);
    assert.deepEqual(
      list.out
        .trim()
        .split("\n")
        .map((l) => l.split("\t")[0]),
      ids.slice(1),
    );
    const { stdout } = await run("etcdctl", [`--endpoints=${endpoints}`, "get", "b/0", "-w", "json"]);
    const revision = Number(/"revision":(\d+)/.exec(stdout)![1]);
    const verified = await backup(["verify", ids[2]!, "--dir", store]);
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, new RegExp(`is sound: .*revision ${revision}, `));

    const dataDir = join(dir, "restored");
    const restored = await backup([
      "restore",
      ids[2]!,
      "--dir",
      store,
      "--name=r1",
      `--data-dir=${dataDir}`,
      "--initial-cluster=r1=http://127.0.0.1:2380",
      "--initial-advertise-peer-urls=http://127.0.0.1:2380",
    ]);
    assert.equal(restored.code, 0, restored.err);
    assert.match(restored.out, new RegExp(`revision ${revision}, `));
    assert.ok(existsSync(join(dataDir, "member", "wal")));

    // A backup changed on disk is refused by verify and by restore, which writes nothing.
    const path = join(store, `${ids[1]}.db`);
    const bytes = await readFile(path);
    bytes[9000]! ^= 1;
    await writeFile(path, bytes);
    const bad = await backup(["verify", ids[1]!, "--dir", store]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, new RegExp(`Error: backup ${ids[1]} is corrupt: sha256`));
    const badDir = join(dir, "not-restored");
    const refused = await backup(["restore", ids[1]!, "--dir", store, "--name=x", `--data-dir=${badDir}`]);
    assert.equal(refused.code, 1);
    assert.ok(!existsSync(badDir));
  });

  it("fails clearly when no member answers, leaving no partial backup", async () => {
    const store = join(dir, "unreachable");
    const r = await backup(["now", "--endpoints", "127.0.0.1:1", "--dir", store]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^Error: no member answered with a leader: 127\.0\.0\.1:1/);
    assert.deepEqual(await readdir(store).catch(() => []), []);
  });
});
