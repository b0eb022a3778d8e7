import assert from "node:assert/strict";
import { test } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { classifyError } from "./workload.js";

const grpcError = (code: status, details: string) =>
  Object.assign(new Error(`${code} ${status[code]}: ${details}`), {
    code,
    details,
    metadata: new Metadata(),
  });

test("only errors proving the request was never applied count as fail", () => {
  const cases: [status, string, "fail" | "unknown"][] = [
    [
      status.UNAVAILABLE,
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1",
      "fail",
    ],
    [status.INVALID_ARGUMENT, "etcdserver: key is not provided", "fail"],
    [status.UNAVAILABLE, "Connection dropped", "unknown"],
    [status.UNAVAILABLE, "read ECONNRESET", "unknown"],
    [status.UNAVAILABLE, "etcdserver: leader changed", "unknown"],
    [status.UNAVAILABLE, "etcdserver: request timed out", "unknown"],
    [status.UNAVAILABLE, "etcdserver: no leader", "unknown"],
    [status.DEADLINE_EXCEEDED, "Deadline exceeded after 2.000s", "unknown"],
    [status.CANCELLED, "Cancelled on client", "unknown"],
  ];
  for (const [code, details, outcome] of cases) {
    const got = classifyError(grpcError(code, details));
    assert.equal(got.outcome, outcome, details);
    assert.match(got.error, new RegExp(`^${status[code]}: `));
  }
  assert.equal(classifyError(new Error("socket hang up")).outcome, "unknown");
});
