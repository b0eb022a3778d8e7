import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bootstrapStorage,
  ConfChangeType,
  decodeConfChange,
  EntryType,
  encodeConfChange,
  MemoryStorage,
} from "@etcd-ts/raft";
import { decodeEnvelope, EntryKind } from "../apply/entry-envelope.js";
import { memberConfig, parseFlags } from "../config/flags.js";
import { memberCodec } from "../membership/member-codec.js";
import { memberIdFor } from "../membership/member-id.js";
import { writePreContextDataDir } from "../testing/pre-context-data-dir.fixture.js";
import { Wal } from "../wal/mod.js";
import {
  bootstrap,
  bootstrapEntriesToReplay,
  bootstrapNewCluster,
  contextlessBootstrapMembers,
  standaloneLog,
  storeBehindSnapshot,
} from "./bootstrap.js";
import { layoutOf } from "./data-dir.js";

const cc = (index: number, type: ConfChangeType, nodeId: bigint) => ({
  term: 1,
  index,
  type: EntryType.ConfChange,
  data: encodeConfChange({ type, nodeId, context: new Uint8Array(0) }),
});
const normal = (index: number, term: number) => ({
  term,
  index,
  type: EntryType.Normal,
  data: new Uint8Array([1]),
});

describe("bootstrapNewCluster", () => {
  it("writes each member's peer URLs into its bootstrap entry, so a replay needs no --initial-cluster", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bootstrap-"));
    const urls = ["http://127.0.0.1:12380", "http://127.0.0.1:22380", "http://127.0.0.1:32380"];
    try {
      const config = memberConfig(
        parseFlags(
          [
            "--name",
            "m1",
            "--data-dir",
            dir,
            "--initial-advertise-peer-urls",
            urls[0]!,
            "--initial-cluster",
            urls.map((u, i) => `m${i + 1}=${u}`).join(","),
          ],
          {},
        ),
      );
      const logger = { info() {}, warn() {}, error() {} };
      const { wal } = await bootstrapNewCluster(config, layoutOf(config), { logger });
      await wal.close();
      // What a restart replays: the WAL alone (a restart's seed is empty, its store may be too).
      const { wal: reopened, recovered } = await Wal.open(layoutOf(config).walDir);
      await reopened.close();
      const members = recovered.entries.map((e) => {
        const cc = decodeConfChange(e.data);
        assert.equal(cc.type, ConfChangeType.AddNode);
        const envelope = decodeEnvelope(cc.context);
        assert.equal(envelope.kind, EntryKind.MemberConfChange);
        assert.equal(envelope.proposer, 0n, "no member's proposal: the same bytes on every founding member");
        const member = memberCodec.decode(envelope.payload);
        assert.equal(member.id, cc.nodeId);
        return member.peerUrls;
      });
      assert.deepEqual(
        members,
        urls.map((u) => [u]),
      );
      assert.deepEqual(
        recovered.entries.map((e) => decodeConfChange(e.data).nodeId),
        urls.map((u) => memberIdFor([u], config.initialClusterToken)),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("a data dir whose bootstrap entries carry no member (made before 59e0f3b)", () => {
  const urls = ["http://127.0.0.1:12380", "http://127.0.0.1:22380", "http://127.0.0.1:32380"];
  const configFor = (dir: string, initialCluster: string[]) =>
    memberConfig(
      parseFlags(
        [
          "--name",
          "m1",
          "--data-dir",
          dir,
          "--initial-advertise-peer-urls",
          urls[0]!,
          "--initial-cluster",
          initialCluster.map((u, i) => `m${i + 1}=${u}`).join(","),
        ],
        {},
      ),
    );

  it("restarting on an empty store takes the members' peer URLs from --initial-cluster, warning of any it does not name", async () => {
    const dir = await mkdtemp(join(tmpdir(), "bootstrap-"));
    try {
      const written = configFor(dir, urls);
      const ids = urls.map((u) => memberIdFor([u], written.initialClusterToken));
      await writePreContextDataDir(written, ids, ids[0]!);
      // The flag names m3 at another URL: its ID is not the entry's, so m3's URLs stay unknown.
      const moved = [urls[0]!, urls[1]!, "http://127.0.0.1:42380"];
      const warnings: Record<string, unknown>[] = [];
      const logger = { info() {}, warn: (d: Record<string, unknown>) => warnings.push(d), error() {} };
      const started = await bootstrap(configFor(dir, moved), logger, () => false);
      await started.store.close();
      await started.wal.close();
      assert.equal(started.store.appliedIndex, 0, "the store is empty: the bootstrap entries are replayed");
      assert.deepEqual(
        [...started.seed.values()].map((m) => [m.id, m.peerUrls]),
        [
          [ids[0], [urls[0]]],
          [ids[1], [urls[1]]],
        ],
      );
      assert.deepEqual(warnings, [{ member: ids[2]!.toString(16) }]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("only the entries a restart replays: none once the store applied them, none after a snapshot", () => {
    const storage = bootstrapStorage([1n, 2n, 3n]);
    storage.append([normal(4, 2)]);
    assert.deepEqual(
      bootstrapEntriesToReplay(storage, 0).map((e) => e.index),
      [1, 2, 3],
    );
    assert.deepEqual(
      bootstrapEntriesToReplay(storage, 2).map((e) => e.index),
      [3],
    );
    assert.deepEqual(bootstrapEntriesToReplay(storage, 3), []);
    assert.deepEqual(bootstrapEntriesToReplay(storage, 9), []);
    const compacted = new MemoryStorage();
    compacted.applySnapshot({
      data: new Uint8Array(0),
      metadata: { index: 10, term: 2, confState: { voters: [1n], learners: [] } },
    });
    assert.deepEqual(bootstrapEntriesToReplay(compacted, 0), []);
  });

  it("a member that carries its context, a RemoveNode and a normal entry need no flag", () => {
    const withContext = {
      term: 1,
      index: 1,
      type: EntryType.ConfChange,
      data: encodeConfChange({ type: ConfChangeType.AddNode, nodeId: 7n, context: new Uint8Array([1]) }),
    };
    const found = contextlessBootstrapMembers(
      [withContext, cc(2, ConfChangeType.RemoveNode, 8n), normal(3, 1), cc(4, ConfChangeType.AddNode, 9n)],
      new Map(),
    );
    assert.deepEqual(found, { named: [], unnamed: [9n] });
  });
});

describe("standaloneLog (--force-new-cluster)", () => {
  it("drops the uncommitted tail, then removes every other member in committed entries", () => {
    const entries = [
      cc(1, ConfChangeType.AddNode, 1n),
      cc(2, ConfChangeType.AddNode, 2n),
      cc(3, ConfChangeType.AddNode, 3n),
      normal(4, 2),
      cc(5, ConfChangeType.AddLearnerNode, 4n),
      normal(6, 2),
    ];
    const { hardState, entries: log } = standaloneLog(2n, [], { term: 2, vote: 2n, commit: 5 }, entries);
    assert.deepEqual(
      log.map((e) => e.index),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.equal(log[5]!.type, EntryType.ConfChange, "the uncommitted entry 6 is replaced");
    const forced = log.slice(5).map((e) => decodeConfChange(e.data));
    assert.deepEqual(
      forced.map((c) => [c.type, c.nodeId]),
      [
        [ConfChangeType.RemoveNode, 1n],
        [ConfChangeType.RemoveNode, 3n],
        [ConfChangeType.RemoveNode, 4n],
      ],
    );
    assert.deepEqual(hardState, { term: 2, vote: 2n, commit: 8 });
    assert.ok(log.slice(5).every((e) => e.term === 2));
  });

  it("starts from the snapshot's members, and adds itself when it is not one", () => {
    const { entries } = standaloneLog(9n, [1n, 2n], { term: 3, vote: 0n, commit: 10 }, []);
    assert.deepEqual(
      entries.map((e) => [e.index, decodeConfChange(e.data).type, decodeConfChange(e.data).nodeId]),
      [
        [11, ConfChangeType.RemoveNode, 1n],
        [12, ConfChangeType.RemoveNode, 2n],
        [13, ConfChangeType.AddNode, 9n],
      ],
    );
  });
});

describe("storeBehindSnapshot (etcd's backend check at start)", () => {
  it("refuses a database behind the newest snapshot, or missing, with etcd's messages", () => {
    assert.equal(
      storeBehindSnapshot("/d/member/db", true, 150, 201),
      "database file (/d/member/db index 150) does not match with snapshot (index 201)",
    );
    assert.equal(
      storeBehindSnapshot("/d/member/db", true, 0, 201),
      "database file (/d/member/db index 0) does not match with snapshot (index 201)",
    );
    assert.equal(
      storeBehindSnapshot("/d/member/db", false, 0, 201),
      "database file (/d/member/db) of the backend is missing",
    );
  });

  it("lets a database at or past the snapshot start, and any database without a snapshot", () => {
    assert.equal(storeBehindSnapshot("/d/member/db", true, 201, 201), undefined);
    assert.equal(storeBehindSnapshot("/d/member/db", true, 250, 201), undefined);
    assert.equal(storeBehindSnapshot("/d/member/db", false, 0, 0), undefined);
  });
});
