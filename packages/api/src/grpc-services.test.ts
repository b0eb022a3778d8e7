// The generated grpc-js service definitions and clients against a real grpc-js server on
// a loopback port, and (when installed) Debian's etcdctl 3.4 against the same server: the
// proof that the service and method names, message codecs and framing are what etcd's
// own clients use.

import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  type ClientDuplexStream,
  credentials,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { etcdserverpb, type mvccpb } from "./mod.js";

const CLUSTER_ID = 0x1234_5678_9abcn;
// etcd's default member ID: all 64 bits used.
const MEMBER_ID = 0x8e9e_05c5_2164_694dn;
const LEARNER_ID = 0x1_0000_0001n;

/**
 * A single-process, in-memory stand-in for the KV and Watch services: just enough of etcd's
 * behaviour (revisions, prefix ranges, watch events) to exercise the generated code.
 */
class MemoryKv {
  readonly received: { method: string; request: unknown }[] = [];
  private readonly store = new Map<string, mvccpb.KeyValue>();
  private revision = 1n;
  private readonly watchers = new Set<{
    key: Buffer;
    id: bigint;
    stream: ServerDuplexStream<etcdserverpb.WatchRequest, etcdserverpb.WatchResponse>;
  }>();

  header(): etcdserverpb.ResponseHeader {
    return { clusterId: CLUSTER_ID, memberId: MEMBER_ID, revision: this.revision, raftTerm: 2n };
  }

  readonly kv: Pick<etcdserverpb.KVServer, "range" | "put"> = {
    range: (call: ServerUnaryCall<etcdserverpb.RangeRequest, etcdserverpb.RangeResponse>, callback) => {
      const req = call.request;
      this.received.push({ method: "Range", request: req });
      const inRange = (key: Buffer) =>
        req.rangeEnd.length === 0
          ? key.equals(req.key)
          : Buffer.compare(key, req.key) >= 0 &&
            (req.rangeEnd.equals(Buffer.from([0])) || Buffer.compare(key, req.rangeEnd) < 0);
      const kvs = [...this.store.values()]
        .filter((kv) => inRange(kv.key))
        .sort((a, b) => Buffer.compare(a.key, b.key))
        .map((kv) => (req.keysOnly ? { ...kv, value: Buffer.alloc(0) } : kv));
      callback(null, {
        header: this.header(),
        kvs: req.countOnly ? [] : kvs,
        more: false,
        count: BigInt(kvs.length),
      });
    },
    put: (call: ServerUnaryCall<etcdserverpb.PutRequest, etcdserverpb.PutResponse>, callback) => {
      const req = call.request;
      this.received.push({ method: "Put", request: req });
      const prev = this.store.get(req.key.toString("hex"));
      this.revision++;
      const kv: mvccpb.KeyValue = {
        key: req.key,
        value: req.value,
        createRevision: prev?.createRevision ?? this.revision,
        modRevision: this.revision,
        version: (prev?.version ?? 0n) + 1n,
        lease: req.lease,
      };
      this.store.set(req.key.toString("hex"), kv);
      for (const w of this.watchers) {
        if (w.key.equals(req.key)) {
          w.stream.write({
            header: this.header(),
            watchId: w.id,
            created: false,
            canceled: false,
            compactRevision: 0n,
            cancelReason: "",
            fragment: false,
            events: [{ type: 0, kv }],
          });
        }
      }
      callback(null, { header: this.header(), prevKv: req.prevKv ? prev : undefined });
    },
  };

  readonly members: etcdserverpb.Member[] = [
    {
      ID: MEMBER_ID,
      name: "m1",
      peerURLs: ["http://127.0.0.1:2380"],
      clientURLs: ["http://127.0.0.1:2379"],
      isLearner: false,
    },
    { ID: LEARNER_ID, name: "m2", peerURLs: ["http://127.0.0.2:2380"], clientURLs: [], isLearner: true },
  ];

  readonly cluster: Pick<etcdserverpb.ClusterServer, "memberList"> = {
    memberList: (call, callback) => {
      this.received.push({ method: "MemberList", request: call.request });
      callback(null, { header: this.header(), members: this.members });
    },
  };

  readonly maintenance: Pick<etcdserverpb.MaintenanceServer, "status"> = {
    status: (call, callback) => {
      this.received.push({ method: "Status", request: call.request });
      callback(
        null,
        etcdserverpb.StatusResponse.create({
          header: this.header(),
          version: "3.4.99",
          dbSize: 3 * 1024 * 1024,
          leader: MEMBER_ID,
          raftIndex: 1234,
          raftTerm: 7,
          raftAppliedIndex: 1233,
          errors: ["memberID:1 alarm:NOSPACE "],
          dbSizeInUse: 1024 * 1024,
          isLearner: false,
        }),
      );
    },
  };

  readonly watch: etcdserverpb.WatchServer = {
    watch: (stream) => {
      let nextId = 100n;
      const mine = new Map<bigint, { key: Buffer; id: bigint; stream: typeof stream }>();
      const respond = (fields: Partial<etcdserverpb.WatchResponse>) =>
        stream.write(etcdserverpb.WatchResponse.create({ header: this.header(), ...fields }));
      stream.on("data", (req: etcdserverpb.WatchRequest) => {
        this.received.push({ method: "Watch", request: req });
        if (req.createRequest) {
          const id = req.createRequest.watchId || nextId++;
          const w = { key: req.createRequest.key, id, stream };
          mine.set(id, w);
          this.watchers.add(w);
          respond({ watchId: id, created: true });
        } else if (req.cancelRequest) {
          const w = mine.get(req.cancelRequest.watchId);
          if (w) this.watchers.delete(w);
          mine.delete(req.cancelRequest.watchId);
          respond({ watchId: req.cancelRequest.watchId, canceled: true });
        }
      });
      stream.on("end", () => {
        for (const w of mine.values()) this.watchers.delete(w);
        stream.end();
      });
    },
  };
}

function unary<Res>(call: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    call((err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Reads the next message of a client stream (bounded: rejects if the stream ends first). */
function nextMessage<Req, T>(stream: ClientDuplexStream<Req, T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const onData = (m: T) => {
      cleanup();
      resolve(m);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error("stream ended"));
    };
    const cleanup = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onEnd);
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onEnd);
  });
}

describe("generated grpc-js services", () => {
  const state = new MemoryKv();
  const server = new Server();
  let address = "";

  before(async () => {
    server.addService(etcdserverpb.KVService, state.kv);
    server.addService(etcdserverpb.WatchService, state.watch);
    server.addService(etcdserverpb.ClusterService, state.cluster);
    server.addService(etcdserverpb.MaintenanceService, state.maintenance);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    address = `127.0.0.1:${port}`;
  });
  after(() => {
    server.forceShutdown();
  });

  it("KV.Put and KV.Range round-trip through the generated client", async () => {
    const client = new etcdserverpb.KVClient(address, credentials.createInsecure());
    try {
      const putReq = etcdserverpb.PutRequest.create({
        key: Buffer.from("a/1"),
        value: Buffer.from("one"),
        lease: 2 ** 40,
      });
      const put = await unary<etcdserverpb.PutResponse>((cb) => client.put(putReq, cb));
      assert.deepEqual(put.header, {
        clusterId: CLUSTER_ID,
        memberId: MEMBER_ID,
        revision: 2n,
        raftTerm: 2n,
      });
      const put2 = etcdserverpb.PutRequest.create({ key: Buffer.from("a/2"), value: Buffer.from("two") });
      await unary<etcdserverpb.PutResponse>((cb) => client.put(put2, cb));
      const rangeReq = etcdserverpb.RangeRequest.create({
        key: Buffer.from("a/"),
        rangeEnd: Buffer.from("a0"),
        limit: 10n,
      });
      const res = await unary<etcdserverpb.RangeResponse>((cb) => client.range(rangeReq, cb));
      assert.deepEqual(
        res.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), kv.modRevision, kv.lease]),
        [
          ["a/1", "one", 2n, 2n ** 40n],
          ["a/2", "two", 3n, 0n],
        ],
      );
      assert.equal(res.count, 2n);
      assert.equal(res.header?.revision, 3n);
    } finally {
      client.close();
    }
  });

  it("Watch: a bidi stream creates a watch, delivers a put event, cancels", async () => {
    const kv = new etcdserverpb.KVClient(address, credentials.createInsecure());
    const watch = new etcdserverpb.WatchClient(address, credentials.createInsecure());
    try {
      const stream = watch.watch();
      const created = nextMessage(stream);
      stream.write(
        etcdserverpb.WatchRequest.create({
          createRequest: { ...emptyCreate(), key: Buffer.from("w"), watchId: 7 },
        }),
      );
      const createdRes = await created;
      assert.equal(createdRes.created, true);
      assert.equal(createdRes.watchId, 7n);

      const event = nextMessage(stream);
      const putReq = etcdserverpb.PutRequest.create({ key: Buffer.from("w"), value: Buffer.from("v1") });
      await unary<etcdserverpb.PutResponse>((cb) => kv.put(putReq, cb));
      const eventRes = await event;
      assert.equal(eventRes.watchId, 7n);
      assert.equal(eventRes.events.length, 1);
      assert.equal(eventRes.events[0]?.kv?.value.toString(), "v1");
      assert.equal(eventRes.events[0]?.kv?.version, 1n);

      const canceled = nextMessage(stream);
      stream.write(etcdserverpb.WatchRequest.create({ cancelRequest: { watchId: 7 } }));
      assert.equal((await canceled).canceled, true);
      const ended = new Promise<void>((resolve) => stream.on("end", resolve));
      stream.end();
      await ended;
    } finally {
      kv.close();
      watch.close();
    }
  });

  it("an RPC the server does not implement answers UNIMPLEMENTED", async () => {
    const client = new etcdserverpb.KVClient(address, credentials.createInsecure());
    try {
      await assert.rejects(
        unary<etcdserverpb.TxnResponse>((cb) => client.txn(etcdserverpb.TxnRequest.create(), cb)),
        {
          code: status.UNIMPLEMENTED,
        },
      );
    } finally {
      client.close();
    }
  });

  it("int64 policy over gRPC: a lease ID beyond 2^53 reaches the handler exactly", async () => {
    const client = new etcdserverpb.KVClient(address, credentials.createInsecure());
    const before = state.received.length;
    try {
      // PutRequest{key: "big", lease: 2^60}: field 1 (bytes), field 3 (varint).
      const wire = Buffer.from([0x0a, 3, ...Buffer.from("big"), 0x18, ...varint(2n ** 60n)]);
      const err = await new Promise<ServiceError | null>((resolve) =>
        client.makeUnaryRequest(
          etcdserverpb.KVService.put.path,
          (b: Buffer) => b,
          etcdserverpb.KVService.put.responseDeserialize,
          wire,
          (e) => resolve(e),
        ),
      );
      assert.equal(err, null);
      assert.equal(state.received.length, before + 1);
      const received = state.received.at(-1)!.request as etcdserverpb.PutRequest;
      assert.equal(received.lease, 2n ** 60n);
    } finally {
      client.close();
    }
  });

  const etcdctl = spawnSync("etcdctl", ["version"], {
    encoding: "utf8",
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  const haveEtcdctl = etcdctl.status === 0;

  it("etcdctl put/get against the generated services", {
    skip: haveEtcdctl ? false : "etcdctl not installed (apt-get install -y etcd-client)",
  }, async () => {
    const run = (...args: string[]) =>
      promisify(execFile)(
        "etcdctl",
        [`--endpoints=${address}`, "--dial-timeout=5s", "--command-timeout=10s", ...args],
        {
          env: { ...process.env, ETCDCTL_API: "3" },
          timeout: 20_000,
        },
      );
    const before = state.received.length;
    const put = await run("put", "foo", "bar");
    assert.equal(put.stdout, "OK\n");
    const putReq = state.received.slice(before).find((r) => r.method === "Put")
      ?.request as etcdserverpb.PutRequest;
    assert.equal(putReq.key.toString(), "foo");
    assert.equal(putReq.value.toString(), "bar");

    const get = await run("get", "foo");
    assert.equal(get.stdout, "foo\nbar\n");
    const rangeReq = state.received.slice(before).find((r) => r.method === "Range")
      ?.request as etcdserverpb.RangeRequest;
    assert.equal(rangeReq.key.toString(), "foo");
    assert.equal(rangeReq.serializable, false);

    // --prefix makes etcdctl compute range_end itself ("foo" + 1 = "fop").
    await run("put", "fooz", "baz");
    const prefix = await run("get", "--prefix", "--keys-only", "foo");
    assert.equal(prefix.stdout, "foo\n\nfooz\n\n");
    const last = state.received.at(-1)?.request as etcdserverpb.RangeRequest;
    assert.equal(last.rangeEnd.toString(), "fop");
    assert.equal(last.keysOnly, true);

    // -w json prints the header etcd-style: the uint64 IDs arrive intact.
    const json = await run("get", "foo", "-w", "json");
    assert.match(json.stdout, new RegExp(`"cluster_id":${CLUSTER_ID}\\b`));
    assert.match(json.stdout, new RegExp(`"member_id":${MEMBER_ID}\\b`));
  });

  it("etcdctl member list and endpoint status decode Member and StatusResponse", {
    skip: haveEtcdctl ? false : "etcdctl not installed (apt-get install -y etcd-client)",
  }, async () => {
    const run = (...args: string[]) =>
      promisify(execFile)("etcdctl", [`--endpoints=${address}`, ...args], {
        env: { ...process.env, ETCDCTL_API: "3" },
        timeout: 20_000,
      });
    const list = await run("member", "list");
    assert.equal(
      list.stdout,
      "8e9e05c52164694d, started, m1, http://127.0.0.1:2380, http://127.0.0.1:2379, false\n" +
        "100000001, started, m2, http://127.0.0.2:2380, , true\n",
    );
    const status = await run("endpoint", "status");
    assert.equal(
      status.stdout,
      `${address}, 8e9e05c52164694d, 3.4.99, 3.1 MB, true, false, 7, 1234, 1233, memberID:1 alarm:NOSPACE \n`,
    );
  });

  it("etcdctl watch receives an event over the bidi Watch stream", {
    skip: haveEtcdctl ? false : "etcdctl not installed (apt-get install -y etcd-client)",
    timeout: 20_000,
  }, async () => {
    const watcher = spawn("etcdctl", [`--endpoints=${address}`, "watch", "wkey"], {
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    let stdout = "";
    watcher.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    const exited = once(watcher, "exit");
    const kv = new etcdserverpb.KVClient(address, credentials.createInsecure());
    try {
      const isCreate = (r: { method: string; request: unknown }) =>
        r.method === "Watch" &&
        (r.request as etcdserverpb.WatchRequest).createRequest?.key.toString() === "wkey";
      await waitFor(() => state.received.some(isCreate), "etcdctl's watch create request");
      const create = state.received.find(isCreate)?.request as etcdserverpb.WatchRequest;
      assert.equal(create.createRequest?.rangeEnd.length, 0);

      const putReq = etcdserverpb.PutRequest.create({ key: Buffer.from("wkey"), value: Buffer.from("v9") });
      await unary<etcdserverpb.PutResponse>((cb) => kv.put(putReq, cb));
      await waitFor(
        () => stdout.includes("PUT\nwkey\nv9\n"),
        `etcdctl printing the event (got ${JSON.stringify(stdout)})`,
      );
    } finally {
      kv.close();
      watcher.kill("SIGTERM");
      await exited;
    }
  });
});

/** Polls `condition` every 20 ms for at most 10 s. */
async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function emptyCreate(): etcdserverpb.WatchCreateRequest {
  return etcdserverpb.WatchCreateRequest.create();
}

function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
