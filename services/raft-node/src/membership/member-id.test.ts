import assert from "node:assert/strict";
import { test } from "node:test";
import { clusterIdFor, formatId, memberIdFor } from "./member-id.js";

test("member IDs are deterministic, order-independent in URLs, and depend on the token", () => {
  const a = memberIdFor(["http://127.0.0.1:2380", "http://127.0.0.1:2480"], "tok");
  assert.equal(a, memberIdFor(["http://127.0.0.1:2480", "http://127.0.0.1:2380"], "tok"));
  assert.notEqual(a, memberIdFor(["http://127.0.0.1:2380", "http://127.0.0.1:2480"], "other"));
  assert.ok(Number.isSafeInteger(a) && a > 0);
});

test("runtime-added members mix in the time, so the same URLs give a new ID", () => {
  const urls = ["http://127.0.0.1:2380"];
  assert.notEqual(memberIdFor(urls, "t", 1), memberIdFor(urls, "t", 2));
});

test("cluster ID depends on the member set, not its order", () => {
  assert.equal(clusterIdFor([3, 1, 2]), clusterIdFor([1, 2, 3]));
  assert.notEqual(clusterIdFor([1, 2, 3]), clusterIdFor([1, 2, 4]));
  assert.ok(Number.isSafeInteger(clusterIdFor([1, 2, 3])));
});

test("IDs print as etcd prints them: lowercase hex", () => {
  assert.equal(formatId(2 ** 53 - 1), "1fffffffffffff");
  assert.equal(formatId(255), "ff");
});
