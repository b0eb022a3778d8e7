// A defragmentation's copy of the database, made on a worker thread (defrag-copy-thread.ts).
// On the member's thread, reading 2 GiB and writing it into the copy (each chunk a synchronous
// batch write: its WAL record compressed, its memtable inserts) took CPU from the puts it applies
// at the same time: their p99 was 2.4-2.7x that without a defragmentation. The worker runs at
// nice 19, so the copy takes what CPU the member and its peers leave idle.
import { CopyState, type CopyThreadData, type CopyThreadMessage } from "./defrag-copy-protocol.js";
import type { RocksBackend } from "./rocks-backend.js";
import { startThreadModule, WorkerMessages } from "./thread-module.js";

/** How long the member's thread waits for the worker to create its iterators (normally < 1 ms). */
const OPEN_TIMEOUT_MS = 5000;
/** A chunk's rows (1 MiB) and their message are what the worker's heap holds at a time. */
const RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 16, maxOldGenerationSizeMb: 64 };

export interface CopyCallbacks<T> {
  /**
   * Called in the tick the worker creates its iterators, while this thread waits for them: no
   * write lands between the two (RocksBackend.recordWrites belongs here).
   */
  atSnapshot: () => T;
  /** Each revision copied, in key order. */
  onRevision: (key: Buffer, valueLength: number) => void;
  /** Called after each chunk; throws to stop the copy. */
  stopIf: () => void;
}

/**
 * Copies every row of `source` (the revision key space and `columns`), as of the moment
 * `atSnapshot` runs, into `copy` (unsynced); resolves with what `atSnapshot` returned. Settles
 * only once the worker has closed its iterators on `source` (or was stopped), failed or not, so
 * the caller may close either database afterwards. Any callback that throws fails the copy.
 */
export async function copyOffThread<T>(
  source: RocksBackend,
  copy: RocksBackend,
  columns: readonly string[],
  callbacks: CopyCallbacks<T>,
): Promise<T> {
  const shared = new SharedArrayBuffer(24);
  const state = new Int32Array(shared, 0, 1);
  const workerData: CopyThreadData = { shared, columns: [...columns] };
  const thread = new WorkerMessages<CopyThreadMessage>(
    startThreadModule("defrag-copy-thread", import.meta.url, { workerData, resourceLimits: RESOURCE_LIMITS }),
    "defrag copy thread",
  );
  let failure: Error | undefined;
  try {
    const ready = await thread.next();
    if (ready.kind !== "ready") throw new Error(`defrag copy thread: expected ready, got ${ready.kind}`);
    const handles = new BigInt64Array(shared, 8, 2);
    handles[0] = source.handle;
    handles[1] = copy.handle;
    const snapshot = callbacks.atSnapshot();
    Atomics.store(state, 0, CopyState.Go);
    Atomics.notify(state, 0);
    // Blocks this thread: no write may land while the worker creates its iterators.
    Atomics.wait(state, 0, CopyState.Go, OPEN_TIMEOUT_MS);
    const now = Atomics.load(state, 0);
    if (now !== CopyState.Open) {
      // A worker still opening is told to stop; it closes what it opened before it answers.
      Atomics.store(state, 0, CopyState.Stop);
      throw new Error(
        now === CopyState.Go
          ? `defrag copy thread did not open its view within ${OPEN_TIMEOUT_MS} ms`
          : "defrag copy thread could not open its view",
      );
    }
    for (;;) {
      const m = await thread.next();
      if (m.kind === "revisions") {
        if (failure === undefined) {
          try {
            deliver(m, callbacks.onRevision);
            callbacks.stopIf();
          } catch (err) {
            failure = err instanceof Error ? err : new Error(String(err));
          }
          // The worker stops at its next chunk and answers "stopped": its iterators are closed then.
          if (failure !== undefined) Atomics.store(state, 0, CopyState.Stop);
        }
      } else if (m.kind === "done" || m.kind === "stopped") {
        break;
      } else if (m.kind === "failed") {
        failure ??= new Error(m.message);
        break;
      } else {
        throw new Error(`defrag copy thread: unexpected ${m.kind}`);
      }
    }
    if (failure !== undefined) throw failure;
    return snapshot;
  } finally {
    // Normally the worker has ended (its last message sent, its iterators closed); if it has
    // not (this thread failed first), it is stopped here, before anyone may close a database.
    await thread.stop();
  }
}

function deliver(
  m: Extract<CopyThreadMessage, { kind: "revisions" }>,
  onRevision: (key: Buffer, valueLength: number) => void,
): void {
  const keys = Buffer.from(m.keys.buffer, m.keys.byteOffset, m.keys.byteLength);
  let start = 0;
  for (let i = 0; i < m.keyEnds.length; i++) {
    const end = m.keyEnds[i]!;
    onRevision(keys.subarray(start, end), m.valueLengths[i]!);
    start = end;
  }
}
