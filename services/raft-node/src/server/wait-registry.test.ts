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

  it("keeps its ring the size of the waiters in flight when they settle in order", () => {
    const registry = new WaitRegistry<undefined>(100);
    const inFlight: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      inFlight.push(registry.register(undefined, 0).seq);
      if (inFlight.length > 40) registry.resolve(inFlight.shift()!, i);
    }
    assert.equal((registry as unknown as { slots: unknown[] }).slots.length, 64);
  });

  it("agrees with a map of the waiters over seeded runs of registers, settles out of order, expiries and grows", async () => {
    for (let run = 0; run < 20; run++) {
      let state = 1 + run * 7919;
      const random = (n: number) => {
        // xorshift: reproducible runs
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        return (state >>> 0) % n;
      };
      const registry = new WaitRegistry<number>(100);
      const model = new Map<number, { deadline: number; context: number }>();
      const outcomes = new Map<number, Promise<string>>();
      let now = 0;
      let contexts = 0;
      for (let step = 0; step < 2_000; step++) {
        const action = random(10);
        if (action < 5 || model.size === 0) {
          const context = contexts++;
          const { seq, done } = registry.register<string>(context, now);
          model.set(seq, { deadline: now + 100, context });
          outcomes.set(
            seq,
            done.then(
              (v) => `resolved ${v}`,
              (e: Error) => `rejected ${e.message}`,
            ),
          );
        } else if (action < 9) {
          // Any waiter, old or new (a hole left behind the oldest), or one already settled.
          const seqs = [...outcomes.keys()];
          const seq = seqs[random(seqs.length)]!;
          const waiting = model.has(seq);
          assert.equal(registry.get(seq) !== undefined, waiting, `get ${seq}`);
          const settled =
            random(2) === 0
              ? registry.resolve(seq, String(seq))
              : registry.reject(seq, new Error(String(seq)));
          assert.equal(settled, waiting, `settle ${seq}`);
          model.delete(seq);
        } else {
          now += random(60);
          let expected = 0;
          for (const [seq, w] of model) {
            if (w.deadline > now) break;
            model.delete(seq);
            expected++;
          }
          assert.equal(
            registry.expire(now, () => new Error("timed out")),
            expected,
          );
        }
        assert.equal(registry.size, model.size);
      }
      for (const [seq, w] of model) assert.equal(registry.get(seq)?.context, w.context);
      registry.rejectAll(() => new Error("stopped"));
      assert.equal(registry.size, 0);
      for (const [seq, outcome] of outcomes)
        assert.match(await outcome, /^(resolved|rejected) /, `seq ${seq}`);
    }
  });
});
