// A bounded chaos run for CI: a 3-member cluster on loopback, 8 clients and 3 watchers for
// about 30 s while members are killed, paused and cut off, then the linearizability, watch
// and revision checks. It fails with the counterexample and the run's summary.
//
// Target: our member (raft-node), compiled when this file runs compiled (CI builds first),
// from sources through tsx otherwise. CHAOS_TARGET=etcd runs the same test against real etcd
// 3.4, which is how the harness itself was validated; CHAOS_SEED fixes the schedule.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { test } from "node:test";
import { TARGET_KINDS, type TargetKind } from "../cluster/targets.js";
import { runChaos } from "./chaos-run.js";

const compiled = import.meta.url.endsWith(".js");
const target = (process.env.CHAOS_TARGET ?? (compiled ? "etcd-ts-dist" : "etcd-ts")) as TargetKind;
const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));
const missing = !TARGET_KINDS.includes(target)
  ? `CHAOS_TARGET must be one of ${TARGET_KINDS.join(", ")}`
  : target === "etcd" && !existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd")
    ? "no etcd binary"
    : undefined;

const opening = ["kill-behind", "two-faults"] as const;

test(`chaos: ${target}, seed ${seed}: linearizable KV and complete watches under faults`, {
  skip: missing,
  timeout: 300_000,
}, async () => {
  const result = await runChaos({
    target,
    seed,
    durationSec: Number(process.env.CHAOS_DURATION ?? 30),
    clients: 8,
    keys: 4,
    watchers: 3,
    // Every CI run has a member come back behind a compacted log, then (time permitting)
    // overlaps two faults; the seeded picks follow.
    openingFaults: opening,
    holdMs: [1_000, 4_000],
    quietMs: [1_000, 2_500],
    keepFiles: true,
    checkMillisPerKey: 30_000,
  });
  const text = `${result.summary}\n(replay the schedule with CHAOS_SEED=${seed} CHAOS_TARGET=${target})`;
  // On a loaded machine a restart can outlast the run: the second opening fault may not come.
  const opened = result.faults.slice(0, opening.length).map((f) => f.kind);
  assert.ok(opened.length > 0, `no fault was injected\n${text}`);
  assert.deepEqual(opened, opening.slice(0, opened.length), `the run did not open as asked\n${text}`);
  assert.ok(
    result.history.some((op) => op.outcome === "ok" && op.kind !== "read"),
    `no write succeeded\n${text}`,
  );
  assert.equal(result.verdict, "ok", `${text}\nmember logs and history kept in ${result.baseDir}`);
  // Our member keeps a short log behind its snapshots here (CHAOS_SNAPSHOTS): a member back from
  // a fault must have caught up by a snapshot at least once. etcd keeps 5,000 entries.
  if (target !== "etcd") assert.ok(result.snapshotsReceived > 0, `no member installed a snapshot\n${text}`);
  await rm(result.baseDir, { recursive: true, force: true });
});
