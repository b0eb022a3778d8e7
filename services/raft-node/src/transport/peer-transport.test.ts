// The peer transport's call headers, seen from the wire: a plain HTTP/2 server standing in for a
// peer (what a proxy on a shared port sees), and a plain HTTP/2 client opening calls to a member.
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { peer } from "@etcd-ts/api";
import { type Message, MessageType, type SnapshotMetadata } from "@etcd-ts/raft";
import { freePorts } from "@etcd-ts/testing";
import { encodeRaftBatch } from "./message-batching.js";
import {
  CLUSTER_ID_HEADER,
  PeerTransport,
  type PeerTransportHandler,
  SERVER_FROM_HEADER,
} from "./peer-transport.js";

const CLUSTER = 0xcdf818194e3a8c32n;
const SELF = 0x8e9e05c52164694dn;
const OTHER = 0x91bc3c398fb3c146n;
const REMOVED = 0xfd422379fda50e48n;

const heartbeat = (from: bigint, to: bigint): Message => ({
  type: MessageType.MsgHeartbeat,
  to,
  from,
  term: 3,
  logTerm: 0,
  index: 0,
  entries: [],
  commit: 7,
  reject: false,
  rejectHint: 0,
});

interface Recorded {
  received: Message[];
  warnings: { details: Record<string, unknown>; message: string }[];
}

function transportFor(
  memberId: bigint,
  snapshotDir: string,
  recorded: Recorded,
  clusterId = CLUSTER,
  unreachable: bigint[] = [],
): PeerTransport {
  const handler: PeerTransportHandler = {
    clusterId,
    memberId,
    snapshotDir,
    receive: (messages) => recorded.received.push(...messages),
    isRemoved: (id) => id === REMOVED,
    clusterInfo: () => ({ clusterId: CLUSTER, memberId, members: [] }),
    hashKV: () => Promise.reject(new Error("no hashes in this test")),
    reportUnreachable: (id) => unreachable.push(id),
    reportSnapshot: () => {},
    writeSnapshotImage: () => Promise.reject(new Error("no snapshots in this test")),
    snapshotReceived: () => Promise.reject(new Error("no snapshots in this test")),
  };
  return new PeerTransport(handler, {
    info: () => {},
    warn: (details, message) => recorded.warnings.push({ details, message }),
  });
}

/** One gRPC message frame: flag 0, 4-byte big-endian length, the bytes. */
function grpcFrame(body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

/** Opens the Stream call on `port` with `headers`, sends one batch, and returns the call's status. */
async function rawStreamCall(
  port: number,
  headers: Record<string, string>,
  batch: Buffer,
): Promise<{ status: string | undefined; message: string | undefined }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": peer.RaftPeerService.stream.path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    stream.end(grpcFrame(batch));
    let status: string | undefined;
    let message: string | undefined;
    const take = (h: http2.IncomingHttpHeaders) => {
      status ??= h["grpc-status"] as string | undefined;
      message ??= h["grpc-message"] as string | undefined;
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.resume();
    await once(stream, "close");
    return { status, message: message && decodeURIComponent(message) };
  } finally {
    session.close();
  }
}

describe("peer transport call headers", () => {
  let dir: string;
  let port: number;
  let member: PeerTransport;
  const recorded: Recorded = { received: [], warnings: [] };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "peer-transport-"));
    [port] = await freePorts(1);
    member = transportFor(OTHER, dir, recorded);
    await member.listen([new URL(`http://127.0.0.1:${port}`)]);
  });

  after(async () => {
    await member.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("opens every call to a peer with the sender's member ID and the cluster ID", async () => {
    // A plain HTTP/2 server where the peer would be: what a proxy on a shared port sees.
    const seen: http2.IncomingHttpHeaders[] = [];
    const fake = http2.createServer();
    fake.on("stream", (stream, headers) => {
      seen.push(headers);
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "grpc-status": "0" },
        { endStream: true },
      );
    });
    fake.listen(0, "127.0.0.1");
    await once(fake, "listening");
    const sender = transportFor(SELF, dir, { received: [], warnings: [] });
    try {
      sender.setPeers(new Map([[OTHER, [`http://127.0.0.1:${(fake.address() as AddressInfo).port}`]]]));
      sender.send([heartbeat(SELF, OTHER)]);
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(seen.length, 1, "the peer call never arrived");
      assert.equal(seen[0]![":path"], peer.RaftPeerService.stream.path);
      assert.equal(seen[0]![SERVER_FROM_HEADER], "8e9e05c52164694d");
      assert.equal(seen[0]![CLUSTER_ID_HEADER], "cdf818194e3a8c32");
    } finally {
      await sender.close();
      fake.close();
    }
  });

  it("takes a call whose headers name its cluster", async () => {
    recorded.received.length = 0;
    const { batch } = encodeRaftBatch(CLUSTER, SELF, OTHER, [heartbeat(SELF, OTHER)]);
    const result = await rawStreamCall(
      port,
      { [SERVER_FROM_HEADER]: "8e9e05c52164694d", [CLUSTER_ID_HEADER]: "cdf818194e3a8c32" },
      batch,
    );
    assert.equal(result.status, "0");
    assert.equal(recorded.received.length, 1);
    assert.equal(recorded.received[0]!.commit, 7);
  });

  it("refuses a call from another cluster before reading its body, and logs it", async () => {
    recorded.received.length = 0;
    recorded.warnings.length = 0;
    // The batch inside claims the right cluster: only the header tells this call apart.
    const { batch } = encodeRaftBatch(CLUSTER, SELF, OTHER, [heartbeat(SELF, OTHER)]);
    const result = await rawStreamCall(
      port,
      { [SERVER_FROM_HEADER]: "8e9e05c52164694d", [CLUSTER_ID_HEADER]: "1234abcd" },
      batch,
    );
    assert.deepEqual(result, { status: "9", message: "etcdserver: cluster ID mismatch" });
    assert.equal(recorded.received.length, 0);
    assert.deepEqual(recorded.warnings, [
      {
        message: "request cluster ID mismatch",
        details: {
          "local-member-id": "91bc3c398fb3c146",
          "local-member-cluster-id": "cdf818194e3a8c32",
          "remote-peer-id": "8e9e05c52164694d",
          "remote-peer-cluster-id": "1234abcd",
        },
      },
    ]);
  });

  it("refuses a call from a removed member named by x-server-from", async () => {
    recorded.received.length = 0;
    const { batch } = encodeRaftBatch(CLUSTER, SELF, OTHER, [heartbeat(SELF, OTHER)]);
    const result = await rawStreamCall(
      port,
      { [SERVER_FROM_HEADER]: REMOVED.toString(16), [CLUSTER_ID_HEADER]: "cdf818194e3a8c32" },
      batch,
    );
    assert.equal(result.status, "7");
    assert.equal(recorded.received.length, 0);
  });

  it("carries Raft messages between two transports", async () => {
    recorded.received.length = 0;
    const sender = transportFor(SELF, dir, { received: [], warnings: [] });
    try {
      sender.setPeers(new Map([[OTHER, [`http://127.0.0.1:${port}`]]]));
      sender.send([heartbeat(SELF, OTHER)]);
      for (let i = 0; i < 100 && recorded.received.length === 0; i++)
        await new Promise((r) => setTimeout(r, 20));
      assert.equal(recorded.received.length, 1);
      assert.equal(recorded.received[0]!.from, SELF);
    } finally {
      await sender.close();
    }
  });

  it("hears a refusal as its peer unreachable, and logs it", async () => {
    const warnings: Recorded = { received: [], warnings: [] };
    const unreachable: bigint[] = [];
    const stranger = transportFor(SELF, dir, warnings, 0x1234abcdn, unreachable);
    recorded.received.length = 0;
    try {
      stranger.setPeers(new Map([[OTHER, [`http://127.0.0.1:${port}`]]]));
      stranger.send([heartbeat(SELF, OTHER)]);
      for (let i = 0; i < 100 && unreachable.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unreachable, [OTHER]);
      assert.equal(recorded.received.length, 0);
      assert.deepEqual(warnings.warnings, [
        {
          message: "peer refused our messages",
          details: { peer: OTHER.toString(16), error: "etcdserver: cluster ID mismatch" },
        },
      ]);
      // Backing off: the next batch is dropped at once, without a call.
      stranger.send([heartbeat(SELF, OTHER)]);
      assert.deepEqual(unreachable, [OTHER, OTHER]);
    } finally {
      await stranger.close();
    }
  });

  it("reports a peer nobody listens on as unreachable", async () => {
    const [closedPort] = await freePorts(1);
    const unreachable: bigint[] = [];
    const sender = transportFor(SELF, dir, { received: [], warnings: [] }, CLUSTER, unreachable);
    try {
      sender.setPeers(new Map([[OTHER, [`http://127.0.0.1:${closedPort}`]]]));
      sender.send([heartbeat(SELF, OTHER)]);
      for (let i = 0; i < 100 && unreachable.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unreachable, [OTHER]);
    } finally {
      await sender.close();
    }
  });

  it("redials a peer that was down within ~100 ms of it listening again (a restart)", async () => {
    const [downPort] = await freePorts(1);
    const sender = transportFor(SELF, dir, { received: [], warnings: [] });
    const got: Recorded = { received: [], warnings: [] };
    const restarted = transportFor(OTHER, dir, got);
    const tick = () => new Promise((r) => setTimeout(r, 10));
    try {
      sender.setPeers(new Map([[OTHER, [`http://127.0.0.1:${downPort}`]]]));
      // Two seconds of heartbeats to a port nothing listens on: with a backoff doubling to 1 s,
      // the next dial would come ~0.5 s after the peer is back.
      const downUntil = performance.now() + 2_000;
      while (performance.now() < downUntil) {
        sender.send([heartbeat(SELF, OTHER)]);
        await tick();
      }
      await restarted.listen([new URL(`http://127.0.0.1:${downPort}`)]);
      const listening = performance.now();
      while (got.received.length === 0 && performance.now() - listening < 3_000) {
        sender.send([heartbeat(SELF, OTHER)]);
        await tick();
      }
      const waited = performance.now() - listening;
      assert.ok(got.received.length > 0, "no heartbeat reached the restarted peer");
      assert.ok(waited < 400, `the first heartbeat arrived ${Math.round(waited)} ms after the peer listened`);
    } finally {
      await sender.close();
      await restarted.close();
    }
  });

  it("backs off from a peer that takes the connection and closes it before HTTP/2 starts", async () => {
    // As a member does whose --peer-cert-allowed-cn our certificate fails: the handshake
    // completes, then the socket closes with no SETTINGS. Counting that as "reachable" reset the
    // backoff on each connect: a dial every ~50 ms, each a warning on the refusing member.
    let connections = 0;
    const refusing = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    refusing.listen(0, "127.0.0.1");
    await once(refusing, "listening");
    const port = (refusing.address() as AddressInfo).port;
    const sender = transportFor(SELF, dir, { received: [], warnings: [] });
    try {
      sender.setPeers(new Map([[OTHER, [`http://127.0.0.1:${port}`]]]));
      const until = performance.now() + 1_500;
      while (performance.now() < until) {
        sender.send([heartbeat(SELF, OTHER)]);
        await new Promise((r) => setTimeout(r, 10));
      }
      // Doubling from 50 ms: dials at ~0, 50, 150, 350, 750 (and 1,550) ms.
      assert.ok(connections >= 2 && connections <= 7, `${connections} connections in 1.5 s`);
    } finally {
      await sender.close();
      refusing.close();
    }
  });
});

describe("peer transport snapshots", () => {
  it("sends the image in chunks behind its header and CRC trailer, and the peer takes it whole", async () => {
    const dir = await mkdtemp(join(tmpdir(), "peer-snapshot-"));
    const [port] = await freePorts(1);
    // Over a few chunks and a flow-control window: the sender waits for room as it goes.
    const image = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < image.length; i++) image[i] = (i * 7) & 255;
    const metadata: SnapshotMetadata = {
      index: 42,
      term: 3,
      confState: { voters: [SELF, OTHER], learners: [] },
    };
    const reports: [bigint, boolean][] = [];
    let installed: { message: Message; bytes: Buffer } | undefined;
    const base = (memberId: bigint): PeerTransportHandler => ({
      clusterId: CLUSTER,
      memberId,
      snapshotDir: dir,
      receive: () => {},
      isRemoved: () => false,
      clusterInfo: () => ({ clusterId: CLUSTER, memberId, members: [] }),
      hashKV: () => Promise.reject(new Error("no hashes in this test")),
      reportUnreachable: () => {},
      reportSnapshot: (id, ok) => reports.push([id, ok]),
      writeSnapshotImage: async (path) => {
        await writeFile(path, image);
        return { size: image.length, metadata };
      },
      snapshotReceived: async (message, path) => {
        installed = { message, bytes: await readFile(path) };
      },
    });
    const log = { info: () => {}, warn: () => {} };
    const receiver = new PeerTransport(base(OTHER), log);
    const sender = new PeerTransport(base(SELF), log);
    try {
      await receiver.listen([new URL(`http://127.0.0.1:${port}`)]);
      sender.setPeers(new Map([[OTHER, [`http://127.0.0.1:${port}`]]]));
      sender.send([{ ...heartbeat(SELF, OTHER), type: MessageType.MsgSnap }]);
      for (let i = 0; i < 250 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(reports, [[OTHER, true]]);
      assert.ok(installed !== undefined, "the receiver installed nothing");
      assert.equal(installed.message.type, MessageType.MsgSnap);
      assert.equal(installed.message.snapshot?.metadata.index, 42, "the image's own metadata");
      assert.ok(installed.bytes.equals(image), "the image arrived byte for byte");
    } finally {
      await sender.close();
      await receiver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
