import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WaitRegistry } from "./wait-registry.js";

describe("WaitRegistry", () => {
  it("resolves a waiter once, by sequence, and forgets it", async () => {
    const registry = new WaitRegistry<string>(1000);
    const a = registry.register<number>("a", 0);
    const b = registry.register<number>("b", 0);
    assert.notEqual(a.seq, b.seq);
    assert.equal(registry.get(b.seq)?.context, "b");
    assert.equal(registry.resolve(b.seq, 2), true);
    assert.equal(registry.resolve(b.seq, 3), false);
    assert.equal(await b.done, 2);
    assert.equal(registry.size, 1);
    registry.reject(a.seq, new Error("boom"));
    await assert.rejects(a.done, /boom/);
  });

  it("expires waiters in deadline order and stops at the first still in time", async () => {
    const registry = new WaitRegistry<undefined>(100);
    const early = registry.register(undefined, 0);
    const late = registry.register(undefined, 50);
    assert.equal(
      registry.expire(120, () => new Error("timed out")),
      1,
    );
    await assert.rejects(early.done, /timed out/);
    assert.equal(registry.size, 1);
    assert.equal(registry.resolve(late.seq, "ok"), true);
    assert.equal(await late.done, "ok");
  });

  it("rejects everything on rejectAll", async () => {
    const registry = new WaitRegistry<undefined>(100);
    const all = [registry.register(undefined, 0), registry.register(undefined, 0)];
    registry.rejectAll(() => new Error("stopped"));
    for (const w of all) await assert.rejects(w.done, /stopped/);
    assert.equal(registry.size, 0);
  });
});
