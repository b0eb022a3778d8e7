// A bbolt database as a byte stream, front to back, without a file: bbolt's meta pages come
// first and name the root bucket's page, the freelist and the high-water mark, which a bottom-up
// writer only knows at the end. So the rows are read twice from the same consistent source: a
// first pass with a layout-only BboltWriter assigns every page ID (no encoding), which gives the
// meta pages; the second encodes the pages and sends them in order behind those metas. Memory is
// one chunk buffer (reused) plus the writers' few pages, whatever the database size.
import { DEFAULT_PAGE_SIZE } from "./bbolt-format.js";
import { BboltWriter, type WrittenPage } from "./bbolt-writer.js";

/**
 * Puts every bucket's rows into `writer` (which it does not finish), handing its pages to
 * `writePages`. Called twice; both calls must put exactly the same rows.
 */
export type PageProducer = (
  writer: BboltWriter,
  writePages: (pages: WrittenPage[]) => Promise<void>,
) => Promise<void>;

export interface PageSink {
  /** Called once, before any bytes: the database's size in bytes. */
  begin(size: number): void;
  /** The next bytes of the file; `chunk` is reused once the returned promise settles. */
  write(chunk: Buffer): Promise<void>;
}

export const STREAM_CHUNK_BYTES = 1024 * 1024;

/** Streams the database `produce` describes to `sink`; returns its size in bytes. */
export async function streamPages(
  produce: PageProducer,
  sink: PageSink,
  options: { pageSize?: number; chunkBytes?: number } = {},
): Promise<number> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const layout = new BboltWriter(pageSize, true);
  await produce(layout, async () => {});
  const planned = layout.finish();
  const size = planned.pageCount * pageSize;
  sink.begin(size);

  const chunk = Buffer.allocUnsafe(options.chunkBytes ?? STREAM_CHUNK_BYTES);
  let filled = 0;
  let sent = 0;
  const add = async (bytes: Buffer) => {
    let at = 0;
    while (at < bytes.length) {
      const n = bytes.copy(chunk, filled, at);
      filled += n;
      at += n;
      if (filled === chunk.length) await flush();
    }
  };
  const flush = async () => {
    if (filled === 0) return;
    sent += filled;
    await sink.write(chunk.subarray(0, filled));
    filled = 0;
  };
  let nextId = 2;
  const writePages = async (pages: WrittenPage[]) => {
    for (const page of pages) {
      // The writer numbers pages in the order it writes them, so the stream has no gaps.
      if (page.id !== nextId)
        throw new Error(`snapshot stream: page ${page.id} came where ${nextId} belongs`);
      nextId += page.bytes.length / pageSize;
      await add(page.bytes);
    }
  };

  await add(planned.metaPages);
  const writer = new BboltWriter(pageSize);
  await produce(writer, writePages);
  const done = writer.finish();
  await writePages(done.pages);
  // The metas already sent must describe what was sent: the same rows in both passes.
  if (!done.metaPages.equals(planned.metaPages) || sent + filled !== size) {
    throw new Error("snapshot stream: the rows changed between the layout pass and the encoding pass");
  }
  await flush();
  return size;
}
