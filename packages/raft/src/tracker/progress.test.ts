import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Progress } from "./progress.js";

function progress(state: "probe" | "replicate" | "snapshot", match: number, next: number): Progress {
  const pr = new Progress(next, 4, false);
  pr.match = match;
  if (state === "replicate") {
    pr.becomeReplicate();
    pr.next = next;
  } else if (state === "snapshot") pr.becomeSnapshot(next - 1);
  return pr;
}

describe("Progress", () => {
  test("maybeUpdate moves match and next forward only", () => {
    const pr = progress("probe", 3, 5);
    assert.equal(pr.maybeUpdate(2), false);
    assert.equal(pr.match, 3);
    assert.equal(pr.maybeUpdate(4), true);
    assert.equal(pr.next, 5);
    assert.equal(pr.maybeUpdate(7), true);
    assert.equal(pr.match, 7);
    assert.equal(pr.next, 8);
  });

  test("maybeDecrTo in replicate: a rejection above match falls back to match+1; at or below is stale", () => {
    const pr = progress("replicate", 5, 10);
    assert.equal(pr.maybeDecrTo(5, 0), false);
    assert.equal(pr.maybeDecrTo(8, 0), true);
    assert.equal(pr.next, 6);
  });

  test("maybeDecrTo in probe: only the latest probe's rejection counts; the hint bounds the jump", () => {
    const pr = progress("probe", 0, 10);
    assert.equal(pr.maybeDecrTo(5, 0), false, "not the probe in flight (next-1 = 9)");
    assert.equal(pr.maybeDecrTo(9, 3), true);
    assert.equal(pr.next, 4);
    pr.match = 2;
    assert.equal(pr.maybeDecrTo(3, 0), true);
    assert.equal(pr.next, 3, "never below match+1");
  });

  test("probe sends one message at a time; replicate pauses only on a full window", () => {
    const probe = progress("probe", 0, 1);
    probe.sentEntries(1, 1);
    assert.equal(probe.isPaused(), true);
    probe.maybeUpdate(1);
    assert.equal(probe.isPaused(), false);

    const rep = progress("replicate", 0, 1);
    for (let i = 1; i <= 3; i++) {
      rep.sentEntries(1, i);
      assert.equal(rep.isPaused(), false);
    }
    rep.sentEntries(1, 4);
    assert.equal(rep.isPaused(), true);
    assert.equal(rep.next, 5);
  });

  test("snapshot state is always paused; leaving it probes past the snapshot (or from match on failure)", () => {
    const pr = progress("probe", 2, 3);
    pr.becomeSnapshot(10);
    assert.equal(pr.isPaused(), true);
    assert.equal(pr.pendingSnapshot, 10);
    pr.becomeProbe();
    assert.equal(pr.next, 11);
    pr.becomeSnapshot(10);
    pr.pendingSnapshot = 0;
    pr.becomeProbe();
    assert.equal(pr.next, 3);
  });
});
