// What backend-file-worker.ts and its threads (backend-writer-thread.ts) say to each other. Its
// own module: the threads import it, and must not load the member's side of the snapshot code.
import type { Row } from "./backend-buckets.js";

/** The busy share (0..1) in the shared buffer: an integer of this many parts. */
export const BUSY_SHARE_SCALE = 1000;

/** Where the view is, in the shared state word. */
export const ViewState = { Waiting: 0, Go: 1, Open: 2, Failed: 3 } as const;

/**
 * The key bucket split between two threads at `key` (a revision key prefix): the "backend"
 * thread writes the file with the revisions before it, the "leafRun" thread writes the leaves of
 * the revisions from it on to `runPath`, which the backend thread adopts and copies in.
 */
export interface KeySplit {
  key: Uint8Array;
  runPath: string;
  role: "backend" | "leafRun";
}

export interface BackendThreadData {
  /**
   * 16 bytes: the state word (Int32 at 0), how busy the member's thread is with writes (Int32 at
   * 4, in BUSY_SHARE_SCALE ths: the thread paces itself by it) and the database handle (BigInt64 at 8).
   */
  shared: SharedArrayBuffer;
  path: string;
  split?: KeySplit;
}

/** A LeafRun packed for postMessage: one buffer of first keys, not one object per leaf. */
export interface PackedLeafRun {
  pageCount: number;
  ids: Uint32Array;
  keyEnds: Uint32Array;
  keyBytes: Uint8Array;
}

/**
 * Where a thread's time went (wall ms on that thread, for the member's log): in RocksDB's reads
 * (the binding's nextv, which copies each key and value into a Buffer), in file writes, in the
 * copy of the other thread's leaves and waiting for them (backend role), paused for the member's
 * writes (paced-view.ts), and in all (start to answer; the rest of it is encoding pages and
 * garbage collection).
 */
export interface ThreadStagesMs {
  read: number;
  write: number;
  copy: number;
  wait: number;
  paused: number;
  all: number;
}

export type BackendThreadMessage =
  | { kind: "ready" }
  /** To the backend thread: every bucket but the streamed ones (structured clone: Uint8Arrays). */
  | { kind: "buckets"; small: Record<string, Row[]> }
  /** From the leafRun thread (its iterator closed), handed on to the backend thread. */
  | { kind: "run"; run: PackedLeafRun; stagesMs: ThreadStagesMs }
  | { kind: "done"; size: number; stagesMs: ThreadStagesMs }
  /** After "done" (the view is closed then): the file's sha256. */
  | { kind: "sha256"; digest: Uint8Array; ms: number }
  | { kind: "failed"; message: string };
