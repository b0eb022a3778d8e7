// The state machine's image as one file: every RocksDB row of every column family. It is what a
// leader streams to a follower with a Raft snapshot (Maintenance.Snapshot streams etcd's bbolt
// format instead: src/snapshot). Logical rows rather than RocksDB's SST files: the receiver rebuilds a
// fresh database, so the image does not depend on the sender's compaction state.
//
// Layout: "etcdtsIM" magic, u32 version; then blocks of
//   u16 column-name length, name, u32 row count, rows of (u32 key length, key, u32 value length, value)
// ending with a block whose name length is 0xffff. All integers big-endian.

import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { RocksBackend } from "../mvcc/rocks-backend.js";

const MAGIC = Buffer.from("etcdtsIM", "latin1");
const VERSION = 1;
const END = 0xffff;

export interface RowBlock {
  column: string;
  keys: Buffer[];
  values: Buffer[];
}

export function encodeImageHeader(): Buffer {
  const head = Buffer.alloc(12);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(VERSION, 8);
  return head;
}

export function encodeRowBlock(block: RowBlock): Buffer {
  const name = Buffer.from(block.column);
  let size = 2 + name.length + 4;
  for (let i = 0; i < block.keys.length; i++) size += 8 + block.keys[i].length + block.values[i].length;
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt16BE(name.length, 0);
  at += name.copy(out, at);
  at = out.writeUInt32BE(block.keys.length, at);
  for (let i = 0; i < block.keys.length; i++) {
    at = out.writeUInt32BE(block.keys[i].length, at);
    at += block.keys[i].copy(out, at);
    at = out.writeUInt32BE(block.values[i].length, at);
    at += block.values[i].copy(out, at);
  }
  return out;
}

export function encodeImageEnd(): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(END, 0);
  return out;
}

/** Writes the rows to `path`; returns the file's size. */
export async function writeStateImage(rows: AsyncIterable<RowBlock>, path: string): Promise<number> {
  const out = createWriteStream(path);
  let size = 0;
  const write = async (buf: Buffer) => {
    size += buf.length;
    if (!out.write(buf)) await once(out, "drain");
  };
  try {
    await write(encodeImageHeader());
    for await (const block of rows) await write(encodeRowBlock(block));
    await write(encodeImageEnd());
  } finally {
    out.end();
    await once(out, "close");
  }
  return size;
}

/**
 * Parses an image incrementally: feed it bytes as they come, get row blocks out. Throws on a
 * malformed image; `finished` says whether the end block was seen.
 */
export class StateImageParser {
  private pending: Buffer = Buffer.alloc(0);
  private headerSeen = false;
  finished = false;

  push(chunk: Buffer): RowBlock[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const blocks: RowBlock[] = [];
    let at = 0;
    if (!this.headerSeen) {
      if (this.pending.length < 12) return blocks;
      if (!this.pending.subarray(0, 8).equals(MAGIC)) throw new Error("not a state image");
      const version = this.pending.readUInt32BE(8);
      if (version !== VERSION) throw new Error(`unknown state image version ${version}`);
      this.headerSeen = true;
      at = 12;
    }
    for (;;) {
      if (this.finished) {
        if (at < this.pending.length) throw new Error("bytes after the end of the state image");
        break;
      }
      const parsed = this.parseBlock(at);
      if (parsed === undefined) break;
      at = parsed.next;
      if (parsed.block) blocks.push(parsed.block);
    }
    this.pending = this.pending.subarray(at);
    return blocks;
  }

  private parseBlock(start: number): { block?: RowBlock; next: number } | undefined {
    const buf = this.pending;
    if (buf.length < start + 2) return undefined;
    const nameLength = buf.readUInt16BE(start);
    if (nameLength === END) {
      this.finished = true;
      return { next: start + 2 };
    }
    let at = start + 2;
    if (buf.length < at + nameLength + 4) return undefined;
    const column = buf.toString("utf8", at, at + nameLength);
    at += nameLength;
    const count = buf.readUInt32BE(at);
    at += 4;
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (buf.length < at + 4) return undefined;
      const keyLength = buf.readUInt32BE(at);
      if (buf.length < at + 4 + keyLength + 4) return undefined;
      const key = Buffer.from(buf.subarray(at + 4, at + 4 + keyLength));
      at += 4 + keyLength;
      const valueLength = buf.readUInt32BE(at);
      if (buf.length < at + 4 + valueLength) return undefined;
      values.push(Buffer.from(buf.subarray(at + 4, at + 4 + valueLength)));
      keys.push(key);
      at += 4 + valueLength;
    }
    return { block: { column, keys, values }, next: at };
  }
}

/**
 * Builds a new RocksDB database at `location` (which must not exist) from the image at `path`;
 * `seen` is shown each block (to read the image's own applied index, say).
 */
export async function importStateImage(
  path: string,
  location: string,
  columns: readonly string[],
  seen?: (block: RowBlock) => void,
): Promise<void> {
  const db = await RocksBackend.open(location, columns);
  try {
    const parser = new StateImageParser();
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
      for (const block of parser.push(chunk as Buffer)) {
        seen?.(block);
        const handle = block.column === "default" ? undefined : db.columns[block.column];
        if (block.column !== "default" && handle === undefined) {
          throw new Error(`state image has an unknown column ${block.column}`);
        }
        const batch = db.batch();
        for (let i = 0; i < block.keys.length; i++) batch.put(block.keys[i], block.values[i], handle);
        // Synced per block (a block is ~1000 rows): the image must be durable before Raft is told.
        batch.write(true);
      }
    }
    if (!parser.finished) throw new Error("state image is truncated");
  } finally {
    await db.close();
  }
}
