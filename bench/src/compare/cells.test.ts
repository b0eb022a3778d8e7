import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { GoloadResult } from "../goload.js";
import type { ThreadStat } from "../proc-cpu.js";
import {
  type Cell,
  catchupRatio,
  catchupText,
  cellPlan,
  mergeRounds,
  ratio,
  threadDelta,
  withFirst,
} from "./cells.js";

function round(
  ok: number,
  elapsedS: number,
  p50: number,
  p99: number,
  extra: Partial<GoloadResult> = {},
): GoloadResult {
  return {
    ok,
    errors: 0,
    total: ok,
    elapsed_s: elapsedS,
    ops_per_s: ok / elapsedS,
    latency_ms: { p50, p90: p50 * 2, p99 },
    client_cpu: { us_per_op: 100, pct_of_machine: 10 },
    label: "put-1x1/members/round-1",
    ...extra,
  };
}

describe("withFirst (the leader-first endpoint order)", () => {
  const endpoints = ["a:1", "b:2", "c:3"];
  it("moves the leader first, keeping the others' order", () => {
    assert.deepEqual(withFirst(endpoints, 2), ["c:3", "a:1", "b:2"]);
    assert.deepEqual(withFirst(endpoints, 1), ["b:2", "a:1", "c:3"]);
  });
  it("leaves the order when the leader is first or unknown, without sharing the array", () => {
    assert.deepEqual(withFirst(endpoints, 0), endpoints);
    assert.deepEqual(withFirst(endpoints, -1), endpoints);
    assert.deepEqual(withFirst(endpoints, 3), endpoints);
    assert.notEqual(withFirst(endpoints, 0), endpoints);
  });
});

describe("mergeRounds (a single-client cell's rounds as one cell)", () => {
  it("sums calls and time, takes the median of the rounds' percentiles", () => {
    const cells: Cell[] = [
      { result: round(500, 1.0, 1.5, 9.0), server_cpu_us_per_op: 2_000 },
      { result: round(1_000, 1.0, 0.9, 3.0), server_cpu_us_per_op: 1_000 },
      { result: round(1_500, 1.0, 0.7, 2.0), server_cpu_us_per_op: 1_000 },
    ];
    const merged = mergeRounds(cells);
    assert.ok("result" in merged);
    const r = merged.result;
    assert.equal(r.ok, 3_000);
    assert.equal(r.elapsed_s, 3);
    // Over the whole time, not the mean of the rounds' rates (1,000/s either way here).
    assert.equal(r.ops_per_s, 1_000);
    assert.equal(r.latency_ms.p50, 0.9);
    assert.equal(r.latency_ms.p99, 3.0);
    // Weighted by each round's calls: (500 x 2,000 + 1,000 x 1,000 + 1,500 x 1,000) / 3,000.
    assert.equal(merged.server_cpu_us_per_op, 1_167);
    assert.equal(r.label, "put-1x1/members");
    assert.equal((r.rounds as GoloadResult[]).length, 3);
  });

  it("an unequal split of time weights the rate by time, not by round", () => {
    const merged = mergeRounds([{ result: round(100, 1.0, 1, 1) }, { result: round(900, 3.0, 1, 1) }]);
    assert.ok("result" in merged);
    assert.equal(merged.result.ops_per_s, 250);
    // A round without server CPU: the cell claims none rather than a partial figure.
    assert.equal(merged.server_cpu_us_per_op, undefined);
  });

  it("a failed round fails the cell", () => {
    const merged = mergeRounds([{ result: round(100, 1, 1, 1) }, { error: "goload: deadline" }]);
    assert.deepEqual(merged, { error: "goload: deadline" });
  });

  it("members' CPU per call is weighted by each round's calls", () => {
    const member = (cpu: number) => ({
      role: "leader" as const,
      cpu_us: cpu,
      top_thread_us: cpu,
      run_queue_us: 0,
    });
    const merged = mergeRounds([
      { result: round(100, 1, 1, 1), members: [member(300)] },
      { result: round(300, 1, 1, 1), members: [member(100)] },
    ]);
    assert.ok("result" in merged);
    assert.deepEqual(merged.members, [{ role: "leader", cpu_us: 150, top_thread_us: 150, run_queue_us: 0 }]);
  });
});

describe("ratio", () => {
  it("throughput rows: ours over theirs (>1 better)", () => {
    assert.equal(ratio({ result: round(1_500, 1, 1, 1) }, { result: round(1_000, 1, 1, 1) }, false), "1.50");
  });
  it("watch rows: our sent->all p50 over theirs (<1 better), not ack->all", () => {
    const watch = (sent: number, ack: number) => ({
      result: round(100, 1, ack, ack, { send_to_all_ms: { p50: sent, p99: sent } }),
    });
    assert.equal(ratio(watch(2, 0.1), watch(4, 3), true), "0.50x lat");
  });
  it("a failed or missing cell has no ratio", () => {
    assert.equal(ratio({ error: "x" }, { result: round(1, 1, 1, 1) }, false), "-");
    assert.equal(ratio(undefined, { result: round(1, 1, 1, 1) }, false), "-");
  });
});

describe("catch-up cells: a head not reached in time is a bound", () => {
  const catchup = (firstMs: number, headMs: number, timedOut: boolean): Cell => ({
    result: round(1, 1, 1, 1, {
      sparse_first_event_ms: firstMs,
      dense_head_ms: headMs,
      dense_head_timed_out: timedOut,
    }),
  });
  it("the timed-out side's head reads as a lower bound of its time", () => {
    assert.equal(catchupText(catchup(7, 19_400, false)), "first 7.00 / head 19400 ms");
    assert.equal(catchupText(catchup(1_322, 300_000, true)), "first 1322 / head >300000 ms");
  });
  it("the ratio is a bound in the right direction, and none when both timed out", () => {
    // Theirs timed out: we are at least that many times faster.
    assert.equal(catchupRatio(catchup(10, 20_000, false), catchup(1_000, 300_000, true)), "100.00/>15.00");
    // Ours timed out: at most that fast.
    assert.equal(catchupRatio(catchup(10, 300_000, true), catchup(20, 20_000, false)), "2.00/<0.07");
    assert.equal(catchupRatio(catchup(10, 300_000, true), catchup(20, 300_000, true)), "2.00/-");
  });
});

describe("threadDelta", () => {
  it("sums CPU and run-queue wait over threads, new threads from zero, and names the busiest", () => {
    const t = (tid: number, cpuSeconds: number, runQueueSeconds: number): ThreadStat => ({
      tid,
      name: `node+${tid}`,
      cpuSeconds,
      runQueueSeconds,
      voluntary: 0,
      involuntary: 0,
    });
    const before = [t(1, 1.0, 0.1), t(2, 0.5, 0)];
    const after = [t(1, 1.75, 0.35), t(2, 0.75, 0), t(3, 0.5, 0.25)];
    const d = threadDelta(before, after);
    assert.equal(d.cpu, 1.5);
    assert.equal(d.top, 0.75);
    assert.ok(Math.abs(d.runQueue - 0.5) < 1e-9);
  });
});

describe("cellPlan (rounds and warm-up per scenario)", () => {
  const opts = { cellRounds: 5, warmupS: 2 };
  it("a single-client closed loop: rounds, and a warm-up of at least 8 s", () => {
    assert.deepEqual(cellPlan({ op: "put", clients: 1 }, opts), { rounds: 5, warmupS: 8 });
    assert.deepEqual(cellPlan({ op: "put", clients: 1 }, { cellRounds: 5, warmupS: 12 }), {
      rounds: 5,
      warmupS: 12,
    });
  });
  it("many clients: one run, the flag's warm-up", () => {
    assert.deepEqual(cellPlan({ op: "put", clients: 100 }, opts), { rounds: 1, warmupS: 2 });
  });
  it("a single client beside writers: one run (its writers' figures are the whole cell's)", () => {
    assert.deepEqual(cellPlan({ op: "range", clients: 1, bgPut: { clients: 10 } }, opts), {
      rounds: 1,
      warmupS: 8,
    });
  });
  it("watch rows: one run, a single client's warm-up inside it", () => {
    assert.deepEqual(cellPlan({ op: "watch-latency", clients: 1, watchers: 1_000 }, opts), {
      rounds: 1,
      warmupS: 8,
      inCell: true,
    });
  });
  it("catch-up rows: neither rounds nor warm-up", () => {
    assert.deepEqual(cellPlan({ op: "watch-catchup", clients: 1 }, opts), { rounds: 1, warmupS: 0 });
  });
  it("--warmup-s 0: no warm-up anywhere", () => {
    assert.deepEqual(cellPlan({ op: "put", clients: 1 }, { cellRounds: 1, warmupS: 0 }), {
      rounds: 1,
      warmupS: 0,
    });
    assert.deepEqual(
      cellPlan({ op: "watch-latency", clients: 1, watchers: 1_000 }, { cellRounds: 1, warmupS: 0 }),
      {
        rounds: 1,
        warmupS: 0,
      },
    );
  });
});
