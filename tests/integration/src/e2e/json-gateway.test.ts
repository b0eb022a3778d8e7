// The gateway's JSON port (etcd's grpc-gateway paths) with plain fetch: base64 bytes, int64 as
// strings, proto field names, streaming watch as newline-delimited JSON.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { etcdctl, Stack } from "./stack.js";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => Buffer.from(s ?? "", "base64").toString();

interface Header {
  cluster_id: string;
  member_id: string;
  revision: string;
  raft_term: string;
}
interface Kv {
  key: string;
  value?: string;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease?: string;
}

describe("JSON gateway over HTTP", { timeout: 120_000 }, () => {
  let stack: Stack;
  let post: (path: string, body: unknown) => Promise<{ status: number; json: Record<string, unknown> }>;

  before(async () => {
    stack = await Stack.start();
    post = async (path, body) => {
      const res = await fetch(`${stack.jsonUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
  });
  after(async () => {
    await stack?.close();
  });

  test("the gRPC port answers JSON and /version over HTTP/1.1 too, as an etcd member's port does", async () => {
    const grpcPort = `http://${stack.gatewayAddr}`;
    const version = await fetch(`${grpcPort}/version`);
    assert.equal(version.status, 200);
    assert.deepEqual(await version.json(), { etcdserver: "3.4.23", etcdcluster: "3.4.0" });
    assert.deepEqual(await (await fetch(`${stack.jsonUrl}/version`)).json(), {
      etcdserver: "3.4.23",
      etcdcluster: "3.4.0",
    });
    const put = await fetch(`${grpcPort}/v3/kv/put`, {
      method: "POST",
      body: JSON.stringify({ key: b64("same-port"), value: b64("json") }),
    });
    assert.equal(put.status, 200);
    const range = await post("/v3/kv/range", { key: b64("same-port") });
    assert.equal(unb64((range.json.kvs as Kv[])[0]!.value), "json");
    // gRPC on that port still works after HTTP/1.1 connections.
    assert.equal(
      (await etcdctl(stack.gatewayAddr, ["get", "same-port", "--print-value-only"])).stdout,
      "json\n",
    );
  });

  test("/v3/kv/put and /v3/kv/range: base64 bytes, int64 as strings", async () => {
    const put = await post("/v3/kv/put", { key: b64("j/a"), value: b64("alpha") });
    assert.equal(put.status, 200);
    const putHeader = put.json.header as Header;
    assert.equal(typeof putHeader.revision, "string");
    assert.match(putHeader.revision, /^\d+$/);
    assert.match(putHeader.cluster_id, /^\d+$/);
    await post("/v3/kv/put", { key: b64("j/b"), value: b64("beta") });
    const range = await post("/v3/kv/range", { key: b64("j/"), range_end: b64("j0") });
    assert.equal(range.status, 200);
    assert.equal(range.json.count, "2");
    const kvs = range.json.kvs as Kv[];
    assert.deepEqual(
      kvs.map((kv) => [unb64(kv.key), unb64(kv.value)]),
      [
        ["j/a", "alpha"],
        ["j/b", "beta"],
      ],
    );
    assert.equal(kvs[0]?.create_revision, putHeader.revision);
    assert.equal(kvs[0]?.mod_revision, putHeader.revision);
    assert.equal(kvs[0]?.version, "1");
    assert.equal(BigInt((range.json.header as Header).revision) >= BigInt(putHeader.revision), true);
    // count_only: the count and no kvs (etcdctl 3.4 has no --count-only, so it is tested here).
    const counted = await post("/v3/kv/range", { key: b64("j/"), range_end: b64("j0"), count_only: true });
    assert.equal(counted.json.count, "2");
    assert.equal(counted.json.kvs, undefined);
    // lowerCamelCase input and limit: "more" is set.
    const limited = await post("/v3/kv/range", { key: b64("j/"), rangeEnd: b64("j0"), limit: "1" });
    assert.equal((limited.json.kvs as Kv[]).length, 1);
    assert.equal(limited.json.more, true);
    // A missing key: no kvs field, count omitted (zero values are omitted, as etcd's gateway does).
    const missing = await post("/v3/kv/range", { key: b64("j/none") });
    assert.equal(missing.json.kvs, undefined);
    assert.equal(missing.json.count, undefined);
  });

  test("/v3/kv/txn: compare, success and failure", async () => {
    await post("/v3/kv/put", { key: b64("jt/k"), value: b64("1") });
    const body = (expected: string) => ({
      compare: [{ key: b64("jt/k"), target: "VALUE", result: "EQUAL", value: b64(expected) }],
      success: [{ request_put: { key: b64("jt/k"), value: b64("2") } }],
      failure: [{ request_range: { key: b64("jt/k") } }],
    });
    const yes = await post("/v3/kv/txn", body("1"));
    assert.equal(yes.status, 200);
    assert.equal(yes.json.succeeded, true);
    assert.ok((yes.json.responses as { response_put?: unknown }[])[0]?.response_put);
    const no = await post("/v3/kv/txn", body("1"));
    assert.equal(no.json.succeeded, undefined);
    const rr = (no.json.responses as { response_range: { kvs: Kv[] } }[])[0]?.response_range;
    assert.equal(unb64(rr?.kvs[0]?.value), "2");
  });

  test("/v3/kv/deleterange with prev_kv", async () => {
    await post("/v3/kv/put", { key: b64("jd/1"), value: b64("x") });
    await post("/v3/kv/put", { key: b64("jd/2"), value: b64("y") });
    const del = await post("/v3/kv/deleterange", { key: b64("jd/"), range_end: b64("jd0"), prev_kv: true });
    assert.equal(del.status, 200);
    assert.equal(del.json.deleted, "2");
    assert.deepEqual(
      (del.json.prev_kvs as Kv[]).map((kv) => unb64(kv.value)),
      ["x", "y"],
    );
    const after = await post("/v3/kv/range", { key: b64("jd/"), range_end: b64("jd0") });
    assert.equal(after.json.kvs, undefined);
  });

  test("/v3/lease/grant, put with the lease, /v3/lease/timetolive, /v3/lease/revoke", async () => {
    const grant = await post("/v3/lease/grant", { TTL: "60" });
    assert.equal(grant.status, 200);
    const id = grant.json.ID as string;
    assert.match(id, /^\d+$/);
    assert.equal(grant.json.TTL, "60");
    const put = await post("/v3/kv/put", { key: b64("jl/k"), value: b64("v"), lease: id });
    assert.equal(put.status, 200);
    const ttl = await post("/v3/lease/timetolive", { ID: id, keys: true });
    assert.equal(ttl.status, 200);
    assert.equal(ttl.json.ID, id);
    assert.equal(ttl.json.grantedTTL, "60");
    assert.ok(Number(ttl.json.TTL) > 50 && Number(ttl.json.TTL) <= 60, String(ttl.json.TTL));
    assert.deepEqual((ttl.json.keys as string[]).map(unb64), ["jl/k"]);
    const range = await post("/v3/kv/range", { key: b64("jl/k") });
    assert.equal((range.json.kvs as Kv[])[0]?.lease, id);
    const revoke = await post("/v3/lease/revoke", { ID: id });
    assert.equal(revoke.status, 200);
    const gone = await post("/v3/kv/range", { key: b64("jl/k") });
    assert.equal(gone.json.kvs, undefined);
    const expired = await post("/v3/lease/timetolive", { ID: id });
    assert.equal(expired.json.TTL, "-1");
  });

  test("64-bit IDs print as decimal strings, exact: member IDs as etcdctl shows them, a 2^63-1 lease", async () => {
    const list = await post("/v3/cluster/member/list", {});
    assert.equal(list.status, 200);
    const ids = (list.json.members as { ID: string }[]).map((m) => m.ID);
    const header = list.json.header as Header;
    for (const id of [...ids, header.cluster_id, header.member_id]) assert.match(id, /^\d+$/);
    // etcdctl prints the same IDs in hex (%x of the uint64), read from the gateway's gRPC port.
    const fields = await etcdctl(stack.gatewayAddr, ["member", "list", "-w", "fields"]);
    const hexIds = [...fields.stdout.matchAll(/^"ID" : (\d+)$/gm)].map((m) => m[1]);
    assert.deepEqual([...ids].sort(), [...hexIds].sort());
    assert.ok(
      ids.some((id) => BigInt(id) > BigInt(Number.MAX_SAFE_INTEGER)),
      "etcd-style IDs use all 64 bits",
    );
    const big = "9223372036854775807";
    const grant = await post("/v3/lease/grant", { ID: big, TTL: "60" });
    assert.equal(grant.status, 200, JSON.stringify(grant.json));
    assert.equal(grant.json.ID, big);
    const ttl = await post("/v3/lease/timetolive", { ID: big });
    assert.equal(ttl.json.ID, big);
    assert.equal((await post("/v3/lease/revoke", { ID: big })).status, 200);
  });

  test("/v3/watch streams newline-delimited results", async () => {
    const controller = new AbortController();
    const res = await fetch(`${stack.jsonUrl}/v3/watch`, {
      method: "POST",
      body: JSON.stringify({ create_request: { key: b64("jw/"), range_end: b64("jw0") } }),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body?.getReader();
    assert.ok(reader);
    const decoder = new TextDecoder();
    let buffered = "";
    const lines: { result?: { created?: boolean; events?: { type?: string; kv: Kv }[] } }[] = [];
    const readLines = async (n: number) => {
      const deadline = Date.now() + 10_000;
      while (lines.length < n && Date.now() < deadline) {
        const chunk = await Promise.race([
          reader.read(),
          new Promise<{ done: true; value: undefined }>((r) =>
            setTimeout(() => r({ done: true, value: undefined }), Math.max(0, deadline - Date.now())),
          ),
        ]);
        if (chunk.done) break;
        buffered += decoder.decode(chunk.value, { stream: true });
        let nl = buffered.indexOf("\n");
        while (nl >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line !== "") lines.push(JSON.parse(line));
          nl = buffered.indexOf("\n");
        }
      }
    };
    try {
      await readLines(1);
      assert.equal(lines[0]?.result?.created, true, JSON.stringify(lines));
      await post("/v3/kv/put", { key: b64("jw/x"), value: b64("1") });
      await post("/v3/kv/deleterange", { key: b64("jw/x") });
      await readLines(3);
      const events = lines.slice(1).flatMap((l) => l.result?.events ?? []);
      assert.ok(events.length >= 2, JSON.stringify(lines));
      // PUT is the enum's zero value, so etcd's gateway omits the type field.
      assert.equal(events[0]?.type, undefined);
      assert.equal(unb64(events[0]?.kv.key), "jw/x");
      assert.equal(unb64(events[0]?.kv.value), "1");
      assert.equal(events[1]?.type, "DELETE");
      assert.equal(unb64(events[1]?.kv.key), "jw/x");
    } finally {
      controller.abort();
      await reader.cancel().catch(() => undefined);
    }
  });

  test("a malformed body answers 400 with a JSON error", async () => {
    const bad = await post("/v3/kv/put", "{not json");
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, 3);
    assert.equal(typeof bad.json.error, "string");
    assert.equal(typeof bad.json.message, "string");
    const wrongType = await post("/v3/kv/range", { key: 42 });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.json.code, 3);
  });

  test("member errors keep etcd's message and map to HTTP status", async () => {
    const empty = await post("/v3/kv/put", { value: b64("x") });
    assert.equal(empty.status, 400);
    assert.equal(empty.json.error, "etcdserver: key is not provided");
    assert.equal(empty.json.code, 3);
    const ops = Array.from({ length: 129 }, (_, i) => ({
      request_put: { key: b64(`big/${i}`), value: b64("v") },
    }));
    const tooMany = await post("/v3/kv/txn", { success: ops });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.json.error, "etcdserver: too many operations in txn request");
    assert.equal(tooMany.json.code, 3);
    const max = await post("/v3/kv/txn", { success: ops.slice(0, 128) });
    assert.equal(max.status, 200);
    assert.equal(max.json.succeeded, true);
    const future = await post("/v3/kv/range", { key: b64("x"), revision: "100000000" });
    assert.equal(future.status, 400);
    assert.equal(future.json.error, "etcdserver: mvcc: required revision is a future revision");
    assert.equal(future.json.code, 11);
  });

  test("/v3/maintenance/status and /health", async () => {
    const status = await post("/v3/maintenance/status", {});
    assert.equal(status.status, 200);
    assert.equal(status.json.version, "3.4.23");
    const header = status.json.header as Header;
    // Answered by the leader (the gateway is no member).
    assert.equal(status.json.leader, header.member_id);
    assert.match(status.json.raftIndex as string, /^\d+$/);
    assert.match(status.json.dbSize as string, /^\d+$/);
    const health = await fetch(`${stack.jsonUrl}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { health: "true" });
  });
});
