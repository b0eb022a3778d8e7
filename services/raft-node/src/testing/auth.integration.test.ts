// etcd's auth end to end on a 3-member cluster, driven by etcdctl 3.4 and the npm etcd3 client:
// users with prefix permissions see only their keys (get, txn, watch); wrong password, invalid
// token, revoked role and deleted user each get etcd's error and change nothing; a restart of
// every member and a snapshot install keep users, roles and the enabled flag.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

/** etcdctl's failure message (its last "Error: ..." line). */
async function refused(endpoints: string, args: string[]): Promise<string> {
  try {
    await etcdctl(endpoints, args);
  } catch (err) {
    const lines = String((err as Error).message)
      .trim()
      .split("\n");
    return lines[lines.length - 1]!.replace(/^Error: /, "");
  }
  throw new Error(`etcdctl ${args.join(" ")} succeeded`);
}

describe("auth on the members", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let cluster: LocalCluster;
  let eps: string;
  const root = ["--user", "root:rootpw"];
  const alice = ["--user", "alice:alicepw"];

  before(async () => {
    cluster = await LocalCluster.start({
      size: 3,
      flags: ["--snapshot-count=20", "--experimental-snapshot-catchup-entries=5", "--bcrypt-cost=4"],
    });
    eps = cluster.members.map(addressOf).join(",");
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
      await etcdctl(eps, args);
    }
  });

  after(async () => {
    await cluster?.close();
  });

  it("once enabled, a request without a user or with a wrong password is refused", async () => {
    await etcdctl(eps, ["auth", "enable"]);
    assert.equal(await refused(eps, ["get", "/a/x"]), "etcdserver: user name is empty");
    assert.equal(await refused(eps, ["put", "/a/x", "1"]), "etcdserver: user name is empty");
    assert.equal(
      await refused(eps, ["--user", "alice:wrong", "get", "/a/x"]),
      "etcdserver: authentication failed, invalid user ID or password",
    );
    assert.equal(await refused(eps, [...alice, "user", "list"]), "etcdserver: permission denied");
  });

  it("a bad token is refused on LeaseGrant and Alarm too, which check no permission (etcd reads every proposal's token)", async () => {
    const address = addressOf(cluster.members[0]!);
    const lease = new etcdserverpb.LeaseClient(address, credentials.createInsecure());
    const maintenance = new etcdserverpb.MaintenanceClient(address, credentials.createInsecure());
    const forged = new Metadata();
    forged.set("token", "forged.token.1");
    const invalidToken = (err: ServiceError) =>
      err.code === status.UNAUTHENTICATED && err.details === "etcdserver: invalid auth token";
    try {
      await assert.rejects(
        new Promise((resolve, reject) =>
          lease.leaseGrant({ ID: 0n, TTL: 60n }, forged, (err, res) => (err ? reject(err) : resolve(res))),
        ),
        invalidToken,
      );
      await assert.rejects(
        new Promise((resolve, reject) =>
          maintenance.alarm({ action: 0, memberID: 0n, alarm: 0 }, forged, (err, res) =>
            err ? reject(err) : resolve(res),
          ),
        ),
        invalidToken,
      );
    } finally {
      lease.close();
      maintenance.close();
    }
  });

  it("defragment, hash, hashkv and snapshot are root's, refused in etcd 3.4's auth package words (code 2)", async () => {
    const one = addressOf(cluster.members[0]!);
    // etcdctl prints the gRPC status as etcd 3.4 sends it (checked against etcd 3.4.x).
    const unknown = (message: string) => `rpc error: code = Unknown desc = ${message}`;
    for (const args of [["defrag"], ["endpoint", "hashkv"], ["snapshot", "save", "/dev/null"]]) {
      assert.match(
        await refused(one, args),
        new RegExp(`${unknown("auth: user name is empty")}\\)?$`),
        args[0],
      );
      assert.match(
        await refused(one, [...alice, ...args]),
        new RegExp(`${unknown("auth: permission denied")}\\)?$`),
        args[0],
      );
    }
    // The JSON gateway: a forged token on Hash, grpc-gateway's 500 for code 2.
    const res = await fetch(`${cluster.members[0]!.clientUrl}/v3/maintenance/hash`, {
      method: "POST",
      headers: { authorization: "forged.token.1" },
      body: "{}",
    });
    assert.equal(res.status, 500);
    assert.deepEqual(await res.json(), {
      error: "auth: invalid auth token",
      message: "auth: invalid auth token",
      code: 2,
    });
    // Root may.
    assert.match(await etcdctl(one, [...root, "endpoint", "hashkv"]), /, \d+/);
  });

  it("a user with a prefix permission reads and writes only under it (get, put, txn)", async () => {
    await etcdctl(eps, [...alice, "put", "/a/1", "v1"]);
    assert.equal(await refused(eps, [...alice, "put", "/b/1", "x"]), "etcdserver: permission denied");
    assert.equal(await refused(eps, [...alice, "get", "/b/secret"]), "etcdserver: permission denied");
    assert.equal(await refused(eps, [...alice, "get", "", "--prefix"]), "etcdserver: permission denied");
    assert.equal(await etcdctl(eps, [...alice, "get", "/a/", "--prefix", "--print-value-only"]), "v1\n");
    // A txn touching /b/ in a branch it will not take is still refused, and changes nothing.
    const txn = 'value("/a/1") = "v1"\n\nput /a/2 v2\n\nput /b/2 v2\n\n';
    await assert.rejects(etcdctl(eps, [...alice, "txn"], txn), /permission denied/);
    assert.equal(await etcdctl(eps, [...root, "get", "/a/2"]), "");
    assert.equal(await etcdctl(eps, [...root, "get", "/b/2"]), "");
    assert.equal(await etcdctl(eps, [...root, "get", "/b/secret", "--print-value-only"]), "s0\n");
  });

  it("the etcd3 client: a watch on the user's prefix sees its events; one outside it is refused", async () => {
    const client = new Etcd3({
      hosts: cluster.members.map((m) => m.clientUrl),
      auth: { username: "alice", password: "alicepw" },
    });
    try {
      const watcher = await client.watch().prefix("/a/").create();
      const seen = new Promise<string>((resolve) => watcher.on("put", (kv) => resolve(kv.value.toString())));
      await client.put("/a/w").value("watched");
      assert.equal(await seen, "watched");
      await watcher.cancel();
      await assert.rejects(client.watch().prefix("/b/").create(), /permission denied/);
      await assert.rejects(client.get("/b/secret").string(), /permission denied/);
    } finally {
      client.close();
    }
  });

  it("a revoked role and a deleted user take effect for tokens already issued", async () => {
    const client = new Etcd3({
      hosts: cluster.members.map((m) => m.clientUrl),
      auth: { username: "alice", password: "alicepw" },
    });
    try {
      await client.put("/a/before").value("ok");
      await etcdctl(eps, [...root, "user", "revoke-role", "alice", "a-rw"]);
      await assert.rejects(
        client.put("/a/after-revoke").value("no").exec(),
        /permission denied|revision of auth store is old/,
      );
      await etcdctl(eps, [...root, "user", "delete", "alice"]);
      // A member that has not applied the delete yet still knows the token: the put is proposed
      // and refused at apply, where the auth store has moved on (etcd's ErrAuthOldRevision).
      await assert.rejects(
        client.put("/a/after-delete").value("no").exec(),
        /invalid auth token|authentication failed|permission denied|revision of auth store is old/,
      );
      assert.equal(
        await refused(eps, ["--user", "alice:alicepw", "get", "/a/1"]),
        "etcdserver: authentication failed, invalid user ID or password",
      );
      assert.equal(await etcdctl(eps, [...root, "get", "/a/after", "--prefix"]), "");
    } finally {
      client.close();
    }
    // Back for the restart checks.
    await etcdctl(eps, [...root, "user", "add", "alice:alicepw2"]);
    await etcdctl(eps, [...root, "user", "grant-role", "alice", "a-rw"]);
  });

  it("a restart of every member keeps users, roles and the enabled flag", async () => {
    for (const m of cluster.members) await cluster.stop(m);
    await Promise.all(cluster.members.map((m) => cluster.restart(m)));
    await eventually("alice can write again after the restart", async () => {
      await etcdctl(eps, ["--user", "alice:alicepw2", "put", "/a/restart", "r"]);
      return true;
    });
    assert.equal(await refused(eps, ["get", "/a/restart"]), "etcdserver: user name is empty");
    assert.equal(await etcdctl(eps, [...root, "role", "list"]), "a-rw\nroot\n");
    assert.match(await etcdctl(eps, [...root, "role", "get", "a-rw"]), /\[\/a\/, \/a0\) \(prefix \/a\/\)/);
  });

  it("lock and election run as the caller: inside its prefix they work, outside they are refused", async () => {
    const alice2 = ["--user", "alice:alicepw2"];
    assert.match(await etcdctl(eps, [...alice2, "lock", "/a/lock", "echo", "held"]), /held/);
    assert.match(await refused(eps, [...alice2, "lock", "/b/lock", "echo", "held"]), /permission denied/);
    assert.equal(await refused(eps, [...alice2, "elect", "/b/elect", "p1"]), "etcdserver: permission denied");
  });

  it("a member that catches up from a snapshot has the auth store", async () => {
    for (let i = 0; i < 40; i++) await etcdctl(eps, [...root, "put", `/fill/${i}`, "x"]);
    const newcomer = await cluster.newMember("m4");
    const added = await etcdctl(eps, [...root, "member", "add", "m4", `--peer-urls=${newcomer.peerUrl}`]);
    const initial = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)![1]!;
    await cluster.join(newcomer, initial);
    await eventually("the newcomer installed a snapshot", async () =>
      newcomer.output.includes("installed snapshot from the leader"),
    );
    const one = addressOf(newcomer);
    assert.equal(await refused(one, ["get", "/a/1", "--consistency=s"]), "etcdserver: user name is empty");
    await eventually(
      "alice is known on the newcomer",
      async () =>
        (await etcdctl(one, ["--user", "alice:alicepw2", "get", "/a/restart", "--print-value-only"])) ===
        "r\n",
    );
    assert.equal(
      await refused(one, ["--user", "alice:alicepw2", "get", "/b/secret"]),
      "etcdserver: permission denied",
    );
  });
});
