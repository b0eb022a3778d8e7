// What a backup is, in objects of any store (object-store.ts):
//   <id>.db                 the snapshot exactly as Maintenance.Snapshot streamed it (etcd's bbolt
//                           file + sha256 trailer)
//   <id>.db.sha256          sha256sum's line for it, written last: a full backup is listed only
//                           when both exist
//   <id>.delta-<from>-<to>.jsonl (+ .sha256)  the lease and auth state at revision `to`
//                           (delta-state.ts), then the events of revisions from..to taken from a
//                           watch after the full one (delta-events.ts), the same two-object rule;
//                           from = to + 1: a state alone (leases or auth changed, no key did)
// IDs are the UTC time, so they sort in time order; revisions are zero-padded to sort too.
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { type DeltaState, decodeState } from "./delta-state.js";
import { BackupError, checkKey, type ObjectStore } from "./object-store.js";

export interface BackupEntry {
  id: string;
  size: number;
  sha256: string;
}

export interface DeltaEntry {
  /** The full backup it follows. */
  base: string;
  fromRevision: number;
  toRevision: number;
  key: string;
  size: number;
  /** Known when just written (listing does not read the .sha256 objects). */
  sha256?: string;
}

export interface Progress {
  bytes: number;
  /** The stream's own estimate of what is left (Maintenance.Snapshot's remaining_bytes). */
  remaining: number | undefined;
}

/** The member that streamed the snapshot failed or sent a corrupt one: another member may do. */
export class SnapshotSourceError extends BackupError {}

const TRAILER = 32;
const DELTA = /^(.+)\.delta-(\d{20})-(\d{20})\.jsonl$/;

export function deltaKey(base: string, from: number, to: number): string {
  return `${base}.delta-${String(from).padStart(20, "0")}-${String(to).padStart(20, "0")}.jsonl`;
}

export class BackupCatalog {
  constructor(readonly store: ObjectStore) {}

  get location(): string {
    return this.store.location;
  }

  /**
   * Writes a full backup from a snapshot stream, checking etcd's trailer (the sha256 of everything
   * before it) as the bytes pass: a bad stream fails the upload, so nothing is stored. Failures of
   * the stream itself are SnapshotSourceErrors; the store's are its own.
   */
  async writeFull(
    id: string,
    chunks: AsyncIterable<{ blob: Buffer; remaining?: number }>,
    onProgress: (p: Progress) => void = () => {},
  ): Promise<BackupEntry> {
    checkKey(id);
    if (id.includes(".")) throw new BackupError(`invalid backup id "${id}"`);
    if ((await this.store.list()).some((o) => o.key.startsWith(`${id}.`)))
      throw new BackupError(`backup ${id} already exists`);
    const whole = createHash("sha256");
    let bytes = 0;
    const checked = async function* (): AsyncGenerator<Buffer> {
      const body = createHash("sha256");
      // The last 32 bytes seen so far may be the trailer; everything before them is body.
      let tail = Buffer.alloc(0);
      const source = chunks[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<{ blob: Buffer; remaining?: number }>;
        try {
          next = await source.next();
        } catch (err) {
          // A final answer from the member (it refuses the caller): no other member would differ.
          if (err instanceof BackupError && !(err instanceof SnapshotSourceError)) throw err;
          throw new SnapshotSourceError(
            `snapshot stream failed after ${bytes} bytes: ${(err as Error).message}`,
          );
        }
        if (next.done) break;
        const { blob, remaining } = next.value;
        whole.update(blob);
        const joined = Buffer.concat([tail, blob]);
        const cut = Math.max(0, joined.length - TRAILER);
        body.update(joined.subarray(0, cut));
        tail = Buffer.from(joined.subarray(cut));
        bytes += blob.length;
        onProgress({ bytes, remaining });
        yield blob;
      }
      if (tail.length < TRAILER)
        throw new SnapshotSourceError(`snapshot stream ended after ${bytes} bytes: too short`);
      const digest = body.digest();
      if (!digest.equals(tail)) {
        throw new SnapshotSourceError(
          `snapshot stream is corrupt: trailer ${tail.toString("hex")} does not match the data's sha256 ${digest.toString("hex")}`,
        );
      }
    };
    const key = `${id}.db`;
    await this.store.put(key, checked());
    const sha256 = whole.digest("hex");
    await this.commit(key, sha256);
    return { id, size: bytes, sha256 };
  }

  /** Complete full backups, oldest first. */
  async list(): Promise<BackupEntry[]> {
    const objects = await this.store.list();
    const sizes = new Map(objects.map((o) => [o.key, o.size]));
    const out: BackupEntry[] = [];
    for (const o of objects) {
      if (!o.key.endsWith(".db") || !sizes.has(`${o.key}.sha256`)) continue;
      const sha256 = await this.storedHash(o.key).catch(() => undefined);
      if (sha256 !== undefined) out.push({ id: o.key.slice(0, -3), size: o.size, sha256 });
    }
    return out;
  }

  /** The complete deltas taken after full backup `id`, in revision order. */
  async deltas(id: string): Promise<DeltaEntry[]> {
    const objects = await this.store.list();
    const keys = new Set(objects.map((o) => o.key));
    const out: DeltaEntry[] = [];
    for (const o of objects) {
      const m = DELTA.exec(o.key);
      if (m === null || m[1] !== id || !keys.has(`${o.key}.sha256`)) continue;
      out.push({ base: id, fromRevision: Number(m[2]), toRevision: Number(m[3]), key: o.key, size: o.size });
    }
    // A delta with only a state (from = to + 1) sorts after the delta ending at its revision.
    return out.sort((a, b) => a.fromRevision - b.fromRevision || a.toRevision - b.toRevision);
  }

  /** Stores a delta: its lines, then its .sha256. */
  async writeDelta(
    base: string,
    fromRevision: number,
    toRevision: number,
    lines: AsyncIterable<Buffer>,
  ): Promise<DeltaEntry> {
    const key = deltaKey(base, fromRevision, toRevision);
    const sha = createHash("sha256");
    let size = 0;
    await this.store.put(
      key,
      (async function* () {
        for await (const line of lines) {
          sha.update(line);
          size += line.length;
          yield line;
        }
      })(),
    );
    const sha256 = sha.digest("hex");
    await this.commit(key, sha256);
    return { base, fromRevision, toRevision, key, size, sha256 };
  }

  /** Recomputes the snapshot's sha256 (downloading it from a remote store) against the stored one. */
  async checkHash(id: string): Promise<BackupEntry> {
    const { sha256, size } = await this.hashObject(`${id}.db`, async (chunks) => {
      for await (const _ of chunks);
    });
    return { id, size, sha256 };
  }

  /**
   * Runs `use` on a local file of object `key` whose sha256 matched the stored one: the file itself
   * for a directory store, else a temporary download removed afterwards.
   */
  async withCheckedFile<T>(
    key: string,
    use: (path: string, checked: { sha256: string; size: number }) => Promise<T>,
  ): Promise<T> {
    if (this.store.localPath) {
      const checked = await this.hashObject(key, async (chunks) => {
        for await (const _ of chunks);
      });
      return use(this.store.localPath(key), checked);
    }
    const dir = await mkdtemp(join(tmpdir(), "backup-download-"));
    try {
      const path = join(dir, key);
      const checked = await this.hashObject(key, (chunks) => pipeline(chunks, createWriteStream(path)));
      return await use(path, checked);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** A delta's lines, after its sha256 was checked (so nothing is applied from a damaged one). */
  async *deltaLines(key: string): AsyncGenerator<string> {
    await this.hashObject(key, async (chunks) => {
      for await (const _ of chunks);
    });
    let rest = "";
    for await (const chunk of this.store.get(key)) {
      const lines = (rest + chunk.toString("utf8")).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) if (line !== "") yield line;
    }
    if (rest !== "") yield rest;
  }

  /** The lease and auth state a delta starts with (undefined for one taken before deltas had states). */
  async deltaState(key: string): Promise<DeltaState | undefined> {
    for await (const line of this.deltaLines(key)) return decodeState(line);
    return undefined;
  }

  /** Deletes a full backup and its deltas, each marker first so nothing half-deleted is listed. */
  async remove(id: string): Promise<void> {
    for (const d of await this.deltas(id)) {
      await this.store.delete(`${d.key}.sha256`);
      await this.store.delete(d.key);
    }
    await this.store.delete(`${id}.db.sha256`);
    await this.store.delete(`${id}.db`);
  }

  private async commit(key: string, sha256: string): Promise<void> {
    try {
      await this.store.put(`${key}.sha256`, oneChunk(`${sha256}  ${key}\n`));
    } catch (err) {
      // Without its marker the object is never listed; removing it is tidiness, not safety.
      await this.store.delete(key).catch(() => {});
      throw err;
    }
  }

  private async hashObject(
    key: string,
    consume: (chunks: AsyncIterable<Buffer>) => Promise<void>,
  ): Promise<{ sha256: string; size: number }> {
    const expected = await this.storedHash(key);
    const sha = createHash("sha256");
    let size = 0;
    await consume(
      (async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          sha.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      })(this.store.get(key)),
    );
    const actual = sha.digest("hex");
    if (actual !== expected)
      throw new BackupError(`${describeKey(key)} is corrupt: sha256 ${actual}, stored ${expected}`);
    return { sha256: actual, size };
  }

  private async storedHash(key: string): Promise<string> {
    let text = "";
    try {
      for await (const chunk of this.store.get(`${key}.sha256`)) text += chunk.toString("utf8");
    } catch (err) {
      if (err instanceof BackupError && /^no object/.test(err.message))
        throw new BackupError(`no ${describeKey(key)} in ${this.store.location}`);
      throw err;
    }
    const hash = text.split(/\s+/)[0] ?? "";
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new BackupError(`${describeKey(key)}: malformed .sha256`);
    return hash;
  }
}

/** "backup ID" for a snapshot, "delta KEY" for a delta. */
function describeKey(key: string): string {
  return key.endsWith(".db") ? `backup ${key.slice(0, -3)}` : `delta ${key}`;
}

async function* oneChunk(text: string): AsyncGenerator<Buffer> {
  yield Buffer.from(text);
}
