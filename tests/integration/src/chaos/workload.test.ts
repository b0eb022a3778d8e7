import assert from "node:assert/strict";
import { test } from "node:test";
import { Metadata, status } from "@grpc/grpc-js";
import { classifyError, errorReason } from "./workload.js";

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

test("errors of one kind count as one reason, whatever their times and addresses", () => {
  const reasons = [
    grpcError(status.DEADLINE_EXCEEDED, "Deadline exceeded after 2.001s,metadata filters: 0.001s"),
    grpcError(status.DEADLINE_EXCEEDED, "Deadline exceeded after 2.000s,remote_addr=127.0.0.1:31434"),
    grpcError(
      status.UNAVAILABLE,
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1",
    ),
    grpcError(
      status.UNAVAILABLE,
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2",
    ),
    grpcError(status.UNAVAILABLE, "etcdserver: no leader"),
  ].map(errorReason);
  assert.deepEqual(reasons, [
    "DEADLINE_EXCEEDED: Deadline exceeded",
    "DEADLINE_EXCEEDED: Deadline exceeded",
    "UNAVAILABLE: No connection established",
    "UNAVAILABLE: No connection established",
    "UNAVAILABLE: etcdserver: no leader",
  ]);
});
