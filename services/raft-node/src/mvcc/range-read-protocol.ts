// Messages between the member's thread (range-reader.ts) and range-read-thread.ts.

export interface RangeReadRequest {
  id: number;
  /** The open database's native handle (RocksBackend.handle) when the request was made. */
  handle: bigint;
  /** Revision keys (REVISION_KEY_LENGTH bytes each, none a tombstone's), in answer order. */
  keys: Uint8Array;
  /** Each KeyValue without its value (keys_only). */
  keysOnly: boolean;
  /** Keep the chunk's bytes on the thread (answered with its length) until taken or dropped. */
  hold: boolean;
}

/** The bytes of a chunk held on the thread (answered with a `part` reply for `id`). */
export interface RangeTakeRequest {
  take: number;
  /** The reply's id. */
  id: number;
}

/** Held chunks no longer wanted (their answer failed or its call ended). */
export interface RangeDropRequest {
  drop: number[];
}

/** A taken chunk's memory, written and handed back, to be freed here. */
export interface RangeRecycleRequest {
  recycled: ArrayBuffer;
}

/**
 * Make everything written to the database before this request durable (an fsync of RocksDB's
 * WAL), answered with `synced` under the id `sync`: the member's Raft snapshot, off its thread.
 */
export interface RangeSyncRequest {
  sync: number;
  handle: bigint;
}

/**
 * Attach the database `handle` now, answered with `attached` under the id `attach`: a sync
 * expected soon then finds the thread ready (see RangeReadThreads.prepareSync).
 */
export interface RangeAttachRequest {
  attach: number;
  handle: bigint;
}

/**
 * Order the revisions `keys` (REVISION_KEY_LENGTH bytes each, in key order) by their stored
 * values, answered with `order` under the id `sort`: a Range sorted by value, its reads and
 * comparisons off the member's thread.
 */
export interface RangeSortRequest {
  sort: number;
  handle: bigint;
  keys: Uint8Array;
  descend: boolean;
}

export type RangeThreadRequest =
  | RangeReadRequest
  | RangeSortRequest
  | RangeAttachRequest
  | RangeTakeRequest
  | RangeDropRequest
  | RangeRecycleRequest
  | RangeSyncRequest;

export type RangeReadReply =
  /** The KeyValues as consecutive RangeResponse field-2 occurrences. */
  | { id: number; part: Uint8Array }
  /** A RangeSyncRequest's writes are durable. */
  | { id: number; synced: true }
  /** A RangeAttachRequest's database is attached. */
  | { id: number; attached: true }
  /** A RangeSortRequest's positions, by value (equal values by position). */
  | { id: number; order: Uint32Array }
  /** The chunk is held on the thread under the request's id: its length in bytes. */
  | { id: number; held: number }
  /** The first revision with no stored value (compacted meanwhile, or a fault). */
  | { id: number; missing: true; main: number; sub: number }
  | { id: number; error: string };
