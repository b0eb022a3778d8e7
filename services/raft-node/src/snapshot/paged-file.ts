// A bbolt file written from the pages a BboltWriter hands back: they come in page-ID order, so
// the file is written front to back from page 2 in large sequential writes, and the two meta
// pages, which name the roots and so come last, go to offset 0 at the end. Memory: one batch.
import { type FileHandle, open } from "node:fs/promises";
import type { WrittenPage } from "./bbolt-writer.js";

const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * Writes the pages a BboltWriter produces (in ID order) to `path`, then the meta pages at offset
 * 0; returns the database's size in bytes.
 */
export async function writePagedFile(
  path: string,
  produce: (
    writePages: (pages: WrittenPage[]) => Promise<void>,
  ) => Promise<{ metaPages: Buffer; pageCount: number }>,
): Promise<number> {
  const file = await open(path, "w");
  try {
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let batchOffset = -1;
    let pageSize = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      await writeAll(file, batch, batchOffset);
      batch = [];
      batchBytes = 0;
    };
    const { metaPages, pageCount } = await produce(async (pages: WrittenPage[]) => {
      for (const page of pages) {
        pageSize ||= metaPageSize(page);
        // Pages arrive in ID order, so a batch is one contiguous run.
        if (batch.length === 0) batchOffset = page.id * pageSize;
        batch.push(page.bytes);
        batchBytes += page.bytes.length;
        if (batchBytes >= WRITE_BATCH_BYTES) await flush();
      }
    });
    await flush();
    await writeAll(file, [metaPages], 0);
    return pageCount * (metaPages.length / 2);
  } finally {
    await file.close();
  }
}

function metaPageSize(page: WrittenPage): number {
  // Every written page is a whole number of pages; the first one written is exactly one page
  // unless it overflows, and overflow is recorded in its header.
  return page.bytes.length / (page.bytes.readUInt32LE(12) + 1);
}

/** Writes the buffers back to back from `position`: one writev, no copy into one buffer. */
async function writeAll(file: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let total = 0;
  for (const b of buffers) total += b.length;
  const { bytesWritten } = await file.writev(buffers, position);
  if (bytesWritten === total) return;
  // A short write (rare on a regular file): the rest, buffer by buffer.
  let at = position;
  let skip = bytesWritten;
  for (const buffer of buffers) {
    let done = Math.min(skip, buffer.length);
    skip -= done;
    while (done < buffer.length) {
      const { bytesWritten: n } = await file.write(buffer, done, buffer.length - done, at + done);
      done += n;
    }
    at += buffer.length;
  }
}
