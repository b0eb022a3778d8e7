import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { restartDelayMs } from "./worker-pool.js";

describe("restartDelayMs", () => {
  it("waits half a second after a first death, doubling with each death in a row up to 30 s", () => {
    assert.deepEqual([1, 2, 3, 4, 7, 20].map(restartDelayMs), [500, 1_000, 2_000, 4_000, 30_000, 30_000]);
  });
});
