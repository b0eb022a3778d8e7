import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareHolds } from "./compare.js";
import { compareRequest } from "./request-builders.js";
import type { KeyValue } from "./types.js";
import { CompareResult, CompareTarget } from "./types.js";

describe("compare", () => {
  const kv = (value: string, version: number): KeyValue => ({
    key: Buffer.from("k"),
    createRevision: 2,
    modRevision: 3,
    version,
    value: Buffer.from(value),
    lease: 0n,
  });
  it("needs every kv to satisfy it and compares bytes for values", () => {
    const gt = compareRequest({
      key: "k",
      target: CompareTarget.VERSION,
      result: CompareResult.GREATER,
      version: 1,
    });
    assert.equal(compareHolds(gt, [kv("a", 2), kv("b", 3)]), true);
    assert.equal(compareHolds(gt, [kv("a", 2), kv("b", 1)]), false);
    const lt = compareRequest({
      key: "k",
      target: CompareTarget.VALUE,
      result: CompareResult.LESS,
      value: "b",
    });
    assert.equal(compareHolds(lt, [kv("a", 1)]), true);
    assert.equal(compareHolds(lt, [kv("ab", 1)]), true);
    assert.equal(compareHolds(lt, [kv("b", 1)]), false);
  });
});
