// The directory store on a full filesystem: a size-limited tmpfs (@etcd-ts/testing's
// SmallFilesystem; skipped with the reason where this machine cannot mount one), a real member
// streaming the snapshot. The backup must leave nothing that looks complete, log and count each
// failed attempt, back off, and go through once space returns.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { LocalCluster } from "@etcd-ts/raft-node";
import { parseExposition, sampleValue } from "@etcd-ts/telemetry";
import { diskFaultsUnavailable, SmallFilesystem } from "@etcd-ts/testing";
import { Registry } from "prom-client";
import { BackupCatalog } from "./backup-catalog.js";
import { takeBackup, verifyBackup } from "./backup-job.js";
import { BackupMetrics } from "./backup-metrics.js";
import { DirectoryStore } from "./directory-store.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const unavailable = haveEtcdctl ? diskFaultsUnavailable() : "etcdctl not installed";

describe("a backup onto a full disk", { skip: unavailable ?? false }, () => {
  let cluster: LocalCluster;
  let disk: SmallFilesystem;

  before(async () => {
    cluster = await LocalCluster.start({ size: 1 });
    disk = SmallFilesystem.create(512 * 1024);
  });
  after(async () => {
    await cluster?.close();
    disk?.destroy();
  });

  it("leaves nothing complete-looking, logs and counts each failure, and succeeds once space returns", async () => {
    const endpoint = cluster.members[0]!.clientUrl.replace("http://", "");
    for (let i = 0; i < 3; i++)
      assert.equal(spawnSync("etcdctl", [`--endpoints=${endpoint}`, "put", `k${i}`, "v"]).status, 0);
    const dir = join(disk.path, "backups");
    mkdirSync(dir);
    disk.fill();
    const catalog = new BackupCatalog(new DirectoryStore(dir));
    const metrics = new BackupMetrics(new Registry());
    const logs: string[] = [];
    /** What the store's directory held at each failed attempt, while the disk was full. */
    const seen: string[][] = [];
    let freed = false;
    const backup = takeBackup({
      catalog,
      endpoints: [endpoint],
      metrics,
      retry: { attempts: 40, baseDelayMs: 50, maxDelayMs: 200 },
      log: (line) => {
        logs.push(line);
        if (!freed) seen.push(readdirSync(dir));
      },
    });
    // Bounded: the first failures are logged within a few back-offs.
    for (let i = 0; i < 200 && logs.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(logs.length >= 2, `no failed attempt logged: ${logs.join("\n")}`);
    assert.match(logs[0]!, /full backup: attempt 1 of 40 failed \(store\): .*ENOSPC.*; retrying in \d+ ms/);
    assert.deepEqual(await catalog.list(), []);
    freed = true;
    // While the disk was full: no object and no part file, however many attempts failed.
    assert.deepEqual(seen.flat(), []);
    disk.unfill();
    const result = await backup;
    assert.ok(result.attempts >= 3, `attempts ${result.attempts}`);
    assert.deepEqual(
      (await catalog.list()).map((b) => b.id),
      [result.entry.id],
    );
    assert.deepEqual((await readdir(dir)).sort(), [`${result.entry.id}.db`, `${result.entry.id}.db.sha256`]);
    assert.equal((await verifyBackup(catalog, result.entry.id)).revision, 4);
    const text = await metrics.registry.metrics();
    const samples = parseExposition(text);
    assert.equal(sampleValue(samples, "backup_retries_total", { stage: "store" }), result.attempts - 1);
    assert.equal(sampleValue(samples, "backup_failures_total", { kind: "full" }), 0);
    assert.equal(sampleValue(samples, "backup_last_size_bytes", { kind: "full" }), result.entry.size);
  });
});
