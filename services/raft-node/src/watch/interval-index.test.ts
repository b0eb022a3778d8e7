import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { seededRandom } from "@etcd-ts/raft";
import { IntervalIndex, type RangeEnd } from "./interval-index.js";

const ALPHABET = ["\0", "a", "b", "c", "d", "\xff"];

function randomKey(random: () => number): string {
  const length = 1 + Math.floor(random() * 3);
  let key = "";
  for (let i = 0; i < length; i++) key += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return key;
}

describe("IntervalIndex", () => {
  it("stab and contains agree with a brute-force scan through random inserts and deletes", () => {
    const random = seededRandom(7);
    const index = new IntervalIndex<string>();
    const model = new Map<string, { start: string; end: RangeEnd }>();
    const id = (start: string, end: RangeEnd) => `${start}|${end === null ? "∞" : end}`;

    for (let step = 0; step < 3000; step++) {
      const start = randomKey(random);
      let end: RangeEnd = random() < 0.2 ? null : randomKey(random);
      if (end !== null && end <= start) end = `${start}a`;
      if (random() < 0.35 && model.size > 0) {
        const victims = [...model.values()];
        const victim = victims[Math.floor(random() * victims.length)];
        assert.equal(index.delete(victim.start, victim.end), true);
        model.delete(id(victim.start, victim.end));
      } else {
        index.set(start, end, id(start, end));
        model.set(id(start, end), { start, end });
      }
      assert.equal(index.size, model.size);

      const probe = randomKey(random);
      const expected = [...model.entries()]
        .filter(([, r]) => r.start <= probe && (r.end === null || probe < r.end))
        .map(([k]) => k)
        .sort();
      const found: string[] = [];
      index.stab(probe, (value) => found.push(value));
      assert.deepEqual(found.sort(), expected, `stab(${JSON.stringify(probe)}) at step ${step}`);
      assert.equal(index.contains(probe), expected.length > 0);
    }
  });

  it("keeps identical ranges as one entry and reports deleting a missing one", () => {
    const index = new IntervalIndex<number>();
    index.set("a", "b", 1);
    index.set("a", "b", 2);
    assert.equal(index.size, 1);
    assert.equal(index.get("a", "b"), 2);
    assert.equal(index.delete("a", "c"), false);
    assert.equal(index.delete("a", "b"), true);
    assert.equal(index.size, 0);
  });

  it("treats a null end as unbounded and ends as exclusive", () => {
    const index = new IntervalIndex<string>();
    index.set("m", null, "from-m");
    index.set("a", "c", "a-c");
    const at = (key: string) => {
      const out: string[] = [];
      index.stab(key, (v) => out.push(v));
      return out;
    };
    assert.deepEqual(at("\xff\xff"), ["from-m"]);
    assert.deepEqual(at("b"), ["a-c"]);
    assert.deepEqual(at("c"), []);
    assert.deepEqual(at("l"), []);
  });
});
