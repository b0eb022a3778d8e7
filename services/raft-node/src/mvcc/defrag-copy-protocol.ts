// What defrag-copy.ts (the member's thread) and defrag-copy-thread.ts (its worker) say to each
// other. Its own module: the worker imports it, and must not load the store.

/** Where the copy is, in the shared state word (Int32 at 0). */
export const CopyState = { Waiting: 0, Go: 1, Open: 2, Failed: 3, Stop: 4 } as const;

export interface CopyThreadData {
  /** 24 bytes: the state word (Int32 at 0), the source's handle (BigInt64 at 8), the copy's (at 16). */
  shared: SharedArrayBuffer;
  /** The column families to copy besides the revision key space ("default"), in order. */
  columns: string[];
}

export type CopyThreadMessage =
  | { kind: "ready" }
  /** Revisions copied, in key order: their keys end to end (`keyEnds`) and their values' lengths. */
  | { kind: "revisions"; keys: Uint8Array; keyEnds: Uint32Array; valueLengths: Uint32Array }
  /** Every row is in the copy (unsynced) and the worker's iterators are closed. */
  | { kind: "done"; rows: number }
  /** Stopped when asked (CopyState.Stop), iterators closed. */
  | { kind: "stopped" }
  | { kind: "failed"; message: string };
