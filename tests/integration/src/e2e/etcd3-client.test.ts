// The npm `etcd3` client (grpc-js, its own proto copies) against the full stack through the
// gateway's gRPC port.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Etcd3, EtcdLockFailedError, type IKeyValue } from "etcd3";
import { Stack, sleep } from "./stack.js";

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

describe("npm etcd3 client through the gateway", { timeout: 120_000 }, () => {
  let stack: Stack;
  let client: Etcd3;

  before(async () => {
    stack = await Stack.start();
    client = new Etcd3({ hosts: `http://${stack.gatewayAddr}` });
  });
  after(async () => {
    client?.close();
    await stack?.close();
  });

  test("put, get, getAll with a prefix, delete", async () => {
    await client.put("p/1").value("one");
    await client.put("p/2").value("two");
    await client.put("p/3").value("three");
    await client.put("q/1").value("other");
    assert.equal(await client.get("p/2").string(), "two");
    assert.equal(await client.get("p/missing").string(), null);
    assert.deepEqual(await client.getAll().prefix("p/").strings(), {
      "p/1": "one",
      "p/2": "two",
      "p/3": "three",
    });
    assert.equal(await client.getAll().prefix("p/").count(), 3);
    assert.deepEqual(await client.getAll().prefix("p/").sort("Key", "Descend").limit(2).keys(), [
      "p/3",
      "p/2",
    ]);
    const del = await client.delete().key("p/1").getPrevious();
    assert.equal(del.length, 1);
    assert.equal(del[0]?.value.toString(), "one");
    const res = await client.delete().prefix("p/");
    assert.equal(res.deleted, "2");
    assert.deepEqual(await client.getAll().prefix("p/").strings(), {});
    assert.equal(await client.get("q/1").string(), "other");
  });

  test("txn: if/then/else takes the right branch", async () => {
    await client.put("tx/k").value("v1");
    const yes = await client
      .if("tx/k", "Value", "==", "v1")
      .then(client.put("tx/k").value("v2"), client.put("tx/then").value("ran"))
      .else(client.put("tx/else").value("ran"))
      .commit();
    assert.equal(yes.succeeded, true);
    assert.equal(yes.responses.length, 2);
    const no = await client
      .if("tx/k", "Value", "==", "v1")
      .then(client.put("tx/k").value("v3"))
      .else(client.put("tx/else").value("ran"), client.get("tx/k"))
      .commit();
    assert.equal(no.succeeded, false);
    assert.equal(no.responses[1]?.response_range?.kvs[0]?.value.toString(), "v2");
    assert.deepEqual(await client.getAll().prefix("tx/").strings(), {
      "tx/else": "ran",
      "tx/k": "v2",
      "tx/then": "ran",
    });
    // A compare on the version of a missing key (create-if-absent).
    const create = await client
      .if("tx/absent", "Create", "==", 0)
      .then(client.put("tx/absent").value("made"))
      .commit();
    assert.equal(create.succeeded, true);
    assert.equal(await client.get("tx/absent").string(), "made");
  });

  test("lease: keep-alive holds the key past its TTL, revoke removes it", async () => {
    const lease = client.lease(3);
    let succeeded = 0;
    let lost: Error | undefined;
    lease.on("keepaliveSucceeded", () => {
      succeeded++;
    });
    lease.on("lost", (err) => {
      lost = err;
    });
    try {
      await lease.put("ls/k").value("held");
      const id = await lease.grant();
      assert.match(id, /^[0-9a-f]+$/);
      // etcd3 sends a keep-alive every TTL/3 s: after 4.5 s (> 3 s TTL) the key is still there.
      await sleep(4_500);
      assert.equal(lost, undefined, `lease lost: ${lost?.message}`);
      assert.ok(succeeded >= 2, `only ${succeeded} keep-alives succeeded`);
      assert.equal(await client.get("ls/k").string(), "held");
      const once = await lease.keepaliveOnce();
      assert.equal(once.TTL, "3");
      const info = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
      assert.ok(Number(info.TTL) > 0 && Number(info.TTL) <= 3, `ttl ${info.TTL}`);
      assert.equal(info.grantedTTL, "3");
      assert.deepEqual(
        info.keys.map((k) => k.toString()),
        ["ls/k"],
      );
      await lease.revoke();
      assert.equal(await client.get("ls/k").string(), null);
    } finally {
      if (!lease.revoked()) await lease.revoke().catch(() => undefined);
    }
  });

  test("a lease without keep-alive expires and takes its key", async () => {
    const lease = client.lease(2, { autoKeepAlive: false });
    await lease.put("ls/expiring").value("x");
    assert.equal(await client.get("ls/expiring").string(), "x");
    // Expiry is driven by the leader's lease checker: allow a generous bound past the TTL.
    const deadline = Date.now() + 10_000;
    let value: string | null = "x";
    while (value !== null && Date.now() < deadline) {
      await sleep(250);
      value = await client.get("ls/expiring").string();
    }
    assert.equal(value, null, "key attached to an expired lease is still there after 10 s");
  });

  test("watch receives put and delete events in order", async () => {
    const watcher = await client.watch().prefix("wt/").withPreviousKV().create();
    const events: string[] = [];
    const record = (type: string) => (kv: IKeyValue, previous?: IKeyValue) => {
      events.push(
        `${type} ${kv.key.toString()}=${kv.value.toString()} prev=${previous?.value.toString() ?? ""}`,
      );
    };
    watcher.on("put", record("put"));
    watcher.on("delete", record("delete"));
    try {
      await client.put("wt/a").value("1");
      await client.put("wt/a").value("2");
      await client.put("wt/b").value("3");
      await client.delete().key("wt/a");
      await client.put("other").value("not watched");
      assert.ok(await until(() => events.length >= 4, 10_000), `events: ${events.join(", ")}`);
      await sleep(200);
      assert.deepEqual(events, [
        "put wt/a=1 prev=",
        "put wt/a=2 prev=1",
        "put wt/b=3 prev=",
        "delete wt/a= prev=2",
      ]);
    } finally {
      await watcher.cancel();
    }
  });

  test("two watchers on the same key (shared upstream watch) both see every event", async () => {
    const w1 = await client.watch().key("shared").create();
    const w2 = await client.watch().key("shared").create();
    const seen1: string[] = [];
    const seen2: string[] = [];
    w1.on("put", (kv) => seen1.push(kv.value.toString()));
    w2.on("put", (kv) => seen2.push(kv.value.toString()));
    try {
      for (let i = 0; i < 5; i++) await client.put("shared").value(String(i));
      assert.ok(await until(() => seen1.length >= 5 && seen2.length >= 5, 10_000), `${seen1} / ${seen2}`);
      assert.deepEqual(seen1, ["0", "1", "2", "3", "4"]);
      assert.deepEqual(seen2, ["0", "1", "2", "3", "4"]);
    } finally {
      await w1.cancel();
      await w2.cancel();
    }
  });

  test("lock: a second holder is refused while the first holds it", async () => {
    const first = client.lock("e2e-mutex").ttl(5);
    await first.acquire();
    try {
      const second = client.lock("e2e-mutex").ttl(5);
      await assert.rejects(second.acquire(), EtcdLockFailedError);
      await first.release();
      await second.acquire();
      await second.release();
    } finally {
      await first.release().catch(() => undefined);
    }
    // do() runs the function under the lock and releases it afterwards.
    const result = await client.lock("e2e-mutex").do(async () => "inside");
    assert.equal(result, "inside");
    assert.deepEqual(await client.getAll().prefix("e2e-mutex").keys(), []);
  });

  test("errors surface as etcd3's typed errors", async () => {
    await assert.rejects(client.put("").value("x").exec(), /key is not provided/);
    const head = await client.get("anything").exec();
    const future = String(Number(head.header.revision) + 1000);
    await assert.rejects(
      client.get("anything").revision(future).exec(),
      /required revision is a future revision/,
    );
  });
});
