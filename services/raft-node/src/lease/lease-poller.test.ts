import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LeasePoller } from "./lease-poller.js";
import type { LeaseCheckpoint } from "./lessor.js";
import { Lessor } from "./lessor.js";

describe("LeasePoller", () => {
  it("proposes revokes and checkpoints on the leader only, on its timer", () => {
    let now = 0;
    const lessor = new Lessor({ clock: () => now, minTtlSeconds: 1, checkpointIntervalMs: 10_000 });
    const revokes: bigint[] = [];
    const checkpoints: LeaseCheckpoint[][] = [];
    const ticks: (() => void)[] = [];
    const poller = new LeasePoller(
      lessor,
      { proposeRevoke: (id) => revokes.push(id), proposeCheckpoints: (c) => checkpoints.push(c) },
      500,
      { setInterval: (fn) => ticks.push(fn), clearInterval: () => {} },
    );
    poller.start();
    lessor.grant(1n, 5);
    lessor.grant(2n, 100);
    now = 200_000;
    ticks[0]();
    assert.deepEqual([revokes, checkpoints], [[], []], "a follower proposes nothing");

    lessor.promote(0);
    now += 5000;
    ticks[0]();
    assert.deepEqual(revokes, [1n]);
    now += 5000;
    ticks[0]();
    assert.deepEqual(checkpoints, [[{ id: 2n, remainingTtl: 90 }]]);
  });

  it("bounds the log's cost: at most 2 entries of up to 1,000 checkpoints per poll; the rest wait", () => {
    let now = 0;
    const lessor = new Lessor({ clock: () => now, minTtlSeconds: 1, checkpointIntervalMs: 5_000 });
    const entries: LeaseCheckpoint[][] = [];
    const ticks: (() => void)[] = [];
    const poller = new LeasePoller(
      lessor,
      { proposeRevoke: () => {}, proposeCheckpoints: (c) => entries.push(c) },
      500,
      { setInterval: (fn) => ticks.push(fn), clearInterval: () => {} },
    );
    poller.start();
    lessor.promote(0);
    for (let id = 1n; id <= 2_500n; id++) lessor.grant(id, 3600);
    now += 5_000;
    ticks[0]();
    assert.deepEqual(
      entries.map((e) => e.length),
      [1000, 1000],
    );
    now += 500;
    ticks[0]();
    assert.deepEqual(
      entries.map((e) => e.length),
      [1000, 1000, 500],
      "the last 500 on the next poll",
    );
  });
});
