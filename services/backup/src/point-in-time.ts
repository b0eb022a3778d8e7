// Point-in-time restore: a snapshot file (etcd's format) of the cluster as it was at a chosen
// revision, made from a full backup and its deltas. etcd's own restore cannot set revisions, so
// the revisions are made again, in order: the full snapshot is restored into a temporary
// single member on loopback, and each later revision up to the target is replayed as one txn
// holding that revision's changes in the watch's order. A txn raises the revision by exactly one,
// so replaying revision r onto a store at r-1 yields r again, with the same sub-revisions (so the
// same create/mod revisions and versions of every key, and the same HashKV); every txn's answer
// is checked to name the original revision, and a hole in the deltas is refused. Then the temporary
// member's snapshot is the result.
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { etcdserverpb } from "@etcd-ts/api";
import { runSnapshotCommand, startMemberProcess } from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";
import { credentials } from "@grpc/grpc-js";
import { BackupCatalog, SnapshotSourceError } from "./backup-catalog.js";
import { readSnapshotStatus } from "./backup-job.js";
import { type DeltaEvent, decodeEvent, replayTxn, revisionsBetween } from "./delta-events.js";
import { DirectoryStore } from "./directory-store.js";
import { MemberAccess } from "./member-access.js";
import { BackupError } from "./object-store.js";
import { snapshotStream } from "./snapshot-source.js";

export interface PointInTimeResult {
  /** The snapshot file, inside the work dir. */
  file: string;
  /** The full backup's revision. */
  baseRevision: number;
  revision: number;
  /** Revisions replayed from deltas. */
  replayed: number;
  /** Puts whose lease was granted after the full backup (deltas do not carry lease grants): restored without it. */
  leasesDropped: number;
  /** What restoring the full snapshot left behind (raft-node snapshot restore's warnings). */
  warnings: string[];
}

/**
 * Makes the snapshot of backup `id` at `toRevision` in `workDir` (which the caller removes).
 * `login`: a user (root, with its password as of the full backup) for replaying onto a backup
 * taken with auth enabled: the restored auth store checks the replay as it checks any client.
 */
export async function pointInTimeSnapshot(
  catalog: BackupCatalog,
  id: string,
  toRevision: number,
  workDir: string,
  login: MemberAccess = MemberAccess.plaintext,
): Promise<PointInTimeResult> {
  const deltas = await catalog.deltas(id);
  await mkdir(workDir, { recursive: true });
  return catalog.withCheckedFile(`${id}.db`, async (full) => {
    const { revision: base } = await readSnapshotStatus(full, id);
    if (toRevision < base)
      throw new BackupError(`revision ${toRevision} is before backup ${id}'s own revision ${base}`);
    if (toRevision === base) {
      const file = join(workDir, "point-in-time.db");
      await copyFile(full, file);
      return { file, baseRevision: base, revision: base, replayed: 0, leasesDropped: 0, warnings: [] };
    }
    const reach = deltas.at(-1)?.toRevision ?? base;
    if (toRevision > reach)
      throw new BackupError(
        `backup ${id} and its deltas reach revision ${reach}; ${toRevision} is past them`,
      );
    return replay(catalog, id, full, base, toRevision, workDir, login);
  });
}

async function replay(
  catalog: BackupCatalog,
  id: string,
  full: string,
  base: number,
  toRevision: number,
  workDir: string,
  login: MemberAccess,
): Promise<PointInTimeResult> {
  const clientUrl = `http://127.0.0.1:${await freePort()}`;
  const peerUrl = `http://127.0.0.1:${await freePort()}`;
  const dataDir = join(workDir, "member");
  let output = "";
  const io = { out: (t: string) => (output += t), err: (t: string) => (output += t) };
  const code = await runSnapshotCommand(
    [
      "restore",
      full,
      "--name=pitr",
      `--data-dir=${dataDir}`,
      `--initial-cluster=pitr=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
    ],
    io,
  );
  if (code !== 0) throw new BackupError(`backup ${id}: restoring the full snapshot failed: ${output.trim()}`);
  const member = await startMemberProcess([
    "--name=pitr",
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=pitr=${peerUrl}`,
    // One revision is one txn, however many keys it changed.
    "--max-txn-ops=1000000",
    `--max-request-bytes=${64 * 1024 * 1024}`,
  ]);
  const exited = new Promise((resolve) => member.once("exit", resolve));
  const endpoint = clientUrl.slice("http://".length);
  const channel = { "grpc.max_send_message_length": 80 * 1024 * 1024 };
  const kv = new etcdserverpb.KVClient(endpoint, credentials.createInsecure(), channel);
  const lease = new etcdserverpb.LeaseClient(endpoint, credentials.createInsecure());
  try {
    const asUser = await login.metadata(endpoint).catch((err: Error) => {
      throw new BackupError(`backup ${id}: ${err.message} (the password as of the full backup)`);
    });
    const leases = await new Promise<etcdserverpb.LeaseLeasesResponse>((resolve, reject) =>
      lease.leaseLeases({}, asUser, (err, r) => (err ? reject(err) : resolve(r))),
    );
    const known = new Set(leases.leases.map((l) => l.ID));
    let replayed = 0;
    let leasesDropped = 0;
    for await (const changes of revisionsBetween(eventsOf(catalog, id), base, toRevision)) {
      const txn = replayTxn(changes, (l) => known.has(l));
      leasesDropped += changes.events.filter(
        (e) => e.type === "put" && e.lease !== 0n && !known.has(e.lease),
      ).length;
      const res = await new Promise<etcdserverpb.TxnResponse>((resolve, reject) =>
        kv.txn(txn, asUser, { deadline: Date.now() + 30_000 }, (err, r) => (err ? reject(err) : resolve(r))),
      ).catch((err: Error) => {
        const refused = /user name is empty|permission denied|user name not found/.test(err.message);
        throw new BackupError(
          `replaying revision ${changes.revision} failed: ${err.message}` +
            (refused
              ? " (backup taken with auth enabled: give --user root:PASSWORD, root's password then)"
              : ""),
        );
      });
      const got = Number(res.header?.revision ?? 0);
      if (got !== changes.revision)
        throw new BackupError(
          `replaying revision ${changes.revision} gave revision ${got}: the restored revisions would not match the original`,
        );
      replayed++;
    }
    const out = new BackupCatalog(new DirectoryStore(join(workDir, "out")));
    const snapshot = await out
      .writeFull("point-in-time", snapshotStream(endpoint, undefined, login))
      .catch((err: Error) => {
        throw err instanceof SnapshotSourceError
          ? new BackupError(`snapshot of the replayed member: ${err.message}`)
          : err;
      });
    const file = join(workDir, "out", `${snapshot.id}.db`);
    const warnings = output.split("\n").filter((l) => l.startsWith("warning: "));
    return { file, baseRevision: base, revision: toRevision, replayed, leasesDropped, warnings };
  } finally {
    kv.close();
    lease.close();
    member.kill("SIGKILL");
    await exited;
  }
}

/** Every event of backup `id`'s deltas, in order, each delta's sha256 checked before it is read. */
async function* eventsOf(catalog: BackupCatalog, id: string): AsyncGenerator<DeltaEvent> {
  for (const delta of await catalog.deltas(id)) {
    for await (const line of catalog.deltaLines(delta.key)) yield decodeEvent(line);
  }
}
