// Members publish control-plane events to a real nats-server: the new leader announces itself
// (with its term), and the leader reports applied compactions, alarms and membership changes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import {
  type AlarmsChanged,
  ANY_CLUSTER,
  type Compacted,
  ControlPlane,
  type LeaderElected,
  type MembersChanged,
  NatsServerProcess,
  topics,
} from "@etcd-ts/events";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

/** Maintenance.Alarm over raw gRPC: etcdctl cannot raise an alarm, the API can. */
function raiseAlarm(address: string, memberID: bigint): Promise<void> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<void>((resolve, reject) => {
    client.makeUnaryRequest(
      "/etcdserverpb.Maintenance/Alarm",
      (r: etcdserverpb.AlarmRequest) => Buffer.from(etcdserverpb.AlarmRequest.encode(r).finish()),
      (b: Buffer) => b,
      {
        action: etcdserverpb.AlarmRequest_AlarmAction.ACTIVATE,
        memberID,
        alarm: etcdserverpb.AlarmType.NOSPACE,
      },
      (err) => (err ? reject(err) : resolve()),
    );
  }).finally(() => client.close());
}

describe("members publish control-plane events", {
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  let nats: NatsServerProcess;
  let listener: ControlPlane;
  let cluster: LocalCluster;
  let eps: string;
  const leaders: LeaderElected[] = [];
  const compactions: Compacted[] = [];
  const alarms: AlarmsChanged[] = [];
  const memberships: MembersChanged[] = [];

  before(async () => {
    nats = await NatsServerProcess.start();
    listener = ControlPlane.start({ url: nats.url, name: "test listener" });
    listener.subscribe(topics.leader(ANY_CLUSTER), (e) => leaders.push(e));
    listener.subscribe(topics.compaction(ANY_CLUSTER), (e) => compactions.push(e));
    listener.subscribe(topics.alarm(ANY_CLUSTER), (e) => alarms.push(e));
    listener.subscribe(topics.members(ANY_CLUSTER), (e) => memberships.push(e));
    await listener.ready(10_000);
    cluster = await LocalCluster.start({ size: 3, flags: [`--nats-url=${nats.url}`] });
    eps = cluster.members.map(addressOf).join(",");
  });
  after(async () => {
    await cluster?.close();
    await listener?.close();
    await nats?.stop();
  });

  /** Member ID (hex) and whether it leads, from `endpoint status`. */
  async function statuses(): Promise<{ id: string; leader: string; term: number }[]> {
    const out = JSON.parse(await etcdctl(eps, ["endpoint", "status", "-w", "json"])) as {
      Status: { header: { member_id: number | string; raft_term: number }; leader: number | string };
    }[];
    // etcdctl prints IDs as JSON numbers (beyond 2^53): take them from the text instead.
    const ids = (await etcdctl(eps, ["endpoint", "status", "-w", "fields"]))
      .split("\n")
      .filter((l) => l.startsWith('"MemberID"') || l.startsWith('"Leader"'))
      .map((l) => BigInt(l.split(":")[1]!.trim()).toString(16));
    return out.map((s, i) => ({ id: ids[2 * i]!, leader: ids[2 * i + 1]!, term: s.Status.header.raft_term }));
  }

  it("the elected leader announces itself with its term; a transfer announces the next", async () => {
    const [first] = await statuses();
    await eventually("a leader event for the current leader", async () =>
      leaders.some((e) => e.leaderId === first!.leader),
    );
    const event = leaders.find((e) => e.leaderId === first!.leader)!;
    assert.equal(event.term, first!.term);
    assert.match(event.clusterId, /^[0-9a-f]+$/);
    assert.ok(event.clientUrls.length > 0);

    const target = (await statuses()).find((s) => s.id !== s.leader)!;
    await etcdctl(eps, ["move-leader", target.id]);
    await eventually("a leader event for the transferee", async () =>
      leaders.some((e) => e.leaderId === target.id && e.term > event.term),
    );
    // Only leaders publish: one event per election, not one per member.
    assert.equal(new Set(leaders.map((e) => e.term)).size, leaders.length);
  });

  it("a compaction is reported once, with its revision", async () => {
    await etcdctl(eps, ["put", "k", "v1"]);
    const put = JSON.parse(await etcdctl(eps, ["put", "k", "v2", "-w", "json"])) as {
      header: { revision: number };
    };
    await etcdctl(eps, ["compact", String(put.header.revision)]);
    await eventually("a compaction event", async () =>
      compactions.some((e) => e.revision === put.header.revision),
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(compactions.filter((e) => e.revision === put.header.revision).length, 1);
  });

  it("an alarm raised and disarmed is reported with the active alarms", async () => {
    const [s] = await statuses();
    await raiseAlarm(addressOf(cluster.members[0]!), BigInt(`0x${s!.id}`));
    await eventually("a NOSPACE alarm event", async () =>
      alarms.some((e) => e.alarms.some((a) => a.alarm === "NOSPACE" && a.memberId === s!.id)),
    );
    await etcdctl(eps, ["alarm", "disarm"]);
    await eventually("an event with no alarm left", async () => alarms.at(-1)?.alarms.length === 0);
  });

  it("a member added (as a learner) and removed is reported with the whole membership", async () => {
    const added = await etcdctl(eps, [
      "member",
      "add",
      "m4",
      `--peer-urls=http://127.0.0.1:${await freePort()}`,
      "--learner",
    ]);
    // etcdctl prints the ID with Go's %16x: space-padded when it has fewer than 16 hex digits.
    const id = /Member +([0-9a-f]+) added/.exec(added)![1]!;
    await eventually("a membership event listing the learner", async () =>
      memberships.some((e) => e.members.length === 4 && e.members.some((m) => m.id === id && m.isLearner)),
    );
    await etcdctl(eps, ["member", "remove", id]);
    await eventually("a membership event without it", async () => memberships.at(-1)?.members.length === 3);
  });
});
