import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonNumber } from "../go-json.js";
import { JsonBodyError, JsonValueSplitter, parseJsonValues } from "./json-body.js";

/** Parsed values as plain data: a JsonNumber as "#literal", objects with a prototype. */
const plain = (value: unknown): unknown =>
  value instanceof JsonNumber
    ? `#${value.literal}`
    : Array.isArray(value)
      ? value.map(plain)
      : typeof value === "object" && value !== null
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
        : value;

describe("parseJsonValues", () => {
  it("reads one, several or no JSON values", () => {
    assert.deepEqual(plain(parseJsonValues("")), [{}]);
    assert.deepEqual(plain(parseJsonValues(' {"a":"}{"} \n{"b":[1,{"c":2}]}')), [
      { a: "}{" },
      { b: ["#1", { c: "#2" }] },
    ]);
    assert.deepEqual(plain(parseJsonValues('{"a":"\\"}"} 7')), [{ a: '"}' }, "#7"]);
  });

  it("keeps numbers as written (Go writes int64s as numbers beyond 2^53)", () => {
    assert.deepEqual(plain(parseJsonValues('{"TTL":2,"ID":7225847387692964643,"s":"1234567890123456789"}')), [
      { TTL: "#2", ID: "#7225847387692964643", s: "1234567890123456789" },
    ]);
    assert.deepEqual(plain(parseJsonValues("[-9223372036854775808, 9007199254740991, 1.5e300, -0.0E+1]")), [
      ["#-9223372036854775808", "#9007199254740991", "#1.5e300", "#-0.0E+1"],
    ]);
  });

  it("reports a truncated body like Go's decoder, and a bad byte before the end as Go's scanner", () => {
    assert.throws(() => parseJsonValues('{"key":"Zm9v",'), { message: "unexpected EOF" });
    assert.throws(() => parseJsonValues("{bad json"), {
      message: "invalid character 'b' looking for beginning of object key string",
    });
    assert.throws(() => parseJsonValues("{bad}"), JsonBodyError);
  });

  it("words a malformed body as etcd 3.4.23 answered it (curl to /v3/kv/range)", () => {
    for (const [body, message] of [
      ["{bad}", "invalid character 'b' looking for beginning of object key string"],
      ['{"key":"Zm9v",}', "invalid character '}' looking for beginning of object key string"],
      ['{"key":"Zm9v",, }', "invalid character ',' looking for beginning of object key string"],
      ["{\"key\":'Zm9v'}", "invalid character '\\'' looking for beginning of value"],
      ['{"key" "a"}', "invalid character '\"' after object key"],
      ['{"key":"a" "b"}', "invalid character '\"' after object key:value pair"],
      ["[1 2]", "invalid character '2' after array element"],
      ['{"a":[1,]}', "invalid character ']' looking for beginning of value"],
      ['{"key":tru}', "invalid character '}' in literal true (expecting 'e')"],
      ['{"key":"\\x"}', "invalid character 'x' in string escape code"],
      ['{"key":"\\u12"}', "invalid character '\"' in \\u hexadecimal character escape"],
      ['{"key":-}', "invalid character '}' in numeric literal"],
      ['{"key":1.}', "invalid character '}' after decimal point in numeric literal"],
      ['{"key":1e}', "invalid character '}' in exponent of numeric literal"],
      ['{"key":01}', "invalid character '1' after object key:value pair"],
      ["x", "invalid character 'x' looking for beginning of value"],
      ['{"key":"a\tb"}', "invalid character '\\t' in string literal"],
    ]) {
      assert.throws(() => parseJsonValues(body!), { name: "JsonBodyError", message }, body);
    }
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
      assert.deepEqual(plain(all), [
        { create_request: { key: "Zm9v" } },
        { cancel_request: { watch_id: "1" } },
        { x: "\\" },
      ]);
    }
    const splitter = new JsonValueSplitter();
    assert.deepEqual(plain(splitter.push('{"a":1}{"b"')), [{ a: "#1" }]);
    assert.throws(() => splitter.end(), /unexpected EOF/);
  });
});
