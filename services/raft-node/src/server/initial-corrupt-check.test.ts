// The corruption checks ask their peers on the peer port (RaftPeer.HashKV): a real peer
// transport listening on loopback, answering from a handler that plays the member's store.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import { freePorts } from "@etcd-ts/testing";
import { PeerTransport, type PeerTransportHandler } from "../transport/peer-transport.js";
import { peerHashes } from "./initial-corrupt-check.js";

const CLUSTER = 0xcdf818194e3a8c32n;
const ASKER = 0x8e9e05c52164694dn;
const PEER = 0x91bc3c398fb3c146n;
const REMOVED = 0xfd422379fda50e48n;

describe("peerHashes over the peer port", () => {
  let dir: string;
  let url: string;
  let transport: PeerTransport;
  const asked: number[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "peer-hashes-"));
    const [port] = await freePorts(1);
    url = `http://127.0.0.1:${port}`;
    const handler: PeerTransportHandler = {
      clusterId: CLUSTER,
      memberId: PEER,
      snapshotDir: dir,
      receive: () => {},
      isRemoved: (id) => id === REMOVED,
      clusterInfo: () => ({ clusterId: CLUSTER, memberId: PEER, members: [] }),
      // A store at revision 20, compacted at 5 (as Store.hashKV answers and refuses).
      hashKV: async (revision): Promise<etcdserverpb.HashKVResponse> => {
        asked.push(revision);
        if (revision > 0 && revision < 5) throw new EtcdError("Compacted");
        if (revision > 20) throw new EtcdError("FutureRev");
        return {
          header: { clusterId: CLUSTER, memberId: PEER, revision: 20n, raftTerm: 2n },
          hash: 0xdeadbeef + revision,
          compactRevision: 5n,
          hashRevision: BigInt(revision === 0 ? 20 : revision),
        };
      },
      reportUnreachable: () => {},
      reportSnapshot: () => {},
      writeSnapshotImage: () => Promise.reject(new Error("no snapshots in this test")),
      snapshotReceived: () => Promise.reject(new Error("no snapshots in this test")),
    };
    transport = new PeerTransport(handler, { info: () => {}, warn: () => {} });
    await transport.listen([new URL(url)]);
  });

  after(async () => {
    await transport.close();
    await rm(dir, { recursive: true, force: true });
  });

  const peer = (peerUrls: string[]) => ({
    id: PEER,
    name: "peer",
    peerUrls,
    // A client URL nothing listens on: the check must not use it.
    clientUrls: ["http://127.0.0.1:1"],
    isLearner: false,
  });

  it("asks a peer on its peer URL for its hash at the revision", async () => {
    const [answer] = await peerHashes({ clusterId: CLUSTER, id: ASKER }, [peer([url])], 12, 5_000);
    assert.deepEqual(answer, { id: PEER, hash: 0xdeadbeef + 12, compactRevision: 5, revision: 20 });
    assert.equal(asked.at(-1), 12);
  });

  it("passes on etcd's error for a compacted or future revision, as the reason the peer is skipped", async () => {
    const asker = { clusterId: CLUSTER, id: ASKER };
    const [compacted] = await peerHashes(asker, [peer([url])], 3, 5_000);
    assert.deepEqual(compacted, {
      id: PEER,
      error: "etcdserver: mvcc: required revision has been compacted",
    });
    const [future] = await peerHashes(asker, [peer([url])], 21, 5_000);
    assert.deepEqual(future, { id: PEER, error: "etcdserver: mvcc: required revision is a future revision" });
  });

  it("is refused by a peer of another cluster, or when the asker was removed, before hashing", async () => {
    const before = asked.length;
    const [other] = await peerHashes({ clusterId: 0x1n, id: ASKER }, [peer([url])], 12, 5_000);
    assert.deepEqual(other, { id: PEER, error: "etcdserver: cluster ID mismatch" });
    const [removed] = await peerHashes({ clusterId: CLUSTER, id: REMOVED }, [peer([url])], 12, 5_000);
    assert.deepEqual(removed, { id: PEER, error: "the sender was removed from the cluster" });
    assert.equal(asked.length, before, "no hash computed for a refused call");
  });

  it("a peer without a peer URL is skipped with a reason", async () => {
    const [none] = await peerHashes({ clusterId: CLUSTER, id: ASKER }, [peer([])], 12, 5_000);
    assert.deepEqual(none, { id: PEER, error: "the peer has no peer URL" });
  });
});
