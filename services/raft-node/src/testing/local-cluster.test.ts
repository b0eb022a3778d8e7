import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { unusedPort } from "./local-cluster.js";

describe("unusedPort", () => {
  it("never hands out a port the cluster already holds, even one that is free again", async () => {
    const offered = [30001, 30001, 30002];
    const reserved = new Set<number>();
    const pick = async () => offered.shift()!;
    assert.equal(await unusedPort(reserved, pick), 30001);
    // 30001's member is down, so its port is free and offered again: it must be skipped.
    assert.equal(await unusedPort(reserved, pick), 30002);
    assert.deepEqual([...reserved], [30001, 30002]);
  });

  it("gives up after a bounded number of tries", async () => {
    const reserved = new Set([30001]);
    await assert.rejects(
      unusedPort(reserved, async () => 30001),
      /no free port/,
    );
  });
});
