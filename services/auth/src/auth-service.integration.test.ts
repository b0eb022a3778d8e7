// services/auth end to end: 3 real members, 2 auth service processes, one gateway sending
// Authenticate to them; etcdctl and the npm etcd3 client log in through the gateway and the
// members accept the tokens with the published keys alone. Keys rotate every second during the
// whole file (--rotation-interval=1), so every test also runs across rotations.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { AuthStack } from "./testing/auth-stack.js";
import { etcdctl, lastLine, metricSum, unary, withToken } from "./testing/stack-calls.fixture.js";

const TOKEN_TTL_S = 4;

describe("services/auth behind the gateway", { timeout: 240_000 }, () => {
  let stack: AuthStack;
  let auth: etcdserverpb.AuthClient;
  let kv: etcdserverpb.KVClient;
  const ctl = (...args: string[]) => etcdctl(stack.gatewayAddr, args);
  const login = (name: string, password: string, md?: grpc.Metadata) =>
    unary(auth, auth.authenticate, { name, password }, md);

  before(async () => {
    stack = await AuthStack.start({
      authReplicas: 2,
      memberFlags: ["--bcrypt-cost=4"],
      authFlags: [
        "--rotation-interval=1",
        `--token-ttl=${TOKEN_TTL_S}`,
        "--max-failures-per-user=3",
        "--max-failures-per-address=8",
      ],
    });
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["user", "add", "bob:bobpw"],
      ["user", "add", "carol:carolpw"],
      ["role", "add", "a-rw"],
      ["role", "grant-permission", "a-rw", "readwrite", "/a/", "--prefix"],
      ["user", "grant-role", "alice", "a-rw"],
      ["user", "grant-role", "bob", "a-rw"],
      ["auth", "enable"],
    ]) {
      const res = await ctl(...args);
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
    }
    auth = new etcdserverpb.AuthClient(stack.gatewayAddr, grpc.credentials.createInsecure());
    kv = new etcdserverpb.KVClient(stack.gatewayAddr, grpc.credentials.createInsecure());
  });
  after(async () => {
    auth?.close();
    kv?.close();
    await stack?.close();
  });

  const metricsOf = async (i: number) => (await fetch(`${stack.auth[i]!.httpUrl}/metrics`)).text();
  const okLogins = async () =>
    metricSum(await metricsOf(0), "etcd_auth_service_authenticate_total", 'result="ok"') +
    metricSum(await metricsOf(1), "etcd_auth_service_authenticate_total", 'result="ok"');

  test("etcdctl logs in through the gateway with a token the auth service signed", async () => {
    const before = await okLogins();
    assert.equal((await ctl("--user=alice:alicepw", "put", "/a/1", "v1")).stdout, "OK\n");
    assert.equal((await ctl("--user=alice:alicepw", "get", "/a/1", "--print-value-only")).stdout, "v1\n");
    assert.equal(
      lastLine((await ctl("--user=alice:alicepw", "get", "/b/x")).stderr),
      "etcdserver: permission denied",
    );
    assert.ok((await okLogins()) >= before + 3, "the auth services answered the logins, not a member");
  });

  test("the npm etcd3 client logs in through the gateway", async () => {
    const client = new Etcd3({
      hosts: `http://${stack.gatewayAddr}`,
      auth: { username: "alice", password: "alicepw" },
    });
    try {
      await client.put("/a/etcd3").value("yes");
      assert.equal(await client.get("/a/etcd3").string(), "yes");
      await assert.rejects(client.get("/b/secret").string(), /permission denied/);
    } finally {
      client.close();
    }
  });

  test("tokens carry etcd's claims, verify against either replica's JWKS, and name the auth revision", async () => {
    const { token } = await login("alice", "alicepw");
    const jwks = await Promise.all(
      stack.auth.map(
        async (a) =>
          (await fetch(`${a.httpUrl}/.well-known/jwks.json`)).json() as Promise<{ keys: { kid: string }[] }>,
      ),
    );
    const kid = decodeProtectedHeader(token).kid!;
    for (const set of jwks) {
      assert.ok(
        set.keys.some((k) => k.kid === kid),
        "every replica publishes the union of the keys",
      );
      const { payload } = await jwtVerify(token, createLocalJWKSet(set as never));
      assert.deepEqual(Object.keys(payload).sort(), ["exp", "revision", "username"]);
      assert.equal(payload.username, "alice");
      assert.ok((payload.exp as number) - Date.now() / 1000 <= TOKEN_TTL_S + 1);
    }
    // An auth change raises the auth revision: the older token is refused as etcd refuses it.
    const { token: bobToken } = await login("bob", "bobpw");
    const change = await etcdctl(stack.gatewayAddr, ["--user=root:rootpw", "role", "add", "bump"]);
    assert.equal(change.code, 0, change.stderr);
    await assert.rejects(
      unary(
        kv,
        kv.put,
        etcdserverpb.PutRequest.fromPartial({ key: Buffer.from("/a/old"), value: Buffer.from("x") }),
        withToken(bobToken),
      ),
      /revision of auth store is old/,
    );
  });

  test("a remembered verification never outlives a password change", async () => {
    // Twice, so both replicas (round-robin behind the gateway) verified and remembered it.
    await login("carol", "carolpw");
    await login("carol", "carolpw");
    const { token: rootToken } = await login("root", "rootpw");
    await unary(
      auth,
      auth.userChangePassword,
      { name: "carol", password: "carolpw2", hashedPassword: "" },
      withToken(rootToken),
    );
    for (let i = 0; i < 2; i++) {
      await assert.rejects(login("carol", "carolpw"), /authentication failed, invalid user ID or password/);
    }
    await login("carol", "carolpw2");
  });

  test("a wrong password gets etcd's error and a log line, and changes nothing", async () => {
    const res = await ctl("--user=alice:wrong", "put", "/a/1", "changed");
    assert.equal(lastLine(res.stderr), "etcdserver: authentication failed, invalid user ID or password");
    const logged = stack.auth.some((a) =>
      a.output.text
        .split("\n")
        .some(
          (l) =>
            l.includes('"user":"alice"') &&
            l.includes('"reason":"wrong password"') &&
            l.includes("authentication failed"),
        ),
    );
    assert.ok(logged, "one of the replicas logged the refusal");
    assert.equal((await ctl("--user=alice:alicepw", "get", "/a/1", "--print-value-only")).stdout, "v1\n");
    await assert.rejects(login("nobody", "x"), /authentication failed, invalid user ID or password/);
  });

  test("failed logins are limited per user (even the right password then waits) and per client address", async () => {
    // Each replica keeps its own budget: hit one replica directly, as the gateway would.
    const direct = new etcdserverpb.AuthClient(stack.auth[0]!.grpcAddr, grpc.credentials.createInsecure());
    const from = (address: string) => {
      const md = new grpc.Metadata();
      md.set("x-forwarded-for", address);
      return md;
    };
    try {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(
          unary(direct, direct.authenticate, { name: "bob", password: "guess" }, from(`192.0.2.${i}`)),
          /authentication failed/,
        );
      }
      await assert.rejects(
        unary(direct, direct.authenticate, { name: "bob", password: "bobpw" }, from("192.0.2.100")),
        (err: grpc.ServiceError) =>
          err.code === grpc.status.RESOURCE_EXHAUSTED &&
          err.details === "etcdserver: too many failed authentication attempts, try again later",
      );
      // alice is not limited by bob's failures...
      await unary(direct, direct.authenticate, { name: "alice", password: "alicepw" }, from("192.0.2.100"));
      // ...but one address failing for many users is.
      for (let i = 0; i < 8; i++) {
        await assert.rejects(
          unary(direct, direct.authenticate, { name: `user${i}`, password: "x" }, from("198.51.100.7")),
          /authentication failed/,
        );
      }
      await assert.rejects(
        unary(direct, direct.authenticate, { name: "alice", password: "alicepw" }, from("198.51.100.7")),
        /too many failed authentication attempts/,
      );
      const page = await metricsOf(0);
      assert.ok(metricSum(page, "etcd_auth_service_authenticate_total", 'result="limited"') >= 2);
    } finally {
      direct.close();
    }
    // Through the gateway a client cannot choose its address: a spoofed header is replaced.
    await assert.rejects(login("alice", "wrong", from("198.51.100.7")), /authentication failed/);
    assert.ok(
      !stack.auth.some((a) => a.output.text.includes('"client":"198.51.100.7","reason":"wrong password"')),
      "the gateway replaced the client's x-forwarded-for",
    );
  });

  test("keys rotate under load with no failed request, and the gateway, which verifies every token itself, refuses none", async () => {
    const gatewayRefusals = async () =>
      metricSum(
        await (await fetch(`${stack.gatewayHttpUrl}/metrics`)).text(),
        "etcd_gateway_auth_tokens_refused_total",
      );
    const refusedBefore = await gatewayRefusals();
    const kids = new Set<string>();
    let requests = 0;
    const failures: string[] = [];
    const until = Date.now() + 6_000;
    const worker = async (w: number) => {
      for (let round = 0; round < 200 && Date.now() < until; round++) {
        try {
          const { token } = await login("alice", "alicepw");
          kids.add(decodeProtectedHeader(token).kid!);
          requests++;
          // The token is used for a while after it was signed: across the next rotations.
          for (let i = 0; i < 4; i++) {
            await unary(
              kv,
              kv.put,
              etcdserverpb.PutRequest.fromPartial({
                key: Buffer.from(`/a/load/${w}`),
                value: Buffer.from(String(round)),
              }),
              withToken(token),
            );
            await unary(
              kv,
              kv.range,
              etcdserverpb.RangeRequest.fromPartial({
                key: Buffer.from(`/a/load/${w}`),
                serializable: i % 2 === 0,
              }),
              withToken(token),
            );
            requests += 2;
            await new Promise((r) => setTimeout(r, 150));
          }
        } catch (err) {
          failures.push(String((err as Error).message));
        }
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    assert.deepEqual(failures, []);
    assert.ok(requests > 50, `${requests} requests`);
    assert.ok(kids.size >= 4, `tokens were signed with ${kids.size} keys: rotations happened under load`);
    assert.equal(await gatewayRefusals(), refusedBefore);
  });

  test("a replica that dies is passed over: logins go on through the other", async () => {
    const dead = stack.auth[1]!.child;
    const exited = new Promise((r) => dead.once("exit", r));
    dead.kill("SIGKILL");
    await exited;
    for (let i = 0; i < 4; i++) {
      const { token } = await login("alice", "alicepw");
      await unary(
        kv,
        kv.put,
        etcdserverpb.PutRequest.fromPartial({ key: Buffer.from("/a/after"), value: Buffer.from(String(i)) }),
        withToken(token),
      );
    }
  });
});
