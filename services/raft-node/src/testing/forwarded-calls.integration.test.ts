// The member's Forward/Calls (the api-gateway's many calls over one stream) on a real member:
// each frame runs the member's own handler, so validation errors, auth from the frame's token,
// deadlines, cancellation and grpc_server_handled_total are those of a direct call.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import {
  type CallResult,
  decodeCallResult,
  encodeCallFrame,
  etcdserverpb,
  FORWARD_CALLS_PATH,
  v3lockpb,
} from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { LocalCluster } from "./local-cluster.js";

/** One Forward/Calls stream: frames out, results in by id. */
class CallsStream {
  private readonly results = new Map<number, CallResult>();
  private inbox = Buffer.alloc(0);
  private nextId = 1;
  private readonly stream: http2.ClientHttp2Stream;

  constructor(session: http2.ClientHttp2Session) {
    this.stream = session.request({
      ":method": "POST",
      ":path": FORWARD_CALLS_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    this.stream.on("data", (chunk: Buffer) => {
      this.inbox = Buffer.concat([this.inbox, chunk]);
      while (this.inbox.length >= 5 && this.inbox.length >= 5 + this.inbox.readUInt32BE(1)) {
        const result = decodeCallResult(this.inbox.subarray(5, 5 + this.inbox.readUInt32BE(1)));
        this.results.set(result.id, result);
        this.inbox = this.inbox.subarray(5 + this.inbox.readUInt32BE(1));
      }
    });
  }

  /** Sends a call; returns its id. */
  send(method: string, request: Uint8Array, options: { token?: string; timeoutMs?: number } = {}): number {
    const id = this.nextId++;
    const metadata = new grpc.Metadata();
    if (options.token !== undefined) metadata.set("token", options.token);
    this.write(
      encodeCallFrame({ id, method, request, metadata, timeoutMs: options.timeoutMs ?? 0, cancel: false }),
    );
    return id;
  }

  cancel(id: number): void {
    this.write(
      encodeCallFrame({
        id,
        method: "",
        request: new Uint8Array(),
        metadata: undefined,
        timeoutMs: 0,
        cancel: true,
      }),
    );
  }

  has(id: number): boolean {
    return this.results.has(id);
  }

  async result(id: number): Promise<CallResult> {
    for (let i = 0; i < 500; i++) {
      const found = this.results.get(id);
      if (found !== undefined) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no result for call ${id} in 10 s`);
  }

  close(): void {
    this.stream.close();
  }

  private write(frame: Buffer): void {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(frame.length, 1);
    this.stream.write(Buffer.concat([head, frame]));
  }
}

const put = (key: string, value = "v") =>
  etcdserverpb.PutRequest.encode(
    etcdserverpb.PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }),
  ).finish();

describe("Forward/Calls on a member", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let cluster: LocalCluster;
  let endpoint: string;
  let session: http2.ClientHttp2Session;
  const metrics = async () => (await fetch(`http://${endpoint}/metrics`)).text();
  const handled = (text: string, method: string, code: string) =>
    Number(
      new RegExp(
        `grpc_server_handled_total\\{grpc_code="${code}",grpc_method="${method}",grpc_service="[^"]+",grpc_type="unary"\\} (\\d+)`,
      ).exec(text)?.[1] ?? 0,
    );

  before(async () => {
    cluster = await LocalCluster.start({ size: 1, flags: ["--bcrypt-cost=4"] });
    endpoint = cluster.members[0]!.clientUrl.replace("http://", "");
    session = http2.connect(`http://${endpoint}`);
    session.on("error", () => {}); // the member stops first in after()
  });

  after(async () => {
    session?.close();
    await cluster?.close();
  });

  it("runs each call through the member's handlers: applied, validated, counted", async () => {
    const calls = new CallsStream(session);
    const before = await metrics();
    const ids = Array.from({ length: 10 }, (_, i) =>
      calls.send("/etcdserverpb.KV/Put", put(`/f/${i}`, `v${i}`)),
    );
    const empty = calls.send("/etcdserverpb.KV/Put", put(""));
    const results = await Promise.all(ids.map((id) => calls.result(id)));
    for (const r of results) {
      assert.equal(r.code, grpc.status.OK, r.message);
      assert.ok(Number(etcdserverpb.PutResponse.decode(r.response!).header!.revision) > 1);
    }
    const refused = await calls.result(empty);
    assert.deepEqual(
      [refused.code, refused.message],
      [grpc.status.INVALID_ARGUMENT, "etcdserver: key is not provided"],
    );
    assert.equal(await etcdctl(endpoint, ["get", "/f/7", "--print-value-only"]), "v7\n");
    const after = await metrics();
    assert.equal(handled(after, "Put", "OK") - handled(before, "Put", "OK"), 10);
    assert.equal(handled(after, "Put", "InvalidArgument") - handled(before, "Put", "InvalidArgument"), 1);
    const unknown = await calls.result(calls.send("/etcdserverpb.KV/Nope", new Uint8Array()));
    assert.deepEqual(
      [unknown.code, unknown.message],
      [grpc.status.UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.KV"],
    );
    calls.close();
  });

  it("ends a blocked call at its deadline, and a cancel frame abandons one", async () => {
    const calls = new CallsStream(session);
    // Two owners: the same lease would hold the same lock key, and be let in at once.
    const lockFor = async () => {
      const grant = await calls.result(
        calls.send(
          "/etcdserverpb.Lease/LeaseGrant",
          etcdserverpb.LeaseGrantRequest.encode(
            etcdserverpb.LeaseGrantRequest.fromPartial({ TTL: 30n }),
          ).finish(),
        ),
      );
      const lease = etcdserverpb.LeaseGrantResponse.decode(grant.response!).ID;
      return v3lockpb.LockRequest.encode(
        v3lockpb.LockRequest.fromPartial({ name: Buffer.from("fwd-lock"), lease }),
      ).finish();
    };
    const lock = await lockFor();
    const blocked = await lockFor();
    const held = await calls.result(calls.send("/v3lockpb.Lock/Lock", lock));
    assert.equal(held.code, grpc.status.OK, held.message);
    const before = await metrics();
    const started = Date.now();
    const late = await calls.result(calls.send("/v3lockpb.Lock/Lock", blocked, { timeoutMs: 300 }));
    assert.deepEqual([late.code, late.message], [grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"]);
    assert.ok(Date.now() - started >= 250);
    const waiting = calls.send("/v3lockpb.Lock/Lock", blocked);
    await new Promise((r) => setTimeout(r, 200));
    calls.cancel(waiting);
    for (let i = 0; i < 100; i++) {
      if (handled(await metrics(), "Lock", "Canceled") > handled(before, "Lock", "Canceled")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const after = await metrics();
    assert.equal(handled(after, "Lock", "DeadlineExceeded") - handled(before, "Lock", "DeadlineExceeded"), 1);
    assert.equal(handled(after, "Lock", "Canceled") - handled(before, "Lock", "Canceled"), 1);
    assert.equal(calls.has(waiting), false, "a cancelled call gets no result");
    calls.close();
  });

  it("authenticates each call by its own token, on one stream", async () => {
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["role", "add", "a-rw"],
      ["role", "grant-permission", "a-rw", "readwrite", "/a/", "--prefix"],
      ["user", "grant-role", "alice", "a-rw"],
      ["auth", "enable"],
    ]) {
      await etcdctl(endpoint, args);
    }
    const authenticate = await fetch(`http://${endpoint}/v3/auth/authenticate`, {
      method: "POST",
      body: JSON.stringify({ name: "alice", password: "alicepw" }),
    });
    const token = ((await authenticate.json()) as { token: string }).token;
    const calls = new CallsStream(session);
    const mine = calls.send("/etcdserverpb.KV/Put", put("/a/1"), { token });
    const theirs = calls.send("/etcdserverpb.KV/Put", put("/b/1"), { token });
    const anonymous = calls.send("/etcdserverpb.KV/Put", put("/a/2"));
    const forged = calls.send("/etcdserverpb.KV/Put", put("/a/3"), { token: "alice.forged" });
    const outcome = async (id: number) => {
      const r = await calls.result(id);
      return [r.code, r.message];
    };
    assert.deepEqual(await outcome(mine), [grpc.status.OK, ""]);
    assert.deepEqual(await outcome(theirs), [grpc.status.PERMISSION_DENIED, "etcdserver: permission denied"]);
    assert.deepEqual(await outcome(anonymous), [
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: user name is empty",
    ]);
    assert.deepEqual(await outcome(forged), [grpc.status.UNAUTHENTICATED, "etcdserver: invalid auth token"]);
    assert.equal(await etcdctl(endpoint, ["--user", "root:rootpw", "get", "/b/1"]), "");
    calls.close();
  });
});
