// Objects as files in a local directory. An object is written to `<key>.part`, fsynced and
// renamed, so a file under its own name is always whole; a failed write removes the part.
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  BackupError,
  checkKey,
  type ObjectStore,
  type StoredObject,
  StoreUnavailableError,
} from "./object-store.js";

const PART = ".part";

export class DirectoryStore implements ObjectStore {
  readonly location: string;

  constructor(readonly dir: string) {
    this.location = `directory ${dir}`;
  }

  async check(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  localPath(key: string): string {
    checkKey(key);
    return join(this.dir, key);
  }

  async put(key: string, body: AsyncIterable<Buffer>): Promise<void> {
    const final = this.localPath(key);
    await mkdir(this.dir, { recursive: true });
    const part = `${final}${PART}`;
    const file = await open(part, "w");
    try {
      for await (const chunk of body) await file.write(chunk);
      await file.sync();
      await file.close();
      await rename(part, final);
    } catch (err) {
      await file.close().catch(() => {});
      await rm(part, { force: true });
      // The body's own failure passes as it is; the disk's (full, read-only, EIO) may pass with time.
      if (err instanceof BackupError) throw err;
      throw new StoreUnavailableError(`${this.location}: could not write ${key}: ${(err as Error).message}`);
    }
  }

  async *get(key: string): AsyncIterable<Buffer> {
    const path = this.localPath(key);
    if (!(await stat(path).catch(() => undefined))?.isFile())
      throw new BackupError(`no object ${key} in ${this.location}`);
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) yield chunk as Buffer;
  }

  async list(): Promise<StoredObject[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: StoredObject[] = [];
    for (const key of names.filter((n) => !n.endsWith(PART)).sort()) {
      const s = await stat(join(this.dir, key)).catch(() => undefined);
      if (s?.isFile()) out.push({ key, size: s.size });
    }
    return out;
  }

  async delete(key: string): Promise<void> {
    await rm(this.localPath(key), { force: true });
  }
}
