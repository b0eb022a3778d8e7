import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WritePacer, writesSince } from "./paced-view.js";

describe("write pacer", () => {
  it("pauses factor x the busy time when writes were applied since the last call, not otherwise", async () => {
    let applied = 0;
    const pacer = new WritePacer(
      writesSince(() => applied),
      4,
    );
    const time = async (busyMs: number) => {
      const started = performance.now();
      await pacer.pause(busyMs);
      return performance.now() - started;
    };
    assert.ok((await time(30)) < 20, "no write applied: no pause");
    applied++;
    const paced = await time(30);
    assert.ok(paced >= 4 * 30 * 0.95, `a write applied: paused ${paced} ms`);
    assert.ok((await time(30)) < 20, "no write since the last call: no pause");
    applied++;
    const capped = await time(10_000);
    assert.ok(capped >= 950 && capped < 2000, `pauses are capped at a second: ${capped} ms`);
  });
});
