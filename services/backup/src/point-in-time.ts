// Point-in-time restore: a snapshot file (etcd's format) of the cluster as it was at a chosen
// revision, made from a full backup and its deltas. etcd's own restore cannot set revisions, so
// the revisions are made again, in order: the full snapshot is restored into a temporary
// single member on loopback, and each later revision up to the target is replayed as one txn
// holding that revision's changes in the watch's order. A txn raises the revision by exactly one,
// so replaying revision r onto a store at r-1 yields r again, with the same sub-revisions (so the
// same create/mod revisions and versions of every key, and the same HashKV); every txn's answer
// is checked to name the original revision, and a hole in the deltas is refused. Then the temporary
// member's snapshot is the result. Leases and the auth store, which a watch does not show, come
// from the deltas' states (delta-state.ts): a lease a replayed put needs is granted again (with the
// TTL a state recorded) before the txn, every lease is kept alive while the replay runs, and at
// the target the leases are those of the target's state plus those its keys are attached to; an
// auth store changed after the full backup replaces the snapshot's auth buckets, and the TTLs the
// target's state recorded replace those of its leases in the lease bucket.
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { etcdserverpb } from "@etcd-ts/api";
import {
  BUCKETS,
  openSnapshotFile,
  replaceSnapshotBuckets,
  runSnapshotCommand,
  type SnapshotRow,
  startMemberProcess,
} from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";
import { credentials } from "@grpc/grpc-js";
import { BackupCatalog, SnapshotSourceError } from "./backup-catalog.js";
import { readFullState } from "./backup-job.js";
import { type DeltaEvent, decodeEvent, replayTxn, revisionsBetween } from "./delta-events.js";
import { decodeState, leaseRowsWithTtls, type StateAt, stateAt } from "./delta-state.js";
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
  /** Leases granted again (made after the full backup: named by a delta's state or by a replayed put). */
  leasesGranted: number;
  /** Of those, leases no state recorded (granted and ended between two deltas): given the member's minimum TTL. */
  leasesWithoutTtl: number;
  /** Leases without keys at the target that its state does not name (revoked or expired in the original). */
  leasesRevoked: number;
  /** The auth revision put back from a delta's state; undefined: the full backup's auth store is kept. */
  authRevision: number | undefined;
  /** What restoring the full snapshot left behind (raft-node snapshot restore's warnings). */
  warnings: string[];
}

/** A lease a replayed put needs but whose TTL no state recorded: the member raises it to its minimum. */
const UNKNOWN_TTL_SECONDS = 1;
const KEEPALIVE_EVERY_MS = 500;
const RANGE_PAGE = 1000;

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
    const baseState = await readFullState(full, id);
    const base = baseState.revision;
    if (toRevision < base)
      throw new BackupError(`revision ${toRevision} is before backup ${id}'s own revision ${base}`);
    const reach = deltas.at(-1)?.toRevision ?? base;
    if (toRevision > reach)
      throw new BackupError(
        `backup ${id} and its deltas reach revision ${reach}; ${toRevision} is past them`,
      );
    const states = [baseState];
    for (const d of deltas) {
      const state = await catalog.deltaState(d.key);
      if (state !== undefined) states.push(state);
    }
    const at = stateAt(states, toRevision);
    if (toRevision === base && at.state === baseState) {
      const file = join(workDir, "point-in-time.db");
      await copyFile(full, file);
      return {
        file,
        baseRevision: base,
        revision: base,
        replayed: 0,
        leasesGranted: 0,
        leasesWithoutTtl: 0,
        leasesRevoked: 0,
        authRevision: undefined,
        warnings: [],
      };
    }
    const result = await replay(catalog, id, full, base, toRevision, at, workDir, login);
    const auth = at.state.auth;
    const replace: Record<string, readonly SnapshotRow[]> = {};
    // The API cannot set password hashes: the auth store goes into the snapshot file itself.
    const authChanged =
      auth !== undefined && auth.revision !== baseState.auth?.revision && at.authBuckets !== undefined;
    if (authChanged) Object.assign(replace, at.authBuckets);
    const leases = leaseRowsWithTtls(await leaseRowsOf(result.file), at.state);
    if (leases !== undefined) replace[BUCKETS.lease] = leases;
    if (Object.keys(replace).length === 0) return result;
    const file = join(workDir, "point-in-time-fixed.db");
    await replaceSnapshotBuckets(result.file, file, replace);
    return { ...result, file, authRevision: authChanged ? auth.revision : undefined };
  });
}

async function leaseRowsOf(file: string): Promise<SnapshotRow[]> {
  const snapshot = await openSnapshotFile(file);
  try {
    const bucket = snapshot.reader.bucket(BUCKETS.lease);
    if (bucket === undefined) return [];
    // Copies: the reader's rows are views of pages it reuses.
    return [...snapshot.reader.rows(bucket)].map((r) => ({
      key: Buffer.from(r.key),
      value: Buffer.from(r.value),
    }));
  } finally {
    await snapshot.close();
  }
}

async function replay(
  catalog: BackupCatalog,
  id: string,
  full: string,
  base: number,
  toRevision: number,
  at: StateAt,
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
  const maintenance = new etcdserverpb.MaintenanceClient(endpoint, credentials.createInsecure());
  let keepAlive: ReturnType<etcdserverpb.LeaseClient["leaseKeepAlive"]> | undefined;
  let keepAliveTimer: NodeJS.Timeout | undefined;
  try {
    const asUser = await login.metadata(endpoint).catch((err: Error) => {
      throw new BackupError(`backup ${id}: ${err.message} (the password as of the full backup)`);
    });
    const unary = <T>(what: string, invoke: (done: (err: Error | null, r: T) => void) => void) =>
      new Promise<T>((resolve, reject) => invoke((err, r) => (err ? reject(err) : resolve(r)))).catch(
        (err: Error) => {
          const refused = /user name is empty|permission denied|user name not found/.test(err.message);
          throw new BackupError(
            `${what} failed: ${err.message}` +
              (refused
                ? " (backup taken with auth enabled: give --user root:PASSWORD, root's password then)"
                : ""),
          );
        },
      );
    const leases = await unary<etcdserverpb.LeaseLeasesResponse>("listing the restored leases", (done) =>
      lease.leaseLeases({}, asUser, done),
    );
    const alive = new Set(leases.leases.map((l) => l.ID));
    // Every lease is kept alive while the replay runs: one that expired would delete its keys at a
    // revision of its own, and the revisions would no longer be the original's.
    keepAlive = lease.leaseKeepAlive(asUser);
    keepAlive.on("data", () => {});
    keepAlive.on("error", () => {});
    const stream = keepAlive;
    keepAliveTimer = setInterval(() => {
      for (const ID of alive) stream.write({ ID });
    }, KEEPALIVE_EVERY_MS);
    let leasesGranted = 0;
    let leasesWithoutTtl = 0;
    const grant = async (ID: bigint, ttl: number) => {
      await unary<etcdserverpb.LeaseGrantResponse>(`granting lease ${ID.toString(16)} again`, (done) =>
        lease.leaseGrant({ ID, TTL: BigInt(ttl) }, asUser, done),
      );
      alive.add(ID);
      leasesGranted++;
    };
    let replayed = 0;
    for await (const changes of revisionsBetween(eventsOf(catalog, id), base, toRevision)) {
      for (const e of changes.events) {
        if (e.type !== "put" || e.lease === 0n || alive.has(e.lease)) continue;
        const ttl = at.ttls.get(e.lease);
        if (ttl === undefined) leasesWithoutTtl++;
        await grant(e.lease, ttl ?? UNKNOWN_TTL_SECONDS);
      }
      const txn = replayTxn(changes, (l) => alive.has(l));
      const res = await unary<etcdserverpb.TxnResponse>(`replaying revision ${changes.revision}`, (done) =>
        kv.txn(txn, asUser, { deadline: Date.now() + 30_000 }, done),
      );
      const got = Number(res.header?.revision ?? 0);
      if (got !== changes.revision)
        throw new BackupError(
          `replaying revision ${changes.revision} gave revision ${got}: the restored revisions would not match the original`,
        );
      replayed++;
    }
    // The leases the target's state names, and every lease a key at the target is attached to.
    const wanted = new Set(at.state.leases.map((l) => l.id));
    for (let from = Buffer.from([0]); ; ) {
      const page = await unary<etcdserverpb.RangeResponse>("reading the replayed keys", (done) =>
        kv.range(
          etcdserverpb.RangeRequest.fromPartial({
            key: from,
            rangeEnd: Buffer.from([0]),
            keysOnly: true,
            limit: BigInt(RANGE_PAGE),
          }),
          asUser,
          done,
        ),
      );
      for (const k of page.kvs) if (k.lease !== 0n) wanted.add(k.lease);
      const last = page.kvs.at(-1);
      if (!page.more || last === undefined) break;
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
    let leasesRevoked = 0;
    for (const ID of [...alive]) {
      if (wanted.has(ID)) continue;
      await unary(`revoking lease ${ID.toString(16)}`, (done) => lease.leaseRevoke({ ID }, asUser, done));
      alive.delete(ID);
      leasesRevoked++;
    }
    for (const l of at.state.leases) if (!alive.has(l.id)) await grant(l.id, l.ttl);
    const status = await unary<etcdserverpb.StatusResponse>("reading the replayed revision", (done) =>
      maintenance.status({}, asUser, done),
    );
    if (Number(status.header?.revision) !== toRevision)
      throw new BackupError(
        `after the leases were put back the revision is ${status.header?.revision}, not ${toRevision}`,
      );
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
    return {
      file,
      baseRevision: base,
      revision: toRevision,
      replayed,
      leasesGranted,
      leasesWithoutTtl,
      leasesRevoked,
      authRevision: undefined,
      warnings,
    };
  } finally {
    clearInterval(keepAliveTimer);
    keepAlive?.cancel();
    kv.close();
    lease.close();
    maintenance.close();
    member.kill("SIGKILL");
    await exited;
  }
}

/** Every event of backup `id`'s deltas, in order, each delta's sha256 checked before it is read. */
async function* eventsOf(catalog: BackupCatalog, id: string): AsyncGenerator<DeltaEvent> {
  for (const delta of await catalog.deltas(id)) {
    for await (const line of catalog.deltaLines(delta.key))
      if (decodeState(line) === undefined) yield decodeEvent(line);
  }
}
