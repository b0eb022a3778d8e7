// Thousands of random schedules against the real RawNode, the checker running after every
// step. A failure names its seed and the command that replays it with a full trace.
// Longer soak runs: `replay.ts --seed <base> --count <n>` (see replay.ts).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterStats } from "./cluster.js";
import { runSchedule, ScheduleFailure, type ScheduleReport } from "./schedule.js";

const BASE_SEED = 1;
const SCHEDULES = 2000;
const BATCHES = 4;

const reports: ScheduleReport[] = [];

function runBatch(from: number, count: number): void {
  const failures: string[] = [];
  for (let seed = from; seed < from + count; seed++) {
    try {
      reports.push(runSchedule(seed));
    } catch (err) {
      if (!(err instanceof ScheduleFailure)) throw err;
      failures.push(`${err.message}\n    replay: ${err.replayCommand}`);
      if (failures.length >= 5) break;
    }
  }
  if (failures.length > 0) assert.fail(`${failures.length} schedule(s) failed:\n  ${failures.join("\n  ")}`);
}

describe(`${SCHEDULES} random schedules`, () => {
  const perBatch = SCHEDULES / BATCHES;
  for (let b = 0; b < BATCHES; b++) {
    const from = BASE_SEED + b * perBatch;
    it(`seeds ${from}..${from + perBatch - 1} keep every invariant`, () => runBatch(from, perBatch));
  }

  // A simulator that quietly stopped exercising something would still pass the batches above.
  it("exercised what they are meant to exercise", (t) => {
    if (reports.length < SCHEDULES) {
      // The batches were filtered out (--test-name-pattern) or failed, which they report.
      t.skip(`only ${reports.length} of ${SCHEDULES} schedules ran`);
      return;
    }
    const total = (k: keyof ClusterStats) => reports.reduce((sum, r) => sum + r.stats[k], 0);
    const shapes = new Set(reports.map((r) => r.shape.cluster));
    assert.deepEqual([...shapes].sort(), ["3 voters", "5 voters", "leader churn", "membership"]);
    const floor: [keyof ClusterStats, number][] = [
      ["entriesApplied", 100 * SCHEDULES],
      ["leadersElected", 2 * SCHEDULES],
      ["crashes", 5 * SCHEDULES],
      ["snapshotsInstalled", SCHEDULES / 2],
      ["readsAnswered", 3 * SCHEDULES],
      ["followerReadsAnswered", SCHEDULES / 2],
      ["confChangesApplied", SCHEDULES],
      ["leaderRemovals", SCHEDULES / 50],
      ["timeoutNowDelivered", SCHEDULES / 5],
    ];
    for (const [k, min] of floor)
      assert.ok(total(k) >= min, `${k}: ${total(k)} over all schedules, want >= ${min}`);
    for (const k of Object.keys(reports[0].stats) as (keyof ClusterStats)[]) {
      t.diagnostic(`${k}: ${total(k)} in total, ${(total(k) / SCHEDULES).toFixed(1)} per schedule`);
    }
    const worst = (k: "ticksToLeader" | "ticksToSettle" | "ticksToCommit") =>
      Math.max(...reports.map((r) => r.quiet[k]));
    t.diagnostic(
      `quiet phase, worst case: leader after ${worst("ticksToLeader")} ticks, settled after ` +
        `${worst("ticksToSettle")} more, proposals committed after ${worst("ticksToCommit")} more`,
    );
    const quietProposals = reports.reduce((sum, r) => sum + r.quiet.proposalsAccepted, 0);
    assert.ok(quietProposals >= 2 * SCHEDULES, `only ${quietProposals} quiet-phase proposals were accepted`);
  });
});

describe("replay", () => {
  it("reproduces a schedule exactly from its seed", () => {
    const first: string[] = [];
    const second: string[] = [];
    const a = runSchedule(4243, { chaosSteps: 400, trace: (l) => first.push(l) });
    const b = runSchedule(4243, { chaosSteps: 400, trace: (l) => second.push(l) });
    assert.ok(first.length > 400);
    assert.deepEqual(second, first);
    assert.deepEqual(b.stats, a.stats);
  });
});
