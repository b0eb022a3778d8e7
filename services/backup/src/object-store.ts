// Where backups are kept: named objects written whole or not at all. A local directory
// (directory-store.ts) and S3 or any S3-compatible server (s3-store.ts) implement it; what a
// backup is made of (snapshot, sha256, deltas) is backup-catalog.ts's business, not the store's.

export class BackupError extends Error {}

/** A store that could not be reached or answered with an error: worth retrying. */
export class StoreUnavailableError extends BackupError {}

export interface StoredObject {
  key: string;
  size: number;
}

export interface ObjectStore {
  /** Where the objects are, for messages: `directory backups` or `s3://bucket/prefix/`. */
  readonly location: string;
  /** Fails with a clear BackupError when the store cannot be used (an S3 bucket that does not exist). */
  check(): Promise<void>;
  /**
   * Streams `body` into `key` without holding it in memory. The object becomes visible only once
   * all of it is stored; if `body` throws or the store fails, nothing is left under `key`.
   */
  put(key: string, body: AsyncIterable<Buffer>): Promise<void>;
  /** The object's bytes; a BackupError naming the key when there is none. */
  get(key: string): AsyncIterable<Buffer>;
  /** Every object, in key order. */
  list(): Promise<StoredObject[]>;
  delete(key: string): Promise<void>;
  /** A path to read the object in place, for a store that is a local directory. */
  localPath?(key: string): string;
}

/** Object keys are plain names: no separators, no dot-dot, nothing a shell or URL mangles. */
export function checkKey(key: string): void {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(key) || key.includes(".."))
    throw new BackupError(`invalid object name "${key}"`);
}
