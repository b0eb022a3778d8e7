// The gateway's part of auth, end to end: 3 real members, an auth service, and a gateway that
// verifies tokens itself and serves its Range cache under RBAC (as --range-cache-user root).
// Keys rotate every second during the whole file, so every test also runs across rotations.
// Members publish control-plane events on a real nats-server; the gateway probes only once a
// minute, so what it learns of auth changes made elsewhere comes from tokens and events.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { etcdserverpb, signJws } from "@etcd-ts/api";
import { NatsServerProcess } from "@etcd-ts/events";
import grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { AuthStack } from "./testing/auth-stack.js";
import { etcdctl, lastLine, metricSum as sum, unary, withToken } from "./testing/stack-calls.fixture.js";

const TOKEN_TTL_S = 4;

const b64 = (v: string | Buffer) => Buffer.from(v).toString("base64url");
const parts = (token: string) => token.split(".") as [string, string, string];
const claimsOf = (token: string) =>
  JSON.parse(Buffer.from(parts(token)[1], "base64url").toString()) as {
    username: string;
    revision: number;
    exp: number;
  };

describe("the gateway checks tokens and serves its cache under RBAC", { timeout: 300_000 }, () => {
  let stack: AuthStack;
  let nats: NatsServerProcess;
  let auth: etcdserverpb.AuthClient;
  let kv: etcdserverpb.KVClient;
  /** The same calls straight to a member, to compare answers. */
  let memberKv: etcdserverpb.KVClient;
  const ctl = (...args: string[]) => etcdctl(stack.gatewayAddr, args);
  const login = async (name: string, password: string) =>
    (await unary(auth, auth.authenticate, { name, password })).token;
  const rangeReq = (key: string, serializable: boolean) =>
    etcdserverpb.RangeRequest.fromPartial({ key: Buffer.from(key), serializable });
  const memberPages = () =>
    Promise.all(stack.cluster.members.map(async (m) => (await fetch(`${m.clientUrl}/metrics`)).text()));
  /** Range and Put calls the members' gRPC servers have handled, all members together. */
  const memberCalls = async () => {
    const pages = await memberPages();
    return pages.reduce(
      (n, page) =>
        n +
        sum(page, "grpc_server_handled_total", 'grpc_method="Range"') +
        sum(page, "grpc_server_handled_total", 'grpc_method="Put"'),
      0,
    );
  };
  const gatewayPage = async () => (await fetch(`${stack.gatewayHttpUrl}/metrics`)).text();
  const cacheHits = async () => sum(await gatewayPage(), "etcd_gateway_range_cache_hits_total");
  /** Repeats `read` until the cache answers it (the cache's watch may still be starting). */
  const untilCached = async (read: () => Promise<unknown>, what: string) => {
    for (let i = 0; i < 40; i++) {
      const before = await cacheHits();
      await read();
      if ((await cacheHits()) > before) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`${what}: never answered from the cache`);
  };
  const refused = async () => sum(await gatewayPage(), "etcd_gateway_auth_tokens_refused_total");

  before(async () => {
    nats = await NatsServerProcess.start();
    stack = await AuthStack.start({
      authReplicas: 1,
      memberFlags: ["--bcrypt-cost=4", `--nats-url=${nats.url}`],
      authFlags: ["--rotation-interval=1", `--token-ttl=${TOKEN_TTL_S}`],
      gatewayFlags: [
        "--range-cache-user=root:rootpw",
        `--nats-url=${nats.url}`,
        "--refresh-interval-ms=60000",
      ],
    });
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["user", "add", "bob:bobpw"],
      ["role", "add", "a-rw"],
      ["role", "grant-permission", "a-rw", "readwrite", "/a/", "--prefix"],
      ["role", "add", "b-rw"],
      ["role", "grant-permission", "b-rw", "readwrite", "/b/", "--prefix"],
      ["user", "grant-role", "alice", "a-rw"],
      ["user", "grant-role", "bob", "b-rw"],
      ["auth", "enable"],
      ["--user=root:rootpw", "put", "/a/k", "alice-value"],
      ["--user=root:rootpw", "put", "/b/k", "bob-value"],
    ]) {
      const res = await ctl(...args);
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
    }
    auth = new etcdserverpb.AuthClient(stack.gatewayAddr, grpc.credentials.createInsecure());
    kv = new etcdserverpb.KVClient(stack.gatewayAddr, grpc.credentials.createInsecure());
    const member = stack.cluster.members[0]!.clientUrl.replace(/^http:\/\//, "");
    memberKv = new etcdserverpb.KVClient(member, grpc.credentials.createInsecure());
  });
  after(async () => {
    auth?.close();
    kv?.close();
    memberKv?.close();
    await stack?.close();
    await nats?.stop();
  });

  test("a forged, foreign-key, unknown-key or expired JWT is refused by the gateway as a member refuses it, and reaches no member", async () => {
    const token = await login("alice", "alicepw");
    const [header, claims, signature] = parts(token);
    const asRoot = b64(JSON.stringify({ ...claimsOf(token), username: "root" }));
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const signedByUs = (head: string) => {
      const input = `${head}.${claims}`;
      return `${input}.${b64(signJws("ES256", privateKey, input))}`;
    };
    const unknownKid = b64(
      JSON.stringify({ ...JSON.parse(Buffer.from(header, "base64url").toString()), kid: "not-published" }),
    );
    const bad = {
      forged: `${header}.${asRoot}.${signature}`,
      "signed with a key of ours": signedByUs(header),
      "naming an unpublished key": signedByUs(unknownKid),
    };
    for (const [what, t] of Object.entries(bad)) {
      const fromMember = await unary(memberKv, memberKv.range, rangeReq("/a/k", false), withToken(t)).then(
        () => assert.fail(`${what}: a member accepted it`),
        (err: grpc.ServiceError) => err,
      );
      assert.deepEqual(
        [fromMember.code, fromMember.details],
        [grpc.status.UNAUTHENTICATED, "etcdserver: invalid auth token"],
      );
      const callsBefore = await memberCalls();
      const refusedBefore = await refused();
      for (const request of [
        () => unary(kv, kv.range, rangeReq("/a/k", false), withToken(t)),
        () => unary(kv, kv.range, rangeReq("/a/k", true), withToken(t)),
        () =>
          unary(
            kv,
            kv.put,
            etcdserverpb.PutRequest.fromPartial({ key: Buffer.from("/a/k"), value: Buffer.from("x") }),
            withToken(t),
          ),
      ]) {
        await assert.rejects(request(), (err: grpc.ServiceError) => {
          assert.deepEqual([err.code, err.details], [fromMember.code, fromMember.details], what);
          return true;
        });
      }
      assert.equal(await memberCalls(), callsBefore, `${what}: no member handled a call`);
      assert.equal(await refused(), refusedBefore + 3, `${what}: the gateway refused all three`);
    }
    assert.ok(stack.gateway.output.text.includes("refused an invalid auth token"), "a log line per refusal");
    // The counters move when a call does reach a member: the check above could fail.
    const callsBefore = await memberCalls();
    await unary(kv, kv.range, rangeReq("/a/k", false), withToken(await login("alice", "alicepw")));
    assert.ok((await memberCalls()) > callsBefore);

    // Expired: a real token, kept past its `exp`.
    const old = await login("alice", "alicepw");
    await new Promise((r) => setTimeout(r, TOKEN_TTL_S * 1000 + 1_100));
    const callsBeforeExpired = await memberCalls();
    await assert.rejects(
      unary(kv, kv.range, rangeReq("/a/k", false), withToken(old)),
      (err: grpc.ServiceError) => {
        assert.deepEqual(
          [err.code, err.details],
          [grpc.status.UNAUTHENTICATED, "etcdserver: invalid auth token"],
        );
        return true;
      },
    );
    assert.equal(await memberCalls(), callsBeforeExpired);
    await assert.rejects(
      unary(memberKv, memberKv.range, rangeReq("/a/k", false), withToken(old)),
      /invalid auth token/,
    );
  });

  test("a watch opened with a bad token is refused by the gateway as a member refuses it, and opens no member stream", async () => {
    const token = await login("alice", "alicepw");
    const [, claims, signature] = parts(token);
    const forged = `${b64(JSON.stringify({ alg: "ES256", typ: "JWT", kid: "not-published" }))}.${claims}.${signature}`;
    const firstAnswer = (client: etcdserverpb.WatchClient) =>
      new Promise<etcdserverpb.WatchResponse>((resolve, reject) => {
        const stream = client.watch(withToken(forged));
        stream.once("data", (r: etcdserverpb.WatchResponse) => {
          resolve(r);
          stream.cancel();
        });
        stream.once("error", (err: grpc.ServiceError) => {
          if (err.code !== grpc.status.CANCELLED) reject(err);
        });
        stream.write(etcdserverpb.WatchRequest.fromPartial({ createRequest: { key: Buffer.from("/a/k") } }));
      });
    const watchStreams = async () =>
      (await memberPages()).reduce(
        (n, page) => n + sum(page, "grpc_server_started_total", 'grpc_method="Watch"'),
        0,
      );
    const member = new etcdserverpb.WatchClient(
      stack.cluster.members[0]!.clientUrl.replace(/^http:\/\//, ""),
      grpc.credentials.createInsecure(),
    );
    const gateway = new etcdserverpb.WatchClient(stack.gatewayAddr, grpc.credentials.createInsecure());
    try {
      const fromMember = await firstAnswer(member);
      const before = await watchStreams();
      const fromGateway = await firstAnswer(gateway);
      for (const r of [fromMember, fromGateway]) {
        assert.deepEqual(
          [r.watchId, r.created, r.canceled, r.cancelReason],
          [-1n, true, true, "etcdserver: invalid auth token"],
        );
      }
      assert.equal(await watchStreams(), before, "no member saw the gateway's watch stream");
    } finally {
      member.close();
      gateway.close();
    }
  });

  test("a Snapshot stream with a bad or expired JWT is refused by the gateway as a member refuses it, and reaches no member; keep-alives (and MemberList, Status) work whatever their token, as on a member", async () => {
    const memberAddr = stack.cluster.members[0]!.clientUrl.replace(/^http:\/\//, "");
    const gatewayMaintenance = new etcdserverpb.MaintenanceClient(
      stack.gatewayAddr,
      grpc.credentials.createInsecure(),
    );
    const memberMaintenance = new etcdserverpb.MaintenanceClient(
      memberAddr,
      grpc.credentials.createInsecure(),
    );
    const gatewayLease = new etcdserverpb.LeaseClient(stack.gatewayAddr, grpc.credentials.createInsecure());
    const memberLease = new etcdserverpb.LeaseClient(memberAddr, grpc.credentials.createInsecure());
    /** The stream's bytes, or its error as [code, details]. */
    const snapshot = (client: etcdserverpb.MaintenanceClient, md: grpc.Metadata) =>
      new Promise<{ bytes: number } | { error: [number, string] }>((resolve) => {
        let bytes = 0;
        const stream = client.snapshot({}, md);
        stream.on("data", (r: etcdserverpb.SnapshotResponse) => {
          bytes += r.blob.length;
        });
        stream.on("error", (err: grpc.ServiceError) => resolve({ error: [err.code, err.details] }));
        stream.on("end", () => resolve({ bytes }));
      });
    const snapshotsStarted = async () =>
      (await memberPages()).reduce(
        (n, page) => n + sum(page, "grpc_server_started_total", 'grpc_method="Snapshot"'),
        0,
      );
    /** One renewal on a fresh keep-alive stream: the TTL answered, or the stream's error. */
    const keepAliveOnce = (client: etcdserverpb.LeaseClient, id: bigint, md: grpc.Metadata) =>
      new Promise<bigint | string>((resolve) => {
        const stream = client.leaseKeepAlive(md);
        stream.once("data", (r: etcdserverpb.LeaseKeepAliveResponse) => {
          resolve(r.TTL);
          stream.end();
        });
        stream.on("error", (err: grpc.ServiceError) => resolve(`${err.code} ${err.details}`));
        stream.write({ ID: id });
      });
    try {
      const rootToken = await login("root", "rootpw");
      const aliceToken = await login("alice", "alicepw");
      const [header, claims] = parts(rootToken);
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const input = `${header}.${claims}`;
      const signedByUs = `${input}.${b64(signJws("ES256", privateKey, input))}`;
      const unknownKid = b64(
        JSON.stringify({ ...JSON.parse(Buffer.from(header, "base64url").toString()), kid: "not-published" }),
      );
      const bad: Record<string, string> = {
        "a root token's claims signed with a key of ours": signedByUs,
        "naming an unpublished key": `${unknownKid}.${claims}.${parts(signedByUs)[2]}`,
      };
      const check = async (what: string, token: string) => {
        const fromMember = await snapshot(memberMaintenance, withToken(token));
        assert.deepEqual(
          fromMember,
          // etcd 3.4's maintenance server words it as its auth package does, code 2.
          { error: [grpc.status.UNKNOWN, "auth: invalid auth token"] },
          `${what}: a member refuses it`,
        );
        const started = await snapshotsStarted();
        const refusedBefore = await refused();
        assert.deepEqual(await snapshot(gatewayMaintenance, withToken(token)), fromMember, what);
        assert.equal(await snapshotsStarted(), started, `${what}: no member saw the gateway's stream`);
        assert.equal(await refused(), refusedBefore + 1, `${what}: refused by the gateway`);
      };
      for (const [what, token] of Object.entries(bad)) await check(what, token);
      assert.match(
        stack.gateway.output.text,
        /"method":"Snapshot"[^\n]*refused an invalid auth token/,
        "the refusal's log line names the stream",
      );
      // Tokens a member judges, passed on: its answers come back unchanged.
      for (const [what, md, message] of [
        ["no token", new grpc.Metadata(), "auth: user name is empty"],
        ["a non-root token", withToken(aliceToken), "auth: permission denied"],
      ] as const) {
        const fromMember = await snapshot(memberMaintenance, md);
        assert.deepEqual(
          fromMember,
          { error: [grpc.status.UNKNOWN, message] },
          `${what}: a member refuses a snapshot`,
        );
        assert.deepEqual(await snapshot(gatewayMaintenance, md), fromMember, what);
      }
      // A valid root token keeps working, with a real client.
      const dir = mkdtempSync(join(tmpdir(), "gateway-snapshot-"));
      try {
        const saved = await ctl("--user=root:rootpw", "snapshot", "save", join(dir, "s.db"));
        assert.equal(saved.code, 0, saved.stderr);
        assert.match(saved.stdout, /Snapshot saved at/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }

      // Keep-alives: neither etcd 3.4 nor our members read a token on LeaseKeepAlive (Patroni
      // renews with an expired one), so the gateway refuses none either.
      const lease = await unary(
        gatewayLease,
        gatewayLease.leaseGrant,
        etcdserverpb.LeaseGrantRequest.fromPartial({ TTL: 60n }),
        withToken(aliceToken),
      );
      const kept = await ctl("--user=alice:alicepw", "lease", "keep-alive", "--once", lease.ID.toString(16));
      assert.equal(kept.code, 0, kept.stderr);
      assert.match(kept.stdout, /keepalived with TTL\(60\)/);
      const expiring = await login("alice", "alicepw");
      await new Promise((r) => setTimeout(r, TOKEN_TTL_S * 1000 + 1_100));
      for (const [what, md] of [
        ["no token", new grpc.Metadata()],
        ["an expired token", withToken(expiring)],
        ...Object.entries(bad).map(([w, t]) => [w, withToken(t)] as const),
      ] as const) {
        const fromMember = await keepAliveOnce(memberLease, lease.ID, md);
        assert.equal(fromMember, 60n, `${what}: a member renews`);
        assert.equal(await keepAliveOnce(gatewayLease, lease.ID, md), fromMember, what);
      }
      // Likewise the unary calls neither etcd 3.4 nor our members read a token on.
      const gatewayCluster = new etcdserverpb.ClusterClient(
        stack.gatewayAddr,
        grpc.credentials.createInsecure(),
      );
      const memberCluster = new etcdserverpb.ClusterClient(memberAddr, grpc.credentials.createInsecure());
      try {
        for (const [what, token] of [["an expired token", expiring], ...Object.entries(bad)] as const) {
          for (const client of [memberCluster, gatewayCluster]) {
            const listed = await unary(client, client.memberList, { linearizable: false }, withToken(token));
            assert.equal(listed.members.length, 3, `${what}: MemberList answered`);
          }
          const status = await unary(gatewayMaintenance, gatewayMaintenance.status, {}, withToken(token));
          assert.ok(status.version !== "", `${what}: Status answered`);
        }
      } finally {
        gatewayCluster.close();
        memberCluster.close();
      }
      // The expired token is refused on a Snapshot, by the gateway.
      await check("an expired token", expiring);
    } finally {
      gatewayMaintenance.close();
      memberMaintenance.close();
      gatewayLease.close();
      memberLease.close();
    }
  });

  test("the npm etcd3 client logs in again when the gateway refuses its expired token", async () => {
    const client = new Etcd3({
      hosts: `http://${stack.gatewayAddr}`,
      auth: { username: "alice", password: "alicepw" },
    });
    try {
      assert.equal(await client.get("/a/k").string(), "alice-value");
      const refusedBefore = await refused();
      await new Promise((r) => setTimeout(r, TOKEN_TTL_S * 1000 + 1_100));
      assert.equal(await client.get("/a/k").string(), "alice-value");
      assert.ok((await refused()) > refusedBefore, "its expired token was refused at the gateway");
    } finally {
      client.close();
    }
  });

  test("a user with a prefix permission is served from the cache and never sees another prefix", async () => {
    const get = (user: string, key: string, ...more: string[]) =>
      ctl(`--user=${user}`, "get", key, "--consistency=s", "--print-value-only", ...more);
    assert.equal((await get("alice:alicepw", "/a/k")).stdout, "alice-value\n", "first: a member checks");
    // Each etcdctl run logs in anew: the memo holds for every token at this auth revision.
    await untilCached(async () => {
      assert.equal((await get("alice:alicepw", "/a/k")).stdout, "alice-value\n");
    }, "alice's reads");
    // The answer is cached; bob may not read it, and neither may alice read /b/.
    for (const [user, key, more] of [
      ["bob:bobpw", "/a/k", []],
      ["alice:alicepw", "/b/k", []],
      ["alice:alicepw", "/", ["--prefix"]],
    ] as const) {
      const res = await get(user, key, ...more);
      assert.equal(lastLine(res.stderr), "etcdserver: permission denied", `${user} ${key}`);
      assert.equal(res.stdout, "");
    }
    assert.equal((await get("bob:bobpw", "/b/k")).stdout, "bob-value\n");
    const rootHits = await cacheHits();
    assert.equal((await get("root:rootpw", "/a/k")).stdout, "alice-value\n");
    assert.ok((await cacheHits()) > rootHits, "root reads everything from the cache");
    // A write invalidates the entry as without auth.
    assert.equal((await ctl("--user=alice:alicepw", "put", "/a/k", "alice-2")).code, 0);
    assert.equal((await get("alice:alicepw", "/a/k")).stdout, "alice-2\n");
  });

  test("a revoked role is refused on the next read of a running reader, never served from the cache", async () => {
    const reader = new Etcd3({
      hosts: `http://${stack.gatewayAddr}`,
      auth: { username: "bob", password: "bobpw" },
    });
    const token = await login("bob", "bobpw");
    try {
      // A running reader whose reads the cache answers.
      for (let i = 0; i < 5; i++)
        assert.equal(
          Buffer.from(
            (await unary(kv, kv.range, rangeReq("/b/k", true), withToken(token))).kvs[0]!.value,
          ).toString(),
          "bob-value",
        );
      assert.equal(await reader.get("/b/k").string(), "bob-value");
      await untilCached(
        () => unary(kv, kv.range, rangeReq("/b/k", true), withToken(token)),
        "before the revoke",
      );

      const revoke = await ctl("--user=root:rootpw", "role", "revoke-permission", "b-rw", "/b/", "--prefix");
      assert.equal(revoke.code, 0, revoke.stderr);
      const hitsAfter = await cacheHits();
      await assert.rejects(
        unary(kv, kv.range, rangeReq("/b/k", true), withToken(token)),
        /revision of auth store is old/,
      );
      await assert.rejects(reader.get("/b/k").string(), /permission denied|revision of auth store is old/);
      const fresh = await ctl("--user=bob:bobpw", "get", "/b/k", "--consistency=s");
      assert.equal(lastLine(fresh.stderr), "etcdserver: permission denied");
      assert.equal(await cacheHits(), hitsAfter, "nothing came from the cache after the revoke");
    } finally {
      reader.close();
    }
  });

  test("a permission change made at a member reaches the gateway over NATS: a token from before it is refused as soon as the event arrives", async () => {
    const token = await login("alice", "alicepw");
    await untilCached(
      () => unary(kv, kv.range, rangeReq("/a/k", true), withToken(token)),
      "before the change",
    );
    const member = stack.cluster.members[0]!.clientUrl;
    const revoke = await etcdctl(member, ["--user=root:rootpw", "user", "revoke-role", "alice", "a-rw"]);
    assert.equal(revoke.code, 0, revoke.stderr);
    // The event is on its way when etcdctl returns; the probe is a minute away.
    let refusal: grpc.ServiceError | undefined;
    for (let i = 0; i < 40 && refusal === undefined; i++) {
      refusal = await unary(kv, kv.range, rangeReq("/a/k", true), withToken(token)).then(
        () => undefined,
        (err: grpc.ServiceError) => err,
      );
      if (refusal === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(refusal?.details, "etcdserver: revision of auth store is old");
    const hitsAfter = await cacheHits();
    const fresh = await ctl("--user=alice:alicepw", "get", "/a/k", "--consistency=s");
    assert.equal(lastLine(fresh.stderr), "etcdserver: permission denied");
    await assert.rejects(
      unary(kv, kv.range, rangeReq("/a/k", true), withToken(token)),
      /revision of auth store is old/,
    );
    assert.equal(await cacheHits(), hitsAfter);
  });
});
