import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Prng } from "@etcd-ts/raft";
import type { Operation, Outcome } from "./history.js";
import { checkKey, checkLinearizability } from "./linearizability.js";
import { linearizableHistory } from "./synthetic-history.js";

/** Hand-written histories: times are plain numbers, an unknown op has no end. */
class Hist {
  readonly ops: Operation[] = [];

  private add(op: Omit<Operation, "id">): this {
    this.ops.push({ id: this.ops.length, ...op });
    return this;
  }

  write(p: number, value: string, [from, to]: [number, number?], outcome: Outcome = "ok", key = "x"): this {
    return this.add({ process: p, kind: "write", key, value, invokedAt: from, completedAt: to, outcome });
  }

  read(p: number, output: string | null, [from, to]: [number, number], key = "x"): this {
    return this.add({
      process: p,
      kind: "read",
      key,
      output,
      invokedAt: from,
      completedAt: to,
      outcome: "ok",
    });
  }

  cas(p: number, expected: string, value: string, [from, to]: [number, number], saw?: string | null): this {
    const refused = saw !== undefined;
    return this.add({
      process: p,
      kind: "cas",
      key: "x",
      expected,
      value,
      invokedAt: from,
      completedAt: to,
      outcome: "ok",
      succeeded: !refused,
      output: refused ? saw : undefined,
    });
  }

  casUnknown(p: number, expected: string, value: string, from: number): this {
    return this.add({
      process: p,
      kind: "cas",
      key: "x",
      expected,
      value,
      invokedAt: from,
      outcome: "unknown",
    });
  }
}

const verdictOf = (h: Hist) => checkLinearizability(h.ops).verdict;

describe("linearizability: valid histories pass", () => {
  test("sequential reads see the latest write; absent before the first", () => {
    const h = new Hist()
      .read(0, null, [0, 1])
      .write(0, "a", [2, 3])
      .read(1, "a", [4, 5])
      .write(1, "b", [6, 7]);
    assert.equal(verdictOf(h.read(0, "b", [8, 9])), "ok");
  });

  test("a read overlapping a write may see either value", () => {
    const before = new Hist().write(0, "a", [0, 1]).write(1, "b", [2, 10]).read(2, "a", [3, 4]);
    const after = new Hist().write(0, "a", [0, 1]).write(1, "b", [2, 10]).read(2, "b", [3, 4]);
    assert.equal(verdictOf(before), "ok");
    assert.equal(verdictOf(after), "ok");
  });

  test("concurrent writes may take effect in either order, seen consistently", () => {
    const h = new Hist()
      .write(0, "a", [0, 10])
      .write(1, "b", [1, 9])
      .read(2, "a", [2, 3])
      .read(2, "b", [4, 5])
      .read(3, "b", [11, 12]);
    assert.equal(verdictOf(h), "ok");
  });

  test("an unknown write may take effect, even after a later write completed", () => {
    const h = new Hist()
      .write(0, "a", [0], "unknown")
      .write(1, "b", [5, 6])
      .read(2, "b", [7, 8])
      .read(2, "a", [20, 21])
      .read(3, "a", [30, 31]);
    assert.equal(verdictOf(h), "ok");
  });

  test("an unknown write may never take effect", () => {
    const h = new Hist().write(0, "a", [0], "unknown").read(1, null, [5, 6]).read(1, null, [100, 101]);
    assert.equal(verdictOf(h), "ok");
  });

  test("compare-and-set: applied when the value matched; refused when it did not, reporting the value", () => {
    const h = new Hist()
      .write(0, "a", [0, 1])
      .cas(1, "a", "b", [2, 3])
      .cas(2, "a", "c", [4, 5], "b")
      .read(0, "b", [6, 7])
      .cas(0, "zzz", "d", [8, 9], "b");
    assert.equal(verdictOf(h), "ok");
  });

  test("concurrent CASes from one value: one wins, the loser saw the winner's value", () => {
    const h = new Hist().write(0, "a", [0, 1]).cas(1, "a", "b", [2, 10]).cas(2, "a", "c", [3, 9], "b");
    assert.equal(verdictOf(h), "ok");
  });

  test("an unknown CAS may have applied (read sees its value) or not", () => {
    const applied = new Hist().write(0, "a", [0, 1]).casUnknown(1, "a", "b", 2).read(2, "b", [10, 11]);
    const notApplied = new Hist().write(0, "a", [0, 1]).casUnknown(1, "a", "b", 2).read(2, "a", [10, 11]);
    assert.equal(verdictOf(applied), "ok");
    assert.equal(verdictOf(notApplied), "ok");
  });

  test("failed ops are ignored, unknown reads too", () => {
    const h = new Hist().write(0, "a", [0, 1], "fail").read(1, null, [2, 3]);
    h.ops.push({ id: 99, process: 3, kind: "read", key: "x", invokedAt: 2, outcome: "unknown" });
    assert.equal(verdictOf(h), "ok");
  });

  test("keys are independent registers", () => {
    const h = new Hist()
      .write(0, "a", [0, 1], "ok", "x")
      .write(0, "b", [2, 3], "ok", "y")
      .read(1, null, [4, 5], "z");
    h.read(1, "a", [4, 5], "x").read(1, "b", [6, 7], "y");
    const report = checkLinearizability(h.ops);
    assert.equal(report.verdict, "ok");
    assert.deepEqual(
      report.keys.map((k) => k.key),
      ["x", "y", "z"],
    );
  });
});

describe("linearizability: anomalies are reported", () => {
  test("a stale read: the second write had completed before the read began", () => {
    const h = new Hist().write(0, "a", [0, 1]).write(1, "b", [2, 3]).read(2, "a", [4, 5]);
    const report = checkLinearizability(h.ops);
    assert.equal(report.verdict, "violation");
    const cx = report.keys[0].counterexample!;
    assert.deepEqual(
      cx.window.map((o) => o.id),
      [0, 1, 2],
    );
    assert.match(cx.text, /read x -> "a"/);
  });

  test("a lost acknowledged write: later reads never see it", () => {
    const h = new Hist().write(0, "a", [0, 1]).read(1, null, [5, 6]);
    assert.equal(verdictOf(h), "violation");
  });

  test("a write that resurfaces after being overwritten (reordered or replayed)", () => {
    const h = new Hist()
      .write(0, "a", [0, 10])
      .write(1, "b", [1, 9])
      .read(2, "b", [2, 3])
      .read(2, "a", [4, 5])
      .read(3, "b", [6, 7]);
    assert.equal(verdictOf(h), "violation");
  });

  test("a double-applied CAS: two CASes both consumed the same value", () => {
    const h = new Hist().write(0, "a", [0, 1]).cas(1, "a", "b", [2, 3]).cas(2, "a", "c", [4, 5]);
    assert.equal(verdictOf(h), "violation");
  });

  test("a double-applied CAS: replayed after a later write", () => {
    const h = new Hist()
      .write(0, "a", [0, 1])
      .cas(1, "a", "b", [2, 3])
      .write(2, "c", [4, 5])
      .read(3, "b", [6, 7]);
    assert.equal(verdictOf(h), "violation");
  });

  test("a CAS that claims to have applied against a value that was not there", () => {
    const h = new Hist().write(0, "a", [0, 1]).write(0, "z", [2, 3]).cas(1, "a", "b", [4, 5]);
    assert.equal(verdictOf(h), "violation");
  });

  test("a refused CAS that reports the expected value (so it should have applied)", () => {
    const h = new Hist().write(0, "a", [0, 1]).cas(1, "a", "b", [2, 3], "a");
    assert.equal(verdictOf(h), "violation");
  });

  test("a read of a value never written", () => {
    const h = new Hist().write(0, "a", [0, 1]).read(1, "ghost", [2, 3]);
    assert.equal(verdictOf(h), "violation");
  });

  test("a read of a value whose write failed", () => {
    const h = new Hist().write(0, "a", [0, 1], "fail").read(1, "a", [2, 3]);
    assert.equal(verdictOf(h), "violation");
  });

  test("an unknown write seen and then unseen", () => {
    const h = new Hist().write(0, "a", [0], "unknown").read(1, "a", [5, 6]).read(1, null, [7, 8]);
    assert.equal(verdictOf(h), "violation");
  });

  test("only the broken key is reported", () => {
    const h = new Hist().write(0, "a", [0, 1], "ok", "good").write(0, "a", [0, 1], "ok", "bad");
    h.read(1, "a", [2, 3], "good").read(1, null, [2, 3], "bad");
    const report = checkLinearizability(h.ops);
    assert.equal(report.verdict, "violation");
    assert.deepEqual(
      report.keys.map((k) => [k.key, k.verdict]),
      [
        ["bad", "violation"],
        ["good", "ok"],
      ],
    );
  });
});

describe("linearizability: scale and budgets", () => {
  test("a few thousand concurrent ops on one key, with unknown ops, check quickly", () => {
    const ops = linearizableHistory({ seed: 7, ops: 4000, processes: 10, unknownRate: 0.05 });
    assert.ok(ops.some((o) => o.outcome === "unknown"));
    const report = checkKey("k", ops, { maxMillisPerKey: 20_000 });
    assert.equal(report.verdict, "ok", report.reason);
  });

  test("many seeds of smaller histories are all accepted", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const ops = linearizableHistory({ seed, ops: 300, processes: 6, unknownRate: 0.1 });
      const report = checkKey("k", ops, { maxMillisPerKey: 10_000 });
      assert.equal(report.verdict, "ok", `seed ${seed}: ${report.reason ?? ""}`);
    }
  });

  test("a stale read buried in a long history is found and shrunk to a few ops", () => {
    const ops = linearizableHistory({ seed: 11, ops: 2000, processes: 8, unknownRate: 0.02 });
    const end = Math.max(...ops.map((o) => o.completedAt ?? o.invokedAt));
    // Two writes after everything else, then a read that returns the older one.
    ops.push(
      {
        id: 5000,
        process: 100,
        kind: "write",
        key: "k",
        value: "late-1",
        invokedAt: end + 300,
        completedAt: end + 301,
        outcome: "ok",
      },
      {
        id: 5001,
        process: 100,
        kind: "write",
        key: "k",
        value: "late-2",
        invokedAt: end + 302,
        completedAt: end + 303,
        outcome: "ok",
      },
      {
        id: 5002,
        process: 101,
        kind: "read",
        key: "k",
        output: "late-1",
        invokedAt: end + 304,
        completedAt: end + 305,
        outcome: "ok",
      },
    );
    const report = checkKey("k", ops, { maxMillisPerKey: 20_000 });
    assert.equal(report.verdict, "violation");
    const cx = report.counterexample!;
    assert.ok(cx.window.length <= 12, cx.text);
    for (const id of [5000, 5001, 5002])
      assert.ok(
        cx.window.some((o) => o.id === id),
        cx.text,
      );
  });

  test("an exhausted budget is reported as unknown, not as a verdict", () => {
    const ops = linearizableHistory({ seed: 3, ops: 500, processes: 8 });
    const report = checkKey("k", ops, { maxStepsPerKey: 50 });
    assert.equal(report.verdict, "unknown");
    assert.match(report.reason ?? "", /search budget exhausted: 50 steps/);
  });
});

/**
 * An independent oracle for small histories: try every subset of the unknown ops and every
 * order of the chosen ops that respects real time, on a sequential register.
 */
function bruteForceLinearizable(ops: readonly Operation[]): boolean {
  const definite = ops.filter((o) => o.outcome === "ok");
  const optional = ops.filter((o) => o.outcome === "unknown" && o.kind !== "read");
  const end = (o: Operation) => o.completedAt ?? Number.POSITIVE_INFINITY;
  const tryOrder = (chosen: Operation[]): boolean => {
    const used = new Array<boolean>(chosen.length).fill(false);
    const step = (state: string | null, placed: number): boolean => {
      if (placed === chosen.length) return true;
      for (let i = 0; i < chosen.length; i++) {
        if (used[i]) continue;
        const o = chosen[i];
        // Every unplaced op that finished before o began must come first.
        if (chosen.some((p, j) => !used[j] && j !== i && end(p) < o.invokedAt)) continue;
        let next: string | null | undefined;
        if (o.kind === "read") next = state === o.output ? state : undefined;
        else if (o.kind === "write") next = o.value!;
        else if (o.outcome === "unknown") next = state === o.expected ? o.value! : state;
        else if (o.succeeded) next = state === o.expected ? o.value! : undefined;
        else next = state === o.output && state !== o.expected ? state : undefined;
        if (next === undefined) continue;
        used[i] = true;
        if (step(next, placed + 1)) return true;
        used[i] = false;
      }
      return false;
    };
    return step(null, 0);
  };
  for (let mask = 0; mask < 1 << optional.length; mask++) {
    const chosen = [...definite, ...optional.filter((_, i) => mask & (1 << i))];
    if (tryOrder(chosen)) return true;
  }
  return false;
}

describe("linearizability: agrees with brute force on small random histories", () => {
  test("valid histories and single mutations of them", () => {
    let violations = 0;
    let checked = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const rng = new Prng(seed);
      const ops = linearizableHistory({ seed, ops: rng.between(3, 7), processes: 3, unknownRate: 0.25 });
      if (seed % 4 !== 0) {
        // Mutate one op: a different output, flipped CAS result, or shifted interval.
        const o = rng.pick(ops);
        const values = [null, ...ops.filter((x) => x.value !== undefined).map((x) => x.value!)];
        const r = rng.next();
        if (o.outcome === "ok" && o.kind === "read") o.output = rng.pick(values);
        else if (o.outcome === "ok" && o.kind === "cas" && r < 0.5) {
          o.succeeded = !o.succeeded;
          o.output = o.succeeded ? undefined : rng.pick(values);
        } else if (o.outcome === "ok") {
          const shift = rng.between(-15, 15);
          o.invokedAt += shift;
          o.completedAt! += shift;
        }
      }
      const expected = bruteForceLinearizable(ops);
      const got = checkKey("k", ops).verdict;
      assert.equal(got, expected ? "ok" : "violation", `seed ${seed}: ${JSON.stringify(ops)}`);
      checked++;
      if (!expected) violations++;
    }
    // The comparison only means something if both verdicts occur often.
    assert.ok(violations > 50 && checked - violations > 50, `${violations} violations of ${checked}`);
  });
});
