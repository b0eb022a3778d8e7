// The backup service against a real S3-speaking server (s3rver, its own process on a free loopback
// port) and a real 3-member cluster: the CLI configured through the AWS_* variables, a bucket that
// does not exist, an upload that fails half-way, a store that is down then up again, a member
// killed mid-stream, `serve` with both schedules and /metrics. The restore drill is
// restore-drill.integration.test.ts.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { etcdserverpb } from "@etcd-ts/api";
import { LocalCluster } from "@etcd-ts/raft-node";
import { parseExposition, sampleValue } from "@etcd-ts/telemetry";
import { credentials } from "@grpc/grpc-js";
import { BackupCatalog } from "./backup-catalog.js";
import { takeBackup } from "./backup-job.js";
import { BackupMetrics } from "./backup-metrics.js";
import { startBackupServer } from "./backup-server.js";
import { S3Store } from "./s3-store.js";
import {
  BUCKET,
  backupCli,
  filesUnder,
  type S3rver,
  startS3rver,
  stopProcess,
  useS3rverEnv,
} from "./s3rver-process.testing.js";
import { snapshotLike } from "./snapshot-like.testing.js";
import { memberStatus, pickSource } from "./snapshot-source.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);

describe("backups in S3 (s3rver) from a 3-member cluster", {
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  let cluster: LocalCluster;
  let endpoints: string;
  let scratch: string;
  let s3dir: string;
  let s3: S3rver;
  const saved = { ...process.env };
  const ctl = async (...args: string[]) =>
    (await run("etcdctl", [`--endpoints=${endpoints}`, ...args], { maxBuffer: 64 * 1024 * 1024 })).stdout;

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "backup-s3-"));
    s3dir = join(scratch, "s3");
    s3 = await startS3rver(s3dir);
    // The ecosystem's configuration: what any AWS tool would read.
    useS3rverEnv(s3);
    cluster = await LocalCluster.start({ size: 3 });
    endpoints = cluster.members.map((m) => m.clientUrl.replace("http://", "")).join(",");
  });
  after(async () => {
    process.env = saved;
    await cluster?.close();
    if (s3) await stopProcess(s3.child);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("a bucket that does not exist: a clear error, and nothing is written", async () => {
    const before = await filesUnder(s3dir);
    const r = await backupCli([
      "now",
      "--endpoints",
      endpoints,
      "--s3-bucket",
      "no-such-bucket",
      "--retries",
      "0",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.err, /Error: S3 bucket "no-such-bucket" does not exist \(http:\/\/127\.0\.0\.1:\d+\)/);
    assert.deepEqual(await filesUnder(s3dir), before);
  });

  it("an upload that fails half-way (a corrupt stream of several parts) is aborted: no object", async () => {
    const store = new S3Store({ bucket: BUCKET, prefix: "aborted" });
    try {
      const catalog = new BackupCatalog(store);
      const before = await filesUnder(s3dir);
      await assert.rejects(
        catalog.writeFull("big", snapshotLike(Buffer.alloc(20 * 1024 * 1024, 5), Buffer.alloc(32), 40)),
        /snapshot stream is corrupt/,
      );
      assert.deepEqual(await store.list(), []);
      const added = (await filesUnder(s3dir)).filter((f) => !before.includes(f));
      assert.ok(
        added.every((f) => f.startsWith(`${BUCKET}/._S3rver_uploads/`)),
        `only unfinished upload parts may remain: ${added.join(", ")}`,
      );
      // The upload was aborted (s3rver answers AbortMultipartUpload with 405 and keeps the parts;
      // S3 and MinIO drop them).
      assert.match(s3.log.text, /aborted\/big\.db\?uploadId=\w+&x-id=AbortMultipartUpload/);
      // The same size with a good trailer goes through in parts and reads back whole.
      const entry = await catalog.writeFull(
        "big",
        snapshotLike(Buffer.alloc(20 * 1024 * 1024, 5), undefined, 40),
      );
      assert.deepEqual(await catalog.checkHash("big"), entry);
      await catalog.remove("big");
      assert.deepEqual(await store.list(), []);
    } finally {
      store.close();
    }
  });

  it("now, list, verify and restore through S3 with a prefix, retention included", async () => {
    for (let i = 0; i < 10; i++) await ctl("put", `s3/${i}`, `v${i}`);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await backupCli([
        "now",
        "--endpoints",
        endpoints,
        "--s3-bucket",
        BUCKET,
        "--s3-prefix",
        "cli",
        "--keep-last",
        "2",
      ]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^backup \S+ from \S+ \(follower [0-9a-f]+\) to s3:\/\/backups\/cli\/: \d+ bytes/);
      ids.push(/^backup (\S+)/.exec(r.out)![1]!);
      await new Promise((res) => setTimeout(res, 5));
    }
    const listed = await backupCli(["list", "--s3-bucket", BUCKET, "--s3-prefix", "cli/"]);
    assert.deepEqual(
      listed.out
        .trim()
        .split("\n")
        .map((l) => l.split("\t")[0]),
      ids.slice(1),
    );
    const objects = (await filesUnder(join(s3dir, BUCKET))).filter((f) => f.startsWith("cli/"));
    assert.ok(
      objects.some((f) => f.startsWith(`cli/${ids[2]}.db`)),
      objects.join("\n"),
    );
    const verified = await backupCli(["verify", ids[2]!, "--s3-bucket", BUCKET, "--s3-prefix", "cli"]);
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, /is sound: .*revision \d+, \d+ keys/);
    const dataDir = join(scratch, "restored-cli");
    const restored = await backupCli([
      "restore",
      ids[2]!,
      "--s3-bucket",
      BUCKET,
      "--s3-prefix",
      "cli",
      "--name=r1",
      `--data-dir=${dataDir}`,
      "--initial-cluster=r1=http://127.0.0.1:2380",
      "--initial-advertise-peer-urls=http://127.0.0.1:2380",
    ]);
    assert.equal(restored.code, 0, restored.err);
    assert.ok((await readdir(dataDir)).includes("member"));
  });

  it("S3 down: retried with back-off, then a clean failure; up again mid-retries: the backup goes through", async () => {
    const metrics = new BackupMetrics();
    const store = new S3Store({ bucket: BUCKET, prefix: "outage" });
    const catalog = new BackupCatalog(store);
    const logs: string[] = [];
    const port = s3.port;
    try {
      await stopProcess(s3.child);
      await assert.rejects(
        takeBackup({
          catalog,
          endpoints: endpoints.split(","),
          retry: { attempts: 3, baseDelayMs: 20, maxDelayMs: 50 },
          log: (l) => logs.push(l),
          metrics,
        }),
        /s3:\/\/backups\/outage\/: could not check the bucket/,
      );
      assert.equal(logs.filter((l) => /attempt \d of 3 failed \(store\)/.test(l)).length, 2, logs.join("\n"));
      let scraped = parseExposition(await metrics.registry.metrics());
      assert.equal(sampleValue(scraped, "backup_failures_total", { kind: "full" }), 1);
      assert.equal(sampleValue(scraped, "backup_retries_total", { stage: "store" }), 2);
      assert.equal(sampleValue(scraped, "backup_age_seconds", { kind: "full" }), undefined);

      let restarted: Promise<void> | undefined;
      const result = await takeBackup({
        catalog,
        endpoints: endpoints.split(","),
        // Back-offs of 0.4, 0.8, 1.6, 1.6, 1.6 s (no jitter): s3rver is up again well within them.
        retry: { attempts: 6, baseDelayMs: 400, maxDelayMs: 1600, random: () => 0.999 },
        log: (l) => {
          logs.push(l);
          restarted ??= startS3rver(s3dir, port).then((x) => {
            s3 = x;
          });
        },
        metrics,
        onProgress: () => {},
      }).catch(async (err) => {
        await restarted;
        throw err;
      });
      await restarted;
      assert.ok(result.attempts >= 2, `attempts ${result.attempts}`);
      assert.deepEqual(
        (await catalog.list()).map((b) => b.id),
        [result.entry.id],
      );
      scraped = parseExposition(await metrics.registry.metrics());
      assert.equal(sampleValue(scraped, "backup_last_size_bytes", { kind: "full" }), result.entry.size);
      assert.ok(sampleValue(scraped, "backup_age_seconds", { kind: "full" })! < 60);
      assert.equal(sampleValue(scraped, "backup_failures_total", { kind: "full" }), 1);
    } finally {
      store.close();
      if (s3.child.exitCode !== null || s3.child.signalCode !== null) s3 = await startS3rver(s3dir, port);
    }
  });

  it("a member killed mid-stream: the backup is taken again from another member", async () => {
    const kv = new etcdserverpb.KVClient(endpoints.split(",")[0]!, credentials.createInsecure());
    try {
      for (let i = 0; i < 60; i++) {
        await new Promise((resolve, reject) =>
          kv.put(
            etcdserverpb.PutRequest.fromPartial({
              key: Buffer.from(`big/${i}`),
              value: Buffer.alloc(100_000, 120),
            }),
            (err, r) => (err ? reject(err) : resolve(r)),
          ),
        );
      }
    } finally {
      kv.close();
    }
    // pickSource's choice, as takeBackup will make it: the first follower in endpoint order.
    const chosen = pickSource(await Promise.all(endpoints.split(",").map((e) => memberStatus(e))))!;
    const victim = cluster.members.find((m) => m.clientUrl.endsWith(chosen.endpoint))!;
    const store = new S3Store({ bucket: BUCKET, prefix: "midstream" });
    const logs: string[] = [];
    const metrics = new BackupMetrics();
    let killed = false;
    try {
      const result = await takeBackup({
        catalog: new BackupCatalog(store),
        endpoints: endpoints.split(","),
        retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 10 },
        log: (l) => logs.push(l),
        metrics,
        onProgress: () => {
          if (killed) return;
          killed = true;
          victim.child?.kill("SIGKILL");
        },
      });
      assert.equal(result.attempts, 2, logs.join("\n"));
      assert.notEqual(result.source.endpoint, chosen.endpoint);
      assert.match(
        logs.join("\n"),
        new RegExp(
          `attempt 1 of 3 failed \\(source\\): snapshot from ${chosen.endpoint}: snapshot stream failed after \\d+ bytes`,
        ),
      );
      assert.ok(result.entry.size > 6_000_000);
      assert.deepEqual(
        (await new BackupCatalog(store).list()).map((b) => b.id),
        [result.entry.id],
      );
      const scraped = parseExposition(await metrics.registry.metrics());
      assert.equal(sampleValue(scraped, "backup_retries_total", { stage: "source" }), 1);
      assert.equal(sampleValue(scraped, "backup_failures_total", { kind: "full" }), 0);
    } finally {
      store.close();
      if (victim.child === undefined) await cluster.restart(victim);
    }
  });

  it("serve: full backups and deltas on their schedules into S3, the HTTP API and /metrics", async () => {
    const store = new S3Store({ bucket: BUCKET, prefix: "served" });
    const catalog = new BackupCatalog(store);
    const logs: string[] = [];
    const server = await startBackupServer({
      catalog,
      endpoints: endpoints.split(","),
      retention: { keepLast: 2 },
      cron: "*/3 * * * * *",
      deltaCron: "* * * * * *",
      host: "127.0.0.1",
      port: 0,
      log: (line) => logs.push(line),
    });
    try {
      // Bounded: writes keep coming until a scheduled delta is logged (after it is stored).
      const deltaLogged = () => logs.some((l) => l.startsWith("scheduled delta: {"));
      for (let i = 0; i < 100 && !deltaLogged(); i++) {
        await ctl("put", "served/k", String(i));
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(deltaLogged(), logs.join("\n"));
      assert.ok(logs.some((l) => l.startsWith("scheduled backup: {")));
      let deltas = 0;
      for (const b of await catalog.list()) deltas += (await catalog.deltas(b.id)).length;
      assert.ok(deltas > 0);
      const scraped = parseExposition(await (await fetch(`${server.url}/metrics`)).text());
      assert.ok(sampleValue(scraped, "backup_last_success_timestamp_seconds", { kind: "full" })! > 0);
      assert.ok(sampleValue(scraped, "backup_last_success_timestamp_seconds", { kind: "delta" })! > 0);
      assert.ok(sampleValue(scraped, "backup_last_size_bytes", { kind: "full" })! > 0);
      assert.ok(sampleValue(scraped, "backup_age_seconds", { kind: "full" })! < 60);
      assert.equal(sampleValue(scraped, "backup_failures_total", { kind: "delta" }), 0, logs.join("\n"));
      assert.ok(sampleValue(scraped, "process_resident_memory_bytes")! > 0);
      // On demand: a delta (201, or 200 when nothing changed), 409 while a scheduled run holds it.
      await ctl("put", "served/k", "on-demand");
      let taken: Response | undefined;
      for (let i = 0; i < 50; i++) {
        taken = await fetch(`${server.url}/deltas`, { method: "POST" });
        if (taken.status !== 409) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(taken?.status === 201 || taken?.status === 200, String(taken?.status));
      assert.ok((await catalog.list()).length <= 2);
    } finally {
      await server.close();
      store.close();
    }
  });
});
