// An Authenticate through the gateway is one trace: the gateway's server span, its client span to
// the auth service, the auth service's server span with its steps (the credential lookup on a
// member, the password check, the signing), and the member's server span of that lookup,
// exported to a real OTLP receiver process.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { type OtlpReceiverProcess, type ReceivedSpan, startOtlpReceiverProcess } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import { AuthStack } from "./testing/auth-stack.js";

function etcdctl(endpoint: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    execFile(
      "/usr/bin/etcdctl",
      [`--endpoints=${endpoint}`, "--dial-timeout=3s", "--command-timeout=8s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 20_000 },
      (err, _stdout, stderr) =>
        done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stderr }),
    );
  });
}

describe("tracing an Authenticate through the gateway and the auth service", { timeout: 180_000 }, () => {
  let receiver: OtlpReceiverProcess;
  let stack: AuthStack;

  before(async () => {
    receiver = await startOtlpReceiverProcess();
    stack = await AuthStack.start({
      authReplicas: 1,
      memberFlags: ["--bcrypt-cost=4"],
      env: receiver.exportingEnv(),
    });
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["auth", "enable"],
    ]) {
      const r = await etcdctl(stack.gatewayAddr, args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    }
  });
  after(async () => {
    await stack?.close();
    receiver?.stop();
  });

  test("gateway server and client spans, then the auth service's server span and its steps", async () => {
    const traceId = randomBytes(16).toString("hex");
    const callerSpan = randomBytes(8).toString("hex");
    const auth = new etcdserverpb.AuthClient(stack.gatewayAddr, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", `00-${traceId}-${callerSpan}-01`);
    try {
      await new Promise<void>((resolve, reject) =>
        auth.authenticate({ name: "root", password: "rootpw" }, metadata, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    } finally {
      auth.close();
    }
    const steps = ["auth.credential", "auth.password_check", "auth.sign"];
    const memberLookup = "etcdts.authbackend.AuthBackend/Credential";
    const spans = await receiver.traceSpans(traceId, (all) =>
      [...steps, memberLookup].every((n) => all.some((s) => s.name === n)),
    );
    const summary = spans.map((s: ReceivedSpan) => `${s.service} ${s.kind} ${s.name}`).join("\n");
    const find = (service: string, kind: number) =>
      spans.find((s) => s.service === service && s.kind === kind);
    const gatewayServer = find("api-gateway", 2);
    const gatewayClient = find("api-gateway", 3);
    const authServer = find("auth", 2);
    assert.ok(gatewayServer && gatewayClient && authServer, `missing spans:\n${summary}`);
    assert.equal(gatewayServer.name, "etcdserverpb.Auth/Authenticate");
    assert.equal(gatewayServer.parentSpanId, callerSpan);
    assert.equal(gatewayClient.parentSpanId, gatewayServer.spanId);
    assert.equal(gatewayClient.attributes["etcd.member_id"], "auth-service");
    assert.equal(authServer.name, "etcdserverpb.Auth/Authenticate");
    assert.equal(
      authServer.parentSpanId,
      gatewayClient.spanId,
      "the auth service continues the gateway's call",
    );
    for (const name of steps) {
      const step = spans.find((s) => s.name === name);
      assert.ok(step, `no ${name} span:\n${summary}`);
      assert.equal(step.service, "auth");
      assert.equal(step.parentSpanId, authServer.spanId, name);
    }
    assert.equal(
      spans.find((s) => s.name === "auth.password_check")?.attributes["auth.verification_reused"],
      false,
    );
    const lookup = spans.find((s) => s.name === memberLookup);
    assert.ok(lookup, `no member span for the credential lookup:\n${summary}`);
    assert.equal(lookup.kind, 2, "a server span");
    assert.equal(
      lookup.parentSpanId,
      spans.find((s) => s.name === "auth.credential")?.spanId,
      "the member continues the auth service's lookup",
    );
  });
});
