// Checks what watchers received against what the cluster acknowledged. etcd promises that a
// watch delivers events in revision order, each exactly once, with no gaps, and (since every
// member applies the same log) the same event for a revision on every member. Writes here carry
// unique values, which lets each event be traced back to the op that produced it.

import type { Operation, WatcherRecord } from "./history.js";

export type WatchProblemKind =
  | "out-of-order"
  | "duplicate"
  | "gap"
  | "value-never-written"
  | "failed-write-applied"
  | "revision-mismatch"
  | "applied-twice"
  | "disagreement"
  | "unexpected-delete";

export interface WatchProblem {
  kind: WatchProblemKind;
  /** The watcher it concerns, when it concerns one. */
  watcher?: number;
  revision: number;
  detail: string;
}

export interface WatchReport {
  ok: boolean;
  /** All problems, in watcher and revision order. */
  problems: WatchProblem[];
  eventsChecked: number;
  acknowledgedWrites: number;
}

interface Produced {
  op: Operation;
  /** The revision the cluster acknowledged for it; undefined when its outcome is unknown. */
  revision?: number;
}

/**
 * A write "produces" its value; so does a CAS, if it applied. An acknowledged producer is an ok
 * write or an ok CAS that reported success.
 */
function producers(history: readonly Operation[]): Map<string, Produced> {
  const byValue = new Map<string, Produced>();
  for (const op of history) {
    if (op.kind === "read" || op.value === undefined) continue;
    const acknowledged = op.outcome === "ok" && (op.kind === "write" || op.succeeded === true);
    byValue.set(op.value, { op, revision: acknowledged ? op.revision : undefined });
  }
  return byValue;
}

function isAcknowledged(p: Produced): boolean {
  return p.revision !== undefined;
}

/** Whether the op certainly did not produce its value: failed, or a CAS the cluster refused. */
function certainlyNotApplied(op: Operation): boolean {
  return op.outcome === "fail" || (op.kind === "cas" && op.outcome === "ok" && op.succeeded === false);
}

export function checkWatches(history: readonly Operation[], watchers: readonly WatcherRecord[]): WatchReport {
  const byValue = producers(history);
  const problems: WatchProblem[] = [];
  // What each (revision, key) carried, according to the first watcher that saw it. One txn
  // can change several keys at one revision, so the key is part of the identity.
  const atRevision = new Map<
    string,
    { revision: number; key: string; value: string | null; watcher: number }
  >();
  const revisionOfValue = new Map<string, { revision: number; watcher: number }>();
  let eventsChecked = 0;

  for (const w of watchers) {
    let last: { revision: number; key: string } | undefined;
    const seenHere = new Set<string>();
    for (const e of w.events) {
      eventsChecked++;
      const where = `watcher ${w.id}`;
      if (last && e.modRevision < last.revision) {
        problems.push({
          kind: "out-of-order",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where}: revision ${e.modRevision} (${e.key}) arrived after revision ${last.revision}`,
        });
      }
      const id = `${e.modRevision}/${e.key}`;
      if (seenHere.has(id)) {
        problems.push({
          kind: "duplicate",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where}: the event for ${e.key} at revision ${e.modRevision} arrived twice`,
        });
      }
      seenHere.add(id);
      last = { revision: Math.max(e.modRevision, last?.revision ?? 0), key: e.key };

      const first = atRevision.get(id);
      if (!first) atRevision.set(id, { revision: e.modRevision, key: e.key, value: e.value, watcher: w.id });
      else if (first.value !== e.value) {
        problems.push({
          kind: "disagreement",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where} saw ${e.key}=${show(e.value)} at revision ${e.modRevision}; watcher ${first.watcher} saw ${show(first.value)}`,
        });
      }

      if (e.value === null) {
        problems.push({
          kind: "unexpected-delete",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where}: delete of ${e.key} at revision ${e.modRevision}, but the workload never deletes`,
        });
        continue;
      }
      const p = byValue.get(e.value);
      if (!p || p.op.key !== e.key) {
        problems.push({
          kind: "value-never-written",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where}: ${e.key}=${show(e.value)} at revision ${e.modRevision} was never written to that key`,
        });
        continue;
      }
      if (certainlyNotApplied(p.op)) {
        problems.push({
          kind: "failed-write-applied",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where}: ${e.key}=${show(e.value)} at revision ${e.modRevision}, but op #${p.op.id} that wrote it ${p.op.outcome === "fail" ? "failed" : "was refused"}`,
        });
      }
      if (isAcknowledged(p) && p.revision !== e.modRevision) {
        problems.push({
          kind: "revision-mismatch",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${where}: ${e.key}=${show(e.value)} at revision ${e.modRevision}, but op #${p.op.id} was acknowledged at revision ${p.revision}`,
        });
      }
      const earlier = revisionOfValue.get(e.value);
      if (!earlier) revisionOfValue.set(e.value, { revision: e.modRevision, watcher: w.id });
      else if (earlier.revision !== e.modRevision) {
        problems.push({
          kind: "applied-twice",
          watcher: w.id,
          revision: e.modRevision,
          detail: `${e.key}=${show(e.value)} appears at revision ${earlier.revision} (watcher ${earlier.watcher}) and at revision ${e.modRevision} (${where})`,
        });
      }
    }
  }

  // Gaps: every revision known to carry an event (acknowledged by a client, or seen by any
  // watcher) must reach every watcher whose span covers it. A watcher's span starts at its
  // start revision and reaches as far as the cluster acknowledged: the run ends only after
  // the faults are healed and the watchers were given time to catch up, so a watcher that is
  // still behind has lost events (or stalled, which is as bad for its user).
  const expected = new Map<string, { revision: number; key: string; value: string; why: string }>();
  let acknowledgedWrites = 0;
  for (const [value, p] of byValue) {
    if (!isAcknowledged(p)) continue;
    acknowledgedWrites++;
    const why = `acknowledged to op #${p.op.id}`;
    expected.set(`${p.revision}/${p.op.key}`, { revision: p.revision!, key: p.op.key, value, why });
  }
  for (const [id, e] of atRevision) {
    if (!expected.has(id) && e.value !== null) {
      expected.set(id, {
        revision: e.revision,
        key: e.key,
        value: e.value,
        why: `seen by watcher ${e.watcher}`,
      });
    }
  }
  const reach = highest([...expected.values()].map((e) => e.revision));
  for (const w of watchers) {
    const have = new Set(w.events.map((e) => `${e.modRevision}/${e.key}`));
    const lastSeen = highest(w.events.map((e) => e.modRevision));
    const missing = [...expected]
      .filter(
        ([id, e]) =>
          e.key.startsWith(w.prefix) && e.revision >= w.startRevision && e.revision <= reach && !have.has(id),
      )
      .map(([, e]) => e)
      .sort((a, b) => a.revision - b.revision);
    for (const e of missing) {
      problems.push({
        kind: "gap",
        watcher: w.id,
        revision: e.revision,
        detail: `watcher ${w.id} (from revision ${w.startRevision}, last event at ${lastSeen}) never received ${e.key}=${show(e.value)} at revision ${e.revision} (${e.why})`,
      });
    }
  }
  problems.sort((a, b) => (a.watcher ?? -1) - (b.watcher ?? -1) || a.revision - b.revision);
  return { ok: problems.length === 0, problems, eventsChecked, acknowledgedWrites };
}

/**
 * Revision facts that need no watcher: acknowledged writes get distinct revisions, in an
 * order consistent with real time, and a read's mod_revision is that of the write it saw.
 */
export function checkRevisions(history: readonly Operation[]): WatchProblem[] {
  const problems: WatchProblem[] = [];
  const byValue = producers(history);
  const acknowledged = [...byValue.values()]
    .filter(isAcknowledged)
    .map((p) => ({ op: p.op, revision: p.revision! }));
  const byRevision = new Map<number, Operation>();
  for (const a of acknowledged) {
    const other = byRevision.get(a.revision);
    if (other) {
      problems.push({
        kind: "applied-twice",
        revision: a.revision,
        detail: `ops #${other.id} and #${a.op.id} were both acknowledged at revision ${a.revision}`,
      });
    }
    byRevision.set(a.revision, a.op);
  }
  // Real-time order: sort by completion; a write invoked after another completed must have a
  // higher revision. Keeping the highest revision among completed writes makes this linear.
  const events = acknowledged.flatMap((a) => [
    { t: a.op.invokedAt, call: true, a },
    { t: a.op.completedAt!, call: false, a },
  ]);
  events.sort((x, y) => x.t - y.t || (x.call === y.call ? 0 : x.call ? -1 : 1));
  let highest: (typeof acknowledged)[number] | undefined;
  for (const e of events) {
    if (!e.call) {
      if (!highest || e.a.revision > highest.revision) highest = e.a;
    } else if (highest && e.a.revision <= highest.revision) {
      problems.push({
        kind: "out-of-order",
        revision: e.a.revision,
        detail: `op #${e.a.op.id} began after op #${highest.op.id} (revision ${highest.revision}) completed, yet got revision ${e.a.revision}`,
      });
    }
  }
  for (const op of history) {
    const sawValue = op.kind === "read" || (op.kind === "cas" && op.succeeded === false);
    if (op.outcome !== "ok" || !sawValue || typeof op.output !== "string" || op.modRevision === undefined)
      continue;
    const p = byValue.get(op.output);
    if (p && isAcknowledged(p) && p.revision !== op.modRevision) {
      problems.push({
        kind: "revision-mismatch",
        revision: op.modRevision,
        detail: `op #${op.id} read ${show(op.output)} with mod_revision ${op.modRevision}, but op #${p.op.id} was acknowledged at revision ${p.revision}`,
      });
    }
  }
  return problems;
}

function show(v: string | null): string {
  return v === null ? "<deleted>" : JSON.stringify(v);
}

/** Math.max over a list too long to spread into arguments; 0 when empty. */
function highest(values: readonly number[]): number {
  let max = 0;
  for (const v of values) if (v > max) max = v;
  return max;
}
