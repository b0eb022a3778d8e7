// `backup now|list|verify|restore` against a real 3-member cluster of ours on loopback.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  type BackupCompleted,
  type BackupFailed,
  type BackupNowReply,
  type BackupStarted,
  ControlPlane,
  NatsServerProcess,
  topics,
} from "@etcd-ts/events";
import { BUCKETS, decodeLeaseRecord, LocalCluster, openSnapshotFile } from "@etcd-ts/raft-node";
import { BackupCatalog } from "./backup-catalog.js";
import { startBackupServer } from "./backup-server.js";
import { DirectoryStore } from "./directory-store.js";
import { pointInTimeSnapshot } from "./point-in-time.js";
import { backupCli } from "./s3rver-process.testing.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);

/** Polls `predicate` every 50 ms for at most 10 s. */
async function waitFor(predicate: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !predicate(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(predicate(), `no ${what} within 10 s`);
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

  it("point-in-time restore: a key on a lease granted and revoked between two states comes back on a lease with the minimum TTL", async () => {
    const ctl = async (...args: string[]) =>
      (await run("etcdctl", [`--endpoints=${endpoints}`, ...args])).stdout;
    const store = join(dir, "unknown-ttl");
    const full = await backupCli(["now", "--endpoints", endpoints, "--dir", store]);
    assert.equal(full.code, 0, full.err);
    const id = /^backup (\S+)/.exec(full.out)![1]!;
    // Granted, used and revoked before any delta: no state ever sees the lease.
    const lease = /lease ([0-9a-f]+) granted/.exec(await ctl("lease", "grant", "300"))![1]!;
    const put = await ctl("put", "brief", "1", `--lease=${lease}`, "-w", "json");
    const target = Number(/"revision":(\d+)/.exec(put)![1]);
    await ctl("lease", "revoke", lease);
    const delta = await backupCli(["delta", "--endpoints", endpoints, "--dir", store]);
    assert.match(delta.out, new RegExp(`revisions ${target}\\.\\.${target + 1}, `), delta.err);
    // Auth never changed on this cluster: the delta's state names the auth revision, without buckets.
    const deltaFile = (await readdir(store)).find((f) => f.endsWith(".jsonl"))!;
    const stateLine = (await readFile(join(store, deltaFile), "utf8")).split("\n")[0]!;
    assert.match(stateLine, /"auth":\{"revision":1,"enabled":false\}\}\}$/);
    const dataDir = join(dir, "unknown-ttl-restored");
    const restored = await backupCli([
      "restore",
      id,
      "--dir",
      store,
      `--to-revision=${target}`,
      "--name=u1",
      `--data-dir=${dataDir}`,
      "--initial-cluster=u1=http://127.0.0.1:2380",
      "--initial-advertise-peer-urls=http://127.0.0.1:2380",
    ]);
    assert.equal(restored.code, 0, restored.err);
    assert.match(
      restored.err,
      new RegExp(
        `\\+ 1 revisions from deltas -> revision ${target}; 1 leases granted again; 1 of them with the minimum TTL`,
      ),
    );
    // The restored snapshot holds the key's lease (1 lease), at the target revision.
    assert.match(restored.out, new RegExp(`revision ${target}, .*1 lease\\(s\\)`));
    // Without --to-revision: the newest delta's end, where the revoke deleted the key and its lease.
    const latest = await backupCli([
      "restore",
      id,
      "--dir",
      store,
      "--name=u2",
      `--data-dir=${join(dir, "unknown-ttl-latest")}`,
      "--initial-cluster=u2=http://127.0.0.1:2380",
      "--initial-advertise-peer-urls=http://127.0.0.1:2380",
    ]);
    assert.equal(latest.code, 0, latest.err);
    assert.match(latest.err, new RegExp(`\\+ 2 revisions from deltas -> revision ${target + 1}`));
    assert.match(latest.out, new RegExp(`revision ${target + 1}, .*0 lease\\(s\\)`));
  });

  it("a lease ID revoked and granted again with another TTL between two deltas: the second delta has the new TTL", async () => {
    const store = join(dir, "regranted");
    const full = await backupCli(["now", "--endpoints", endpoints, "--dir", store]);
    assert.equal(full.code, 0, full.err);
    // A client-chosen lease ID (etcdctl cannot choose one: the JSON gateway can).
    const lease = async (op: "grant" | "revoke", body: object) => {
      const res = await fetch(`${cluster.members[0]!.clientUrl}/v3/lease/${op}`, {
        method: "POST",
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 200, await res.clone().text());
      await res.text();
    };
    const deltaState = async () => {
      // A write, so each delta covers a revision of its own (and names a later file).
      await run("etcdctl", [`--endpoints=${endpoints}`, "put", "regranted", "x"]);
      const r = await backupCli(["delta", "--endpoints", endpoints, "--dir", store]);
      assert.equal(r.code, 0, r.err);
      const newest = (await readdir(store))
        .filter((f) => f.endsWith(".jsonl"))
        .sort()
        .at(-1)!;
      return (await readFile(join(store, newest), "utf8")).split("\n")[0]!;
    };
    await lease("grant", { ID: "4660", TTL: "100" });
    assert.match(await deltaState(), /\{"id":"4660","ttl":100\}/);
    await lease("revoke", { ID: "4660" });
    await lease("grant", { ID: "4660", TTL: "300" });
    assert.match(await deltaState(), /\{"id":"4660","ttl":300\}/);
    await lease("revoke", { ID: "4660" });
  });

  it("point-in-time restore: a lease of the full backup revoked and granted again with another TTL comes back with the new TTL", async () => {
    const store = join(dir, "regranted-restore");
    const gateway = cluster.members[0]!.clientUrl;
    const post = async (path: string, body: object) => {
      const res = await fetch(`${gateway}/v3/${path}`, { method: "POST", body: JSON.stringify(body) });
      assert.equal(res.status, 200, await res.clone().text());
      return (await res.json()) as { header?: { revision?: string } };
    };
    const key = Buffer.from("regranted/key").toString("base64");
    // A client-chosen ID with a key on it, in the full backup: restored alive with TTL 100.
    await post("lease/grant", { ID: "8738", TTL: "100" });
    await post("kv/put", { key, value: Buffer.from("1").toString("base64"), lease: "8738" });
    const full = await backupCli(["now", "--endpoints", endpoints, "--dir", store]);
    assert.equal(full.code, 0, full.err);
    const id = /^backup (\S+)/.exec(full.out)![1]!;
    // Revoked (its key goes) and granted again with another TTL, a key on it again.
    await post("lease/revoke", { ID: "8738" });
    await post("lease/grant", { ID: "8738", TTL: "300" });
    const put = await post("kv/put", { key, value: Buffer.from("2").toString("base64"), lease: "8738" });
    const target = Number(put.header!.revision);
    const delta = await backupCli(["delta", "--endpoints", endpoints, "--dir", store]);
    assert.equal(delta.code, 0, delta.err);
    const work = join(dir, "regranted-work");
    const result = await pointInTimeSnapshot(new BackupCatalog(new DirectoryStore(store)), id, target, work);
    assert.equal(result.revision, target);
    const snapshot = await openSnapshotFile(result.file);
    try {
      const leases = [...snapshot.reader.rows(snapshot.reader.bucket(BUCKETS.lease)!)].map((r) =>
        decodeLeaseRecord(Buffer.from(r.value)),
      );
      const regranted = leases.find((l) => l.id === 8738n);
      assert.equal(
        regranted?.ttl,
        300,
        `the restored lease: ${JSON.stringify(regranted, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`,
      );
    } finally {
      await snapshot.close();
    }
    await post("lease/revoke", { ID: "8738" });
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

  it("serve with NATS: backup.now takes one and replies; started/completed/failed are published; it resubscribes after NATS restarts", async () => {
    const nats = await NatsServerProcess.start();
    const listener = ControlPlane.start({ url: nats.url, name: "test listener" });
    const started: BackupStarted[] = [];
    const completed: BackupCompleted[] = [];
    const failed: BackupFailed[] = [];
    listener.subscribe(topics.backupStarted, (e) => started.push(e));
    listener.subscribe(topics.backupCompleted, (e) => completed.push(e));
    listener.subscribe(topics.backupFailed, (e) => failed.push(e));
    const logs: string[] = [];
    const store = new BackupCatalog(new DirectoryStore(join(dir, "nats")));
    const server = await startBackupServer({
      catalog: store,
      endpoints: endpoints.split(","),
      host: "127.0.0.1",
      port: 0,
      natsUrl: nats.url,
      log: (line) => logs.push(line),
    });
    /** backup.now, retried while the service's subscription is not in place yet (bounded). */
    const backupNow = async (): Promise<BackupNowReply> => {
      let last: unknown;
      for (let i = 0; i < 40; i++) {
        try {
          return await listener.request(topics.backupNow, topics.backupNowReply, {}, 10_000);
        } catch (err) {
          last = err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      throw new Error(`backup.now never answered: ${String(last)}\n${logs.join("\n")}`);
    };
    try {
      await listener.ready(10_000);
      const reply = await backupNow();
      assert.equal(reply.ok, true, JSON.stringify(reply));
      const { id } = (reply as Extract<BackupNowReply, { ok: true }>).backup;
      assert.ok((await store.list()).some((b) => b.id === id));
      await waitFor(() => completed.some((e) => e.id === id && e.trigger === "nats"), "backup.completed");
      assert.equal(completed.find((e) => e.id === id)?.attempts, 1);
      assert.ok(started.some((e) => e.trigger === "nats"));

      // HTTP-triggered runs publish too.
      assert.equal((await fetch(`${server.url}/backups`, { method: "POST" })).status, 201);
      await waitFor(() => completed.some((e) => e.trigger === "http"), "backup.completed for HTTP");
      assert.deepEqual(failed, []);
      // A full backup's event names its kind and the snapshot's revision (read back from the store).
      const full = completed.find((e) => e.trigger === "http")!;
      assert.equal(full.kind, "full");
      const verified = (await (await fetch(`${server.url}/backups/${full.id}/verify`)).json()) as {
        revision: number;
      };
      assert.equal(full.revision, verified.revision);
      assert.equal(started.find((e) => e.trigger === "http")?.kind, "full");
      // A delta publishes backup.completed too: its object, base, revisions, size and sha256.
      const put = await run("etcdctl", [`--endpoints=${endpoints}`, "put", "nats/delta", "1", "-w", "json"]);
      const putRevision = Number(/"revision":(\d+)/.exec(put.stdout)![1]);
      assert.equal((await fetch(`${server.url}/deltas`, { method: "POST" })).status, 201);
      await waitFor(() => completed.some((e) => e.kind === "delta"), "backup.completed for a delta");
      const delta = completed.find((e) => e.kind === "delta")!;
      assert.equal(delta.trigger, "http");
      assert.equal(delta.base, full.id);
      assert.equal(delta.fromRevision, full.revision! + 1);
      assert.equal(delta.revision, putRevision);
      const sidecar = await readFile(join(dir, "nats", `${delta.id}.sha256`), "utf8");
      assert.equal(sidecar, `${delta.sha256}  ${delta.id}\n`);
      assert.equal(delta.size, (await readFile(join(dir, "nats", delta.id))).length);

      await nats.kill();
      await nats.restart();
      const again = await backupNow();
      assert.equal(again.ok, true, JSON.stringify(again));
    } finally {
      await server.close();
      await listener.close();
      await nats.stop();
    }
  });

  it("serve with NATS: a backup that cannot be taken publishes backup.failed and replies why", async () => {
    const nats = await NatsServerProcess.start();
    const listener = ControlPlane.start({ url: nats.url, name: "test listener" });
    const failed: BackupFailed[] = [];
    listener.subscribe(topics.backupFailed, (e) => failed.push(e));
    const server = await startBackupServer({
      catalog: new BackupCatalog(new DirectoryStore(join(dir, "nats-unreachable"))),
      endpoints: ["127.0.0.1:1"],
      // One try: retries would only delay the same answer (s3.integration.test.ts covers them).
      retry: { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
      host: "127.0.0.1",
      port: 0,
      natsUrl: nats.url,
      log: () => {},
    });
    try {
      await listener.ready(10_000);
      let reply: BackupNowReply | undefined;
      for (let i = 0; i < 40 && reply === undefined; i++) {
        reply = await listener
          .request(topics.backupNow, topics.backupNowReply, {}, 10_000)
          .catch(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), 250)));
      }
      assert.deepEqual(reply, { ok: false, error: "no member answered with a leader: 127.0.0.1:1" });
      await waitFor(
        () => failed.some((e) => e.trigger === "nats" && /no member answered/.test(e.error)),
        "backup.failed",
      );
      assert.equal(failed[0]?.kind, "full");
      // A delta that cannot be taken (no full backup to follow) publishes backup.failed as well.
      assert.equal((await fetch(`${server.url}/deltas`, { method: "POST" })).status, 502);
      await waitFor(() => failed.some((e) => e.kind === "delta"), "backup.failed for a delta");
      assert.match(failed.find((e) => e.kind === "delta")!.error, /no full backup in directory/);
    } finally {
      await server.close();
      await listener.close();
      await nats.stop();
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
