import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LeaseTimeQueue } from "./lease-time-queue.js";

describe("LeaseTimeQueue", () => {
  it("pops in time order through random upserts and removals, one entry per lease", () => {
    let seed = 11;
    const random = () => {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const queue = new LeaseTimeQueue();
    const model = new Map<bigint, number>();
    for (let step = 0; step < 5000; step++) {
      const id = BigInt(Math.floor(random() * 200));
      const action = random();
      if (action < 0.6) {
        const time = Math.floor(random() * 1000);
        queue.upsert(id, time);
        model.set(id, time);
      } else if (action < 0.8) {
        assert.equal(queue.remove(id), model.delete(id));
      } else {
        const top = queue.pop();
        if (model.size === 0) {
          assert.equal(top, undefined);
          continue;
        }
        const earliest = Math.min(...model.values());
        assert.equal(top?.time, earliest);
        assert.equal(model.get(top!.id), earliest);
        model.delete(top!.id);
      }
      assert.equal(queue.size, model.size);
      assert.equal(queue.timeOf(id), model.get(id));
    }
  });
});
