// The database directory as files: copying a database into a fresh directory and swapping it
// in crash-safely (defragmentation).
import { open as openFile, rename, rm, stat } from "node:fs/promises";
import type { ColumnHandle, RecordedWrite, RocksBackend, RowChunk, RowIterator } from "./rocks-backend.js";

/**
 * Copies what `from` reads into `toColumn`, one chunk (bounded by the iterator's byte limit)
 * per batch; `onChunk` sees each chunk after it is written and may throw to stop the copy.
 * Reads run on the libuv pool, so the event loop serves between chunks.
 */
export async function copyRows(
  from: RowIterator,
  to: RocksBackend,
  toColumn: ColumnHandle | undefined,
  onChunk?: (chunk: RowChunk) => void,
): Promise<void> {
  for (;;) {
    const chunk = await from.next(COPY_CHUNK_ROWS);
    const batch = to.batch();
    for (let i = 0; i < chunk.keys.length; i++) batch.put(chunk.keys[i]!, chunk.values[i]!, toColumn);
    if (batch.length > 0) batch.write(false);
    else batch.discard();
    onChunk?.(chunk);
    if (chunk.finished) return;
  }
}

const COPY_CHUNK_ROWS = 1000;

/**
 * Writes recorded batches (see RocksBackend.recordWrites) into `to`, in order; small batches are
 * merged into writes of about REPLAY_BATCH_WRITES (the copy is not read until it is complete).
 */
export function replayWrites(batches: readonly RecordedWrite[][], to: RocksBackend): void {
  let out = to.batch();
  for (const recorded of batches) {
    for (const w of recorded) {
      const column = w.column === undefined ? undefined : to.columns[w.column];
      if (w.column !== undefined && column === undefined)
        throw new Error(`mvcc: no column ${w.column} in the copy`);
      if (w.value === undefined) out.del(w.key, column);
      else out.put(w.key, w.value, column);
    }
    if (out.length >= REPLAY_BATCH_WRITES) {
      out.write(false);
      out = to.batch();
    }
  }
  if (out.length > 0) out.write(false);
  else out.discard();
}

const REPLAY_BATCH_WRITES = 1000;

/**
 * Finishes or discards a defragmentation interrupted by a crash: the copy is only trusted once
 * its completion marker exists; the original directory is only removed after the swap.
 */
export async function recoverInterruptedDefrag(location: string): Promise<void> {
  const copyDir = `${location}.defrag`;
  const marker = `${copyDir}.complete`;
  const exists = async (path: string) =>
    stat(path).then(
      () => true,
      () => false,
    );
  if (!(await exists(location)) && (await exists(marker)) && (await exists(copyDir))) {
    await rename(copyDir, location);
  }
  await rm(copyDir, { recursive: true, force: true });
  await rm(marker, { force: true });
  if (await exists(location)) await rm(`${location}.old`, { recursive: true, force: true });
  else if (await exists(`${location}.old`)) await rename(`${location}.old`, location);
}

export async function writeMarker(path: string): Promise<void> {
  const file = await openFile(path, "w");
  await file.sync();
  await file.close();
}
