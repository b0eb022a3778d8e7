import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { callOutcomeOf, codeForHttpStatus } from "./peer-session.js";

describe("a peer call's outcome", () => {
  it("is the trailers' grpc-status and its percent-encoded message", () => {
    assert.deepEqual(callOutcomeOf({ "grpc-status": "0" }), { code: status.OK, details: "" });
    assert.deepEqual(
      callOutcomeOf({
        ":status": "200",
        "grpc-status": "9",
        "grpc-message": "etcdserver: cluster%20ID mismatch",
      }),
      { code: status.FAILED_PRECONDITION, details: "etcdserver: cluster ID mismatch" },
    );
  });

  it("is unknown while a 200 answer has no status yet (its headers before the trailers)", () => {
    assert.equal(callOutcomeOf({ ":status": "200", "content-type": "application/grpc" }), undefined);
    assert.equal(callOutcomeOf(undefined), undefined);
  });

  it("maps an HTTP status without a gRPC one as grpc-go does", () => {
    assert.deepEqual(callOutcomeOf({ ":status": "503" }), {
      code: status.UNAVAILABLE,
      details: "unexpected HTTP status 503",
    });
    assert.equal(codeForHttpStatus(404), status.UNIMPLEMENTED);
    assert.equal(codeForHttpStatus(403), status.PERMISSION_DENIED);
    assert.equal(codeForHttpStatus(412), status.UNKNOWN);
  });

  it("ignores a malformed grpc-status", () => {
    assert.equal(callOutcomeOf({ ":status": "200", "grpc-status": "x" }), undefined);
  });
});
