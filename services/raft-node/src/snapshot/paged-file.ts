// A bbolt file written from the pages a BboltWriter hands back: they come in page-ID order, so
// the file is written front to back from page 2 in large sequential writes, and the two meta
// pages, which name the roots and so come last, go to offset 0 at the end. Memory: one batch.
import { writevSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import type { WrittenPage } from "./bbolt-writer.js";

const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * How a PageFile writes: "pool" on libuv's threads (a thread that serves others: its loop stays
 * free), "thread" on the calling thread, blocking it (a worker that does nothing else: the
 * copying into the page cache is then that thread's CPU, at its priority, and libuv's four
 * threads stay free for the member's WAL writes).
 */
export type PageWrites = "pool" | "thread";

/**
 * Writes the pages a BboltWriter produces (in ID order) to `path`, then the meta pages at offset
 * 0; returns the database's size in bytes.
 */
export async function writePagedFile(
  path: string,
  produce: (
    writePages: (pages: WrittenPage[]) => Promise<void>,
  ) => Promise<{ metaPages: Buffer; pageCount: number }>,
  writes: PageWrites = "pool",
): Promise<number> {
  const file = await PageFile.create(path, writes);
  try {
    const { metaPages, pageCount } = await produce((pages) => file.write(pages));
    await file.flush();
    await writeAll(file.handle, [metaPages], 0, writes);
    return pageCount * (metaPages.length / 2);
  } finally {
    await file.close();
  }
}

/**
 * A file of pages at their IDs' offsets, written in batches of contiguous pages (a leaf run's
 * file, from page 0; or a database's, from page 2). Flush before closing.
 */
export class PageFile {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private batchOffset = -1;
  private nextOffset = -1;
  private pageSize = 0;

  private constructor(
    readonly handle: FileHandle,
    private readonly writes: PageWrites,
  ) {}

  static async create(path: string, writes: PageWrites = "pool"): Promise<PageFile> {
    return new PageFile(await open(path, "w"), writes);
  }

  /** Pages in ID order (a page may be a run of several, with overflow or adopted leaves). */
  async write(pages: WrittenPage[]): Promise<void> {
    for (const page of pages) {
      this.pageSize ||= metaPageSize(page);
      const offset = page.id * this.pageSize;
      // Pages arrive in ID order, but adopted leaves leave a gap, written later: a new batch.
      if (this.batch.length > 0 && offset !== this.nextOffset) await this.flush();
      if (this.batch.length === 0) this.batchOffset = offset;
      this.batch.push(page.bytes);
      this.batchBytes += page.bytes.length;
      this.nextOffset = offset + page.bytes.length;
      if (this.batchBytes >= WRITE_BATCH_BYTES) await this.flush();
    }
  }

  async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    await writeAll(this.handle, this.batch, this.batchOffset, this.writes);
    this.batch = [];
    this.batchBytes = 0;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

function metaPageSize(page: WrittenPage): number {
  // Every written page is a whole number of pages; the first one written is exactly one page
  // unless it overflows, and overflow is recorded in its header.
  return page.bytes.length / (page.bytes.readUInt32LE(12) + 1);
}

/** Writes the buffers back to back from `position`: one writev, no copy into one buffer. */
async function writeAll(
  file: FileHandle,
  buffers: Buffer[],
  position: number,
  writes: PageWrites,
): Promise<void> {
  let total = 0;
  for (const b of buffers) total += b.length;
  const bytesWritten =
    writes === "thread"
      ? writevSync(file.fd, buffers, position)
      : (await file.writev(buffers, position)).bytesWritten;
  if (bytesWritten === total) return;
  // A short write (rare on a regular file): the rest, buffer by buffer.
  let at = position;
  let skip = bytesWritten;
  for (const buffer of buffers) {
    let done = Math.min(skip, buffer.length);
    skip -= done;
    while (done < buffer.length) {
      done +=
        writes === "thread"
          ? writevSync(file.fd, [buffer.subarray(done)], at + done)
          : (await file.write(buffer, done, buffer.length - done, at + done)).bytesWritten;
    }
    at += buffer.length;
  }
}
