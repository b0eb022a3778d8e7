// A compaction past the end of the delta chain: the next delta cannot be taken (its revisions
// are gone), so the service starts the chain again from a full backup, at once when a member's
// compaction event arrives over NATS, at the next scheduled delta without NATS.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { type BackupCompleted, ControlPlane, NatsServerProcess, topics } from "@etcd-ts/events";
import { LocalCluster } from "@etcd-ts/raft-node";
import { BackupCatalog } from "./backup-catalog.js";
import { type BackupServer, startBackupServer } from "./backup-server.js";
import { DirectoryStore } from "./directory-store.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);

/** Polls `check` every 100 ms for at most 15 s. */
async function eventually(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: not within 15 s`);
}

describe("deltas after a compaction", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let nats: NatsServerProcess;
  let cluster: LocalCluster;
  let endpoints: string;
  let dir: string;
  const etcdctl = async (...args: string[]) =>
    (await run("etcdctl", [`--endpoints=${endpoints}`, ...args])).stdout;
  /** Puts a key; the revision it was written at. */
  const put = async (key: string) =>
    Number(/"revision":(\d+)/.exec(await etcdctl("put", key, "v", "-w", "json"))![1]);
  /** POST on the service, retried while a scheduled run holds it (409). */
  const post = async (server: BackupServer, path: string, status: number) => {
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${server.url}${path}`, { method: "POST" });
      if (res.status === 409) await new Promise((r) => setTimeout(r, 100));
      else return assert.equal(res.status, status, await res.text());
    }
    assert.fail(`POST ${path}: still busy after 50 tries`);
  };

  /** The backup service on this cluster, its log lines collected. */
  const serve = async (catalog: BackupCatalog, options: { natsUrl?: string; deltaCron: string }) => {
    const logs: string[] = [];
    const server = await startBackupServer({
      catalog,
      endpoints: endpoints.split(","),
      host: "127.0.0.1",
      port: 0,
      ...options,
      log: (line) => logs.push(line),
    });
    return { server, logs };
  };

  before(async () => {
    nats = await NatsServerProcess.start();
    cluster = await LocalCluster.start({ size: 3, flags: [`--nats-url=${nats.url}`] });
    endpoints = cluster.members.map((m) => m.clientUrl.replace("http://", "")).join(",");
    dir = await mkdtemp(join(tmpdir(), "backup-compacted-"));
  });
  after(async () => {
    await cluster?.close();
    await nats?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("with NATS: a member's compaction event past the chain's end takes a full backup at once; one inside it does not", async () => {
    const catalog = new BackupCatalog(new DirectoryStore(join(dir, "nats")));
    const listener = ControlPlane.start({ url: nats.url, name: "test listener" });
    const completed: BackupCompleted[] = [];
    listener.subscribe(topics.backupCompleted, (e) => completed.push(e));
    // Scheduled deltas (which make the service follow compactions), never due during the test.
    const { server, logs } = await serve(catalog, { natsUrl: nats.url, deltaCron: "0 0 1 1 *" });
    try {
      await listener.ready(10_000);
      await put("c/0");
      await post(server, "/backups", 201);
      const chainEnd = await put("c/1");
      await post(server, "/deltas", 201);
      // Compacting at the revision right after the chain's end removes nothing a delta needs.
      await put("c/2");
      await etcdctl("compact", String(chainEnd + 1));
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await catalog.list()).length, 1, logs.join("\n"));
      // Past it: the revisions after the last delta are gone.
      const compactedAt = await put("c/3");
      await etcdctl("compact", String(compactedAt));
      await eventually("a full backup after the compaction", async () => (await catalog.list()).length === 2);
      await eventually("its backup.completed", () => completed.some((e) => e.trigger === "compaction"));
      const restarted = completed.find((e) => e.trigger === "compaction")!;
      assert.equal(restarted.kind, "full");
      assert.ok(restarted.revision! >= compactedAt, `${restarted.revision} < ${compactedAt}`);
      assert.ok(
        logs.some((l) => l.includes(`compaction at revision ${compactedAt} passed revision ${chainEnd + 1}`)),
        logs.join("\n"),
      );
      // Deltas go on from the new full backup.
      await put("c/4");
      await post(server, "/deltas", 201);
      assert.equal((await catalog.deltas(restarted.id)).length, 1);
    } finally {
      await server.close();
      await listener.close();
    }
  });

  it("without NATS: the scheduled delta that finds its revisions compacted takes a full backup instead", async () => {
    const catalog = new BackupCatalog(new DirectoryStore(join(dir, "plain")));
    // Every 3 seconds (croner's seconds field).
    const { server, logs } = await serve(catalog, { deltaCron: "*/3 * * * * *" });
    const deltaRuns = () => logs.filter((l) => l.startsWith("scheduled delta")).length;
    try {
      await post(server, "/backups", 201);
      // Right after a scheduled delta, so that the next one finds the revisions it needs compacted.
      const runs = deltaRuns();
      await eventually("a scheduled delta", () => deltaRuns() > runs);
      await put("p/0");
      const compactedAt = await put("p/1");
      await etcdctl("compact", String(compactedAt));
      await eventually(
        "a full backup in place of the delta",
        async () => (await catalog.list()).length === 2,
      );
      assert.ok(
        logs.some((l) => new RegExp(`delta from revision \\d+: compacted at ${compactedAt}`).test(l)),
        logs.join("\n"),
      );
    } finally {
      await server.close();
    }
  });
});
