import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonBodyError, parseJsonValues } from "./json-body.js";

describe("parseJsonValues", () => {
  it("reads one, several or no JSON values", () => {
    assert.deepEqual(parseJsonValues(""), [{}]);
    assert.deepEqual(parseJsonValues(' {"a":"}{"} \n{"b":[1,{"c":2}]}'), [{ a: "}{" }, { b: [1, { c: 2 }] }]);
  });

  it("reports a truncated body like Go's decoder", () => {
    assert.throws(() => parseJsonValues('{"key":"Zm9v",'), /unexpected EOF/);
    assert.throws(() => parseJsonValues("{bad}"), JsonBodyError);
  });
});
