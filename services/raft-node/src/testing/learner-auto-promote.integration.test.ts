// --experimental-learner-auto-promote on a real 3-member cluster: a learner added while a
// client writes catches up from a snapshot and is promoted without a MemberPromote call; a
// learner that cannot catch up (never started) stays a learner and the cluster keeps its quorum.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

interface ListedMember {
  ID: bigint;
  name: string;
  peerURLs: string[];
  isLearner?: boolean;
}

/** `member list -w json`, keeping the 64-bit IDs exact. */
async function members(endpoints: string): Promise<ListedMember[]> {
  const out = await etcdctl(endpoints, ["member", "list", "-w", "json"]);
  return JSON.parse(out.replace(/"ID":(\d+)/g, '"ID":"$1"')).members.map((m: ListedMember) => ({
    ...m,
    ID: BigInt(m.ID),
  }));
}

describe("learner auto-promotion", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let cluster: LocalCluster;
  let eps: string;

  before(async () => {
    cluster = await LocalCluster.start({
      size: 3,
      flags: [
        "--experimental-learner-auto-promote",
        "--snapshot-count=50",
        "--experimental-snapshot-catchup-entries=10",
      ],
    });
    eps = cluster.members.map(addressOf).join(",");
  });
  after(async () => {
    await cluster?.close();
  });

  it("a learner that never runs is never promoted, and does not count toward the quorum", async () => {
    const ghost = await cluster.newMember("ghost");
    await etcdctl(eps, ["member", "add", "ghost", "--learner", `--peer-urls=${ghost.peerUrl}`]);
    // With the learner counted, 2 of 4 voters would be no quorum; of 3 voters, 2 are one.
    const { member: leader } = await cluster.agreedLeader();
    const follower = cluster.members.find((m) => m !== leader && m !== ghost)!;
    await cluster.stop(follower, "SIGKILL");
    const live = addressOf(leader);
    try {
      await eventually("a write with one voter down and the learner absent", async () => {
        await etcdctl(live, ["put", "with-a-learner-down", "v"]);
        return true;
      });
      await new Promise((r) => setTimeout(r, 3_000));
      const ghostEntry = (await members(live)).find((m) => m.peerURLs.includes(ghost.peerUrl));
      assert.equal(ghostEntry?.isLearner, true, "promoted a learner that has no log");
    } finally {
      const ghostEntry = (await members(live)).find((m) => m.peerURLs.includes(ghost.peerUrl));
      if (ghostEntry !== undefined) await etcdctl(live, ["member", "remove", ghostEntry.ID.toString(16)]);
      cluster.members.splice(cluster.members.indexOf(ghost), 1);
      await cluster.restart(follower);
    }
  });

  it("a learner added under writes catches up from a snapshot and is promoted on its own", async () => {
    let writing = true;
    let written = 0;
    const writer = (async () => {
      // Bounded: 2,000 puts at most.
      for (let i = 0; i < 2_000 && writing; i++) {
        await etcdctl(eps, ["put", `/load/${i % 50}`, String(i)]).then(() => written++);
      }
    })();
    try {
      await eventually("some writes", async () => written >= 60);
      const newcomer = await cluster.newMember("m4");
      const added = await etcdctl(eps, [
        "member",
        "add",
        "m4",
        "--learner",
        `--peer-urls=${newcomer.peerUrl}`,
      ]);
      const initial = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)![1]!;
      const before = (await members(eps)).find((m) => m.peerURLs.includes(newcomer.peerUrl));
      assert.equal(before?.isLearner, true);
      await cluster.join(newcomer, initial);
      await eventually(
        "the learner is promoted without MemberPromote",
        async () => (await members(eps)).find((m) => m.ID === before!.ID)?.isLearner !== true,
        60_000,
      );
      assert.ok(
        newcomer.output.includes("installed snapshot from the leader"),
        "caught up without a snapshot",
      );
    } finally {
      writing = false;
      await writer;
    }
    assert.ok(cluster.members.some((m) => m.output.includes("promoted a caught-up learner")));
  });
});
