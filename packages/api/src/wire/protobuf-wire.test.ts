import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  WIRE_LENGTH_DELIMITED,
  WIRE_VARINT,
  WireFormatError,
  WireReader,
  WireWriter,
} from "./protobuf-wire.js";

describe("WireReader/WireWriter", () => {
  it("round-trips varints, including 64-bit IDs above 2^53 and negative int64", () => {
    const bigId = 0xfedcba9876543210n;
    const buf = new WireWriter()
      .varintField(1, 300)
      .varintField(2, bigId)
      .varintField(3, -1)
      .varintField(4, true)
      .bytesField(5, "hi")
      .finish();
    const r = new WireReader(buf);
    assert.ok(r.next());
    assert.equal(r.fieldNumber, 1);
    assert.equal(r.wireType, WIRE_VARINT);
    assert.equal(r.varint(), 300);
    assert.ok(r.next());
    assert.equal(r.varintU64(), bigId);
    assert.ok(r.next());
    assert.equal(r.varintI64(), -1);
    assert.ok(r.next());
    assert.equal(r.bool(), true);
    assert.ok(r.next());
    assert.equal(r.wireType, WIRE_LENGTH_DELIMITED);
    assert.equal(Buffer.from(r.bytes()).toString(), "hi");
    assert.equal(r.next(), false);
  });

  it("reads uint64 varints of every bit length as a bigint reference does, bits past 64 dropped", () => {
    // The reference: 7 bits at a time in bigints, as varintU64 read them before the 32-bit halves.
    const reference = (b: readonly number[]) =>
      BigInt.asUintN(
        64,
        b.reduce((v, byte, i) => v | (BigInt(byte & 0x7f) << BigInt(7 * i)), 0n),
      );
    const values = [0n, 1n, 2n ** 64n - 1n, 0xfedc_ba98_7654_3210n];
    for (let k = 1n; k <= 64n; k++) values.push(2n ** k - 1n, 2n ** (k - 1n), (2n ** (k - 1n) * 3n) / 2n);
    for (const v of values) {
      const buf = new WireWriter().varintField(1, v).finish();
      const r = new WireReader(buf);
      assert.ok(r.next());
      assert.equal(r.varintU64(), v);
      assert.equal(reference([...buf.subarray(1)]), v);
    }
    // Ten bytes with bits 64-69 set: protobuf keeps the low 64.
    const wide = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert.equal(new WireReader(Uint8Array.from(wide)).varintU64(), reference(wide));
    assert.equal(
      new WireReader(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x90, 0x01])).varintU64(),
      reference([0x80, 0x80, 0x80, 0x80, 0x90, 0x01]),
    );
    assert.throws(() => new WireReader(Uint8Array.from([0x80, 0x80])).varintU64(), WireFormatError);
    assert.throws(() => new WireReader(Uint8Array.from(Array(11).fill(0x80))).varintU64(), /longer than 10/);
  });

  it("encodes like protobuf: 300 is 0xac 0x02 and -1 takes ten bytes", () => {
    assert.deepEqual([...new WireWriter().varintField(1, 300).finish()], [0x08, 0xac, 0x02]);
    const minusOne = new WireWriter().varintField(2, -1).finish();
    assert.equal(minusOne.length, 11);
    assert.equal(minusOne[10], 0x01);
  });

  it("skips every wire type it knows", () => {
    const buf = Buffer.from([
      0x08,
      0x96,
      0x01, // 1: varint 150
      0x11,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8, // 2: fixed64
      0x1a,
      0x02,
      0x61,
      0x62, // 3: bytes "ab"
      0x25,
      1,
      2,
      3,
      4, // 4: fixed32
      0x28,
      0x07, // 5: varint 7
    ]);
    const r = new WireReader(buf);
    const seen: number[] = [];
    while (r.next()) {
      seen.push(r.fieldNumber);
      if (r.fieldNumber === 5) assert.equal(r.varint(), 7);
      else r.skip();
    }
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  });

  it("rejects truncated and malformed input instead of reading past the end", () => {
    assert.throws(() => {
      const r = new WireReader(Buffer.from([0x0a, 0x05, 0x61]));
      r.next();
      r.bytes();
    }, WireFormatError);
    assert.throws(() => {
      const r = new WireReader(Buffer.from([0x08, 0x80]));
      r.next();
      r.varint();
    }, WireFormatError);
    assert.throws(() => {
      const r = new WireReader(Buffer.from([0x0b]));
      r.next();
      r.skip();
    }, WireFormatError);
    assert.throws(() => new WireReader(Buffer.from([0x00])).next(), WireFormatError);
  });

  it("reads within a sub-range without looking outside it", () => {
    const inner = new WireWriter().varintField(7, 1).finish();
    const outer = Buffer.concat([Buffer.from([0x08, 0x01]), inner, Buffer.from([0x08, 0x02])]);
    const r = new WireReader(outer, 2, 2 + inner.length);
    assert.ok(r.next());
    assert.equal(r.fieldNumber, 7);
    r.skip();
    assert.equal(r.next(), false);
  });
});
