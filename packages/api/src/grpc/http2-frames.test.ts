// The framing and HPACK pieces the client port uses to look at and repair header blocks.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { scanConnectionStart } from "./client-port.js";
import {
  authorityOf,
  completeFrameAt,
  EMPTY_SETTINGS_FRAME,
  encodeInteger,
  encodeLiteralHeaderBlock,
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  HeaderBlockDecoder,
  HTTP2_PREFACE,
  headersFragment,
  headersFrames,
  isInvalidAuthority,
  repairAuthority,
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

  it("tells which authorities nghttp2 refuses, and repairs them to host:port", () => {
    assert.equal(isInvalidAuthority("127.0.0.1:2379"), false);
    assert.equal(isInvalidAuthority("[::1]:2379"), false);
    assert.equal(isInvalidAuthority("http://127.0.0.1:2379"), true);
    assert.equal(authorityOf("http://127.0.0.1:2379"), "127.0.0.1:2379");
    assert.equal(authorityOf("https://etcd-0.example:2379/path"), "etcd-0.example:2379");
    assert.equal(authorityOf("unix://localhost:1234"), "localhost:1234");
    const fields = [
      { name: ":authority", value: "http://h:1", neverIndex: false },
      { name: ":path", value: "/a/b", neverIndex: false },
    ];
    assert.equal(repairAuthority(fields), true);
    assert.deepEqual(
      fields.map((f) => f.value),
      ["h:1", "/a/b"],
    );
  });

  it("splits a large block into HEADERS + CONTINUATION frames with the flags in the right places", () => {
    const block = Buffer.alloc(40_000, 7);
    const priority = Buffer.from([0, 0, 0, 3, 15]);
    const bytes = headersFrames(5, block, true, priority, 16_384);
    const frames = [];
    for (let off = 0, f = completeFrameAt(bytes, 0); f !== undefined; f = completeFrameAt(bytes, off)) {
      frames.push({
        ...f,
        payload: bytes.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + f.length),
      });
      off += FRAME_HEADER_BYTES + f.length;
    }
    assert.deepEqual(
      frames.map((f) => [f.type, f.flags, f.streamId]),
      [
        [FrameType.HEADERS, FrameFlag.END_STREAM | FrameFlag.PRIORITY, 5],
        [FrameType.CONTINUATION, 0, 5],
        [FrameType.CONTINUATION, FrameFlag.END_HEADERS, 5],
      ],
    );
    const first = headersFragment(frames[0]!.payload, frames[0]!.flags);
    assert.deepEqual(first.priority, priority);
    assert.deepEqual(Buffer.concat([first.fragment, frames[1]!.payload, frames[2]!.payload]), block);
  });

  it("strips padding from a HEADERS payload", () => {
    const payload = Buffer.concat([Buffer.from([3]), Buffer.from("abc"), Buffer.alloc(3)]);
    assert.equal(headersFragment(payload, FrameFlag.PADDED).fragment.toString(), "abc");
  });

  it("finds a connection's first header block and the ACK of our SETTINGS", () => {
    const block = encodeLiteralHeaderBlock([{ name: ":authority", value: "http://h:1", neverIndex: false }]);
    const clientSettings = Buffer.from([0, 0, 0, FrameType.SETTINGS, 0, 0, 0, 0, 0]);
    const ack = Buffer.from([0, 0, 0, FrameType.SETTINGS, FrameFlag.ACK, 0, 0, 0, 0]);
    const headers = headersFrames(1, block, true, undefined);
    const start = Buffer.concat([HTTP2_PREFACE, clientSettings]);
    assert.deepEqual(scanConnectionStart(start, true), {});
    const withAck = Buffer.concat([start, ack, headers]);
    const found = scanConnectionStart(withAck, true);
    assert.equal(found.ackAt, start.length);
    assert.deepEqual(found.firstBlock, block);
    // grpc-go may queue its first HEADERS before the ACK: both are found.
    const ackLast = scanConnectionStart(Buffer.concat([start, headers, ack]), true);
    assert.equal(ackLast.ackAt, start.length + headers.length);
    assert.deepEqual(ackLast.firstBlock, block);
    // A partial HEADERS frame is not a block yet.
    assert.equal(scanConnectionStart(withAck.subarray(0, withAck.length - 1), true).firstBlock, undefined);
    assert.equal(EMPTY_SETTINGS_FRAME.length, FRAME_HEADER_BYTES);
  });
});
