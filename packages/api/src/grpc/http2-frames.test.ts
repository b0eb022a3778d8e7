// The framing and HPACK pieces: HPACK integers and literal blocks, frame headers, padding.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  encodeInteger,
  encodeLiteralHeaderBlock,
  FrameFlag,
  HeaderBlockDecoder,
  headersFragment,
} from "./http2-frames.js";

describe("HTTP/2 frames and HPACK", () => {
  it("encodes HPACK integers with an N-bit prefix (RFC 7541 C.1)", () => {
    assert.deepEqual([...encodeInteger(10, 5, 0)], [0x0a]);
    assert.deepEqual([...encodeInteger(1337, 5, 0)], [0x1f, 0x9a, 0x0a]);
    assert.deepEqual([...encodeInteger(42, 8, 0)], [0x2a]);
    assert.deepEqual([...encodeInteger(127, 7, 0x80)], [0xff, 0x00]);
  });

  it("literal blocks decode to the same fields, and leave the decoder's table alone", () => {
    const fields = [
      { name: ":authority", value: "127.0.0.1:2379", neverIndex: false },
      { name: "authorization", value: "secret", neverIndex: true },
    ];
    const decoder = new HeaderBlockDecoder();
    assert.deepEqual(decoder.decode(encodeLiteralHeaderBlock(fields)), fields);
    // A second decode of the same bytes means the same: nothing was added to the table.
    assert.deepEqual(decoder.decode(encodeLiteralHeaderBlock(fields)), fields);
  });

  it("strips padding from a HEADERS payload", () => {
    const payload = Buffer.concat([Buffer.from([3]), Buffer.from("abc"), Buffer.alloc(3)]);
    assert.equal(headersFragment(payload, FrameFlag.PADDED).fragment.toString(), "abc");
  });
});
