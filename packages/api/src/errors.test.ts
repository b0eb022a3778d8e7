import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { httpStatusForGrpcCode } from "./errors.js";
import {
  ETCD_ERRORS,
  EtcdError,
  type EtcdErrorKind,
  etcdErrorFromMessage,
  isEtcdError,
  untranslatedAuthError,
} from "./mod.js";

describe("etcd error table", () => {
  const kinds = Object.keys(ETCD_ERRORS) as EtcdErrorKind[];

  it("has one kind per message, so a relayed message maps back to exactly one kind", () => {
    const messages = kinds.map((k) => ETCD_ERRORS[k][1]);
    assert.equal(new Set(messages).size, messages.length);
    for (const kind of kinds) {
      const [code, message] = ETCD_ERRORS[kind];
      assert.match(message, kind.startsWith("AuthPackage") ? /^auth: / : /^etcdserver: /, kind);
      const relayed = etcdErrorFromMessage(message);
      assert.ok(isEtcdError(relayed, kind), kind);
      assert.equal(relayed.code, code);
      assert.equal(relayed.details, message);
    }
    assert.equal(etcdErrorFromMessage("etcdserver: something else"), undefined);
  });

  it("carries etcd's codes and messages for auth management and downgrade (rpctypes/error.go)", () => {
    const mgmt = new EtcdError("InvalidAuthMgmt");
    assert.deepEqual(
      [mgmt.code, mgmt.details],
      [status.INVALID_ARGUMENT, "etcdserver: invalid auth management"],
    );
    assert.deepEqual(ETCD_ERRORS.DowngradeInProcess, [
      status.FAILED_PRECONDITION,
      "etcdserver: cluster has a downgrade job in progress",
    ]);
    assert.deepEqual(ETCD_ERRORS.ClusterVersionUnavailable, [
      status.UNAVAILABLE,
      "etcdserver: cluster version not found during downgrade",
    ]);
  });

  it("words an auth check's refusal as etcd 3.4's maintenance server does (auth package, code 2)", () => {
    const words = (kind: EtcdErrorKind) => {
      const err = untranslatedAuthError(new EtcdError(kind)) as EtcdError;
      return [err.code, err.details];
    };
    assert.deepEqual(words("PermissionDenied"), [status.UNKNOWN, "auth: permission denied"]);
    assert.deepEqual(words("UserEmpty"), [status.UNKNOWN, "auth: user name is empty"]);
    assert.deepEqual(words("UserNotFound"), [status.UNKNOWN, "auth: user name not found"]);
    assert.deepEqual(words("InvalidAuthToken"), [status.UNKNOWN, "auth: invalid auth token"]);
    assert.deepEqual(words("NoLeader"), [status.UNAVAILABLE, "etcdserver: no leader"]);
    const other = new Error("x");
    assert.equal(untranslatedAuthError(other), other);
  });
});

describe("the JSON gateway's HTTP status of a gRPC code", () => {
  it("is grpc-gateway v1's, which etcd 3.4 links (v2 says 499 and 400 for the first two)", () => {
    assert.equal(httpStatusForGrpcCode(status.CANCELLED), 408);
    assert.equal(httpStatusForGrpcCode(status.FAILED_PRECONDITION), 412);
    assert.equal(httpStatusForGrpcCode(status.INVALID_ARGUMENT), 400);
    assert.equal(httpStatusForGrpcCode(status.OUT_OF_RANGE), 400);
    assert.equal(httpStatusForGrpcCode(status.RESOURCE_EXHAUSTED), 429);
    assert.equal(httpStatusForGrpcCode(status.UNAUTHENTICATED), 401);
    assert.equal(httpStatusForGrpcCode(status.UNKNOWN), 500);
  });
});
