// The worker thread of backend-file-worker.ts: attaches to the member's open RocksDB by its
// handle, creates its iterators while the member's thread waits (see MvccStore.shareView), and
// writes etcd's backend file with the same code as on the member's thread (writeBackendBuckets):
// the revision key space and the leases from its iterators, the small buckets as the member's
// thread read them from the same state. It imports no more than that (its RSS is the member's).
// With a key split (KeySplit), two threads share the key bucket, each reading half the revisions
// on its own core: this module runs as either (data.split.role).
// Reads and file writes are synchronous, on this thread at its low priority: reading ahead on
// libuv's pool (at the process's priority) took CPU from the writes and, measured, cost this
// thread more than it saved (its answers' buffers doubled the garbage collection). Writes, too,
// so that copying into the page cache is this thread's CPU, not the pool's (nice 0, and where the
// WAL's writes run); measured on 1,000,000 keys, no change in rate or puts either way.
// The thread pauses after each piece in proportion to how busy the member's thread is with writes
// (paced-view.ts): nice 19 keeps its own CPU low, but its garbage collection and compilation run
// on V8's helper threads at the process's priority.
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { AttachedReader, type RowIterator } from "../mvcc/rocks-backend.js";
import { lowerThreadPriority } from "../mvcc/thread-module.js";
import {
  BUCKETS,
  type BucketTail,
  type ColumnRows,
  type Row,
  writeBackendBuckets,
} from "./backend-buckets.js";
import {
  type BackendThreadData,
  type BackendThreadMessage,
  BUSY_SHARE_SCALE,
  type PackedLeafRun,
  ViewState,
} from "./backend-thread-protocol.js";
import { BboltWriter, type WrittenPage } from "./bbolt-writer.js";
import { copyLeafRun, packLeafRun, unpackLeafRun } from "./leaf-run.js";
import { WritePacer } from "./paced-view.js";
import { PageFile, writePagedFile } from "./paged-file.js";

/**
 * Rows per read, and the bytes at which a read stops early (values may be up to 1.5 MiB each).
 * Small: each scavenge of the young generation copies the rows still alive, which are those of
 * the chunk being written, so a chunk much smaller than the young generation keeps that cheap.
 */
const READ_ROWS = 512;
const READ_BYTES = 256 * 1024;

const data = workerData as BackendThreadData;
const state = new Int32Array(data.shared, 0, 1);
const handle = new BigInt64Array(data.shared, 8, 1);
const busyShare = new Int32Array(data.shared, 4, 1);
const pacer = new WritePacer(() => Atomics.load(busyShare, 0) / BUSY_SHARE_SCALE);
const post = (message: BackendThreadMessage) => parentPort!.postMessage(message);
const split = data.split;
const splitKey = split === undefined ? undefined : Buffer.from(split.key);
const inbox = messages();
const stages = { read: 0, write: 0, copy: 0, wait: 0, paused: 0, all: 0 };
let pieceStarted = performance.now();
/** Between pieces of work: pauses for the last piece's time x the factor x the member's busy share. */
async function paced(): Promise<void> {
  const now = performance.now();
  const paused = await pacer.pause(now - pieceStarted);
  pieceStarted = performance.now();
  // Only a real pause counts: a thread at nice 19 may wait for the CPU at any await.
  if (paused) stages.paused += pieceStarted - now;
}
/** Runs `work`, adding its wall time to `stage`. */
function timed<T>(stage: "read" | "copy", work: () => T): T {
  const started = performance.now();
  try {
    return work();
  } finally {
    stages[stage] += performance.now() - started;
  }
}
async function timedWrite(work: () => Promise<void>): Promise<void> {
  const started = performance.now();
  await work();
  stages.write += performance.now() - started;
}

// The snapshot is background work: at the lowest priority this thread takes only a core nobody
// else wants, so the member's own thread (serving puts) and its clients keep theirs.
lowerThreadPriority(19);
post({ kind: "ready" });
// The member's thread writes the handle and wakes this one, then waits for ViewState.Open.
Atomics.wait(state, 0, ViewState.Waiting);
const iterators = new Map<string, RowIterator>();
try {
  const reader = await AttachedReader.attach(handle[0]!);
  if (split?.role === "leafRun") {
    iterators.set("default", reader.iterator("default", READ_BYTES, { gte: splitKey! }));
  } else {
    for (const column of new Set(["default", ...reader.columnNames])) {
      const range = column === "default" && splitKey !== undefined ? { lt: splitKey } : {};
      iterators.set(column, reader.iterator(column, READ_BYTES, range));
    }
  }
  Atomics.store(state, 0, ViewState.Open);
} catch (err) {
  for (const it of iterators.values()) it.close();
  Atomics.store(state, 0, ViewState.Failed);
  Atomics.notify(state, 0);
  throw err;
}
Atomics.notify(state, 0);
let result: BackendThreadMessage;
const started = performance.now();
pieceStarted = started;
const stagesNow = () => ({ ...stages, all: performance.now() - started });
try {
  if (split?.role === "leafRun") {
    const run = await writeLeafRun(iterators.get("default")!, split.runPath);
    result = { kind: "run", run, stagesMs: stagesNow() };
  } else {
    const small = await smallBuckets();
    const columnRows = iteratorRows(iterators);
    const tails: Record<string, BucketTail> = split === undefined ? {} : { [BUCKETS.key]: adoptRun };
    const size = await writePagedFile(
      data.path,
      (writePages) =>
        writeBackendBuckets(
          small,
          columnRows,
          (pages) => timedWrite(() => writePages(pages)),
          new BboltWriter(),
          tails,
        ),
      "thread",
    );
    result = { kind: "done", size, stagesMs: stagesNow() };
  }
} catch (err) {
  result = { kind: "failed", message: err instanceof Error ? err.message : String(err) };
} finally {
  // Before the answer: the member releases the view (and may close the database) on it.
  for (const it of iterators.values()) it.close();
}
post(result);
if (result.kind === "done") {
  try {
    const hashing = performance.now();
    pieceStarted = hashing;
    const digest = await sha256OfFile(data.path);
    post({ kind: "sha256", digest, ms: performance.now() - hashing });
  } catch (err) {
    post({ kind: "failed", message: err instanceof Error ? err.message : String(err) });
  }
}

/** The member's messages, in order (the small buckets, then with a split the leaf run). */
function messages(): () => Promise<BackendThreadMessage> {
  const queue: BackendThreadMessage[] = [];
  let wake: (() => void) | undefined;
  parentPort!.on("message", (m: BackendThreadMessage) => {
    queue.push(m);
    wake?.();
  });
  return async () => {
    while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
    return queue.shift()!;
  };
}

/** The member's thread's rows of the small buckets (cloned as Uint8Arrays: Buffers again here). */
async function smallBuckets(): Promise<Record<string, Row[]>> {
  const m = await inbox();
  if (m.kind !== "buckets") throw new Error(`snapshot thread: expected the small buckets, got ${m.kind}`);
  const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  return Object.fromEntries(
    Object.entries(m.small).map(([name, rows]) => [
      name,
      rows.map((r) => ({ key: asBuffer(r.key), value: asBuffer(r.value) })),
    ]),
  );
}

/** The leafRun role: the leaves of the revisions from the split key on, to the run's file. */
async function writeLeafRun(it: RowIterator, runPath: string): Promise<PackedLeafRun> {
  const writer = new BboltWriter(undefined, { leafRun: true });
  writer.beginBucket(Buffer.from(BUCKETS.key));
  const file = await PageFile.create(runPath, "thread");
  try {
    for (;;) {
      const chunk = timed("read", () => it.nextSync(READ_ROWS));
      const pages: WrittenPage[] = [];
      for (let i = 0; i < chunk.keys.length; i++) pages.push(...writer.put(chunk.keys[i]!, chunk.values[i]!));
      if (pages.length > 0) await timedWrite(() => file.write(pages));
      if (chunk.finished) break;
      await paced();
    }
    const { pages, run } = writer.endLeafRun();
    await timedWrite(async () => {
      await file.write(pages);
      await file.flush();
    });
    return packLeafRun(run);
  } finally {
    await file.close();
  }
}

/**
 * The backend role's key bucket tail: the other thread's leaves, adopted and copied in. The copy
 * writes the file (open in PageFile too) at the run's own offsets, which no other write touches.
 */
async function adoptRun(writer: BboltWriter, writePages: Parameters<BucketTail>[1]): Promise<void> {
  const waiting = performance.now();
  const m = await inbox();
  pieceStarted = performance.now();
  stages.wait += pieceStarted - waiting;
  if (m.kind !== "run") throw new Error(`snapshot thread: expected the leaf run, got ${m.kind}`);
  const run = unpackLeafRun(m.run);
  const { base, pages } = writer.adoptLeaves(run);
  await writePages(pages);
  const from = openSync(split!.runPath, "r");
  const to = openSync(data.path, "r+");
  try {
    timed("copy", () =>
      copyLeafRun(
        run,
        base,
        writer.pageSize,
        (buffer, offset) => readExactly(from, buffer, offset),
        (buffer, offset) => writeExactly(to, buffer, offset),
      ),
    );
  } finally {
    closeSync(from);
    closeSync(to);
    rmSync(split!.runPath, { force: true });
  }
}

function readExactly(fd: number, into: Buffer, offset: number): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, offset + done);
    if (n === 0) throw new Error(`snapshot thread: the leaf run's file ends at ${offset + done}`);
    done += n;
  }
}

function writeExactly(fd: number, from: Buffer, offset: number): void {
  for (let done = 0; done < from.length; )
    done += writeSync(fd, from, done, from.length - done, offset + done);
}

/** etcd's trailer: read back here, so that the member's thread, sending the file, does not hash it. */
async function sha256OfFile(path: string): Promise<Uint8Array> {
  const sha = createHash("sha256");
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      sha.update(buffer.subarray(0, n));
      await paced();
    }
  } finally {
    closeSync(fd);
  }
  return sha.digest();
}

function iteratorRows(its: Map<string, RowIterator>): ColumnRows {
  return async function* rows(column: string, chunkRows: number) {
    const it = its.get(column);
    if (it === undefined) throw new Error(`mvcc: no column ${column} in the view`);
    for (;;) {
      const chunk = timed("read", () => it.nextSync(Math.min(chunkRows, READ_ROWS)));
      if (chunk.keys.length > 0) yield { keys: chunk.keys, values: chunk.values };
      if (chunk.finished) return;
      await paced();
    }
  };
}
