import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { keepBusy } from "./busy-loop.fixture.js";
import { WriteLoad, WritePacer } from "./paced-view.js";

/** The load's busy share after `ms`, read every 5 ms as the snapshot's publisher does. */
async function busyAfter(load: WriteLoad, ms: number): Promise<number> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    void load.busy;
    await sleep(5);
  }
  return load.busy;
}

describe("write load", () => {
  it("is the event loop's busy share while writes are applied, and nothing without writes", async () => {
    let applied = 0;
    const load = new WriteLoad(() => applied);
    const writing = setInterval(() => applied++, 2);
    const stop = keepBusy(8, 10);
    try {
      const busy = await busyAfter(load, 300);
      assert.ok(busy > 0.5, `a busy thread applying writes: ${busy}`);
      clearInterval(writing);
      const still = await busyAfter(load, 300);
      assert.ok(still < 0.05, `as busy, no write applied: ${still}`);
    } finally {
      stop();
      clearInterval(writing);
    }
    assert.ok(load.mean > 0.1 && load.mean < 0.9, `the mean over both: ${load.mean}`);
  });

  it("is small for a trickle of writes on an idle thread", async () => {
    let applied = 0;
    const load = new WriteLoad(() => applied);
    // About 20 writes a second.
    const writing = setInterval(() => applied++, 50);
    try {
      const busy = await busyAfter(load, 500);
      assert.ok(busy < 0.1, `a trickle: ${busy}`);
    } finally {
      clearInterval(writing);
    }
  });

  it("while the thread does its own work, measures only the pauses, and asks for a probe when writes move", async () => {
    let applied = 0;
    const load = new WriteLoad(() => applied);
    load.ownWork();
    // The thread's own work (busy, writes moving) is not the load.
    const end = performance.now() + 60;
    while (performance.now() < end) applied++;
    assert.equal(load.busy, 0);
    assert.ok(load.probeDue(), "writes moved 60 ms since the last measure");
    // A pause on an idle thread, writes moving: measured as idle. 100 ms, not less: one
    // preemption inside a callback on a loaded machine counts as busy time (it failed at 30 ms).
    const writing = setInterval(() => applied++, 1);
    try {
      await load.pause(100);
    } finally {
      clearInterval(writing);
    }
    assert.ok(load.busy < 0.2, `an idle pause: ${load.busy}`);
    assert.ok(!load.probeDue(), "just measured");
    // A pause on a busy thread, writes moving: measured as busy.
    const stop = keepBusy(9, 10);
    const writingAgain = setInterval(() => applied++, 1);
    try {
      await load.pause(60);
    } finally {
      stop();
      clearInterval(writingAgain);
    }
    assert.ok(load.busy > 0.5, `a busy pause: ${load.busy}`);
  });
});

describe("write pacer", () => {
  it("pauses factor x the busy share x the piece's time, owing what is under a millisecond", async () => {
    let share = 0;
    const slept: number[] = [];
    const pacer = new WritePacer(
      () => share,
      4,
      async (ms) => {
        slept.push(ms);
      },
    );
    assert.equal(await pacer.pause(30), false, "an idle member: no pause");
    share = 1;
    assert.equal(await pacer.pause(30), true);
    assert.equal(slept.pop(), 120);
    share = 0.002;
    // 0.4 ms owed per piece: every third piece pauses, for what the three owe.
    const paused = [await pacer.pause(50), await pacer.pause(50), await pacer.pause(50)];
    assert.deepEqual(paused, [false, false, true]);
    assert.ok(Math.abs(slept.pop()! - 1.2) < 0.01);
    share = 1;
    await pacer.pause(10_000);
    assert.equal(slept.pop(), 1000, "pauses are capped at a second");
  });

  it("credits a late wake-up to the next pieces, and probes when asked", async () => {
    let probe = false;
    const pacer = new WritePacer(
      () => 0.01,
      8,
      (ms) => sleep(ms + 20),
      () => probe,
    );
    // 2 ms owed, about 22 ms slept: the next pieces owe nothing until the credit is used up.
    assert.equal(await pacer.pause(25), true);
    assert.equal(await pacer.pause(25), false);
    probe = true;
    assert.equal(await pacer.pause(0), true, "a probe pauses with nothing owed");
  });
});
