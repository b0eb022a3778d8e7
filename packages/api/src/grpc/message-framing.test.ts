import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { frameGrpcMessage, GrpcFramingError, MessageDeframer, messagePrefix } from "./message-framing.js";

function drain(deframer: MessageDeframer): string[] {
  const out: string[] = [];
  for (let m = deframer.next(); m !== undefined; m = deframer.next()) out.push(m.toString());
  return out;
}

describe("gRPC message framing", () => {
  it("frames a message behind its 5-byte prefix", () => {
    assert.deepEqual(frameGrpcMessage(Buffer.from("hey")), Buffer.from([0, 0, 0, 0, 3, 104, 101, 121]));
    assert.deepEqual(messagePrefix(0x01020304), Buffer.from([0, 1, 2, 3, 4]));
  });

  it("splits chunks cut anywhere, the prefix included, into the messages in order", () => {
    const wire = Buffer.concat(
      ["a", "", "bcd", "x".repeat(300)].map((s) => frameGrpcMessage(Buffer.from(s))),
    );
    for (const cut of [1, 2, 3, 4, 5, 7, 11, 64]) {
      const deframer = new MessageDeframer();
      const got: string[] = [];
      for (let at = 0; at < wire.length; at += cut) {
        deframer.push(wire.subarray(at, at + cut));
        got.push(...drain(deframer));
      }
      assert.deepEqual(got, ["a", "", "bcd", "x".repeat(300)], `cut every ${cut} bytes`);
      assert.equal(deframer.buffered, 0);
    }
  });

  it("holds an incomplete message until its last byte", () => {
    const deframer = new MessageDeframer();
    const wire = frameGrpcMessage(Buffer.from("hello"));
    deframer.push(wire.subarray(0, 9));
    assert.equal(deframer.next(), undefined);
    assert.equal(deframer.buffered, 9);
    deframer.push(wire.subarray(9));
    assert.equal(deframer.next()?.toString(), "hello");
  });

  it("refuses a message over the limit as soon as its prefix is in, and a compressed one", () => {
    const small = new MessageDeframer(4);
    small.push(messagePrefix(5));
    assert.throws(
      () => small.next(),
      (e: unknown) => e instanceof GrpcFramingError && e.kind === "too-large" && e.length === 5,
    );
    const compressed = new MessageDeframer();
    const wire = frameGrpcMessage(Buffer.from("zz"));
    wire[0] = 1;
    compressed.push(wire);
    assert.throws(
      () => compressed.next(),
      (e: unknown) => e instanceof GrpcFramingError && e.kind === "compressed",
    );
  });
});
