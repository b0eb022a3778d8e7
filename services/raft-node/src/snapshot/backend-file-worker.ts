// Writes etcd's backend file for Maintenance.Snapshot on a worker thread: encoding a large store
// takes seconds of CPU, which on the member's own thread would be taken from the writes it
// serves (issue 11 asks puts during a snapshot to keep 0.9x of their rate). The worker reads the
// member's open RocksDB through its native handle (the binding shares one database between
// threads), from iterators it creates while the member's thread waits, so the file holds one
// consistent state (MvccStore.shareView); the small buckets (members, alarms, auth, meta) are
// read here from a view of the same state and handed over, so the worker loads only the writer
// and RocksDB's reader. The bytes are those writeBackendFile writes on this thread. The worker
// runs at the lowest CPU priority (backend-writer-thread.ts), and pauses after each piece of work
// in proportion to how busy this thread is with writes (paced-view.ts), a share this thread publishes.
import { rm } from "node:fs/promises";
import type { Worker } from "node:worker_threads";
import type { StoreView } from "../mvcc/mod.js";
import { startThreadModule, WorkerMessages } from "../mvcc/thread-module.js";
import {
  type BackendThreadData,
  type BackendThreadMessage,
  BUSY_SHARE_SCALE,
  type KeySplit,
  type ThreadStagesMs,
  ViewState,
} from "./backend-thread-protocol.js";
import { type BackendContext, smallBuckets } from "./etcd-backend.js";
import type { BusyShare } from "./paced-view.js";

/** The part of MvccStore used here. */
export interface SharedViewSource {
  shareView(
    openIterators: (handle: bigint) => void,
    abort: () => void,
  ): Promise<{ view: StoreView; release: () => void }>;
}

/**
 * The rows read become garbage a chunk later: a small young generation frees them (and the
 * native memory behind them) often. The default added about 20 MiB to the member's RSS; at 4 MiB
 * the collections took twice as long as at 8. The old generation holds a few pages per tree level.
 */
const RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 256 };

/**
 * How often this thread tells the workers how busy it is with writes (paced-view.ts): a timer
 * here rather than a shared counter bumped on every apply keeps the apply path as it is; a worker
 * piece of work takes a few ms, so a share this fresh paces nearly every piece by the load it ran under.
 */
const BUSY_SHARE_MS = 5;

/** How long the member's thread waits for the worker to create its iterators (normally < 1 ms). */
const OPEN_TIMEOUT_MS = 5000;

/**
 * Stores with at least this many revisions split the key bucket between two threads (on a
 * machine with two cores or more): below it a second thread's start costs more than it saves.
 */
export const SPLIT_MIN_REVISIONS = 100_000;

/**
 * Where to split the key bucket between two threads: at the revision halfway through those the
 * store holds (every revision after the compaction, and some before it), as the 8-byte prefix of
 * a revision key; undefined when not worth a second thread. Only the balance depends on it: the
 * two threads read one consistent view, each its side of the key.
 */
export function keySplitAt(
  compactRevision: number,
  currentRevision: number,
  cores: number,
  minRevisions = SPLIT_MIN_REVISIONS,
): Buffer | undefined {
  if (cores < 2 || currentRevision - compactRevision < minRevisions) return undefined;
  const key = Buffer.alloc(8);
  key.writeBigUInt64BE(BigInt(Math.floor((compactRevision + currentRevision) / 2)));
  return key;
}

/** One snapshot thread: its messages in order, its failure, its view's state word. */
class SnapshotThread {
  readonly worker: Worker;
  readonly exited: Promise<number>;
  private readonly shared = new SharedArrayBuffer(16);
  private readonly state = new Int32Array(this.shared, 0, 1);
  private readonly busyShare = new Int32Array(this.shared, 4, 1);
  private readonly messages: WorkerMessages<BackendThreadMessage>;

  constructor(path: string, split?: KeySplit) {
    this.worker = startThread({ shared: this.shared, path, ...(split === undefined ? {} : { split }) });
    this.messages = new WorkerMessages(this.worker, "snapshot worker");
    this.exited = this.messages.exited;
  }

  next(): Promise<BackendThreadMessage> {
    return this.messages.next();
  }

  async expect<K extends BackendThreadMessage["kind"]>(
    kind: K,
  ): Promise<Extract<BackendThreadMessage, { kind: K }>> {
    const m = await this.next();
    if (m.kind === "failed") throw new Error(m.message);
    if (m.kind !== kind) throw new Error(`snapshot worker: expected ${kind}, got ${m.kind}`);
    return m as Extract<BackendThreadMessage, { kind: K }>;
  }

  /** Tells the thread how busy the member's thread is with writes (0..1; it paces itself by it). */
  setBusyShare(share: number): void {
    Atomics.store(this.busyShare, 0, Math.round(share * BUSY_SHARE_SCALE));
  }

  /** Hands the thread the database and wakes it to create its iterators. */
  go(native: bigint): void {
    new BigInt64Array(this.shared, 8, 1)[0] = native;
    Atomics.store(this.state, 0, ViewState.Go);
    Atomics.notify(this.state, 0);
  }

  /** Blocks this thread until the worker's iterators are open (or `deadline`, a performance.now()). */
  waitOpen(deadline: number): void {
    Atomics.wait(this.state, 0, ViewState.Go, Math.max(0, deadline - performance.now()));
    const now = Atomics.load(this.state, 0);
    if (now !== ViewState.Open) {
      throw new Error(
        now === ViewState.Go
          ? `snapshot worker did not open its view within ${OPEN_TIMEOUT_MS} ms`
          : "snapshot worker could not open its view",
      );
    }
  }

  stop(): Promise<void> {
    return this.messages.stop();
  }
}

/**
 * Writes the store's state now as an etcd backend file at `path` (no trailer). Returns its size in
 * bytes, and the sha256 of the file (etcd's trailer), which the worker computes from the file
 * afterwards, while the caller sends it: await it (it settles once the worker has exited) before
 * removing the file. `stagesMs` says where each thread's time went (the sha256's once it settles).
 * With `splitKey` (keySplitAt) a second thread writes the leaves of the
 * revisions from that key on, at the same time, into `path`.run, which the first copies in.
 * With `busy` (paced-view.ts's WriteLoad.busy on the member's thread), the threads pace themselves by it.
 */
export async function writeBackendFileOffThread(
  store: SharedViewSource,
  context: BackendContext,
  path: string,
  splitKey?: Buffer,
  busy?: BusyShare,
): Promise<{ size: number; sha256: Promise<Buffer>; stagesMs: Record<string, ThreadStagesMs | number> }> {
  const runPath = `${path}.run`;
  const split = (role: KeySplit["role"]) =>
    splitKey === undefined ? undefined : { key: new Uint8Array(splitKey), runPath, role };
  const main = new SnapshotThread(path, split("backend"));
  const helper = splitKey === undefined ? undefined : new SnapshotThread(path, split("leafRun"));
  const threads = helper === undefined ? [main] : [main, helper];
  const shareTimer = busy === undefined ? undefined : publishBusyShare(busy, threads);
  let release: (() => void) | undefined;
  let handedOver = false;
  const stagesMs: Record<string, ThreadStagesMs | number> = {};
  try {
    for (const thread of threads) await thread.expect("ready");
    const views = await store.shareView(
      (native) => {
        for (const thread of threads) thread.go(native);
        // Blocks this thread: no write may land while the workers create their iterators.
        const deadline = performance.now() + OPEN_TIMEOUT_MS;
        for (const thread of threads) thread.waitOpen(deadline);
      },
      () => {
        for (const thread of threads) void thread.worker.terminate();
      },
    );
    release = views.release;
    try {
      main.worker.postMessage({ kind: "buckets", small: await smallBuckets(views.view, context) });
    } finally {
      views.view.close();
    }
    if (helper !== undefined) {
      // The helper has closed its iterator when it hands its leaves over.
      const { run, stagesMs: helperMs } = await helper.expect("run");
      stagesMs.leafRun = rounded(helperMs);
      main.worker.postMessage({ kind: "run", run, stagesMs: helperMs } satisfies BackendThreadMessage);
      await helper.stop();
    }
    const answer = await main.expect("done");
    stagesMs.backend = rounded(answer.stagesMs);
    // The workers have closed their iterators: the view goes now, while the main one hashes the file.
    release();
    release = undefined;
    const sha256 = (async () => {
      try {
        const { digest, ms } = await main.expect("sha256");
        stagesMs.sha256 = Math.round(ms);
        return Buffer.from(digest);
      } finally {
        clearInterval(shareTimer);
        await main.stop();
      }
    })();
    handedOver = true;
    return { size: answer.size, sha256, stagesMs };
  } finally {
    // A worker that is not done (a failure, the store closing) is stopped before the view is
    // released: its iterators must not outlive the database.
    if (!handedOver) {
      clearInterval(shareTimer);
      await Promise.all(threads.map((thread) => thread.stop()));
    }
    release?.();
    if (helper !== undefined) await rm(runPath, { force: true });
  }
}

/** Sets the threads' busy share every BUSY_SHARE_MS until cleared. */
function publishBusyShare(busy: BusyShare, threads: SnapshotThread[]): NodeJS.Timeout {
  const timer = setInterval(() => {
    const share = busy();
    for (const thread of threads) thread.setBusyShare(share);
  }, BUSY_SHARE_MS);
  // The snapshot's call keeps the process alive, not this.
  timer.unref();
  return timer;
}

function rounded(ms: ThreadStagesMs): ThreadStagesMs {
  return {
    read: Math.round(ms.read),
    write: Math.round(ms.write),
    copy: Math.round(ms.copy),
    wait: Math.round(ms.wait),
    paused: Math.round(ms.paused),
    all: Math.round(ms.all),
  };
}

/** The thread's module beside this one. */
function startThread(workerData: BackendThreadData): Worker {
  return startThreadModule("backend-writer-thread", import.meta.url, {
    workerData,
    resourceLimits: RESOURCE_LIMITS,
  });
}
