// The member's data directory: where each part lives, the identity file, and the state
// machine's extra column families (read back from the open store: MvccStore.extraColumnRows).
import { readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AUTH_COLUMN } from "../auth/mod.js";
import type { MemberConfig } from "../config/flags.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { MEMBERS_COLUMN } from "../membership/members-table.js";
import { writeFileAtomically } from "../wal/durable-fs.js";

/** Column families other state machines write in the store's batches. */
export const EXTRA_COLUMNS = [LEASE_COLUMN, MEMBERS_COLUMN, AUTH_COLUMN] as const;

export interface Identity {
  memberId: bigint;
  clusterId: bigint;
}

export interface Layout {
  memberDir: string;
  walDir: string;
  snapDir: string;
  dbDir: string;
  identityFile: string;
}

export function layoutOf(config: MemberConfig): Layout {
  const memberDir = join(config.dataDir, "member");
  const snapDir = join(memberDir, "snap");
  return {
    memberDir,
    walDir: config.walDir !== "" ? config.walDir : join(memberDir, "wal"),
    snapDir,
    dbDir: join(snapDir, "db"),
    identityFile: join(memberDir, "identity"),
  };
}

// The identity file: a format byte, then the member and cluster IDs (8 bytes each, big-endian).
// Format 2 holds etcd's 64-bit IDs. The 16-byte file without a format byte was written by
// etcd-ts before IDs were etcd's (53-bit IDs, etcd's shifted right by 11 bits); those IDs are
// in every member's WAL, membership rows, entry envelopes and lease IDs, and no member can
// rewrite the others', so such a data dir is refused rather than migrated.
const IDENTITY_FORMAT = 2;

export async function readIdentity(path: string): Promise<Identity | undefined> {
  try {
    const bytes = await readFile(path);
    if (bytes.length === 16) {
      throw new Error(
        `${path} was written by an older etcd-ts whose member and cluster IDs were 53-bit ` +
          `(member ${bytes.readBigUInt64BE(0).toString(16)}); IDs are now etcd's 64-bit values and ` +
          "such a data dir cannot be migrated in place: start the cluster on new data dirs and copy " +
          "the keys over (e.g. etcdctl make-mirror from the old cluster run by the old version)",
      );
    }
    if (bytes.length !== 17 || bytes[0] !== IDENTITY_FORMAT) {
      throw new Error(`${path} is not an identity file (${bytes.length} bytes, format ${bytes[0]})`);
    }
    return { memberId: bytes.readBigUInt64BE(1), clusterId: bytes.readBigUInt64BE(9) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export async function writeIdentity(path: string, identity: Identity): Promise<void> {
  const bytes = Buffer.alloc(17);
  bytes[0] = IDENTITY_FORMAT;
  bytes.writeBigUInt64BE(identity.memberId, 1);
  bytes.writeBigUInt64BE(identity.clusterId, 9);
  // The directory too: a rename only in the page cache was lost with the power (power-loss
  // test: "identity is missing" when the member died before the file system's next commit).
  await writeFileAtomically(dirname(path), path, [bytes], true);
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** A crash between the two renames of a snapshot install leaves the previous database as .old. */
export async function recoverInterruptedInstall(location: string): Promise<void> {
  if (!(await exists(location)) && (await exists(`${location}.old`)))
    await rename(`${location}.old`, location);
  await rm(`${location}.incoming`, { recursive: true, force: true });
}
