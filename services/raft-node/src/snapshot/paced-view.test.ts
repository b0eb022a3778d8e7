import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { withStore } from "../mvcc/store-fixture.js";
import { pacedView, WritePacer } from "./paced-view.js";

describe("paced store view", () => {
  it("pauses after each chunk while writes are applied, and not while none are", () =>
    withStore(async (store, kv) => {
      for (let i = 0; i < 500; i++) await kv.put(`k${String(i).padStart(4, "0")}`, "v");
      const busyMs = 30;
      const read = async (writes: () => number) => {
        const view = pacedView(await store.openView(), new WritePacer(writes, 4));
        const started = performance.now();
        let rows = 0;
        try {
          for await (const chunk of view.rows("default", 100)) {
            rows += chunk.keys.length;
            await sleep(busyMs); // the reader's work on the chunk
          }
        } finally {
          view.close();
        }
        return { rows, ms: performance.now() - started };
      };
      let counter = 0;
      const paced = await read(() => counter++);
      const still = await read(() => 0);
      assert.equal(paced.rows, 500);
      assert.equal(still.rows, 500);
      // Five chunks: each one's 30 ms of reading is followed by 4 x 30 ms of pause.
      assert.ok(paced.ms >= 5 * busyMs * 5 * 0.95, `paced read took ${paced.ms} ms`);
      assert.ok(still.ms < paced.ms, `unpaced ${still.ms} ms, paced ${paced.ms} ms`);
    }));
});
