import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type FaultRates, PERFECT_NETWORK, SimNetwork } from "./network.js";
import { Prng } from "./prng.js";

interface Msg {
  from: bigint;
  to: bigint;
  n: number;
}

const msg = (from: number, to: number, n: number): Msg => ({ from: BigInt(from), to: BigInt(to), n });

describe("Prng", () => {
  it("replays the same stream from the same seed and differs across nearby seeds", () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const c = new Prng(43);
    const xs = Array.from({ length: 8 }, () => a.nextUint32());
    assert.deepEqual(
      Array.from({ length: 8 }, () => b.nextUint32()),
      xs,
    );
    assert.notDeepEqual(
      Array.from({ length: 8 }, () => c.nextUint32()),
      xs,
    );
  });

  it("uses every bit of a 53-bit seed", () => {
    const a = new Prng(5);
    const b = new Prng(5 + 2 ** 32);
    assert.notEqual(a.nextUint32(), b.nextUint32());
  });

  it("stays in range", () => {
    const r = new Prng(7);
    for (let i = 0; i < 10_000; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
      const k = r.between(3, 5);
      assert.ok(k >= 3 && k <= 5);
    }
  });
});

describe("SimNetwork", () => {
  it("delivers everything, once, over a perfect network", () => {
    const net = new SimNetwork<Msg>(new Prng(1), PERFECT_NETWORK);
    for (let i = 0; i < 10; i++) net.send(msg(1, 2, i), 0);
    const got = net.takeDue(0);
    assert.equal(got.length, 10);
    assert.deepEqual(
      got.map((d) => d.message.n).sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    assert.ok(got.every((d) => !d.lost));
    assert.equal(net.size, 0);
  });

  it("holds messages back until they are due", () => {
    const rates: FaultRates = { ...PERFECT_NETWORK, maxDelay: 5 };
    const net = new SimNetwork<Msg>(new Prng(2), rates);
    for (let i = 0; i < 50; i++) net.send(msg(1, 2, i), 10);
    let seen = 0;
    for (let t = 10; t <= 15; t++) seen += net.takeDue(t).length;
    assert.equal(seen, 50);
    assert.ok(net.takeDue(9).length === 0);
  });

  it("drops and duplicates at roughly the configured rates, never duplicating what it must not", () => {
    const rates: FaultRates = { ...PERFECT_NETWORK, drop: 0.2, duplicate: 0.2 };
    const net = new SimNetwork<Msg>(new Prng(3), rates, (m) => m.n % 2 === 0);
    for (let i = 0; i < 2000; i++) net.send(msg(1, 2, i), 0);
    const counts = new Map<number, number>();
    for (const d of net.takeAll()) counts.set(d.message.n, (counts.get(d.message.n) ?? 0) + 1);
    const lost = 2000 - counts.size;
    assert.ok(lost > 300 && lost < 500, `lost ${lost}`);
    const dupOdd = [...counts].filter(([n, k]) => n % 2 === 1 && k > 1).length;
    const dupEven = [...counts].filter(([n, k]) => n % 2 === 0 && k > 1).length;
    assert.equal(dupOdd, 0);
    assert.ok(dupEven > 100, `duplicated ${dupEven}`);
  });

  it("cuts both directions of a symmetric partition and one direction of an asymmetric one", () => {
    const net = new SimNetwork<Msg>(new Prng(4), PERFECT_NETWORK);
    net.partition([[1n], [2n, 3n]]);
    net.cutOneWay(2n, 3n);
    const lost = (from: number, to: number) => {
      net.send(msg(from, to, 0), 0);
      return net.takeDue(0)[0].lost;
    };
    assert.equal(lost(1, 2), true);
    assert.equal(lost(2, 1), true);
    assert.equal(lost(2, 3), true);
    assert.equal(lost(3, 2), false);
    net.heal();
    assert.equal(lost(1, 2), false);
  });

  it("loses messages already in flight when a partition starts", () => {
    const net = new SimNetwork<Msg>(new Prng(5), PERFECT_NETWORK);
    net.send(msg(1, 2, 0), 0);
    net.partition([[1n], [2n]]);
    assert.equal(net.takeDue(0)[0].lost, true);
  });
});
