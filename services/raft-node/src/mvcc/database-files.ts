// The database directory as files: replaying into a defragmentation's copy the writes made while
// it was copied (defrag-copy.ts copies), and switching to the copy crash-safely.
import { open as openFile, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { RecordedWrite, RocksBackend } from "./rocks-backend.js";

/**
 * Waits (off the event loop's thread, bounded) while RocksDB delays or stops writes to `db`: a
 * delayed write sleeps in the writing thread, which for the synchronous batch writes of a
 * defragmentation's catch-up is the member's. The worker that copied the rows may leave the
 * copy's compaction behind (its own writes were delayed on its thread); the catch-up waits for
 * compaction to catch up between slices instead of sleeping in a write.
 */
export async function untilWritesFlow(db: RocksBackend, maxWaitMs = 5_000): Promise<void> {
  const until = performance.now() + maxWaitMs;
  while (
    (db.numericProperty("rocksdb.actual-delayed-write-rate") > 0 ||
      db.numericProperty("rocksdb.is-write-stopped") > 0) &&
    performance.now() < until
  ) {
    await sleep(20);
  }
}

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

/** Where a defragmentation of the database at `location` copies it (and the store then lives). */
export function defragDirOf(location: string): string {
  return `${location}.defrag`;
}

/**
 * The swap of a defragmentation, made durable. A store switches to its copy without closing or
 * renaming anything (a RocksDB directory cannot be renamed while open), so the copy lives in
 * `location.defrag` until the next close or restart moves it to `location`. The truth is
 * `location.defrag` if its marker `location.defrag.complete` exists, else `location`: a copy into
 * `location.defrag` is marked once complete and fenced; a copy into `location` (made while the
 * store lives in `location.defrag`, whose name it takes back) removes that marker once complete
 * and fenced.
 */
export async function markCopyInUse(location: string, copyDir: string): Promise<void> {
  const marker = `${defragDirOf(location)}.complete`;
  if (copyDir === defragDirOf(location)) await writeMarker(marker);
  else if (copyDir === location) await rm(marker, { force: true });
  else throw new Error(`mvcc: ${copyDir} is neither ${location} nor its defragmentation copy`);
  await syncDirectory(dirname(location));
}

/**
 * Puts the truth (see markCopyInUse) at `location`, with no database open: after a crash, at a
 * restart, or when a store living in its copy closes. A copy never marked is discarded; an
 * older swap's `.old` directory is finished or undone.
 */
export async function recoverInterruptedDefrag(location: string): Promise<void> {
  const copyDir = defragDirOf(location);
  const marker = `${copyDir}.complete`;
  const exists = async (path: string) =>
    stat(path).then(
      () => true,
      () => false,
    );
  if ((await exists(marker)) && (await exists(copyDir))) {
    // Idempotent: a crash part-way repeats it (the marker goes last).
    await rm(location, { recursive: true, force: true });
    await rename(copyDir, location);
    await syncDirectory(dirname(location));
  }
  await rm(copyDir, { recursive: true, force: true });
  await rm(marker, { force: true });
  if (await exists(location)) await rm(`${location}.old`, { recursive: true, force: true });
  else if (await exists(`${location}.old`)) await rename(`${location}.old`, location);
}

async function writeMarker(path: string): Promise<void> {
  const file = await openFile(path, "w");
  await file.sync();
  await file.close();
}

/** fsyncs a directory, so the entries created, renamed or removed in it are durable. */
async function syncDirectory(path: string): Promise<void> {
  const dir = await openFile(path, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * The index checkpoint's file (see index-checkpoint.ts) in the database directory: RocksDB
 * leaves files whose names it does not use alone, and a directory replaced as a whole (a
 * defragmentation's swap, a restored snapshot) takes its checkpoint, if any, with it.
 */
export const INDEX_CHECKPOINT_FILE = "etcd-ts-index-checkpoint";

/** The index checkpoint of the database at `location`, if a close left one. */
export async function readIndexCheckpoint(location: string): Promise<Buffer | undefined> {
  try {
    return await readFile(join(location, INDEX_CHECKPOINT_FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Removes the index checkpoint before the database it describes is written to: a checkpoint
 * exists only while its database is closed, so one left by an earlier close is never read after
 * writes it does not describe (the image's state check would catch that too; this makes it the
 * second guard, not the only one).
 */
export async function removeIndexCheckpoint(location: string): Promise<void> {
  await rm(join(location, INDEX_CHECKPOINT_FILE), { force: true });
}

/**
 * Writes an index checkpoint for the closed database at `location`: to a temporary name, then
 * renamed, so no reader sees half of it. Not fsynced: a checkpoint lost or torn by a power cut
 * costs the next open a scan (its CRC and state check reject it), never a wrong index. Best
 * effort: a failure (a full disk) leaves no checkpoint, and the next open scans.
 */
export async function writeIndexCheckpoint(location: string, image: Buffer): Promise<boolean> {
  const path = join(location, INDEX_CHECKPOINT_FILE);
  const temporary = `${path}.tmp`;
  try {
    await writeFile(temporary, image);
    await rename(temporary, path);
    return true;
  } catch {
    await rm(temporary, { force: true }).catch(() => {});
    return false;
  }
}
