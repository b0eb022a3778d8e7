// A data dir that etcd wrote: its `member/snap/db` is a bbolt file, where ours is a RocksDB
// directory. One shape of it is taken at a member's first start: what `etcdctl snapshot restore`
// writes for a new cluster (the db holding every key; a WAL holding only the new cluster's
// bootstrap, one ConfChange entry per member). It is imported as `raft-node snapshot restore`
// would import that db with this member's own flags, so `etcdctl snapshot restore` followed by
// starting this member works as it does with etcd. etcd's files are kept, as they were, in
// `<data-dir>/member.etcd`.
// Any other etcd data dir (a member that ran: its WAL holds entries its db may not have applied
// yet) is refused with the way to migrate: importing the db alone could lose acknowledged writes,
// and members imported at different points would diverge.
//
// The WAL reading is etcd's wal/decoder.go: each record is an 8-byte little-endian length word
// (the low 56 bits the record's size; with the top bit set, the top byte's low 3 bits are the
// padding that follows it), then a walpb.Record {type = 1, crc = 2, data = 3}. The CRC is
// Castagnoli, chained over every record's data; a segment opens with a crc record carrying the
// chain's value so far. A zero length word ends the records (segments are preallocated).

import { readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { WireReader } from "@etcd-ts/api";
import { crc32c } from "@node-rs/crc32";
import { exists, layoutOf } from "../bootstrap/data-dir.js";
import type { MemberConfig } from "../config/flags.js";
import { fsyncDir } from "../wal/durable-fs.js";
import { type RestoreResult, restoreSnapshot } from "./restore.js";

/** raftpb.EntryType's EntryConfChange (V2 is 2: etcd 3.4 never writes it). */
const CONF_CHANGE = 1;
/** walpb record types (etcd wal/wal.go). */
const RECORD = { metadata: 1, entry: 2, state: 3, crc: 4, snapshot: 5 } as const;

export class EtcdWalError extends Error {}
/** An etcd data dir this member will not start on; the message says how to migrate. */
export class EtcdDataDirError extends Error {}

/** etcd's WAL file names: sequence and first index, 16 hex digits each. */
const SEGMENT_NAME = /^[0-9a-f]{16}-[0-9a-f]{16}\.wal$/;

export interface EtcdDataDirImport {
  /** Where etcd's files were moved: `<data-dir>/member.etcd`. */
  keptAt: string;
  /** What was restored; undefined when this start only finished an interrupted import's renames. */
  restored?: RestoreResult;
}

/**
 * Before the member opens its data dir: imports etcd's, as the header says, or does nothing
 * when the data dir is ours (or new). Everything stays inside the data dir: the db is restored
 * into `member.importing/`, then etcd's `member/` is renamed to `member.etcd/` and the import's
 * `member/` into its place. A crash between the two renames is finished by the next start; one
 * before them leaves etcd's files as they were.
 */
export async function importEtcdDataDir(config: MemberConfig): Promise<EtcdDataDirImport | undefined> {
  const dataDir = config.dataDir;
  const member = join(dataDir, "member");
  const kept = join(dataDir, "member.etcd");
  const staged = join(dataDir, "member.importing");
  if (!(await exists(member)) && (await exists(kept)) && (await exists(join(staged, "member")))) {
    await rename(join(staged, "member"), member);
    await fsyncDir(dataDir);
    await rm(staged, { recursive: true, force: true });
    return { keptAt: kept };
  }
  const db = layoutOf(config).dbDir;
  if (!(await isEtcdDatabaseFile(db))) return undefined;
  const refuse = (why: string) =>
    new EtcdDataDirError(
      `${dataDir} was written by etcd (member/snap/db is a bbolt file) and ${why}; only a data dir as ` +
        "`etcdctl snapshot restore` writes it is imported at a first start. Migrate a running etcd cluster " +
        "with `etcdctl snapshot save FILE` and `raft-node snapshot restore FILE --data-dir NEW ...` (or " +
        "`etcdctl snapshot restore`) for each member, then start the members on the new data dirs.",
    );
  if (config.walDir !== "") throw refuse("--wal-dir is set (not supported for an import)");
  const walDir = join(member, "wal");
  const names = (await readdir(walDir).catch(() => [] as string[]))
    .filter((n) => SEGMENT_NAME.test(n))
    .sort();
  if (names.length === 0) throw refuse("has no WAL");
  let crc = 0;
  const total = { confChanges: 0, normalEntries: 0, lastIndex: 0 };
  for (const name of names) {
    let summary: EtcdWalSummary;
    try {
      summary = summarizeEtcdWalSegment(await readFile(join(walDir, name)), name, crc);
    } catch (err) {
      if (err instanceof EtcdWalError) throw refuse(`its WAL is unreadable (${err.message})`);
      throw err;
    }
    crc = summary.crc;
    total.confChanges += summary.confChanges;
    total.normalEntries += summary.normalEntries;
    total.lastIndex = summary.lastIndex || total.lastIndex;
  }
  const why = notRestoreShaped(total);
  if (why !== undefined) throw refuse(why);
  if (await exists(kept)) throw refuse("member.etcd exists in it (an earlier import's copy of etcd's files)");
  await rm(staged, { recursive: true, force: true });
  // etcd's restore wrote the db without its sha256 trailer (a data dir's db has none).
  const restored = await restoreSnapshot(db, { ...config, dataDir: staged }, { skipHashCheck: true });
  await rename(member, kept);
  await rename(join(staged, "member"), member);
  await fsyncDir(dataDir);
  await rm(staged, { recursive: true, force: true });
  return { keptAt: kept, restored };
}

export interface EtcdWalSummary {
  /** Raft entries in the WAL, by type. */
  confChanges: number;
  normalEntries: number;
  /** The last entry's index (0 without entries). */
  lastIndex: number;
  /** The chained CRC after the last record, for the next segment. */
  crc: number;
}

/**
 * Counts the entries of one etcd WAL segment, checking every record's CRC. `crc` is the chain's
 * value at the segment's start (0 for the first); a mismatch or a malformed record throws.
 */
export function summarizeEtcdWalSegment(segment: Buffer, name: string, crc = 0): EtcdWalSummary {
  const summary: EtcdWalSummary = { confChanges: 0, normalEntries: 0, lastIndex: 0, crc };
  let offset = 0;
  while (offset + 8 <= segment.length) {
    const word = segment.readBigUInt64LE(offset);
    if (word === 0n) break;
    const size = Number(word & 0x00ffffffffffffffn);
    const padding = word & 0x8000000000000000n ? Number((word >> 56n) & 7n) : 0;
    const start = offset + 8;
    if (start + size + padding > segment.length)
      throw new EtcdWalError(`${name}: a record at offset ${offset} runs past the end of the file`);
    const record = readRecord(segment.subarray(start, start + size), name, offset);
    if (record.type === RECORD.crc) {
      if (summary.crc !== 0 && record.crc !== summary.crc)
        throw new EtcdWalError(`${name}: CRC chain broken at offset ${offset}`);
      summary.crc = record.crc;
    } else {
      summary.crc = crc32c(record.data, summary.crc);
      if (record.crc !== summary.crc) throw new EtcdWalError(`${name}: CRC mismatch at offset ${offset}`);
      if (record.type === RECORD.entry) {
        const entry = readEntry(record.data, name, offset);
        if (entry.type === CONF_CHANGE) summary.confChanges++;
        else summary.normalEntries++;
        summary.lastIndex = entry.index;
      }
    }
    offset = start + size + padding;
  }
  return summary;
}

function readRecord(
  bytes: Buffer,
  name: string,
  offset: number,
): { type: number; crc: number; data: Uint8Array } {
  const r = new WireReader(bytes);
  let type = 0;
  let crc = 0;
  let data: Uint8Array = new Uint8Array(0);
  try {
    while (r.next()) {
      if (r.fieldNumber === 1) type = r.varint();
      else if (r.fieldNumber === 2) crc = r.varint();
      else if (r.fieldNumber === 3) data = r.bytes();
      else r.skip();
    }
  } catch (err) {
    throw new EtcdWalError(`${name}: undecodable record at offset ${offset}: ${(err as Error).message}`);
  }
  return { type, crc, data };
}

/** raftpb.Entry's type (1) and index (3); term (2) and data (4) are not needed here. */
function readEntry(bytes: Uint8Array, name: string, offset: number): { type: number; index: number } {
  const r = new WireReader(bytes);
  let type = 0;
  let index = 0;
  try {
    while (r.next()) {
      if (r.fieldNumber === 1) type = r.varint();
      else if (r.fieldNumber === 3) index = r.varint();
      else r.skip();
    }
  } catch (err) {
    throw new EtcdWalError(`${name}: undecodable entry at offset ${offset}: ${(err as Error).message}`);
  }
  return { type, index };
}

/** Whether `dbPath` (a data dir's member/snap/db) is a file: etcd's bbolt database, not our RocksDB. */
export async function isEtcdDatabaseFile(dbPath: string): Promise<boolean> {
  try {
    return (await stat(dbPath)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/**
 * Why an etcd data dir whose WAL says `summary` cannot be imported, or undefined when it is the
 * shape `etcdctl snapshot restore` writes (the bootstrap's ConfChange entries and nothing else).
 */
export function notRestoreShaped(summary: Omit<EtcdWalSummary, "crc">): string | undefined {
  if (summary.confChanges === 0) return "its WAL holds no cluster bootstrap";
  if (summary.normalEntries > 0)
    return `its WAL holds ${summary.normalEntries} entries beyond the cluster's bootstrap (a member that ran, not one \`etcdctl snapshot restore\` wrote)`;
  return undefined;
}
