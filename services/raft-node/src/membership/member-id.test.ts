import assert from "node:assert/strict";
import { test } from "node:test";
import { clusterIdFor, formatId, memberIdFor, parseId } from "./member-id.js";

test("etcd's own default member: etcd with no flags is member 8e9e05c52164694d of cluster cdf818194e3a8c32", () => {
  // The IDs every etcd 3.x started with defaults prints (peer URL http://localhost:2380,
  // token etcd-cluster): full 64-bit values, not shifted or truncated.
  const member = memberIdFor(["http://localhost:2380"], "etcd-cluster");
  assert.equal(formatId(member), "8e9e05c52164694d");
  assert.equal(formatId(clusterIdFor([member])), "cdf818194e3a8c32");
});

test("member IDs are order-independent in URLs and depend on the token", () => {
  const a = memberIdFor(["http://127.0.0.1:2380", "http://127.0.0.1:2480"], "tok");
  assert.equal(a, memberIdFor(["http://127.0.0.1:2480", "http://127.0.0.1:2380"], "tok"));
  assert.notEqual(a, memberIdFor(["http://127.0.0.1:2380", "http://127.0.0.1:2480"], "other"));
});

test("runtime-added members mix in the unix seconds, so the same URLs give a new ID", () => {
  const urls = ["http://127.0.0.1:2380"];
  assert.notEqual(memberIdFor(urls, "", 1), memberIdFor(urls, "", 2));
  assert.equal(memberIdFor(urls, "", 1_700_000_000), memberIdFor(urls, "1700000000"));
});

test("cluster ID depends on the member set, not its order", () => {
  assert.equal(clusterIdFor([3n, 1n, 2n]), clusterIdFor([1n, 2n, 3n]));
  assert.notEqual(clusterIdFor([1n, 2n, 3n]), clusterIdFor([1n, 2n, 4n]));
  // Sorted as unsigned 64-bit values, as etcd's types.IDSlice.
  assert.equal(clusterIdFor([2n ** 63n, 1n]), clusterIdFor([1n, 2n ** 63n]));
});

test("IDs print and parse as etcd's types.ID: lowercase hex, up to 64 bits", () => {
  assert.equal(formatId(2n ** 64n - 1n), "ffffffffffffffff");
  assert.equal(formatId(255n), "ff");
  assert.equal(parseId("8E9E05C52164694D"), 0x8e9e05c52164694dn);
  assert.equal(parseId("10000000000000000"), undefined);
  assert.equal(parseId("xyz"), undefined);
});
