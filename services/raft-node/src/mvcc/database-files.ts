// The database directory as files: copying a database into a fresh directory and swapping it
// in crash-safely (defragmentation).
import { open as openFile, rename, rm, stat } from "node:fs/promises";
import type { ColumnHandle, RocksBackend } from "./rocks-backend.js";

const COPY_CHUNK = 1000;

export async function copyColumn(
  from: RocksBackend,
  to: RocksBackend,
  fromColumn: ColumnHandle | undefined,
  toColumn: ColumnHandle | undefined,
): Promise<void> {
  const it = from.iterator(fromColumn === undefined ? {} : { column: fromColumn });
  try {
    for (;;) {
      const chunk = await it.next(COPY_CHUNK);
      const batch = to.batch();
      for (let i = 0; i < chunk.keys.length; i++) batch.put(chunk.keys[i]!, chunk.values[i]!, toColumn);
      if (batch.length > 0) batch.write(false);
      else batch.discard();
      if (chunk.finished) return;
    }
  } finally {
    it.close();
  }
}

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
