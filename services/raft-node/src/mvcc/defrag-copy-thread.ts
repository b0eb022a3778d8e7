// The worker thread of defrag-copy.ts: attaches to the member's open database and to the
// defragmentation's copy by their native handles, creates its iterators on the database while
// the member's thread waits (so they read the state at which the member started recording
// writes), and copies every row into the copy, reading and writing on this thread at the lowest
// CPU priority. The revisions' keys and value lengths go to the member's thread, which builds
// the copy's size model from them. It imports no more than RocksDB's binding (its RSS is the member's).
import { setTimeout as sleep } from "node:timers/promises";
import { parentPort, workerData } from "node:worker_threads";
import { CopyState, type CopyThreadData, type CopyThreadMessage } from "./defrag-copy-protocol.js";
import { AttachedReader, AttachedWriter, type RowIterator } from "./rocks-backend.js";
import { lowerThreadPriority } from "./thread-module.js";

/** Rows per read and the bytes at which a read stops early: one write batch of the copy each. */
const CHUNK_ROWS = 1000;
const CHUNK_BYTES = 1024 * 1024;
/** The longest pause between chunks (see the duty cycle below). */
const MAX_PAUSE_MS = 50;

const data = workerData as CopyThreadData;
const state = new Int32Array(data.shared, 0, 1);
const handles = new BigInt64Array(data.shared, 8, 2);
const post = (message: CopyThreadMessage) => parentPort!.postMessage(message);

// The copy is background work: at the lowest priority this thread takes only CPU the member's
// own thread (applying and answering the writes) and its peers do not want.
lowerThreadPriority(19);
post({ kind: "ready" });
// The member's thread writes the handles and wakes this one, then waits for CopyState.Open.
Atomics.wait(state, 0, CopyState.Waiting);
const columns = ["default", ...data.columns];
const iterators: RowIterator[] = [];
let copy: AttachedWriter;
try {
  const source = await AttachedReader.attach(handles[0]!);
  for (const column of columns) iterators.push(source.iterator(column, CHUNK_BYTES));
  copy = await AttachedWriter.attach(handles[1]!);
  // Not over a Stop: the member's thread gave up waiting, and this thread answers "stopped".
  Atomics.compareExchange(state, 0, CopyState.Go, CopyState.Open);
} catch (err) {
  for (const it of iterators) it.close();
  Atomics.store(state, 0, CopyState.Failed);
  Atomics.notify(state, 0);
  throw err;
}
Atomics.notify(state, 0);
let result: CopyThreadMessage;
try {
  let rows = 0;
  let stopped = false;
  for (const [i, column] of columns.entries()) {
    for (;;) {
      if (Atomics.load(state, 0) === CopyState.Stop) {
        stopped = true;
        break;
      }
      const started = performance.now();
      const chunk = iterators[i]!.nextSync(CHUNK_ROWS);
      if (chunk.keys.length > 0) copy.putRows(column, chunk.keys, chunk.values);
      rows += chunk.keys.length;
      if (column === "default" && chunk.keys.length > 0) post(revisionsOf(chunk.keys, chunk.values));
      if (chunk.finished) break;
      // Half duty: as long again idle as the chunk took, which leaves the disk (the copy's
      // writes and RocksDB's flushes of them) to the member's synced writes part of the time.
      await sleep(Math.min(MAX_PAUSE_MS, performance.now() - started));
    }
    if (stopped) break;
  }
  result = stopped ? { kind: "stopped" } : { kind: "done", rows };
} catch (err) {
  result = { kind: "failed", message: err instanceof Error ? err.message : String(err) };
} finally {
  // Before the answer: the member may close the database once it has it.
  for (const it of iterators) it.close();
}
post(result);

function revisionsOf(keys: readonly Buffer[], values: readonly Buffer[]): CopyThreadMessage {
  const keyEnds = new Uint32Array(keys.length);
  const valueLengths = new Uint32Array(keys.length);
  let end = 0;
  for (let i = 0; i < keys.length; i++) {
    end += keys[i]!.length;
    keyEnds[i] = end;
    valueLengths[i] = values[i]!.length;
  }
  return { kind: "revisions", keys: Buffer.concat(keys, end), keyEnds, valueLengths };
}
