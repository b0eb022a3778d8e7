import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type DeadlineTarget, DeadlineTimers } from "./deadlines.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("DeadlineTimers", () => {
  it("runs each deadline at or after its time, within 1/32 of its timeout (plus the event loop's lag)", async () => {
    const timers = new DeadlineTimers();
    const start = Date.now();
    const fired: { name: string; at: number; late: number }[] = [];
    const target = (name: string, after: number): DeadlineTarget => ({
      deadlinePassed: () => fired.push({ name, at: start + after, late: Date.now() - (start + after) }),
    });
    for (const [name, after] of [
      ["c", 400],
      ["a", 20],
      ["b", 130],
      ["a2", 20],
    ] as const)
      timers.add(start + after, target(name, after));
    await sleep(500);
    assert.deepEqual(
      fired.map((f) => f.name),
      ["a", "a2", "b", "c"],
    );
    for (const f of fired) {
      assert.ok(f.late >= 0, `${f.name} ran ${-f.late} ms early`);
      assert.ok(f.late <= (f.at - start) / 32 + 30, `${f.name} ran ${f.late} ms late`);
    }
    assert.equal(timers.size, 0);
    assert.equal(timers.armed, false, "nothing waits: no timer");
  });

  it("never runs a removed deadline, and one removed by another of its group as it fires", async () => {
    const timers = new DeadlineTimers();
    const at = Date.now() + 30;
    const fired: string[] = [];
    const gone: DeadlineTarget = { deadlinePassed: () => fired.push("gone") };
    const second: DeadlineTarget = { deadlinePassed: () => fired.push("second") };
    const removed = timers.add(at, gone);
    // One group: the first target removes the second before the group reaches it.
    let secondSlot: ReturnType<typeof timers.add> | undefined;
    timers.add(at, {
      deadlinePassed: () => {
        fired.push("first");
        timers.remove(secondSlot!, second);
      },
    });
    secondSlot = timers.add(at, second);
    timers.remove(removed, gone);
    await sleep(100);
    assert.deepEqual(fired, ["first"]);
    assert.equal(timers.size, 0);
    timers.remove(secondSlot, second); // after its group ran: a no-op
  });

  it("holds one Node timer for any number of deadlines, none once they are removed", async () => {
    const timers = new DeadlineTimers();
    const targets = Array.from({ length: 1_000 }, () => ({ deadlinePassed: () => assert.fail("removed") }));
    const now = Date.now();
    const slots = targets.map((t, i) => timers.add(now + 200 + i, t));
    assert.equal(timers.size, 1_000);
    assert.equal(timers.armed, true);
    for (const [i, t] of targets.entries()) timers.remove(slots[i]!, t);
    assert.equal(timers.size, 0);
    // The timer goes once its time comes and finds nothing left.
    await sleep(400);
    assert.equal(timers.armed, false);
  });

  it("holds the process open while a deadline waits, and not once none does", async () => {
    const timers = new DeadlineTimers();
    const refed = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = refed();
    const target = { deadlinePassed: () => assert.fail("removed") };
    const slot = timers.add(Date.now() + 10_000, target);
    assert.equal(refed(), before + 1);
    timers.remove(slot, target);
    assert.equal(refed(), before, "armed still, but not holding the process");
    assert.equal(timers.armed, true);
    let fired = false;
    timers.add(Date.now() + 20, { deadlinePassed: () => (fired = true) });
    assert.equal(refed(), before + 1);
    await sleep(80);
    assert.equal(fired, true);
    assert.equal(refed(), before);
  });

  it("waits for a deadline beyond setTimeout's 24.8 days rather than running it at once", async () => {
    const timers = new DeadlineTimers();
    let fired = false;
    const far = { deadlinePassed: () => (fired = true) };
    const slot = timers.add(Date.now() + 99_999_999 * 1000, far);
    await sleep(50);
    assert.equal(fired, false);
    timers.add(Date.now() + 10, { deadlinePassed: () => {} });
    await sleep(50);
    assert.equal(fired, false, "an earlier deadline's timer does not run the later one");
    assert.equal(timers.size, 1);
    timers.remove(slot, far);
    assert.equal(timers.size, 0);
  });

  it("groups deadlines far off more coarsely, so a steady stream of calls makes few groups", () => {
    let now = 1_000_000;
    const timers = new DeadlineTimers(() => now);
    const added: [ReturnType<typeof timers.add>, DeadlineTarget][] = [];
    // 10,000 calls 1 ms apart, each with a 10 s timeout, each still waiting.
    for (let i = 0; i < 10_000; i++, now++) {
      const target = { deadlinePassed() {} };
      added.push([timers.add(now + 10_000, target), target]);
    }
    // Groups of 256 ms (the power of two at most 10 s / 32).
    const groups = new Set(added.map(([slot]) => slot)).size;
    assert.ok(groups <= 41, `${groups} groups`);
    // None left waiting: the test's process is not held open.
    for (const [slot, target] of added) timers.remove(slot, target);
    assert.equal(timers.size, 0);
  });
});
