// Reads for a large Range on worker threads (range-read-thread.ts): the member's thread walks
// the key index and sends each chunk's revision keys; a worker reads their stored values from
// the same open RocksDB and answers with the chunk's bytes of the answer, so the member's thread
// holds the event loop only for the index walk and a message per chunk. Chunks go to the
// workers in turn (one per core, at most two), so a full list reads on every core the member's
// thread leaves idle; the workers run at a lower CPU priority, so the writes beside the Range
// keep the member's thread. Started on the first large Range, stopped after a while without one
// (an idle isolate is memory for nothing). A worker also fsyncs the store for a Raft snapshot;
// started ahead of it (prepareSync), it is kept until that sync.
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import type { RangeReadReply, RangeReadRequest } from "./range-read-protocol.js";
import { REVISION_KEY_LENGTH, writeRevisionKey } from "./revision.js";
import { startThreadModule } from "./thread-module.js";

/** Workers without requests for this long are stopped. */
const IDLE_STOP_MS = 60_000;
/** A worker's heap holds a chunk's values and its answer at a time (about 2 x 300 KB). */
const RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 64 };

/** A chunk's answer bytes (or, held, where they are), or the first revision with no stored value. */
export type ChunkRead = { part: Buffer } | { held: HeldPart } | { missing: { main: number; sub: number } };
/** What a worker answers: a read's chunk, or that a sync or an attach is done. */
/** A sort by value's positions, or the first revision found missing. */
export type SortRead = { order: Uint32Array } | { missing: { main: number; sub: number } };
type ThreadAnswer = ChunkRead | SortRead | { synced: true } | { attached: true };

/**
 * A chunk of an answer held by the read thread that wrote it (range-read-thread.ts says why),
 * until the member sends it: `take` moves its bytes to the member's thread (once), `drop` frees
 * them. Every held chunk must be taken or dropped (the threads never stop while one is held).
 */
export class HeldPart {
  private settled = false;

  constructor(
    /** Its length in bytes. */
    readonly length: number,
    private readonly threads: RangeReadThreads,
    private readonly worker: Worker,
    private readonly id: number,
  ) {}

  take(): Promise<Buffer> {
    if (this.settled)
      return Promise.reject(new Error("mvcc: a held range chunk was taken or dropped already"));
    this.settled = true;
    return this.threads.take(this.worker, this.id);
  }

  drop(): void {
    if (this.settled) return;
    this.settled = true;
    this.threads.drop(this.worker, this.id);
  }

  /**
   * Its bytes, taken and written to the socket (nothing reads them any more): their memory
   * moves back to the thread, which frees it, so it stops counting as the member's isolate's
   * external memory now rather than at that isolate's next GC.
   */
  recycle(bytes: Buffer): void {
    this.threads.recycle(this.worker, bytes);
  }
}

export class RangeReadThreads {
  /** How many workers read (and so how many chunks a Range should keep in flight). */
  readonly count = Math.max(1, Math.min(2, availableParallelism()));
  private readonly workers: (Worker | undefined)[] = [];
  private turn = 0;
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (r: ThreadAnswer) => void; reject: (e: Error) => void; worker: Worker }
  >();
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Chunks held on the workers, not yet taken or dropped. */
  private held = 0;
  /** A worker was started ahead of a sync (prepareSync): none stops when idle until that sync. */
  private syncExpected = false;

  constructor(
    /** Workers without requests for this long are stopped (tests shorten it). */
    private readonly idleStopMs = IDLE_STOP_MS,
  ) {}

  /**
   * The stored values of `hits` (revision keys; no tombstone among them) in the database whose
   * native handle is `handle`, as RangeResponse field-2 bytes. The caller keeps that database
   * open until this settles (MvccStore's `readers`; close() waits too).
   */
  read(
    handle: bigint,
    hits: readonly { main: number; sub: number }[],
    keysOnly: boolean,
    hold = false,
  ): Promise<ChunkRead> {
    // Its own memory (not the pool's), so it moves to the worker instead of being copied.
    const keys = Buffer.allocUnsafeSlow(hits.length * REVISION_KEY_LENGTH);
    for (let i = 0; i < hits.length; i++) {
      writeRevisionKey(keys, i * REVISION_KEY_LENGTH, hits[i]!.main, hits[i]!.sub);
    }
    return this.readKeys(handle, keys, keysOnly, hold);
  }

  /**
   * As read, for revision keys already written one after another (REVISION_KEY_LENGTH bytes
   * each) into `keys`: a view of memory of its own (Buffer.allocUnsafeSlow, never the shared
   * pool), which moves to the worker, so the caller must not use it again.
   */
  readKeys(handle: bigint, keys: Buffer, keysOnly: boolean, hold = false): Promise<ChunkRead> {
    if (this.closed) return Promise.reject(new Error("mvcc: store closed"));
    const worker = this.next();
    const id = this.nextId++;
    const request: RangeReadRequest = { id, handle, keys, keysOnly, hold };
    const answer = this.await<ChunkRead>(worker, id);
    worker.postMessage(request, [keys.buffer as ArrayBuffer]);
    return answer;
  }

  /**
   * The positions of the revisions `keys` (written one after another, in key order, into memory
   * of their own: it moves to the worker) ordered by their stored values, ascending or
   * descending, equal values by position: read and compared on a worker. The caller keeps the
   * database open until this settles. Other reads sent to that worker meanwhile wait for it.
   */
  sortByValue(handle: bigint, keys: Buffer, descend: boolean): Promise<SortRead> {
    if (this.closed) return Promise.reject(new Error("mvcc: store closed"));
    const worker = this.next();
    const id = this.nextId++;
    const answer = this.await<SortRead>(worker, id);
    worker.postMessage({ sort: id, handle, keys, descend }, [keys.buffer as ArrayBuffer]);
    return answer;
  }

  /**
   * Makes everything written to the database `handle` before this call durable, on a worker (an
   * fsync of RocksDB's WAL held the member's thread 67-160 ms with 100,000 puts unsynced). The
   * caller keeps that database open until this settles.
   */
  async sync(handle: bigint): Promise<void> {
    if (this.closed) throw new Error("mvcc: store closed");
    // Answered, the worker may stop when idle again (idleWhenDone, after the answer).
    this.syncExpected = false;
    const worker = this.syncWorker();
    const id = this.nextId++;
    const answer = this.await<{ synced: true }>(worker, id);
    worker.postMessage({ sync: id, handle });
    await answer;
  }

  /**
   * Starts a worker and attaches it to the database `handle` ahead of a sync, and keeps it (no
   * idle stop) until the next sync or close: a worker started by the sync itself made it take
   * 79-112 ms (a new isolate, the binding loaded, the database attached) where the fsync took
   * 10-20 ms, and the member's Raft loop waits for that sync. Resolves once attached. Costs one
   * idle isolate's memory from this call until the sync (then the usual idle stop).
   */
  async prepareSync(handle: bigint): Promise<void> {
    if (this.closed) return;
    this.syncExpected = true;
    const worker = this.syncWorker();
    const id = this.nextId++;
    const answer = this.await<{ attached: true }>(worker, id);
    worker.postMessage({ attach: id, handle });
    await answer;
  }

  /** A running worker (one prepareSync started, or a reader), or one started now. */
  private syncWorker(): Worker {
    const running = this.workers.findIndex((w) => w !== undefined);
    if (running < 0) return this.next();
    this.cancelIdleStop();
    return this.workers[running]!;
  }

  /** @internal HeldPart.take: the held chunk `heldId` of `worker`, moved here. */
  take(worker: Worker, heldId: number): Promise<Buffer> {
    this.held--;
    if (this.workers.indexOf(worker) < 0) return Promise.reject(new Error("mvcc: range read thread stopped"));
    const id = this.nextId++;
    const answer = this.await<ChunkRead>(worker, id);
    worker.postMessage({ take: heldId, id });
    return answer.then((got) => {
      if ("part" in got) return got.part;
      throw new Error("mvcc: range read thread answered a take without the chunk");
    });
  }

  /** @internal HeldPart.recycle: a buffer that owns its memory moves (a view of shared memory stays). */
  recycle(worker: Worker, bytes: Buffer): void {
    if (bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength) return;
    if (this.workers.indexOf(worker) < 0) return;
    worker.postMessage({ recycled: bytes.buffer }, [bytes.buffer as ArrayBuffer]);
  }

  /** @internal HeldPart.drop. */
  drop(worker: Worker, heldId: number): void {
    this.held--;
    if (this.workers.indexOf(worker) >= 0) worker.postMessage({ drop: [heldId] });
    this.idleWhenDone();
  }

  /** The answer to request `id` on `worker` (of the kind its request is answered with). */
  private await<T extends ThreadAnswer>(worker: Worker, id: number): Promise<T> {
    const answer = new Promise<T>((resolve, reject) =>
      this.waiting.set(id, { resolve: resolve as (r: ThreadAnswer) => void, reject, worker }),
    );
    // Referenced while answers are awaited (they keep the process alive), not when idle.
    worker.ref();
    return answer;
  }

  /** Waits for the reads in flight (their database must outlive them), then stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.waiting.size > 0) await new Promise<void>((resolve) => setTimeout(resolve, 1));
    await this.stop();
  }

  private cancelIdleStop(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  /** The next worker in turn, started if it is not running. */
  private next(): Worker {
    this.cancelIdleStop();
    const slot = this.turn;
    this.turn = (this.turn + 1) % this.count;
    const running = this.workers[slot];
    if (running !== undefined) return running;
    const worker = startThreadModule("range-read-thread", import.meta.url, {
      resourceLimits: RESOURCE_LIMITS,
    });
    worker.on("message", (reply: RangeReadReply) => this.answer(reply));
    const fail = (err: Error) => {
      if (this.workers[slot] !== worker) return;
      this.workers[slot] = undefined;
      for (const [id, w] of this.waiting) {
        if (w.worker !== worker) continue;
        this.waiting.delete(id);
        w.reject(err);
      }
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`mvcc: range read thread exited (${code})`)));
    this.workers[slot] = worker;
    return worker;
  }

  private answer(reply: RangeReadReply): void {
    const waiter = this.waiting.get(reply.id);
    if (waiter === undefined) return;
    this.waiting.delete(reply.id);
    if ("part" in reply) {
      const p = reply.part;
      waiter.resolve({ part: Buffer.from(p.buffer, p.byteOffset, p.byteLength) });
    } else if ("held" in reply) {
      this.held++;
      waiter.resolve({ held: new HeldPart(reply.held, this, waiter.worker, reply.id) });
    } else if ("missing" in reply) waiter.resolve({ missing: { main: reply.main, sub: reply.sub } });
    else if ("order" in reply) waiter.resolve({ order: reply.order });
    else if ("synced" in reply) waiter.resolve({ synced: true });
    else if ("attached" in reply) waiter.resolve({ attached: true });
    else waiter.reject(new Error(`mvcc: range read thread: ${reply.error}`));
    this.idleWhenDone();
  }

  /** With no answer awaited, the workers no longer keep the process alive; idle long, they stop. */
  private idleWhenDone(): void {
    if (this.waiting.size > 0) return;
    for (const w of this.workers) w?.unref();
    if (!this.closed && this.held === 0 && !this.syncExpected && this.idleTimer === undefined) {
      this.idleTimer = setTimeout(() => void this.stop(), this.idleStopMs);
      this.idleTimer.unref();
    }
  }

  private async stop(): Promise<void> {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    // Held chunks stay until taken or dropped (close() stops the workers regardless).
    if (this.waiting.size > 0 || ((this.held > 0 || this.syncExpected) && !this.closed)) return;
    const workers = this.workers.splice(0);
    await Promise.all(workers.map((w) => w?.terminate()));
  }
}
