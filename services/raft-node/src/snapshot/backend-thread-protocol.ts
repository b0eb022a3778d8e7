// What backend-file-worker.ts and its thread (backend-writer-thread.ts) say to each other. Its
// own module: the thread imports it, and must not load the member's side of the snapshot code.
import type { Row } from "./backend-buckets.js";

/** Where the view is, in the shared state word. */
export const ViewState = { Waiting: 0, Go: 1, Open: 2, Failed: 3 } as const;

export interface BackendThreadData {
  /** 16 bytes: the state word (Int32 at 0) and the database handle (BigInt64 at 8). */
  shared: SharedArrayBuffer;
  path: string;
}

export type BackendThreadMessage =
  | { kind: "ready" }
  /** To the worker: every bucket but the streamed ones (structured clone: Uint8Arrays). */
  | { kind: "buckets"; small: Record<string, Row[]> }
  | { kind: "done"; size: number }
  /** After "done" (the view is closed then): the file's sha256. */
  | { kind: "sha256"; digest: Uint8Array }
  | { kind: "failed"; message: string };
