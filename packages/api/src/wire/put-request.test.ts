import assert from "node:assert/strict";
import { test } from "node:test";
import { PutRequest } from "../gen/etcdserverpb/rpc.js";
import { decodePutRequest } from "./put-request.js";

/** The generated decoder's answer, or its error message: what decodePutRequest must match. */
function outcome(decode: (b: Uint8Array) => PutRequest, bytes: Uint8Array): unknown {
  try {
    return { ok: decode(bytes) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function same(bytes: Uint8Array): void {
  assert.deepEqual(
    outcome(decodePutRequest, bytes),
    outcome((b) => PutRequest.decode(b), bytes),
  );
}

test("what clients send decodes as the generated decoder decodes it", () => {
  const cases: Partial<PutRequest>[] = [
    {},
    { key: Buffer.from("k") },
    { key: Buffer.from("key"), value: Buffer.alloc(300, 7) },
    { key: Buffer.from("a"), value: Buffer.from("b"), lease: 0x7fff_ffff_ffff_ffffn },
    { key: Buffer.from("a"), lease: -5n },
    { key: Buffer.from("a"), lease: 1n, prevKv: true, ignoreValue: true, ignoreLease: true },
    { key: Buffer.alloc(20_000, 1), value: Buffer.alloc(70_000, 2), lease: 123456789n },
  ];
  for (const c of cases) {
    const bytes = PutRequest.encode(PutRequest.fromPartial(c)).finish();
    same(bytes);
    const decoded = decodePutRequest(bytes);
    assert.ok(Buffer.isBuffer(decoded.key) && Buffer.isBuffer(decoded.value));
    // Copies: the request buffer may be reused once decoded.
    if (decoded.key.length > 0) assert.notEqual(decoded.key.buffer, bytes.buffer);
  }
});

test("unusual encodings give exactly the generated decoder's result or error", () => {
  const hex = (s: string) => Buffer.from(s.replace(/ /g, ""), "hex");
  for (const bytes of [
    hex("0a0161 0a0162"), // a repeated field: the last wins
    hex("1801 1800"), // lease set then zero
    hex("08 05 0a0161"), // field 1 as a varint: skipped
    hex("1a0178 0a0161"), // field 3 length-delimited: skipped
    hex("3a03616263 0a0161"), // unknown field 7
    hex("2002"), // bool encoded as 2
    hex("208001"), // bool in two bytes
    hex("18ffffffffffffffffff01"), // lease -1
    hex("18ffffffffffffffffff7f"), // a 10-byte varint with bits past 64
    hex("18ffffffffffffffffffff01"), // 11 bytes: invalid
    hex("0a05 6162"), // truncated bytes
    hex("0a"), // truncated length
    hex("00 0a0161"), // tag 0 ends the message
    hex("0a0161 0c 1801"), // end group
    hex("0b 0c"), // a group
    hex("0d01020304 0a0161"), // fixed32 on field 1
    hex("8001 00"), // a two-byte tag
    hex("f801 05"), // field 31 varint
    hex("0a8080808010"), // a length past 2^32
  ]) {
    same(bytes);
  }
});

test("random bytes: the same result or the same error", () => {
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const alphabet = [0x0a, 0x12, 0x18, 0x20, 0x28, 0x30, 0x00, 0x01, 0x02, 0x80, 0xff, 0x7f, 0x1a, 0x08];
  for (let i = 0; i < 20_000; i++) {
    const bytes = new Uint8Array(rand() % 14);
    for (let j = 0; j < bytes.length; j++) bytes[j] = alphabet[rand() % alphabet.length]!;
    same(bytes);
  }
});
