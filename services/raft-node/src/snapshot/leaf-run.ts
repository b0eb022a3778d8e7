// A leaf run (BboltWriter's leafRun mode) between threads and files: packed for postMessage, and
// copied from the file its thread wrote (pages from ID 0) into the database at the IDs the
// adopting writer gave it, each leaf's page header rewritten with its new ID.
import type { PackedLeafRun } from "./backend-thread-protocol.js";
import type { LeafRun } from "./bbolt-writer.js";

/** Bytes read per copy (whole leaves: a leaf with overflow pages is never cut). */
const COPY_BYTES = 1024 * 1024;

export function packLeafRun(run: LeafRun): PackedLeafRun {
  let bytes = 0;
  for (const key of run.firstKeys) bytes += key.length;
  const keyBytes = new Uint8Array(bytes);
  const keyEnds = new Uint32Array(run.firstKeys.length);
  let at = 0;
  run.firstKeys.forEach((key, i) => {
    keyBytes.set(key, at);
    at += key.length;
    keyEnds[i] = at;
  });
  return { pageCount: run.pageCount, ids: Uint32Array.from(run.ids), keyEnds, keyBytes };
}

export function unpackLeafRun(packed: PackedLeafRun): LeafRun {
  const bytes = Buffer.from(packed.keyBytes.buffer, packed.keyBytes.byteOffset, packed.keyBytes.byteLength);
  const firstKeys: Buffer[] = [];
  let start = 0;
  for (const end of packed.keyEnds) {
    firstKeys.push(bytes.subarray(start, end));
    start = end;
  }
  return { pageCount: packed.pageCount, ids: [...packed.ids], firstKeys };
}

/**
 * Copies the run's pages, read with `readInto` (offsets in the run's file), to the database's
 * pages from ID `base` with `writeAt`, in spans of whole leaves through one buffer; each leaf's
 * header ID (a u64 at its first byte) becomes its ID in the database, which bbolt's checks and
 * later writes rely on. A leaf larger than the buffer gets a buffer of its own.
 */
export function copyLeafRun(
  run: LeafRun,
  base: number,
  pageSize: number,
  readInto: (buffer: Buffer, offset: number) => void,
  writeAt: (buffer: Buffer, offset: number) => void,
): void {
  const leafEnd = (i: number) => (i + 1 < run.ids.length ? run.ids[i + 1]! : run.pageCount);
  const buffer = Buffer.allocUnsafe(COPY_BYTES);
  for (let first = 0; first < run.ids.length; ) {
    const start = run.ids[first]!;
    let last = first;
    while (last + 1 < run.ids.length && (leafEnd(last + 1) - start) * pageSize <= COPY_BYTES) last++;
    const length = (leafEnd(last) - start) * pageSize;
    const span = length <= COPY_BYTES ? buffer.subarray(0, length) : Buffer.allocUnsafe(length);
    readInto(span, start * pageSize);
    for (let i = first; i <= last; i++) {
      span.writeBigUInt64LE(BigInt(base + run.ids[i]!), (run.ids[i]! - start) * pageSize);
    }
    writeAt(span, (base + start) * pageSize);
    first = last + 1;
  }
}
