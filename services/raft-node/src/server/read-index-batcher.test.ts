import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReadIndexBatcher } from "./read-index-batcher.js";

function harness(options: { failRequests?: boolean } = {}) {
  const requests: Uint8Array[] = [];
  const state = { now: 0, applied: 0 };
  const batcher = new ReadIndexBatcher({
    requestIndex: (ctx) => {
      if (options.failRequests) throw new Error("no leader");
      requests.push(ctx);
    },
    appliedIndex: () => state.applied,
    now: () => state.now,
    timeoutMs: 1000,
    retryMs: 100,
    timeoutError: () => new Error("request timed out"),
  });
  return { batcher, requests, state };
}

const settled = async (p: Promise<unknown>) => {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((r) => setImmediate(r));
  return done;
};

describe("ReadIndexBatcher", () => {
  it("serves every read queued during a round with the next single round", async () => {
    const { batcher, requests, state } = harness();
    const first = batcher.wait();
    assert.equal(requests.length, 1);
    const second = batcher.wait();
    const third = batcher.wait();
    assert.equal(requests.length, 1, "reads during a round wait for the next one");
    state.applied = 10;
    batcher.onReadState(requests[0]!, 10);
    await first;
    assert.equal(requests.length, 2, "the queued reads start one more round");
    batcher.onReadState(requests[1]!, 10);
    await Promise.all([second, third]);
    assert.equal(batcher.rounds, 2);
  });

  it("holds reads until the applied index reaches the read index", async () => {
    const { batcher, requests, state } = harness();
    const read = batcher.wait();
    state.applied = 4;
    batcher.onReadState(requests[0]!, 7);
    assert.equal(await settled(read), false);
    batcher.onApplied(6);
    assert.equal(await settled(read), false);
    batcher.onApplied(7);
    assert.equal(await settled(read), true);
  });

  it("ignores read states of other contexts", async () => {
    const { batcher, requests } = harness();
    const read = batcher.wait();
    batcher.onReadState(Buffer.from("someone else"), 1);
    assert.equal(await settled(read), false);
    assert.equal(requests.length, 1);
  });

  it("retries a round Raft never answered, and fails reads at their deadline", async () => {
    const { batcher, requests, state } = harness();
    const read = batcher.wait();
    state.now = 150;
    batcher.tick();
    assert.equal(requests.length, 2, "a silent round is asked again");
    assert.notDeepEqual(requests[0], requests[1]);
    batcher.onReadState(requests[0]!, 1);
    assert.equal(await settled(read), false, "the abandoned round's answer is ignored");
    state.now = 1000;
    batcher.tick();
    await assert.rejects(read, /timed out/);
    assert.equal(batcher.pending, 0);
  });

  it("keeps reads when Raft refuses the request (no leader) and retries on tick", async () => {
    const { batcher, state } = harness({ failRequests: true });
    const read = batcher.wait();
    assert.equal(batcher.pending, 1);
    state.now = 200;
    batcher.tick();
    assert.equal(batcher.rounds, 2);
    batcher.rejectAll(() => new Error("stopped"));
    await assert.rejects(read, /stopped/);
  });

  it("waitApplied (a simple token's entry) resolves once applied, without a ReadIndex round, or times out", async () => {
    const { batcher, requests, state } = harness();
    state.applied = 5;
    await batcher.waitApplied(5);
    const later = batcher.waitApplied(8);
    const never = batcher.waitApplied(100);
    assert.equal(requests.length, 0, "no round is needed to wait for a known index");
    batcher.onApplied(7);
    assert.equal(await settled(later), false);
    state.applied = 8;
    batcher.onApplied(8);
    await later;
    state.now = 2000;
    batcher.tick();
    await assert.rejects(never, /request timed out/);
  });
});
