// Snapshots end to end: members snapshot every few entries and keep a short log tail, so a new
// member can only catch up through a snapshot streamed by the leader; restarts replay the WAL
// from the newest snapshot.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, LocalCluster, type MemberProcess } from "./local-cluster.js";

const ctl = etcdctl;

const metrics = async (m: MemberProcess) => (await fetch(`${m.clientUrl}/metrics`)).text();

describe("snapshots and catch-up", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let cluster: LocalCluster;
  let eps: string;

  before(async () => {
    cluster = await LocalCluster.start({
      size: 3,
      flags: ["--snapshot-count=20", "--experimental-snapshot-catchup-entries=5"],
    });
    eps = cluster.members.map(addressOf).join(",");
  });

  after(async () => {
    await cluster?.close();
  });

  it("snapshots, compacts the log and releases WAL segments' entries", async () => {
    for (let i = 0; i < 60; i++) await ctl(eps, ["put", `snap/${String(i).padStart(3, "0")}`, `v${i}`]);
    for (const m of cluster.members) {
      await eventually(`${m.name} wrote a snapshot file`, async () =>
        (await readdir(join(m.dataDir, "member", "snap"))).some((f) => f.endsWith(".snap")),
      );
    }
  });

  it("a member added after compaction catches up from a streamed snapshot", async () => {
    const newcomer = await cluster.newMember("m4");
    const added = await ctl(eps, ["member", "add", "m4", `--peer-urls=${newcomer.peerUrl}`, "--learner"]);
    const initial = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)![1]!;
    await cluster.join(newcomer, initial);
    await eventually("the learner has every key", async () => {
      const out = await ctl(addressOf(newcomer), [
        "get",
        "snap/",
        "--prefix",
        "--keys-only",
        "--consistency=s",
      ]);
      return out.split("\n").filter((l) => l !== "").length === 60;
    });
    assert.match(newcomer.output, /installed snapshot from the leader/);
    // etcd's rafthttp counters, by peer: the newcomer received one, some old member sent it.
    assert.match(
      await metrics(newcomer),
      /^etcd_network_snapshot_receive_success\{From="[0-9a-f]+"\} [1-9]/m,
    );
    const sent = await Promise.all(cluster.members.filter((m) => m !== newcomer).map(metrics));
    assert.ok(sent.some((text) => /^etcd_network_snapshot_send_success\{To="[0-9a-f]+"\} [1-9]/m.test(text)));
    assert.equal(
      await ctl(addressOf(newcomer), ["get", "snap/042", "--consistency=s", "--print-value-only"]),
      "v42\n",
    );
    // Writes after the snapshot reach it through the log as usual.
    await ctl(eps, ["put", "after", "snapshot"]);
    await eventually(
      "a later write",
      async () =>
        (await ctl(addressOf(newcomer), ["get", "after", "--consistency=s", "--print-value-only"])) ===
        "snapshot\n",
    );
  });

  it("a member killed and restarted recovers from its snapshot and WAL", async () => {
    const m = cluster.members[0]!;
    for (let i = 0; i < 30; i++) await ctl(eps, ["put", `more/${i}`, "x"]);
    await cluster.stop(m, "SIGKILL");
    // If the killed member led, a put forwarded to it before the others notice is lost and times
    // out ("request timed out"), as with etcd; the same put is safe to send again.
    await eventually("a write while the member is down", async () => {
      await ctl(cluster.members.slice(1, 3).map(addressOf).join(","), ["put", "while-down", "1"]);
      return true;
    });
    await cluster.restart(m);
    await eventually("restarted member has everything", async () => {
      const out = await ctl(addressOf(m), ["get", "", "--from-key", "--keys-only", "--consistency=s"]);
      const keys = out.split("\n").filter((l) => l !== "");
      return keys.includes("while-down") && keys.filter((k) => k.startsWith("more/")).length === 30;
    });
  });
});
