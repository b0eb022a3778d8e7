// End to end through the gateway against a real 3-member etcd 3.4: etcdctl, the npm etcd3
// client, raw gRPC streams and the JSON gateway.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { etcdserverpb, healthpb, ServingStatus } from "@etcd-ts/api";
import { addressOf, type LocalCluster } from "@etcd-ts/raft-node";
import grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import pino from "pino";
import { Gateway } from "./gateway.js";
import { ETCDCTL_BINARY, etcdMissingReason, runEtcdctl, sleep, startEtcd } from "./testing/etcd-cluster.js";
import { memberMetric, RawEtcdClient } from "./testing/raw-client.js";
import { decodeKeepAliveResponse, encodeKeepAliveRequest } from "./wire/etcd-messages.js";

const skip = etcdMissingReason();

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

describe("gateway against etcd 3.4", { skip }, () => {
  let cluster: LocalCluster;
  let gateway: Gateway;
  let grpcAddr: string;
  let jsonUrl: string;

  before(async () => {
    cluster = await startEtcd();
    gateway = await Gateway.start({
      endpoints: [cluster.addresses[0]!],
      listenAddr: "127.0.0.1:0",
      jsonListenAddr: "127.0.0.1:0",
      refreshIntervalMs: 1_000,
      keepAliveReuseMs: 500,
      logger: pino({ level: "silent" }),
    });
    grpcAddr = `127.0.0.1:${gateway.grpcPort}`;
    jsonUrl = `http://127.0.0.1:${gateway.jsonPort}`;
  });

  after(async () => {
    await gateway?.stop(1_000);
    await cluster?.close();
  });

  const ctl = (...args: string[]) => runEtcdctl([grpcAddr], args);

  describe("etcdctl", () => {
    it("learns every member from one seed and knows the leader", async () => {
      const snapshot = gateway.tracker.snapshot();
      assert.equal(snapshot.members.length, 3);
      assert.ok(snapshot.members.every((m) => m.healthy));
      const { member: leader } = await cluster.agreedLeader();
      assert.equal(snapshot.members.find((m) => m.id === snapshot.leaderId)?.address, addressOf(leader));
    });

    it("puts, gets (linearizable and serializable), deletes", async () => {
      assert.equal((await ctl("put", "ctl/a", "1")).stdout, "OK\n");
      assert.equal((await ctl("put", "ctl/b", "2")).stdout, "OK\n");
      assert.equal((await ctl("get", "ctl/", "--prefix")).stdout, "ctl/a\n1\nctl/b\n2\n");
      assert.equal((await ctl("get", "ctl/a", "--consistency=s", "--print-value-only")).stdout, "1\n");
      assert.equal((await ctl("del", "ctl/", "--prefix")).stdout, "2\n");
      assert.equal((await ctl("get", "ctl/", "--prefix")).stdout, "");
    });

    it("runs txns both ways and relays etcd's errors unchanged", async () => {
      await ctl("put", "ctl/t", "x");
      const txn = await runEtcdctl(
        [grpcAddr],
        ["txn"],
        5_000,
        'value("ctl/t") = "x"\n\nput ctl/t y\n\nput ctl/t z\n\n',
      );
      assert.equal(txn.stdout, "SUCCESS\n\nOK\n");
      assert.equal((await ctl("get", "ctl/t", "--print-value-only")).stdout, "y\n");
      const future = await ctl("get", "ctl/t", "--rev=100000");
      assert.notEqual(future.code, 0);
      assert.match(future.stderr, /etcdserver: mvcc: required revision is a future revision/);
    });

    it("grants, keeps alive, inspects and revokes leases", async () => {
      const grant = await ctl("lease", "grant", "30");
      const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
      assert.ok(id, grant.stdout + grant.stderr);
      assert.equal((await ctl("put", "ctl/leased", "v", `--lease=${id}`)).stdout, "OK\n");
      const once = await ctl("lease", "keep-alive", "--once", id);
      assert.match(once.stdout, new RegExp(`lease ${id} keepalived with TTL\\(30\\)`));
      assert.match(
        (await ctl("lease", "timetolive", id, "--keys")).stdout,
        /attached keys\(\[ctl\/leased\]\)/,
      );
      assert.match((await ctl("lease", "revoke", id)).stdout, /revoked/);
      assert.equal((await ctl("get", "ctl/leased")).stdout, "");
    });

    it("answers endpoint status as the leader, or as a member named in metadata", async () => {
      const status = await ctl("endpoint", "status", "-w", "json");
      const parsed = JSON.parse(status.stdout) as {
        Status: { leader: number; header: { member_id: number } };
      }[];
      assert.equal(parsed[0]!.Status.leader, parsed[0]!.Status.header.member_id);
      const list = await ctl("member", "list");
      assert.equal(list.stdout.trim().split("\n").length, 3);
    });
  });

  describe("bytes etcd's Unmarshal refuses", () => {
    const pass = (b: Buffer) => b;
    const K = [0x0a, 1, 0x6b]; // key = "k"
    /** Status code and message of one raw unary call (or the first answer of a bidi stream). */
    const raw = (address: string, path: string, body: number[], bidi = false) =>
      new Promise<[number, string]>((resolve) => {
        const client = new grpc.Client(address, grpc.credentials.createInsecure());
        const deadline = Date.now() + 5_000;
        const done = (err: grpc.ServiceError | null) => {
          client.close();
          resolve([err?.code ?? 0, err?.details ?? ""]);
        };
        if (!bidi) {
          client.makeUnaryRequest(path, pass, pass, Buffer.from(body), { deadline }, (err) => done(err));
          return;
        }
        const call = client.makeBidiStreamRequest(path, pass, pass, { deadline });
        call.on("data", () => {});
        call.on("error", (err: grpc.ServiceError) => done(err));
        call.on("end", () => done(null));
        call.write(Buffer.from(body));
      });

    it("refuses them before forwarding or answering from its cache, in the member's words", async () => {
      await ctl("put", "k", "v");
      const cases: [string, number[], boolean][] = [
        // A serializable range (the gateway's cache path) with a wrongly typed field.
        ["/etcdserverpb.KV/Range", [...K, 0x38, 1, 0x10, 1], false],
        ["/etcdserverpb.KV/Put", [...K, 0x10, 1], false],
        ["/etcdserverpb.KV/Txn", [0x12, 4, 0x12, 2, 0x08, 1], false],
        ["/etcdserverpb.Lease/LeaseGrant", [0x08, 0x0a, 0x12, 0], false],
        ["/etcdserverpb.KV/Range", [0x00, 1], false],
        ["/etcdserverpb.Watch/Watch", [0x0a, 2, 0x08, 0], true],
        ["/etcdserverpb.Lease/LeaseKeepAlive", [0x08], true],
      ];
      for (const [method, body, bidi] of cases) {
        const viaGateway = await raw(grpcAddr, method, body, bidi);
        const direct = await raw(cluster.addresses[0]!, method, body, bidi);
        assert.deepEqual(viaGateway, direct, `${method} ${body}`);
        assert.equal(direct[0], grpc.status.INTERNAL, `${method} ${body}: ${direct[1]}`);
      }
      assert.equal((await ctl("get", "k", "--print-value-only")).stdout, "v\n");
    });
  });

  describe("streams and long calls", () => {
    it("streams a snapshot from a member through the gateway", async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), "gw-snap-"));
      try {
        const file = path.join(dir, "snap.db");
        const save = await ctl("snapshot", "save", file);
        assert.equal(save.code, 0, save.stderr);
        const status = await runEtcdctl([grpcAddr], ["snapshot", "status", file, "-w", "json"]);
        assert.ok((JSON.parse(status.stdout) as { totalKey: number }).totalKey > 0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("holds a lock through the gateway", async () => {
      const lock = await ctl("lock", "gw-lock", "echo", "locked");
      assert.equal(lock.stdout, "locked\n");
    });

    it("tells a watch that starts below the compaction revision that it was compacted", async () => {
      const put = await ctl("put", "compact/k", "v", "-w", "json");
      const rev = (JSON.parse(put.stdout) as { header: { revision: number } }).header.revision;
      assert.equal((await ctl("compact", String(rev))).code, 0);
      const watch = await ctl("watch", "compact/k", "--rev=1");
      assert.match(watch.stdout + watch.stderr, /required revision has been compacted/);
    });
  });

  describe("watch coalescing", () => {
    it("serves identical etcdctl watches from one upstream watch and delivers to both", async () => {
      const membersBefore = await memberMetric(cluster.addresses, "etcd_debugging_mvcc_watcher_total");
      const watchers: { proc: ChildProcess; out: string }[] = [];
      for (let i = 0; i < 2; i++) {
        const proc = spawn(ETCDCTL_BINARY, [`--endpoints=${grpcAddr}`, "watch", "coalesce/key"], {
          env: { ...process.env, ETCDCTL_API: "3" },
        });
        const w = { proc, out: "" };
        proc.stdout!.on("data", (d: Buffer) => {
          w.out += d.toString();
        });
        watchers.push(w);
      }
      // The serializable Range cache holds a watch of its own once a serializable get came by.
      const cacheWatches = gateway.rangeCache?.watching ? 1 : 0;
      try {
        await waitFor("two client watches", () => gateway.watches.stats().clientWatches === 2);
        assert.equal(gateway.watches.stats().upstreamWatches, 1 + cacheWatches);
        await waitFor("one more watcher on the members", async () => {
          return (
            (await memberMetric(cluster.addresses, "etcd_debugging_mvcc_watcher_total")) === membersBefore + 1
          );
        });
        await ctl("put", "coalesce/key", "one");
        await ctl("put", "coalesce/key", "two");
        const expected = "PUT\ncoalesce/key\none\nPUT\ncoalesce/key\ntwo\n";
        await waitFor("both watchers to see both puts", () => watchers.every((w) => w.out === expected));
      } finally {
        for (const w of watchers) w.proc.kill("SIGKILL");
      }
      await waitFor(
        "the upstream watch to go with its last client",
        () => gateway.watches.stats().upstreamWatches === cacheWatches,
      );
      await waitFor("the members to drop the watcher", async () => {
        return (await memberMetric(cluster.addresses, "etcd_debugging_mvcc_watcher_total")) === membersBefore;
      });
    });

    it("works for the npm etcd3 client, prev_kv and a start revision included", async () => {
      const client = new Etcd3({ hosts: grpcAddr });
      try {
        const put = await client.put("etcd3/w").value("v1").exec();
        const startRev = Number(put.header.revision);
        const seen: string[] = [];
        const watcher = await client
          .watch()
          .key("etcd3/w")
          .withPreviousKV()
          .startRevision(String(startRev))
          .create();
        watcher.on("put", (kv, prev) => seen.push(`${kv.value.toString()}<-${prev?.value.toString() ?? ""}`));
        await client.put("etcd3/w").value("v2");
        await waitFor("history then the live event", () => seen.length === 2);
        assert.deepEqual(seen, ["v1<-", "v2<-v1"]);
        await watcher.cancel();
        assert.equal(await client.get("etcd3/w").string(), "v2");
      } finally {
        client.close();
      }
    });
  });

  describe("lease keep-alive coalescing", () => {
    it("answers keep-alives from many streams for one lease with one upstream keep-alive", async () => {
      const client = new Etcd3({ hosts: grpcAddr });
      const lease = client.lease(20, { autoKeepAlive: false });
      const leaseId = BigInt(await lease.grant());
      const raw = new RawEtcdClient(grpcAddr);
      const streams = Array.from({ length: 5 }, () => raw.bidi("/etcdserverpb.Lease/LeaseKeepAlive"));
      try {
        const sentBefore = gateway.keepAlives.stats.sentUpstream;
        const answers = streams.map(
          (s) =>
            new Promise<{ id: bigint; ttl: number }>((resolve) => {
              s.once("data", (d: Buffer) => resolve(decodeKeepAliveResponse(d)));
            }),
        );
        for (const s of streams) s.write(encodeKeepAliveRequest(leaseId));
        const got = await Promise.all(answers);
        for (const a of got) {
          assert.equal(a.id, leaseId);
          assert.ok(a.ttl >= 19 && a.ttl <= 20, `ttl ${a.ttl}`);
        }
        assert.equal(gateway.keepAlives.stats.sentUpstream - sentBefore, 1);
        // The etcd3 client's own keep-alive goes through the same hub.
        const res = await lease.keepaliveOnce();
        assert.equal(BigInt(res.ID), leaseId);
      } finally {
        for (const s of streams) s.end();
        raw.close();
        await lease.revoke();
        client.close();
      }
    });
  });

  describe("JSON gateway", () => {
    const post = (path: string, body: unknown) =>
      fetch(`${jsonUrl}${path}`, {
        method: "POST",
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
    const b64 = (s: string) => Buffer.from(s).toString("base64");

    it("puts and ranges with etcd's JSON conventions", async () => {
      const put = await post("/v3/kv/put", { key: b64("json/a"), value: b64("1") });
      assert.equal(put.status, 200);
      const putBody = (await put.json()) as { header: { cluster_id: string; revision: string } };
      assert.match(putBody.header.cluster_id, /^\d+$/);
      assert.equal(
        BigInt(putBody.header.cluster_id),
        gateway.tracker.clusterId,
        "64-bit IDs survive exactly",
      );
      const range = await post("/v3beta/kv/range", {
        key: b64("json/"),
        rangeEnd: b64("json0"),
        serializable: true,
      });
      const body = (await range.json()) as {
        kvs: { key: string; value: string; version: string }[];
        count: string;
      };
      assert.equal(body.count, "1");
      assert.deepEqual(
        body.kvs.map((kv) => [
          Buffer.from(kv.key, "base64").toString(),
          Buffer.from(kv.value, "base64").toString(),
          kv.version,
        ]),
        [["json/a", "1", "1"]],
      );
    });

    it("runs a txn", async () => {
      const res = await post("/v3/kv/txn", {
        compare: [{ key: b64("json/a"), result: "EQUAL", target: "VALUE", value: b64("1") }],
        success: [{ request_put: { key: b64("json/a"), value: b64("2") } }],
      });
      const body = (await res.json()) as { succeeded: boolean; responses: { response_put: unknown }[] };
      assert.equal(body.succeeded, true);
      assert.ok(body.responses[0]!.response_put);
    });

    it("answers a malformed body with 400 and grpc-gateway's error body", async () => {
      const res = await post("/v3/kv/range", '{"key":"Zm9v",');
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { error: "unexpected EOF", message: "unexpected EOF", code: 3 });
      const bad = await post("/v3/kv/range", { key: "Zm9v", limit: 1.5 });
      assert.equal(bad.status, 400);
    });

    it("maps member errors to HTTP statuses", async () => {
      const res = await post("/v3/kv/range", {});
      assert.equal(res.status, 400);
      assert.equal(
        await res.text(),
        '{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}',
      );
      const missing = await post("/v3/lease/revoke", { ID: "1" });
      assert.equal(missing.status, 404);
    });

    it("streams watch events as newline-delimited results", async () => {
      const abort = new AbortController();
      const res = await fetch(`${jsonUrl}/v3/watch`, {
        method: "POST",
        body: JSON.stringify({ create_request: { key: b64("json/w") } }),
        signal: abort.signal,
      });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      let text = "";
      const lines = async (n: number) => {
        while (text.split("\n").length - 1 < n) {
          const { value, done } = await reader.read();
          if (done) break;
          text += Buffer.from(value).toString();
        }
        return text
          .split("\n")
          .slice(0, n)
          .map((l) => JSON.parse(l) as { result: Record<string, unknown> });
      };
      const [created] = await lines(1);
      assert.equal(created!.result.created, true);
      await post("/v3/kv/put", { key: b64("json/w"), value: b64("x") });
      const [, event] = await lines(2);
      const events = event!.result.events as { kv: { key: string; value: string } }[];
      assert.equal(Buffer.from(events[0]!.kv.value, "base64").toString(), "x");
      abort.abort();
      await waitFor("the JSON watch to be dropped", () => gateway.watches.stats().clientWatches === 0);
    });

    it("keeps a lease alive over JSON and serves /health and /metrics", async () => {
      const grant = (await (await post("/v3/lease/grant", { TTL: 15 })).json()) as { ID: string };
      const ka = await post("/v3/lease/keepalive", { ID: grant.ID });
      const lines = (await ka.text()).trim().split("\n");
      assert.equal(lines.length, 1);
      const result = (JSON.parse(lines[0]!) as { result: { ID: string; TTL: string } }).result;
      assert.equal(result.ID, grant.ID);
      assert.equal(result.TTL, "15");
      const health = await fetch(`${jsonUrl}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { health: "true" });
      const metrics = await (await fetch(`${jsonUrl}/metrics`)).text();
      assert.match(metrics, /etcd_gateway_requests_total\{method="Put",member="[0-9a-f]+",code="OK"\} \d+/);
      assert.match(metrics, /etcd_gateway_lease_keepalives_received_total \d+/);
    });
  });

  describe("auth (runs last: it enables auth cluster-wide)", () => {
    it("forwards tokens, and never shares a watch between users", async () => {
      assert.equal((await ctl("user", "add", "root:rootpw")).code, 0);
      assert.equal((await ctl("user", "add", "alice:alicepw")).code, 0);
      assert.equal((await ctl("role", "add", "reader")).code, 0);
      assert.equal((await ctl("role", "grant-permission", "reader", "read", "auth/k")).code, 0);
      assert.equal((await ctl("user", "grant-role", "alice", "reader")).code, 0);
      assert.equal((await ctl("auth", "enable")).code, 0);
      try {
        const denied = await ctl("put", "auth/k", "v");
        assert.notEqual(denied.code, 0);
        assert.equal((await ctl("--user=root:rootpw", "put", "auth/k", "v")).stdout, "OK\n");
        assert.equal(
          (await ctl("--user=alice:alicepw", "get", "auth/k", "--print-value-only")).stdout,
          "v\n",
        );
        const aliceWrite = await ctl("--user=alice:alicepw", "put", "auth/k", "w");
        assert.match(aliceWrite.stderr, /etcdserver: permission denied/);

        const before = gateway.watches.stats().upstreamWatches;
        const watchers = ["root:rootpw", "alice:alicepw"].map((user) =>
          spawn(ETCDCTL_BINARY, [`--endpoints=${grpcAddr}`, `--user=${user}`, "watch", "auth/k"], {
            env: { ...process.env, ETCDCTL_API: "3" },
          }),
        );
        try {
          await waitFor("both users' watches", () => gateway.watches.stats().upstreamWatches === before + 2);
        } finally {
          for (const w of watchers) w.kill("SIGKILL");
        }
      } finally {
        assert.equal((await ctl("--user=root:rootpw", "auth", "disable")).code, 0);
      }
    });
  });

  describe("shutdown", () => {
    it("ends open watch and keep-alive streams with UNAVAILABLE and closes its port", async () => {
      const second = await Gateway.start({
        endpoints: cluster.addresses,
        listenAddr: "127.0.0.1:0",
        refreshIntervalMs: 1_000,
        keepAliveReuseMs: 0,
        logger: pino({ level: "silent" }),
      });
      const raw = new RawEtcdClient(`127.0.0.1:${second.grpcPort}`);
      try {
        const ended = ["/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"].map((path) => {
          const stream = raw.bidi(path);
          stream.on("data", () => {});
          stream.on("error", () => {});
          return new Promise<number>((resolve) =>
            stream.on("status", (st: { code: number }) => resolve(st.code)),
          );
        });
        // Streams open lazily on the first message; give the handlers a moment to register.
        await sleep(300);
        await second.stop(1_000);
        assert.deepEqual(await Promise.all(ended), [14, 14]);
        const refused = await new Promise<boolean>((resolve) => {
          const socket = net.connect(second.grpcPort, "127.0.0.1");
          socket.once("connect", () => {
            socket.destroy();
            resolve(false);
          });
          socket.once("error", () => resolve(true));
        });
        assert.ok(refused, "nothing listens any more");
      } finally {
        raw.close();
      }
    });
  });

  describe("shutdown delay", () => {
    it("answers /readyz 503 and gRPC health NOT_SERVING, and still serves calls until the delay ends, then closes", async () => {
      const third = await Gateway.start({
        endpoints: cluster.addresses,
        listenAddr: "127.0.0.1:0",
        jsonListenAddr: "127.0.0.1:0",
        refreshIntervalMs: 1_000,
        keepAliveReuseMs: 0,
        shutdownDelayMs: 1_500,
        logger: pino({ level: "silent" }),
      });
      const readyz = () => fetch(`http://127.0.0.1:${third.jsonPort}/readyz`);
      // grpc.health.v1 (grpc_health_probe, Kubernetes' gRPC probes, Envoy): the same readiness.
      const health = new healthpb.HealthClient(
        `127.0.0.1:${third.grpcPort}`,
        grpc.credentials.createInsecure(),
      );
      const check = (service: string) =>
        new Promise<string>((resolve) =>
          health.check({ service }, (err, res) =>
            resolve(err ? `${err.code} ${err.details}` : (ServingStatus[res.status] ?? "?")),
          ),
        );
      const watched: string[] = [];
      const watch = health.watch({ service: "" });
      watch.on("data", (res: healthpb.HealthCheckResponse) => watched.push(ServingStatus[res.status] ?? "?"));
      const watchEnded = new Promise<void>((resolve) => watch.on("error", () => resolve()));
      let stopped: Promise<void> | undefined;
      try {
        const before = await readyz();
        assert.equal(before.status, 200);
        assert.equal(await before.text(), "ok");
        assert.equal(await check(""), "SERVING");
        assert.equal(await check("etcdserverpb.KV"), "5 unknown service");
        const startedAt = Date.now();
        stopped = third.stop(1_000);
        const during = await readyz();
        assert.equal(during.status, 503);
        assert.equal(await during.text(), "shutting down");
        assert.equal(await check(""), "NOT_SERVING");
        // A new connection during the delay is served like any other.
        const raw = new RawEtcdClient(`127.0.0.1:${third.grpcPort}`);
        try {
          await raw.put("delay/k", "v");
        } finally {
          raw.close();
        }
        await stopped;
        assert.ok(Date.now() - startedAt >= 1_500, "the delay is waited out");
        await watchEnded;
        assert.deepEqual(watched, ["SERVING", "NOT_SERVING"]);
      } finally {
        watch.cancel();
        health.close();
        await (stopped ?? third.stop(0));
      }
    });
  });

  describe("raw gRPC", () => {
    it("relays a serializable range to the nearest member and a linearizable one anywhere", async () => {
      const raw = new RawEtcdClient(grpcAddr);
      try {
        await raw.put("raw/k", "v");
        for (const serializable of [false, true]) {
          const res = await raw.range("raw/k", serializable);
          const kv = etcdserverpb.RangeResponse.decode(
            // Drop the header (64-bit IDs) and decode the rest with the generated codec.
            res.subarray(2 + res[1]!),
          ).kvs[0];
          assert.equal(kv?.value.toString(), "v");
        }
      } finally {
        raw.close();
      }
    });
  });
});
