// The worker thread of backend-file-worker.ts: attaches to the member's open RocksDB by its
// handle, creates its iterators while the member's thread waits (see MvccStore.shareView), and
// writes etcd's backend file from them with the same code as on the member's thread
// (writeBackendFile).
//
// Reads: while the member applies no writes, the next chunk is read on libuv's pool while this
// thread encodes the last one (two cores for the snapshot); while writes are applied, chunks
// are read here, synchronously, at this thread's low priority, so that the pool's threads (at
// the process's priority) do not take CPU from the writes.
import { readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import { basename } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { memberCodec } from "../membership/member-codec.js";
import type { StoreView } from "../mvcc/mod.js";
import { AttachedReader, type RowChunk, type RowIterator } from "../mvcc/rocks-backend.js";
import { type BackendThreadData, type BackendThreadMessage, ViewState } from "./backend-file-worker.js";
import { writeBackendFile } from "./snapshot-file.js";

/** A read of many rows stops at about this many bytes (values may be up to 1.5 MiB each). */
const READ_BYTES = 1024 * 1024;

const data = workerData as BackendThreadData;
const state = new Int32Array(data.shared, 0, 1);
const writing = new Int32Array(data.shared, 4, 1);
const handle = new BigInt64Array(data.shared, 8, 1);
const post = (message: BackendThreadMessage) => parentPort!.postMessage(message);

lowerThreadPriority();
post({ kind: "ready" });
// The member's thread writes the handle and wakes this one, then waits for ViewOpen.
Atomics.wait(state, 0, ViewState.Waiting);
const iterators = new Map<string, RowIterator>();
try {
  const reader = await AttachedReader.attach(handle[0]!);
  for (const column of new Set(["default", ...reader.columnNames]))
    iterators.set(column, reader.iterator(column, READ_BYTES));
  Atomics.store(state, 0, ViewState.Open);
} catch (err) {
  for (const it of iterators.values()) it.close();
  Atomics.store(state, 0, ViewState.Failed);
  Atomics.notify(state, 0);
  throw err;
}
Atomics.notify(state, 0);
let result: BackendThreadMessage;
try {
  const context = { memberCodec, clusterVersion: data.clusterVersion };
  result = { kind: "done", size: await writeBackendFile(iteratorView(iterators), context, data.path) };
} catch (err) {
  result = { kind: "failed", message: err instanceof Error ? err.message : String(err) };
} finally {
  // Before the answer: the member releases the view (and may close the database) on it.
  for (const it of iterators.values()) it.close();
}
post(result);

function iteratorView(its: Map<string, RowIterator>): StoreView {
  return {
    async *rows(column: string, chunkRows = 1000) {
      const it = its.get(column);
      if (it === undefined) throw new Error(`mvcc: no column ${column} in the view`);
      let ahead: Promise<RowChunk> | undefined;
      try {
        for (;;) {
          const chunk = ahead !== undefined ? await ahead : it.nextSync(chunkRows);
          ahead = undefined;
          if (!chunk.finished && Atomics.load(writing, 0) === 0) ahead = it.next(chunkRows);
          if (chunk.keys.length > 0) yield { keys: chunk.keys, values: chunk.values };
          if (chunk.finished) return;
        }
      } finally {
        // A read in flight must end before its iterator may be closed.
        await ahead?.catch(() => {});
      }
    },
    close: () => {},
  };
}

/**
 * The snapshot is background work: at the lowest priority this thread takes only a core nobody
 * else wants, so the member's own thread (serving puts) and its clients keep theirs. Linux
 * keeps a nice value per thread, and setpriority on a thread ID changes that thread only.
 */
function lowerThreadPriority(): void {
  try {
    setPriority(Number(basename(readlinkSync("/proc/thread-self"))), 19);
  } catch {
    // Not Linux: the thread runs at the process's priority.
  }
}
