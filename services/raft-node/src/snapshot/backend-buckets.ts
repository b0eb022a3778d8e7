// The bucket layout of etcd 3.4's backend, written with a BboltWriter: every bucket in name
// order, the small ones from rows given whole, the revision key space and the leases streamed
// from their columns. Apart from the store's mapping (etcd-backend.ts), so that the worker that
// writes a snapshot (backend-writer-thread.ts) loads only this, the writer and RocksDB's reader.
import { LEASE_COLUMN } from "../lease/lease-record.js";
import { BboltWriter, type WrittenPage } from "./bbolt-writer.js";

export const BUCKETS = {
  key: "key",
  meta: "meta",
  lease: "lease",
  alarm: "alarm",
  auth: "auth",
  authUsers: "authUsers",
  authRoles: "authRoles",
  members: "members",
  membersRemoved: "members_removed",
  cluster: "cluster",
} as const;

export interface Row {
  key: Buffer;
  value: Buffer;
}

/** The buckets read from a column as they are, in chunks (their size is the store's). */
export const STREAMED_COLUMNS: Readonly<Record<string, string>> = {
  [BUCKETS.key]: "default",
  [BUCKETS.lease]: LEASE_COLUMN,
};

/** Rows per read of the streamed columns (a view also stops a read at 1 MiB: values may be up to 1.5 MiB each). */
const STREAM_CHUNK_ROWS = 4096;

/** A column's rows in key order, in chunks. */
export type ColumnRows = (
  column: string,
  chunkRows: number,
) => AsyncIterable<{ keys: Buffer[]; values: Buffer[] }>;

/** What a streamed bucket gets after its column's rows: a leaf run of the keys past them. */
export type BucketTail = (
  writer: BboltWriter,
  writePages: (pages: WrittenPage[]) => Promise<void>,
) => Promise<void>;

/**
 * Writes the pages of the backend, in file order: the buckets of STREAMED_COLUMNS from
 * `columnRows` (then, for those named in `tails`, the tail's leaves), every other bucket of
 * BUCKETS from `small` (sorted rows; missing: empty).
 */
export async function writeBackendBuckets(
  small: Readonly<Record<string, readonly Row[]>>,
  columnRows: ColumnRows,
  writePages: (pages: WrittenPage[]) => Promise<void>,
  writer = new BboltWriter(),
  tails: Readonly<Record<string, BucketTail>> = {},
): Promise<{ metaPages: Buffer; pageCount: number }> {
  for (const name of Object.values(BUCKETS).sort(compareNames)) {
    writer.beginBucket(Buffer.from(name));
    const column = STREAMED_COLUMNS[name];
    if (column !== undefined) {
      for await (const chunk of columnRows(column, STREAM_CHUNK_ROWS)) {
        const pages: WrittenPage[] = [];
        for (let i = 0; i < chunk.keys.length; i++)
          pages.push(...writer.put(chunk.keys[i]!, chunk.values[i]!));
        if (pages.length > 0) await writePages(pages);
      }
      await tails[name]?.(writer, writePages);
    } else {
      const pages: WrittenPage[] = [];
      for (const row of small[name] ?? []) pages.push(...writer.put(row.key, row.value));
      await writePages(pages);
    }
    await writePages(writer.endBucket());
  }
  const done = writer.finish();
  await writePages(done.pages);
  return { metaPages: done.metaPages, pageCount: done.pageCount };
}

function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
