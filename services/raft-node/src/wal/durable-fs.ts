// The few file-system moves whose durability the WAL and the snapshotter depend on.

import { writevSync } from "node:fs";
import { type FileHandle, open, rename } from "node:fs/promises";

/**
 * Writes every byte of `chunks` at `position`. A write may store fewer bytes than asked (the
 * disk filled part-way): the rest is written again, as Go's File.Write does, so that the
 * caller sees the error the kernel gives for the rest (ENOSPC, EIO) rather than a bare count.
 * Each turn writes at least one byte or throws, so the loop ends.
 */
export async function writeFully(
  handle: FileHandle,
  chunks: readonly Uint8Array[],
  position: number,
): Promise<void> {
  let rest = chunks.filter((c) => c.length > 0);
  let at = position;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest as Uint8Array[], at);
    at += bytesWritten;
    rest = unwritten(rest, bytesWritten, at);
  }
}

/** writeFully on the calling thread (no trip through libuv's thread pool). */
export function writeFullySync(fd: number, chunks: readonly Uint8Array[], position: number): void {
  let rest = chunks.filter((c) => c.length > 0);
  let at = position;
  while (rest.length > 0) {
    const bytesWritten = writevSync(fd, rest as Uint8Array[], at);
    at += bytesWritten;
    rest = unwritten(rest, bytesWritten, at);
  }
}

/** What is left of `chunks` after a write stored `bytesWritten` of them. */
function unwritten(chunks: Uint8Array[], bytesWritten: number, at: number): Uint8Array[] {
  if (bytesWritten === 0) throw new Error(`write to file at ${at} stored nothing`);
  let rest = chunks;
  let skip = bytesWritten;
  while (rest.length > 0 && skip >= rest[0]!.length) {
    skip -= rest[0]!.length;
    rest = rest.slice(1);
  }
  if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
  return rest;
}

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
    await writeFully(handle, chunks, 0);
    if (sync) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  if (sync) await fsyncDir(dir);
}
