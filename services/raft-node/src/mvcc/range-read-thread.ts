// The worker thread of range-reader.ts: reads a large Range's stored revisions from the member's
// open RocksDB (attached by its native handle, as the snapshot thread does) and writes them as
// the answer's consecutive field-2 (kvs) occurrences in one buffer, handed back by transfer.
// On the member's thread each value read was a Buffer of its own (the binding makes one per
// value), then copied into the answer: a million of each for a full list, and their garbage.
// It imports only the codec, range-shaping's sort and RocksDB's reader (its RSS is the member's).
// A held chunk (`hold`) stays here until the member takes it to send it: every ArrayBuffer the
// member's isolate receives counts as its external memory, and past 64 MiB more of it than after
// its last full GC, V8 starts incremental marking and then runs a 5-10 ms marking step on the
// member's thread for every further buffer it receives (Heap::ReportExternalMemoryPressure) until
// marking is done: a full list's 280 MB arriving there made steps of the loop that long, over
// and over, beside the puts. Held here, they count in this isolate, whose GC is off that thread.
import { parentPort } from "node:worker_threads";
import { keyValueFields, withoutValue } from "./kv-codec.js";
import type {
  RangeAttachRequest,
  RangeReadReply,
  RangeReadRequest,
  RangeSortRequest,
  RangeSyncRequest,
  RangeThreadRequest,
} from "./range-read-protocol.js";
import { StoredChunks, sortPositions } from "./range-shaping.js";
import { mainOfKey, REVISION_KEY_LENGTH, subOfKey } from "./revision.js";
import { AttachedReader } from "./rocks-backend.js";
import { lowerThreadPriority } from "./thread-module.js";

// Below the member's thread (nice 10: about a tenth of a core's share against it when both want
// one), so the writes served beside a long Range keep their latency; a core left idle is still
// this thread's in full.
lowerThreadPriority(10);

/** The reader of the database last asked about (a defragmentation switches databases). */
let attached: { handle: bigint; reader: Promise<AttachedReader> } | undefined;

/** Chunks held for the member, by the id of the request that read them. */
const held = new Map<number, Buffer>();

const port = parentPort!;
// One read at a time, in order (the member keeps a few chunks in flight over its workers); a
// take or a drop at once, as they touch no database.
let queue = Promise.resolve();
port.on("message", (request: RangeThreadRequest) => {
  if ("take" in request) {
    const part = held.get(request.take);
    held.delete(request.take);
    if (part === undefined) port.postMessage({ id: request.id, error: `no held chunk ${request.take}` });
    // Held chunks own their memory (see serve): it moves to the member's thread.
    else port.postMessage({ id: request.id, part }, [part.buffer as ArrayBuffer]);
    return;
  }
  if ("drop" in request) {
    for (const id of request.drop) held.delete(id);
    return;
  }
  // A recycled buffer is freed with this isolate's garbage.
  if ("recycled" in request) return;
  if ("sync" in request) {
    queue = queue.then(() => sync(request));
    return;
  }
  if ("attach" in request) {
    queue = queue.then(() => attach(request));
    return;
  }
  if ("sort" in request) {
    queue = queue.then(() => sortByValue(request));
    return;
  }
  queue = queue.then(() => serve(request));
});

/** The reader of `handle`'s database, attached on first use. */
function readerOf(handle: bigint): Promise<AttachedReader> {
  if (attached?.handle !== handle) attached = { handle, reader: AttachedReader.attach(handle) };
  return attached.reader;
}

async function sync(request: RangeSyncRequest): Promise<void> {
  let reply: RangeReadReply;
  try {
    (await readerOf(request.handle)).syncWal();
    reply = { id: request.sync, synced: true };
  } catch (err) {
    if (attached?.handle === request.handle) attached = undefined;
    reply = { id: request.sync, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
}

async function attach(request: RangeAttachRequest): Promise<void> {
  let reply: RangeReadReply;
  try {
    await readerOf(request.handle);
    reply = { id: request.attach, attached: true };
  } catch (err) {
    if (attached?.handle === request.handle) attached = undefined;
    reply = { id: request.attach, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
}

/** Values read per getManySync of a sort (its KeyValues kept as StoredChunks). */
const SORT_READ_CHUNK = 1024;

async function sortByValue(request: RangeSortRequest): Promise<void> {
  let reply: RangeReadReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const reader = await readerOf(request.handle);
    const packed = Buffer.from(request.keys.buffer, request.keys.byteOffset, request.keys.byteLength);
    const n = packed.length / REVISION_KEY_LENGTH;
    const stored = new StoredChunks(n, SORT_READ_CHUNK);
    let missing: Buffer | undefined;
    for (let from = 0; from < n && missing === undefined; from += SORT_READ_CHUNK) {
      const keys: Buffer[] = [];
      for (let i = from; i < Math.min(n, from + SORT_READ_CHUNK); i++) {
        keys.push(packed.subarray(i * REVISION_KEY_LENGTH, (i + 1) * REVISION_KEY_LENGTH));
      }
      const values = reader.getManySync(keys);
      const at = values.indexOf(undefined);
      if (at >= 0) missing = keys[at];
      else stored.add(values as Buffer[]);
    }
    if (missing !== undefined) {
      reply = { id: request.sort, missing: true, main: mainOfKey(missing), sub: subOfKey(missing) };
    } else {
      // No loop to share here: the sort runs through in one go.
      const sorting = sortPositions(n, (a, b) => stored.compareValues(a, b), request.descend, n);
      let step = sorting.next();
      while (!step.done) step = sorting.next();
      reply = { id: request.sort, order: step.value };
      transfer = [step.value.buffer as ArrayBuffer];
    }
  } catch (err) {
    if (attached?.handle === request.handle) attached = undefined;
    reply = { id: request.sort, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply, transfer);
}

async function serve(request: RangeReadRequest): Promise<void> {
  let reply: RangeReadReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const reader = await readerOf(request.handle);
    const packed = Buffer.from(request.keys.buffer, request.keys.byteOffset, request.keys.byteLength);
    const keys: Buffer[] = new Array(packed.length / REVISION_KEY_LENGTH);
    for (let i = 0; i < keys.length; i++) {
      keys[i] = packed.subarray(i * REVISION_KEY_LENGTH, (i + 1) * REVISION_KEY_LENGTH);
    }
    const values = reader.getManySync(keys);
    const missing = values.indexOf(undefined);
    if (missing >= 0) {
      const key = keys[missing]!;
      reply = { id: request.id, missing: true, main: mainOfKey(key), sub: subOfKey(key) };
    } else {
      const stored = values as Buffer[];
      const part = keyValueFields(2, request.keysOnly ? stored.map(withoutValue) : stored);
      const owned = part.byteOffset === 0 && part.byteLength === part.buffer.byteLength;
      if (request.hold) {
        // Its own memory, so that taking it moves it rather than copying it.
        let own = part;
        if (!owned) {
          own = Buffer.allocUnsafeSlow(part.length);
          part.copy(own);
        }
        held.set(request.id, own);
        reply = { id: request.id, held: part.length };
      } else {
        reply = { id: request.id, part };
        // A buffer that owns its memory moves to the member's thread; a pooled one is copied.
        if (owned) transfer = [part.buffer as ArrayBuffer];
      }
    }
  } catch (err) {
    if (attached?.handle === request.handle) attached = undefined;
    reply = { id: request.id, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply, transfer);
}
