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
import { BackupCatalog } from "./backup-catalog.js";
import { startBackupServer } from "./backup-server.js";
import { DirectoryStore } from "./directory-store.js";
import { backupCli } from "./s3rver-process.testing.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);

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
      const r = await backupCli(["now", "--endpoints", endpoints, "--dir", store, "--keep-last", "2"]);
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.out,
        /^backup \S+ from \S+ \(follower [0-9a-f]+\) to directory \S+: \d+ bytes, sha256 [0-9a-f]{64}/,
      );
      ids.push(/^backup (\S+)/.exec(r.out)![1]!);
      if (i === 2) assert.match(r.out, new RegExp(`removed backup ${ids[0]} \\(retention\\)`));
      // Distinct ids (they carry the time to the millisecond).
      await new Promise((r) => setTimeout(r, 5));
    }
    const list = await backupCli(["list", "--dir", store]);
    assert.deepEqual(
      list.out
        .trim()
        .split("\n")
        .map((l) => l.split("\t")[0]),
      ids.slice(1),
    );
    const { stdout } = await run("etcdctl", [`--endpoints=${endpoints}`, "get", "b/0", "-w", "json"]);
    const revision = Number(/"revision":(\d+)/.exec(stdout)![1]);
    const verified = await backupCli(["verify", ids[2]!, "--dir", store]);
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, new RegExp(`is sound: .*revision ${revision}, `));

    const dataDir = join(dir, "restored");
    const restored = await backupCli([
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
    const bad = await backupCli(["verify", ids[1]!, "--dir", store]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, new RegExp(`Error: backup ${ids[1]} is corrupt: sha256`));
    const badDir = join(dir, "not-restored");
    const refused = await backupCli(["restore", ids[1]!, "--dir", store, "--name=x", `--data-dir=${badDir}`]);
    assert.equal(refused.code, 1);
    assert.ok(!existsSync(badDir));
  });

  it("serve: backups on a cron schedule, and the HTTP API lists, takes and verifies them", async () => {
    const store = new BackupCatalog(new DirectoryStore(join(dir, "served")));
    const logs: string[] = [];
    const server = await startBackupServer({
      catalog: store,
      endpoints: endpoints.split(","),
      retention: { keepLast: 3 },
      cron: "* * * * * *", // every second
      host: "127.0.0.1",
      port: 0,
      log: (line) => logs.push(line),
    });
    try {
      // Scheduled runs: at least two within a bounded wait.
      for (let i = 0; i < 100 && (await store.list()).length < 2; i++)
        await new Promise((r) => setTimeout(r, 200));
      assert.ok((await store.list()).length >= 2, logs.join("\n"));
      assert.ok(logs.some((l) => l.startsWith("scheduled backup: {")));
      const listed = (await (await fetch(`${server.url}/backups`)).json()) as { id: string }[];
      assert.ok(listed.length >= 2 && listed.length <= 3);
      // An on-demand backup may meet a scheduled one: 409 then, and a retry goes through.
      let taken: Response | undefined;
      for (let i = 0; i < 20; i++) {
        taken = await fetch(`${server.url}/backups`, { method: "POST" });
        if (taken.status !== 409) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(taken?.status, 201);
      const { id, source } = (await taken!.json()) as { id: string; source: string };
      assert.ok(endpoints.split(",").includes(source));
      const verified = await fetch(`${server.url}/backups/${id}/verify`);
      assert.equal(verified.status, 200);
      assert.ok(((await verified.json()) as { revision: number }).revision > 0);
      assert.equal((await fetch(`${server.url}/backups/nope/verify`)).status, 404);
      // Retention holds on scheduled runs too.
      assert.ok((await store.list()).length <= 3);
    } finally {
      await server.close();
    }
  });

  it("fails clearly when no member answers, leaving no partial backup", async () => {
    const store = join(dir, "unreachable");
    const r = await backupCli(["now", "--endpoints", "127.0.0.1:1", "--dir", store, "--retries", "0"]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^Error: no member answered with a leader: 127\.0\.0\.1:1/);
    assert.deepEqual(await readdir(store).catch(() => []), []);
  });
});
