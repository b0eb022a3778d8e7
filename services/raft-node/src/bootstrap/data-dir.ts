// The member's data directory: where each part lives, the identity file, and the state
// machine's extra column families read back at start-up and after a snapshot install.
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { AUTH_COLUMN } from "../auth/mod.js";
import type { MemberConfig } from "../config/flags.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { MEMBERS_COLUMN } from "../membership/members-table.js";
import { RocksBackend } from "../mvcc/rocks-backend.js";

/** Column families other state machines write in the store's batches. */
export const EXTRA_COLUMNS = [LEASE_COLUMN, MEMBERS_COLUMN, AUTH_COLUMN] as const;

export interface Identity {
  memberId: number;
  clusterId: number;
}

export interface Layout {
  memberDir: string;
  walDir: string;
  snapDir: string;
  dbDir: string;
  identityFile: string;
}

export type ColumnRows = Map<string, { key: Buffer; value: Buffer }[]>;

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

export async function readIdentity(path: string): Promise<Identity | undefined> {
  try {
    const bytes = await readFile(path);
    if (bytes.length !== 16) throw new Error(`${path} is ${bytes.length} bytes, expected 16`);
    return { memberId: Number(bytes.readBigUInt64BE(0)), clusterId: Number(bytes.readBigUInt64BE(8)) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export async function writeIdentity(path: string, identity: Identity): Promise<void> {
  const bytes = Buffer.alloc(16);
  bytes.writeBigUInt64BE(BigInt(identity.memberId), 0);
  bytes.writeBigUInt64BE(BigInt(identity.clusterId), 8);
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, "w");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

/** The lease, members and auth rows of a closed database, to rebuild those state machines. */
export async function readColumns(location: string): Promise<ColumnRows> {
  const db = await RocksBackend.open(location, ["meta", ...EXTRA_COLUMNS]);
  const out: ColumnRows = new Map();
  try {
    for (const column of EXTRA_COLUMNS) {
      const rows: { key: Buffer; value: Buffer }[] = [];
      const it = db.iterator({ column: db.columns[column]! });
      try {
        for (;;) {
          const chunk = it.nextSync(1000);
          for (let i = 0; i < chunk.keys.length; i++)
            rows.push({ key: chunk.keys[i]!, value: chunk.values[i]! });
          if (chunk.finished) break;
        }
      } finally {
        it.close();
      }
      out.set(column, rows);
    }
  } finally {
    await db.close();
  }
  return out;
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
