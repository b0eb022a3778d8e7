import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Inflights } from "./inflights.js";

describe("Inflights", () => {
  test("fills up to capacity, then refuses", () => {
    const inf = new Inflights(3);
    inf.add(1);
    inf.add(2);
    assert.equal(inf.full(), false);
    inf.add(3);
    assert.equal(inf.full(), true);
    assert.throws(() => inf.add(4));
  });

  test("freeLE frees every message up to an index, wrapping around the ring", () => {
    const inf = new Inflights(4);
    for (const i of [10, 20, 30, 40]) inf.add(i);
    inf.freeLE(25);
    assert.equal(inf.size, 2);
    inf.add(50);
    inf.add(60); // wraps
    assert.equal(inf.full(), true);
    inf.freeLE(5); // below the first: nothing
    assert.equal(inf.size, 4);
    inf.freeLE(50);
    assert.equal(inf.size, 1);
    inf.freeLE(100);
    assert.equal(inf.size, 0);
    for (const i of [70, 80, 90, 100]) inf.add(i);
    assert.equal(inf.full(), true);
  });

  test("reset empties it", () => {
    const inf = new Inflights(2);
    inf.add(1);
    inf.add(2);
    inf.reset();
    assert.equal(inf.size, 0);
    inf.add(3);
    inf.add(4);
    assert.equal(inf.full(), true);
  });
});
