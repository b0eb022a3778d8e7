import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonBodyError, JsonValueSplitter, parseJsonValues } from "./json-body.js";

describe("parseJsonValues", () => {
  it("reads one, several or no JSON values", () => {
    assert.deepEqual(parseJsonValues(""), [{}]);
    assert.deepEqual(parseJsonValues(' {"a":"}{"} \n{"b":[1,{"c":2}]}'), [{ a: "}{" }, { b: [1, { c: 2 }] }]);
    assert.deepEqual(parseJsonValues('{"a":"\\"}"} 7'), [{ a: '"}' }, 7]);
  });

  it("keeps integers beyond 2^53 exact (Go writes int64s as numbers)", () => {
    assert.deepEqual(parseJsonValues('{"TTL":2,"ID":7225847387692964643,"s":"1234567890123456789"}'), [
      { TTL: 2, ID: "7225847387692964643", s: "1234567890123456789" },
    ]);
    assert.deepEqual(parseJsonValues("[-9223372036854775808, 9007199254740991, 1.5e300]"), [
      ["-9223372036854775808", 9007199254740991, 1.5e300],
    ]);
  });

  it("reports a truncated body like Go's decoder", () => {
    assert.throws(() => parseJsonValues('{"key":"Zm9v",'), /unexpected EOF/);
    assert.throws(() => parseJsonValues("{bad}"), JsonBodyError);
  });
});

describe("JsonValueSplitter", () => {
  it("gives each value as soon as it is complete, whatever the chunking", () => {
    const body = '{"create_request":{"key":"Zm9v"}}\n{"cancel_request":{"watch_id":"1"}} {"x":"\\\\"}';
    for (let cut = 0; cut <= body.length; cut++) {
      const splitter = new JsonValueSplitter();
      const first = splitter.push(body.slice(0, cut));
      const rest = splitter.push(body.slice(cut));
      const all = [...first, ...rest, ...splitter.end()];
      assert.deepEqual(all, [
        { create_request: { key: "Zm9v" } },
        { cancel_request: { watch_id: "1" } },
        { x: "\\" },
      ]);
    }
    const splitter = new JsonValueSplitter();
    assert.deepEqual(splitter.push('{"a":1}{"b"'), [{ a: 1 }]);
    assert.throws(() => splitter.end(), /unexpected EOF/);
  });
});
