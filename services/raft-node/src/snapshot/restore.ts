// `snapshot restore`: a new cluster's member data dir from an etcd snapshot file (ours or a real
// etcd's), as etcd's restore makes one: the snapshot's revisions, compaction marks and leases,
// the members of --initial-cluster (the snapshot's own members, alarms and applied index
// belong to the old cluster and are dropped), and the new cluster's bootstrap in the WAL with
// the applied index already past it. The file is checked completely first and the data dir is
// built beside its final place and renamed in, so a refused file writes nothing.
import { rename, rm } from "node:fs/promises";
import { AUTH_COLUMN, AUTH_ROLE_PREFIX, AUTH_USER_PREFIX } from "../auth/mod.js";
import { bootstrapNewCluster } from "../bootstrap/bootstrap.js";
import { exists, layoutOf } from "../bootstrap/data-dir.js";
import type { MemberConfig } from "../config/flags.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { memberCodec } from "../membership/member-codec.js";
import { MEMBERS_COLUMN, type MemberInfo, memberRowKey } from "../membership/members-table.js";
import { META_COLUMN, META_KEYS } from "../mvcc/mod.js";
import { type ColumnHandle, RocksBackend, type WriteBatch } from "../mvcc/rocks-backend.js";
import { Snapshotter, type WalLogger } from "../wal/mod.js";
import type { BboltReader, BucketRoot } from "./bbolt-reader.js";
import { BUCKETS, uint64Be } from "./etcd-backend.js";
import { openSnapshotFile, SnapshotFileError } from "./snapshot-file.js";

const BATCH_ROWS = 1000;

export interface RestoreResult {
  revision: number;
  keys: number;
  leases: number;
  members: MemberInfo[];
  hashChecked: boolean;
  /** What the snapshot held that a restore leaves behind. */
  dropped: string[];
}

const silentLogger: WalLogger = { info() {}, warn() {}, error() {} };

export async function restoreSnapshot(
  file: string,
  config: MemberConfig,
  options: { skipHashCheck?: boolean } = {},
): Promise<RestoreResult> {
  if (config.walDir !== "") throw new SnapshotFileError("--wal-dir is not supported yet by snapshot restore");
  if (await exists(config.dataDir)) throw new SnapshotFileError(`data-dir "${config.dataDir}" exists`);
  const snapshot = await openSnapshotFile(file, options);
  const building = `${config.dataDir}.restoring`;
  try {
    await rm(building, { recursive: true, force: true });
    const layout = layoutOf({ ...config, dataDir: building });
    const seed = new Map<MemberInfo["id"], MemberInfo>();
    const { storage, wal } = await bootstrapNewCluster(
      { ...config, dataDir: building },
      layout,
      { logger: silentLogger },
      seed,
    );
    // The restored keys are in the store, not in the Raft log: the log starts after a snapshot
    // at the bootstrap's last index, as etcd's restore writes its snap file and WAL snapshot
    // record, so a member added later gets the store by snapshot instead of replaying a log
    // from index 1 that holds none of the restored keys.
    const initial = storage.initialState();
    const snap = storage.createSnapshot(storage.lastIndex(), initial.confState, new Uint8Array(0));
    await new Snapshotter(layout.snapDir, { logger: silentLogger }).save(snap);
    await wal.saveSnapshotMarker(snap.metadata);
    await wal.close();
    const hardState = initial.hardState;
    const db = await RocksBackend.open(layout.dbDir, [
      META_COLUMN,
      LEASE_COLUMN,
      MEMBERS_COLUMN,
      AUTH_COLUMN,
    ]);
    let counts: { revision: number; keys: number; leases: number; dropped: string[] };
    try {
      counts = copyBuckets(snapshot.reader, db);
      const batch = db.batch();
      const meta = db.columns[META_COLUMN]!;
      // The bootstrap entries are already applied: their members are written here.
      batch.put(META_KEYS.consistentIndex, uint64Be(storage.lastIndex()), meta);
      batch.put(META_KEYS.term, uint64Be(hardState.term), meta);
      for (const m of seed.values())
        batch.put(memberRowKey(m.id), memberCodec.encode(m), db.columns[MEMBERS_COLUMN]);
      batch.write(true);
    } finally {
      await db.close();
    }
    await rename(building, config.dataDir);
    return {
      ...counts,
      members: [...seed.values()],
      hashChecked: snapshot.hashChecked,
    };
  } catch (err) {
    await rm(building, { recursive: true, force: true });
    throw err;
  } finally {
    await snapshot.close();
  }
}

function copyBuckets(
  reader: BboltReader,
  db: RocksBackend,
): { revision: number; keys: number; leases: number; dropped: string[] } {
  const bucket = (name: string): BucketRoot | undefined => reader.bucket(name);
  let revision = 0;
  const keys = copyRows(reader, bucket(BUCKETS.key), db, undefined, (key) => {
    revision = Number(key.readBigUInt64BE(0));
  });
  const leaseBucket = bucket(BUCKETS.lease);
  const leases = copyRows(reader, leaseBucket, db, db.columns[LEASE_COLUMN]);
  const metaBatch = db.batch();
  for (const row of reader.rows(bucket(BUCKETS.meta)!)) {
    if (row.key.equals(META_KEYS.scheduledCompactRev) || row.key.equals(META_KEYS.finishedCompactRev)) {
      metaBatch.put(Buffer.from(row.key), Buffer.from(row.value), db.columns[META_COLUMN]);
    }
  }
  metaBatch.write(false);
  const dropped: string[] = [];
  const count = (name: string) => {
    const root = bucket(name);
    let n = 0;
    if (root !== undefined) for (const _ of reader.rows(root)) n++;
    return n;
  };
  const alarms = count(BUCKETS.alarm);
  if (alarms > 0) dropped.push(`${alarms} alarm(s) of the old cluster`);
  // The auth store comes over as it is, as etcd's restore keeps it: the auth column holds etcd's
  // `auth` bucket's rows unchanged and its users and roles under a prefix (auth/auth-store.ts).
  const authColumn = db.columns[AUTH_COLUMN];
  copyRows(reader, bucket(BUCKETS.auth), db, authColumn);
  copyRows(reader, bucket(BUCKETS.authUsers), db, authColumn, undefined, Buffer.from(AUTH_USER_PREFIX));
  copyRows(reader, bucket(BUCKETS.authRoles), db, authColumn, undefined, Buffer.from(AUTH_ROLE_PREFIX));
  return { revision, keys, leases, dropped };
}

function copyRows(
  reader: BboltReader,
  root: BucketRoot | undefined,
  db: RocksBackend,
  column: ColumnHandle | undefined,
  onKey?: (key: Buffer) => void,
  keyPrefix?: Buffer,
): number {
  if (root === undefined) return 0;
  let batch: WriteBatch = db.batch();
  let count = 0;
  for (const row of reader.rows(root)) {
    // Copies: the rows are views into a page buffer that the next page read replaces.
    const key = keyPrefix === undefined ? Buffer.from(row.key) : Buffer.concat([keyPrefix, row.key]);
    batch.put(key, Buffer.from(row.value), column);
    onKey?.(row.key);
    count++;
    if (batch.length >= BATCH_ROWS) {
      batch.write(false);
      batch = db.batch();
    }
  }
  if (batch.length > 0) batch.write(false);
  else batch.discard();
  return count;
}
