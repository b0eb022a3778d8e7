// The few file-system moves whose durability the WAL and the snapshotter depend on.

import { open, rename } from "node:fs/promises";

/** Makes creations, renames and deletions inside `dir` survive a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `path` so that after a crash it either holds all of `chunks` or does not exist:
 * temp file, fsync, rename over, fsync of the directory.
 */
export async function writeFileAtomically(
  dir: string,
  path: string,
  chunks: readonly Uint8Array[],
  sync: boolean,
): Promise<void> {
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, "w");
  try {
    const expected = chunks.reduce((n, c) => n + c.length, 0);
    const { bytesWritten } = await handle.writev(chunks as Uint8Array[], 0);
    if (bytesWritten !== expected)
      throw new Error(`short write to ${tmp}: ${bytesWritten} of ${expected} bytes`);
    if (sync) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  if (sync) await fsyncDir(dir);
}
