// Two auth service replicas sharing one failed-login budget over a real nats-server: failures
// one replica sees count on the other (per user and per client address), so round-robin
// gateways do not multiply a guesser's budget by the number of replicas.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { NatsServerProcess } from "@etcd-ts/events";
import grpc from "@grpc/grpc-js";
import { AuthStack } from "./testing/auth-stack.js";
import { etcdctl, metricSum, unary } from "./testing/stack-calls.fixture.js";

const TOO_MANY = "etcdserver: too many failed authentication attempts, try again later";

describe("failed-login budgets shared over NATS", { timeout: 180_000 }, () => {
  let nats: NatsServerProcess;
  let stack: AuthStack;
  let replicas: etcdserverpb.AuthClient[];

  before(async () => {
    nats = await NatsServerProcess.start();
    stack = await AuthStack.start({
      authReplicas: 2,
      memberFlags: ["--bcrypt-cost=4"],
      authFlags: [`--nats-url=${nats.url}`, "--max-failures-per-user=3", "--max-failures-per-address=5"],
    });
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["user", "add", "bob:bobpw"],
      ["auth", "enable"],
    ]) {
      const res = await etcdctl(stack.gatewayAddr, args);
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
    }
    replicas = stack.auth.map(
      (a) => new etcdserverpb.AuthClient(a.grpcAddr, grpc.credentials.createInsecure()),
    );
  });
  after(async () => {
    for (const r of replicas ?? []) r.close();
    await stack?.close();
    await nats?.stop();
  });

  const from = (address: string) => {
    const md = new grpc.Metadata();
    md.set("x-forwarded-for", address);
    return md;
  };
  const login = (replica: number, name: string, password: string, address: string) =>
    unary(replicas[replica]!, replicas[replica]!.authenticate, { name, password }, from(address));
  /** Control-plane messages a replica has received (its own events included). */
  const received = async (replica: number) =>
    metricSum(
      await (await fetch(`${stack.auth[replica]!.httpUrl}/metrics`)).text(),
      "etcd_ts_control_plane_received_total",
    );
  const waitReceived = async (replica: number, atLeast: number) => {
    const deadline = Date.now() + 10_000;
    while ((await received(replica)) < atLeast) {
      if (Date.now() > deadline) throw new Error(`replica ${replica} heard fewer than ${atLeast} logins`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const limited = (err: grpc.ServiceError) =>
    err.code === grpc.status.RESOURCE_EXHAUSTED && err.details === TOO_MANY;

  test("a user's failures on one replica exhaust its budget on the other", async () => {
    const heard = await received(1);
    for (let i = 0; i < 3; i++) {
      await assert.rejects(login(0, "bob", "guess", `192.0.2.${i}`), /authentication failed/);
    }
    await waitReceived(1, heard + 3);
    // The right password waits on the replica that never saw a failure itself.
    await assert.rejects(login(1, "bob", "bobpw", "192.0.2.50"), limited);
    // Other users are not affected.
    await login(1, "alice", "alicepw", "192.0.2.50");
  });

  test("an address's failures on one replica exhaust its budget on the other", async () => {
    const heard = await received(0);
    for (let i = 0; i < 5; i++) {
      await assert.rejects(login(1, `nobody${i}`, "x", "198.51.100.7"), /authentication failed/);
    }
    await waitReceived(0, heard + 5);
    await assert.rejects(login(0, "alice", "alicepw", "198.51.100.7"), limited);
    await login(0, "alice", "alicepw", "198.51.100.8");
  });
});
