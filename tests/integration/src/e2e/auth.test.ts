// etcd's auth through the gateway, on our members: etcdctl and the npm etcd3 client see only
// what their permissions allow (get, txn, watch), tokens pass through the gateway's gRPC and
// JSON ports, and the gateway's serializable-range cache never answers once auth is on
// (enabled through the gateway, or directly on a member).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Etcd3 } from "etcd3";
import { etcdctl, lastLine, Stack, sleep } from "./stack.js";

describe("auth through the gateway", { timeout: 180_000 }, () => {
  let stack: Stack;
  const root = "--user=root:rootpw";
  const ctl = (...args: string[]) => etcdctl(stack.gatewayAddr, args);

  before(async () => {
    stack = await Stack.start(["--bcrypt-cost=4"]);
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["role", "add", "a-rw"],
      ["role", "grant-permission", "a-rw", "readwrite", "/a/", "--prefix"],
      ["user", "grant-role", "alice", "a-rw"],
      ["put", "/b/secret", "s0"],
    ]) {
      const res = await ctl(...args);
      assert.equal(res.code, 0, res.stderr);
    }
  });
  after(async () => {
    await stack?.close();
  });

  test("a cached tokenless answer is not served once auth is enabled through the gateway", async () => {
    // Twice: the second is served from the gateway's cache.
    for (let i = 0; i < 2; i++) {
      assert.equal((await ctl("get", "/b/secret", "--consistency=s", "--print-value-only")).stdout, "s0\n");
    }
    assert.equal((await ctl("auth", "enable")).code, 0);
    const res = await ctl("get", "/b/secret", "--consistency=s");
    assert.equal(lastLine(res.stderr), "etcdserver: user name is empty");
  });

  test("etcdctl: wrong password and permissions outside the prefix get etcd's errors", async () => {
    assert.equal(
      lastLine((await ctl("--user=alice:nope", "get", "/a/x")).stderr),
      "etcdserver: authentication failed, invalid user ID or password",
    );
    assert.equal((await ctl("--user=alice:alicepw", "put", "/a/1", "v1")).stdout, "OK\n");
    assert.equal(
      lastLine((await ctl("--user=alice:alicepw", "get", "/b/secret", "--consistency=s")).stderr),
      "etcdserver: permission denied",
    );
    assert.equal(
      lastLine((await ctl("--user=alice:alicepw", "user", "list")).stderr),
      "etcdserver: permission denied",
    );
    assert.equal((await ctl(root, "user", "list")).stdout, "alice\nroot\n");
  });

  test("etcd3: get, txn and watch see only the user's prefix", async () => {
    const client = new Etcd3({
      hosts: `http://${stack.gatewayAddr}`,
      auth: { username: "alice", password: "alicepw" },
    });
    try {
      assert.equal(await client.get("/a/1").string(), "v1");
      await assert.rejects(client.get("/b/secret").string(), /permission denied/);
      await assert.rejects(
        client
          .if("/a/1", "Value", "==", "v1")
          .then(client.put("/a/t").value("t"))
          .else(client.put("/b/t").value("t"))
          .commit(),
        /permission denied/,
      );
      const watcher = await client.watch().prefix("/a/").create();
      const seen = new Promise<string>((resolve) => watcher.on("put", (kv) => resolve(kv.key.toString())));
      await client.put("/a/w").value("x");
      assert.equal(await seen, "/a/w");
      await watcher.cancel();
      await assert.rejects(client.watch().prefix("/b/").create(), /permission denied/);
    } finally {
      client.close();
    }
    assert.equal(
      (await ctl(root, "get", "/", "--prefix", "--keys-only")).stdout.replace(/\n+/g, " ").trim(),
      "/a/1 /a/w /b/secret",
    );
  });

  test("the JSON gateway takes the token in the Authorization header", async () => {
    const post = (path: string, body: unknown, token?: string) =>
      fetch(`${stack.jsonUrl}${path}`, {
        method: "POST",
        headers: token === undefined ? {} : { authorization: token },
        body: JSON.stringify(body),
      });
    const auth = await post("/v3/auth/authenticate", { name: "alice", password: "alicepw" });
    assert.equal(auth.status, 200);
    const { token } = (await auth.json()) as { token: string };
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const ok = await post("/v3/kv/range", { key: b64("/a/1") }, token);
    assert.equal(ok.status, 200);
    const kvs = ((await ok.json()) as { kvs: { value: string }[] }).kvs;
    assert.equal(Buffer.from(kvs[0]!.value, "base64").toString(), "v1");
    const denied = await post("/v3/kv/range", { key: b64("/b/secret") }, token);
    assert.match(await denied.text(), /permission denied/);
  });

  test("auth enabled directly on a member turns the gateway's cache off within a refresh", async () => {
    assert.equal((await ctl(root, "auth", "disable")).code, 0);
    for (let i = 0; i < 2; i++) {
      assert.equal((await ctl("get", "/b/secret", "--consistency=s", "--print-value-only")).stdout, "s0\n");
    }
    assert.equal((await etcdctl(stack.memberEndpoints, ["auth", "enable"])).code, 0);
    // The gateway probes AuthStatus every refresh (500 ms here).
    await sleep(2_000);
    assert.equal(
      lastLine((await ctl("get", "/b/secret", "--consistency=s")).stderr),
      "etcdserver: user name is empty",
    );
  });
});
