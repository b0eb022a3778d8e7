// Snapshot files: `<term>-<index>.snap` (16 hex digits each, as etcd names them).
//
// Layout (little-endian):
//   0   "etcdtsSN" magic
//   8   u32 format version
//   12  u32 metadata length M
//   16  M bytes of snapshot metadata (@etcd-ts/raft's codec)
//   ..  u64 data length D, then D bytes of data
//   end u32 CRC32C of every byte before it
//
// A file is written whole or not at all (temp file, fsync, rename, directory fsync). On
// load, a file that fails its checks is renamed to `.broken` (kept for inspection, as etcd
// does) and reported, and the next older one is tried.

import { mkdir, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  decodeSnapshotMetadata,
  encodeSnapshotMetadata,
  type Snapshot,
  type SnapshotMetadata,
} from "@etcd-ts/raft";
import { crc32c } from "@node-rs/crc32";
import { fsyncDir, writeFileAtomically } from "./durable-fs.js";
import type { WalLogger } from "./wal.js";

const MAGIC = Buffer.from("etcdtsSN", "latin1");
const FORMAT_VERSION = 1;
const SNAP_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
const TWO_32 = 2 ** 32;

export interface SnapshotFileRef {
  file: string;
  term: number;
  index: number;
}

export interface BrokenSnapshot {
  file: string;
  reason: string;
}

export interface LoadedSnapshot {
  snapshot: Snapshot;
  file: string;
}

export interface SnapshotterOptions {
  logger?: WalLogger;
  /** false skips fsyncs; only for tests and benchmarks. */
  sync?: boolean;
}

export class Snapshotter {
  private readonly logger?: WalLogger;
  private readonly sync: boolean;

  constructor(
    readonly dir: string,
    options: SnapshotterOptions = {},
  ) {
    this.logger = options.logger;
    this.sync = options.sync ?? true;
  }

  async save(snapshot: Snapshot): Promise<string> {
    const { metadata, data } = snapshot;
    await mkdir(this.dir, { recursive: true });
    const meta = encodeSnapshotMetadata(metadata);
    const head = Buffer.alloc(16);
    MAGIC.copy(head, 0);
    head.writeUInt32LE(FORMAT_VERSION, 8);
    head.writeUInt32LE(meta.length, 12);
    const dataLength = Buffer.alloc(8);
    dataLength.writeUInt32LE(data.length % TWO_32, 0);
    dataLength.writeUInt32LE(Math.floor(data.length / TWO_32), 4);
    let crc = crc32c(head);
    crc = crc32c(meta, crc);
    crc = crc32c(dataLength, crc);
    crc = crc32c(data, crc);
    const trailer = Buffer.alloc(4);
    trailer.writeUInt32LE(crc, 0);
    const path = join(this.dir, snapshotFileName(metadata));
    await writeFileAtomically(this.dir, path, [head, meta, dataLength, data, trailer], this.sync);
    return path;
  }

  /** Snapshot files by name, newest (highest index) first; contents unchecked. */
  async list(): Promise<SnapshotFileRef[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    const refs: SnapshotFileRef[] = [];
    for (const name of names) {
      const m = SNAP_NAME.exec(name);
      if (m) {
        refs.push({
          file: join(this.dir, name),
          term: Number.parseInt(m[1], 16),
          index: Number.parseInt(m[2], 16),
        });
      }
    }
    return refs.sort((a, b) => b.index - a.index || b.term - a.term);
  }

  /**
   * The newest snapshot that reads back intact and that `acceptable` allows (for
   * instance: one the WAL holds a marker for). Undefined when there is none.
   */
  async loadNewest(
    acceptable: (meta: SnapshotMetadata) => boolean = () => true,
  ): Promise<{ loaded?: LoadedSnapshot; broken: BrokenSnapshot[] }> {
    const broken: BrokenSnapshot[] = [];
    for (const ref of await this.list()) {
      let snapshot: Snapshot;
      try {
        snapshot = decodeSnapshotFile(await readFile(ref.file));
        if (snapshot.metadata.index !== ref.index || snapshot.metadata.term !== ref.term) {
          throw new Error(
            `holds index ${snapshot.metadata.index} term ${snapshot.metadata.term}, not what its name says`,
          );
        }
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        broken.push({ file: ref.file, reason });
        this.logger?.warn({ file: ref.file, reason }, "snapshotter: skipping a corrupt snapshot file");
        await rename(ref.file, `${ref.file}.broken`);
        continue;
      }
      if (acceptable(snapshot.metadata)) return { loaded: { snapshot, file: ref.file }, broken };
    }
    return { broken };
  }

  /** Deletes all but the newest `keep` snapshot files, and leftover temp files. */
  async purge(keep: number): Promise<string[]> {
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`keep must be at least 1, got ${keep}`);
    const doomed = (await this.list()).slice(keep).map((r) => r.file);
    for (const name of await readdir(this.dir)) {
      if (name.endsWith(".snap.tmp")) doomed.push(join(this.dir, name));
    }
    for (const file of doomed) await unlink(file);
    if (doomed.length > 0 && this.sync) await fsyncDir(this.dir);
    return doomed;
  }
}

export function snapshotFileName(meta: SnapshotMetadata): string {
  return `${meta.term.toString(16).padStart(16, "0")}-${meta.index.toString(16).padStart(16, "0")}.snap`;
}

export function decodeSnapshotFile(bytes: Buffer): Snapshot {
  if (bytes.length < 16 + 8 + 4) throw new Error(`file of ${bytes.length} bytes is too short`);
  if (!bytes.subarray(0, 8).equals(MAGIC)) throw new Error("bad magic");
  const stored = bytes.readUInt32LE(bytes.length - 4);
  const computed = crc32c(bytes.subarray(0, bytes.length - 4));
  if (stored !== computed) throw new Error(`checksum mismatch (stored ${stored}, computed ${computed})`);
  const version = bytes.readUInt32LE(8);
  if (version !== FORMAT_VERSION)
    throw new Error(`format version ${version}, this build reads ${FORMAT_VERSION}`);
  const metaLength = bytes.readUInt32LE(12);
  const dataAt = 16 + metaLength + 8;
  if (dataAt > bytes.length - 4) throw new Error("metadata length runs past the end");
  const metadata = decodeSnapshotMetadata(bytes.subarray(16, 16 + metaLength));
  const dataLength = bytes.readUInt32LE(16 + metaLength + 4) * TWO_32 + bytes.readUInt32LE(16 + metaLength);
  if (dataAt + dataLength !== bytes.length - 4) throw new Error("data length does not match the file size");
  // A view, not a copy: the file buffer is almost all data, and snapshots can be large.
  return { metadata, data: bytes.subarray(dataAt, dataAt + dataLength) };
}
