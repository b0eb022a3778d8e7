// Messages between the member's thread (range-reader.ts) and range-read-thread.ts.

export interface RangeReadRequest {
  id: number;
  /** The open database's native handle (RocksBackend.handle) when the request was made. */
  handle: bigint;
  /** Revision keys (REVISION_KEY_LENGTH bytes each, none a tombstone's), in answer order. */
  keys: Uint8Array;
  /** Each KeyValue without its value (keys_only). */
  keysOnly: boolean;
}

export type RangeReadReply =
  /** The KeyValues as consecutive RangeResponse field-2 occurrences. */
  | { id: number; part: Uint8Array }
  /** The first revision with no stored value (compacted meanwhile, or a fault). */
  | { id: number; missing: true; main: number; sub: number }
  | { id: number; error: string };
