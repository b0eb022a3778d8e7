import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  deadlineFrom,
  decodeGrpcMessage,
  encodeGrpcMessage,
  grpcTimeout,
  metadataFromHeaders,
} from "./headers.js";

describe("gRPC header values", () => {
  it("grpc-timeout: every unit, and junk ignored", () => {
    const now = Date.now();
    const near = (value: number | undefined, expected: number) =>
      assert.ok(value !== undefined && Math.abs(value - expected) < 50, `${value} vs ${expected}`);
    near(deadlineFrom("2S"), now + 2_000);
    near(deadlineFrom("150m"), now + 150);
    near(deadlineFrom("1M"), now + 60_000);
    near(deadlineFrom("1H"), now + 3_600_000);
    near(deadlineFrom("5000000u"), now + 5_000);
    assert.equal(deadlineFrom("10x"), undefined);
    assert.equal(deadlineFrom("123456789S"), undefined);
    near(deadlineFrom("99999999n"), now + 100);
    for (const junk of ["m", "1.5S", "-5m", " 5m", "5", "5mm", "5\u0000"])
      assert.equal(deadlineFrom(junk), undefined, junk);
    assert.equal(deadlineFrom(undefined), undefined);
  });

  it("grpc-message: printable ASCII as is, the rest (and %) percent-encoded as UTF-8", () => {
    assert.equal(encodeGrpcMessage("etcdserver: key is not provided"), "etcdserver: key is not provided");
    assert.equal(encodeGrpcMessage("50% é\n"), "50%25 %C3%A9%0A");
    assert.equal(decodeGrpcMessage("50%25 %C3%A9%0A"), "50% é\n");
  });

  it("percent-decodes grpc-message, leaving a malformed one as it is", () => {
    assert.equal(decodeGrpcMessage("a%20b"), "a b");
    assert.equal(decodeGrpcMessage("100%"), "100%");
  });

  it("writes grpc-timeout within its 8 digits", () => {
    assert.equal(grpcTimeout(1500.2), "1501m");
    assert.equal(grpcTimeout(-5), "0m");
    assert.equal(grpcTimeout(200_000_000), "200000S");
  });

  it("reads metadata from headers: pseudo and reserved headers out, -bin values decoded", () => {
    const md = metadataFromHeaders(
      {
        ":path": "/x",
        "content-type": "application/grpc",
        token: "t",
        "trace-bin": Buffer.from("ab").toString("base64"),
      },
      new Set(["content-type"]),
    );
    assert.deepEqual(md?.get("token"), ["t"]);
    assert.deepEqual(md?.get("trace-bin"), [Buffer.from("ab")]);
    assert.deepEqual(md?.get("content-type"), []);
    assert.equal(metadataFromHeaders({ ":status": "200" }, new Set()), undefined);
  });
});
