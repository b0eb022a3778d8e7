// Backups as files in a local directory: `<id>.db` (the snapshot exactly as Maintenance.Snapshot
// streamed it: etcd's bbolt file + sha256 trailer) and `<id>.sha256` beside it (sha256sum's
// format, over the whole file). A backup is written as `<id>.db.part`, its trailer checked as the
// bytes stream through (nothing is held in memory), fsynced, its .sha256 written, and only then
// renamed to `<id>.db`: a listed backup is always complete.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";

export class BackupError extends Error {}

export interface BackupEntry {
  id: string;
  size: number;
  sha256: string;
}

export interface Progress {
  bytes: number;
  /** The stream's own estimate of what is left (Maintenance.Snapshot's remaining_bytes). */
  remaining: number | undefined;
}

const TRAILER = 32;

export class DirectoryStore {
  constructor(readonly dir: string) {}

  path(id: string): string {
    return join(this.dir, `${id}.db`);
  }

  /**
   * Writes a backup from `chunks`; checks etcd's trailer (the sha256 of everything before it)
   * before the backup becomes visible. On any failure nothing is left behind.
   */
  async write(
    id: string,
    chunks: AsyncIterable<{ blob: Buffer; remaining?: number }>,
    onProgress: (p: Progress) => void = () => {},
  ): Promise<BackupEntry> {
    if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new BackupError(`invalid backup id "${id}"`);
    await mkdir(this.dir, { recursive: true });
    const final = this.path(id);
    if (await exists(final)) throw new BackupError(`backup ${id} already exists`);
    const part = `${final}.part`;
    const file = await open(part, "w");
    const whole = createHash("sha256");
    const body = createHash("sha256");
    // The last 32 bytes seen so far may be the trailer; everything before them is body.
    let tail = Buffer.alloc(0);
    let bytes = 0;
    try {
      for await (const { blob, remaining } of chunks) {
        await file.write(blob);
        whole.update(blob);
        const joined = Buffer.concat([tail, blob]);
        const cut = Math.max(0, joined.length - TRAILER);
        body.update(joined.subarray(0, cut));
        tail = Buffer.from(joined.subarray(cut));
        bytes += blob.length;
        onProgress({ bytes, remaining });
      }
      if (tail.length < TRAILER)
        throw new BackupError(`snapshot stream ended after ${bytes} bytes: too short`);
      const digest = body.digest();
      if (!digest.equals(tail)) {
        throw new BackupError(
          `snapshot stream is corrupt: trailer ${tail.toString("hex")} does not match the data's sha256 ${digest.toString("hex")}`,
        );
      }
      await file.sync();
      await file.close();
      const sha256 = whole.digest("hex");
      await writeDurably(join(this.dir, `${id}.sha256`), `${sha256}  ${id}.db\n`);
      await rename(part, final);
      return { id, size: bytes, sha256 };
    } catch (err) {
      await file.close().catch(() => {});
      await rm(part, { force: true });
      await rm(join(this.dir, `${id}.sha256`), { force: true });
      throw err;
    }
  }

  /** Complete backups, oldest first (ids sort by time). */
  async list(): Promise<BackupEntry[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: BackupEntry[] = [];
    for (const name of names.filter((n) => n.endsWith(".db")).sort()) {
      const id = name.slice(0, -3);
      const sha256 = await this.storedHash(id).catch(() => undefined);
      if (sha256 === undefined) continue;
      out.push({ id, size: (await stat(join(this.dir, name))).size, sha256 });
    }
    return out;
  }

  /** Recomputes the file's sha256 and compares it with the stored one. */
  async checkHash(id: string): Promise<BackupEntry> {
    const path = this.path(id);
    if (!(await exists(path))) throw new BackupError(`no backup ${id} in ${this.dir}`);
    const expected = await this.storedHash(id);
    const sha = createHash("sha256");
    let size = 0;
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
      sha.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const actual = sha.digest("hex");
    if (actual !== expected) {
      throw new BackupError(`backup ${id} is corrupt: sha256 ${actual}, stored ${expected}`);
    }
    return { id, size, sha256: actual };
  }

  async remove(id: string): Promise<void> {
    await rm(this.path(id), { force: true });
    await rm(join(this.dir, `${id}.sha256`), { force: true });
  }

  private async storedHash(id: string): Promise<string> {
    const text = await readFile(join(this.dir, `${id}.sha256`), "utf8").catch(() => {
      throw new BackupError(`backup ${id} has no .sha256 beside it`);
    });
    const hash = text.split(/\s+/)[0] ?? "";
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new BackupError(`backup ${id}: malformed .sha256`);
    return hash;
  }
}

/** Which backups a keep-last-N policy deletes, given ids oldest first. */
export function beyondRetention(ids: readonly string[], keepLast: number): string[] {
  if (!Number.isInteger(keepLast) || keepLast < 1) throw new BackupError("--keep-last must be at least 1");
  return ids.slice(0, Math.max(0, ids.length - keepLast));
}

async function writeDurably(path: string, text: string): Promise<void> {
  const file = await open(path, "w");
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
