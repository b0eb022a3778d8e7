// Writes etcd's backend file for Maintenance.Snapshot on a worker thread: encoding a large store
// takes seconds of CPU, which on the member's own thread would be taken from the writes it
// serves (issue 11 asks puts during a snapshot to keep 0.9x of their rate). The worker reads the
// member's open RocksDB through its native handle (the binding shares one database between
// threads), from iterators it creates while the member's thread waits, so the file holds one
// consistent state (MvccStore.shareView); the small buckets (members, alarms, auth, meta) are
// read here from a view of the same state and handed over, so the worker loads only the writer
// and RocksDB's reader. The bytes are those writeBackendFile writes on this thread. The worker
// runs at the lowest CPU priority (backend-writer-thread.ts).
import { Worker } from "node:worker_threads";
import type { StoreView } from "../mvcc/mod.js";
import { type BackendThreadData, type BackendThreadMessage, ViewState } from "./backend-thread-protocol.js";
import { type BackendContext, smallBuckets } from "./etcd-backend.js";

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

/** How long the member's thread waits for the worker to create its iterators (normally < 1 ms). */
const OPEN_TIMEOUT_MS = 5000;

/**
 * Writes the store's state now as an etcd backend file at `path` (no trailer). Returns its size in
 * bytes, and the sha256 of the file (etcd's trailer), which the worker computes from the file
 * afterwards, while the caller sends it: await it (it settles once the worker has exited) before
 * removing the file.
 */
export async function writeBackendFileOffThread(
  store: SharedViewSource,
  context: BackendContext,
  path: string,
): Promise<{ size: number; sha256: Promise<Buffer> }> {
  const shared = new SharedArrayBuffer(16);
  const state = new Int32Array(shared, 0, 1);
  const handle = new BigInt64Array(shared, 8, 1);
  const worker = startThread({ shared, path });
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  const messages: BackendThreadMessage[] = [];
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  worker.on("message", (m: BackendThreadMessage) => {
    messages.push(m);
    wake?.();
  });
  worker.once("error", (err) => {
    failure = err;
    wake?.();
  });
  void exited.then((code) => {
    failure ??= new Error(`snapshot worker exited (code ${code}) before it was done`);
    wake?.();
  });
  const next = async (): Promise<BackendThreadMessage> => {
    while (messages.length === 0) {
      if (failure !== undefined) throw failure;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
    return messages.shift()!;
  };
  let release: (() => void) | undefined;
  let handedOver = false;
  try {
    if ((await next()).kind !== "ready") throw new Error("snapshot worker: unexpected message");
    const views = await store.shareView(
      (native) => {
        handle[0] = native;
        Atomics.store(state, 0, ViewState.Go);
        Atomics.notify(state, 0);
        // Blocks this thread: no write may land while the worker creates its iterators.
        Atomics.wait(state, 0, ViewState.Go, OPEN_TIMEOUT_MS);
        const now = Atomics.load(state, 0);
        if (now !== ViewState.Open) {
          throw new Error(
            now === ViewState.Go
              ? `snapshot worker did not open its view within ${OPEN_TIMEOUT_MS} ms`
              : "snapshot worker could not open its view",
          );
        }
      },
      () => void worker.terminate(),
    );
    release = views.release;
    try {
      worker.postMessage({ kind: "buckets", small: await smallBuckets(views.view, context) });
    } finally {
      views.view.close();
    }
    const answer = await next();
    if (answer.kind === "failed") throw new Error(answer.message);
    if (answer.kind !== "done") throw new Error("snapshot worker: unexpected message");
    // The worker has closed its iterators: the view goes now, while it hashes the file.
    release();
    release = undefined;
    const sha256 = (async () => {
      try {
        const m = await next();
        if (m.kind === "failed") throw new Error(m.message);
        if (m.kind !== "sha256") throw new Error("snapshot worker: unexpected message");
        return Buffer.from(m.digest);
      } finally {
        await worker.terminate();
        await exited;
      }
    })();
    handedOver = true;
    return { size: answer.size, sha256 };
  } finally {
    // A worker that is not done (a failure, the store closing) is stopped before the view is
    // released: its iterators must not outlive the database.
    if (!handedOver) {
      await worker.terminate();
      await exited;
    }
    release?.();
  }
}

/** The thread's module beside this one (.js when built, .ts when run from the sources). */
function startThread(workerData: BackendThreadData): Worker {
  const fromSources = import.meta.url.endsWith(".ts");
  const entry = new URL(`./backend-writer-thread${fromSources ? ".ts" : ".js"}`, import.meta.url);
  if (!fromSources) return new Worker(entry, { workerData, resourceLimits: RESOURCE_LIMITS });
  // The fast test loop (node --import tsx): Node 20 does not hand tsx's loader on to workers.
  const load = `import("tsx/esm/api").then((api) => api.tsImport(${JSON.stringify(entry.href)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(load, { eval: true, workerData, resourceLimits: RESOURCE_LIMITS });
}
