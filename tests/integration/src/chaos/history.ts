// What the workload saw, op by op, in a form the checkers can judge without knowing how it
// was produced. Times are monotonic milliseconds (performance.now()) so that a wall-clock step
// during a run cannot reorder operations.

import { performance } from "node:perf_hooks";

export type OpKind = "read" | "write" | "cas";

/**
 * ok: the cluster answered; the output is what it said.
 * fail: the op certainly did not take effect (the request was refused before it could be
 *   proposed, or never left this process).
 * unknown: timeout, lost connection, "leader changed"...: it may have taken effect, at any
 *   time after its invocation, or never.
 */
export type Outcome = "ok" | "fail" | "unknown";

export interface Operation {
  /** Unique within a history; the order ops were invoked in. */
  id: number;
  /**
   * The logical client. A client whose op ended unknown continues under a new process id, as
   * in Jepsen: the old op may still be in flight, so the process that issued it never finishes.
   */
  process: number;
  kind: OpKind;
  key: string;
  /** write: the value written; cas: the value put when the comparison holds. Unique per history. */
  value?: string;
  /** cas: the value compared against. */
  expected?: string;
  invokedAt: number;
  /** Undefined while pending and for unknown ops (they have no upper bound). */
  completedAt?: number;
  outcome: Outcome;
  /**
   * read: the value read, null when the key did not exist. cas that did not succeed: the
   * value the failure branch of the txn read (null: absent), which proves the comparison was
   * false at the txn's revision.
   */
  output?: string | null;
  /** cas with outcome ok: whether the comparison held and the put was applied. */
  succeeded?: boolean;
  /** The response header's revision: for a write or a successful cas, the revision it created. */
  revision?: number;
  /** read (and failed cas): mod_revision of the value observed. */
  modRevision?: number;
  /** Why the op was not ok: the gRPC status or error text. */
  error?: string;
}

export interface FaultRecord {
  kind: string;
  detail: string;
  startedAt: number;
  endedAt?: number;
}

/** A watch event as a watcher received it. */
export interface WatchEventRecord {
  key: string;
  /** null for a DELETE. */
  value: string | null;
  modRevision: number;
  /** The time it arrived, for the report. */
  receivedAt: number;
}

export interface WatcherRecord {
  id: number;
  /** The revision the first watch was created from. */
  startRevision: number;
  /** The key prefix watched. */
  prefix: string;
  /** Every event, in arrival order, across re-watches. */
  events: WatchEventRecord[];
  /** How many times the stream was re-created after a failure. */
  restarts: number;
  /** Errors the stream ended with (text), for the report. */
  errors: string[];
}

export function now(): number {
  return performance.now();
}

/**
 * Collects operations as they are invoked and completed. Ids follow invocation order, so a
 * history sorted by id is sorted by invocation time.
 */
export class HistoryRecorder {
  readonly ops: Operation[] = [];
  private nextId = 0;

  invoke(op: Omit<Operation, "id" | "invokedAt" | "outcome">): Operation {
    const record: Operation = { ...op, id: this.nextId++, invokedAt: now(), outcome: "unknown" };
    this.ops.push(record);
    return record;
  }

  complete(
    op: Operation,
    outcome: Outcome,
    result: Pick<Operation, "output" | "succeeded" | "revision" | "modRevision" | "error"> = {},
  ): void {
    op.outcome = outcome;
    Object.assign(op, result);
    // Unknown ops keep no completion time: the checker must let them take effect at any later
    // point, and an end time would silently bound that.
    if (outcome !== "unknown") op.completedAt = now();
  }
}

export function describeOp(op: Operation): string {
  const t = (ms: number | undefined) => (ms === undefined ? "∞" : `${(ms / 1000).toFixed(3)}s`);
  let what: string;
  switch (op.kind) {
    case "read":
      what = `read ${op.key} -> ${showValue(op.output)}`;
      break;
    case "write":
      what = `write ${op.key} := ${showValue(op.value)}`;
      break;
    case "cas":
      what = `cas ${op.key} ${showValue(op.expected)} -> ${showValue(op.value)}`;
      if (op.outcome === "ok")
        what += op.succeeded ? " (succeeded)" : ` (failed, saw ${showValue(op.output)})`;
      break;
  }
  const rev = op.revision === undefined ? "" : ` rev=${op.revision}`;
  const err = op.error ? ` [${op.error}]` : "";
  return `#${op.id} p${op.process} [${t(op.invokedAt)}, ${t(op.completedAt)}] ${op.outcome} ${what}${rev}${err}`;
}

function showValue(v: string | null | undefined): string {
  if (v === undefined) return "?";
  if (v === null) return "<absent>";
  return JSON.stringify(v);
}
