import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReadBarrier } from "./read-barrier.js";

/** A probe the test answers by hand, recording when each was sent. */
function manualProbe() {
  const sent: { resolve: (revision: number) => void; reject: (err: Error) => void }[] = [];
  const probe = () =>
    new Promise<number>((resolve, reject) => {
      sent.push({ resolve, reject });
    });
  return { sent, probe };
}

const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("ReadBarrier", () => {
  it("sends one probe for a read when none is in flight", async () => {
    const { sent, probe } = manualProbe();
    const barrier = new ReadBarrier(probe);
    const read = barrier.afterNow();
    assert.equal(sent.length, 1);
    sent[0]!.resolve(7);
    assert.equal(await read, 7);
  });

  it("makes reads that arrive during a probe wait for the next one, which they all share", async () => {
    const { sent, probe } = manualProbe();
    const barrier = new ReadBarrier(probe);
    const early = barrier.afterNow();
    const late = [barrier.afterNow(), barrier.afterNow(), barrier.afterNow()];
    assert.equal(sent.length, 1, "the late reads do not send a probe of their own");
    sent[0]!.resolve(10);
    assert.equal(await early, 10);
    await settled();
    assert.equal(sent.length, 2, "the next probe leaves as soon as the first ends");
    sent[1]!.resolve(12);
    assert.deepEqual(await Promise.all(late), [12, 12, 12], "never the answer of a probe sent before them");
    assert.equal(barrier.probes, 2);
  });

  it("passes a failed probe on to its reads, and still serves the reads queued behind it", async () => {
    const { sent, probe } = manualProbe();
    const barrier = new ReadBarrier(probe);
    const early = barrier.afterNow();
    const late = barrier.afterNow();
    sent[0]!.reject(new Error("no leader"));
    await assert.rejects(early, /no leader/);
    await settled();
    sent[1]!.resolve(3);
    assert.equal(await late, 3);
  });
});
