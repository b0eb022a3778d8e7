// The same etcdctl session against a real etcd 3.4 and against our member, started one after
// the other with the same flags (name, URLs, cluster token): member and cluster IDs, lease IDs
// (etcd's generator layout), a client-chosen lease ID of 2^63-1, and `member remove <hex>` must
// read the same. Then a data dir from the 53-bit era is refused with a clear message.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import { credentials, Metadata } from "@grpc/grpc-js";
import { memberIdFor } from "../membership/member-id.js";
import { ETCDCTL, haveRealEtcd, sideBySide, singleMemberFlags, startOurs } from "./side-by-side.fixture.js";

const BIG_LEASE = 2n ** 63n - 1n;

function etcdctl(endpoint: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      ETCDCTL,
      [`--endpoints=${endpoint}`, "--dial-timeout=3s", "--command-timeout=8s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 20_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`etcdctl ${args.join(" ")}: ${stderr}`)) : resolve(stdout),
    ),
  );
}

function grantLease(endpoint: string, id: bigint): Promise<bigint> {
  const client = new etcdserverpb.LeaseClient(endpoint.replace("http://", ""), credentials.createInsecure());
  return new Promise<bigint>((resolve, reject) =>
    client.leaseGrant({ ID: id, TTL: 60n }, new Metadata(), (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res.ID);
    }),
  );
}

/** What one etcdctl session prints, with the parts that depend on the clock taken out. */
interface Session {
  memberFields: string[];
  memberJsonIds: string[];
  memberSimple: string;
  leasePrefix: bigint;
  leaseTimeToLive: string;
  bigLeaseGranted: bigint;
  bigLeaseTimeToLive: string;
  keyLeaseJson: string;
  addedId: bigint;
  addedAt: [number, number];
  removed: string;
  clusterHex: string;
}

async function session(endpoint: string, learnerPeerUrl: string): Promise<Session> {
  const fields = await etcdctl(endpoint, "member", "list", "-w", "fields");
  const memberFields = fields
    .split("\n")
    .filter((l) => /^"(ClusterID|MemberID|ID|Name|PeerURL|IsLearner)"/.test(l));
  // Raw text: JSON.parse would round the uint64s this test is about.
  const json = await etcdctl(endpoint, "member", "list", "-w", "json");
  const memberJsonIds = [...json.matchAll(/"(cluster_id|member_id|ID)":(\d+)/g)].map(
    (m) => `${m[1]}=${m[2]}`,
  );
  const memberSimple = (await etcdctl(endpoint, "member", "list")).split(",")[0]!;
  const clusterHex = BigInt(/"ClusterID" : (\d+)/.exec(fields)![1]!).toString(16);

  const granted = await etcdctl(endpoint, "lease", "grant", "60");
  const leaseHex = /lease ([0-9a-f]+) granted/.exec(granted)![1]!;
  const ttl = await etcdctl(endpoint, "lease", "timetolive", leaseHex);
  const normalize = (s: string) => s.replace(/remaining\(\d+s\)/, "remaining(Ns)");

  const bigLeaseGranted = await grantLease(endpoint, BIG_LEASE);
  const bigTtl = await etcdctl(endpoint, "lease", "timetolive", BIG_LEASE.toString(16));
  await etcdctl(endpoint, "put", "leased", "v", `--lease=${BIG_LEASE.toString(16)}`);
  const got = await etcdctl(endpoint, "get", "leased", "-w", "json");

  const before = Math.floor(Date.now() / 1000);
  const added = await etcdctl(
    endpoint,
    "member",
    "add",
    "learner",
    "--learner",
    `--peer-urls=${learnerPeerUrl}`,
  );
  const afterAdd = Math.floor(Date.now() / 1000);
  const addedHex = /Member +([0-9a-f]+) added/.exec(added)![1]!;
  const removed = await etcdctl(endpoint, "member", "remove", addedHex);

  return {
    memberFields,
    memberJsonIds,
    memberSimple,
    leasePrefix: BigInt(`0x${leaseHex}`) >> 48n,
    leaseTimeToLive: normalize(ttl).replace(leaseHex, "<id>"),
    bigLeaseGranted,
    bigLeaseTimeToLive: normalize(bigTtl),
    keyLeaseJson: /"lease":\d+/.exec(got)![0],
    addedId: BigInt(`0x${addedHex}`),
    addedAt: [before, afterAdd],
    // etcdctl prints the ID with %16x: space-padded when it has fewer than 16 hex digits.
    removed: removed.replace(new RegExp(` +${addedHex} `), " <added> "),
    clusterHex,
  };
}

describe("IDs as etcd 3.4 makes them, through etcdctl", {
  timeout: 180_000,
  skip: haveRealEtcd ? false : "etcd/etcdctl 3.4 not installed",
}, () => {
  let root: string;
  let flags: (dataDir: string) => string[];
  let clientUrl: string;
  let peerUrl: string;
  let learnerPeerUrl: string;
  let etcd: Session;
  let ours: Session;
  let oursDataDir: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "etcd-ids-"));
    clientUrl = `http://127.0.0.1:${await freePort()}`;
    peerUrl = `http://127.0.0.1:${await freePort()}`;
    learnerPeerUrl = `http://127.0.0.1:${await freePort()}`;
    flags = (dataDir) => singleMemberFlags("ids-1", dataDir, clientUrl, peerUrl, "ids-token");
    oursDataDir = join(root, "ours");
    ({ etcd, ours } = await sideBySide(flags, { etcd: join(root, "etcd"), ours: oursDataDir }, () =>
      session(clientUrl, learnerPeerUrl),
    ));
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  test("member list -w fields / -w json / simple: the same member and cluster IDs as etcd", () => {
    assert.ok(etcd.memberFields.length >= 5, etcd.memberFields.join("\n"));
    assert.deepEqual(ours.memberFields, etcd.memberFields);
    assert.deepEqual(ours.memberJsonIds, etcd.memberJsonIds);
    assert.equal(ours.memberSimple, etcd.memberSimple);
    // And both are what etcd's newMember computes from the flags.
    assert.equal(BigInt(`0x${ours.memberSimple}`), memberIdFor([peerUrl], "ids-token"));
  });

  test("lease grant then lease timetolive <hex>: etcd's ID layout (member bits on top) and output", () => {
    assert.equal(ours.leasePrefix, etcd.leasePrefix);
    assert.equal(ours.leasePrefix, BigInt(`0x${ours.memberSimple}`) & 0x7fffn);
    assert.equal(ours.leaseTimeToLive, etcd.leaseTimeToLive);
  });

  test("a client-chosen lease ID of 2^63-1 is granted, listed and attached to a key as etcd does", () => {
    assert.equal(ours.bigLeaseGranted, BIG_LEASE);
    assert.equal(etcd.bigLeaseGranted, BIG_LEASE);
    assert.equal(ours.bigLeaseTimeToLive, etcd.bigLeaseTimeToLive);
    assert.equal(ours.keyLeaseJson, `"lease":${BIG_LEASE}`);
    assert.equal(ours.keyLeaseJson, etcd.keyLeaseJson);
  });

  test("member add then member remove <hex>: the ID from the URLs and the unix seconds, as etcd", () => {
    assert.equal(ours.removed, etcd.removed);
    for (const s of [etcd, ours]) {
      const candidates = [];
      for (let t = s.addedAt[0]; t <= s.addedAt[1]; t++)
        candidates.push(memberIdFor([learnerPeerUrl], "", t));
      assert.ok(candidates.includes(s.addedId), `${s.addedId.toString(16)} not derived from the add time`);
    }
    assert.equal(ours.clusterHex, etcd.clusterHex);
  });

  test("a data dir written with the old 53-bit IDs is refused with a message that says so", async () => {
    const identity = join(oursDataDir, "member", "identity");
    const old = Buffer.alloc(16);
    old.writeBigUInt64BE(BigInt(`0x${ours.memberSimple}`) >> 11n, 0);
    old.writeBigUInt64BE(BigInt(`0x${ours.clusterHex}`) >> 11n, 8);
    await writeFile(identity, old);
    const member = startOurs(flags(oursDataDir));
    const code = await new Promise((r) => member.child.once("exit", r));
    assert.notEqual(code, 0);
    assert.match(member.output.text, /older etcd-ts whose member and cluster IDs were 53-bit/);
  });
});
