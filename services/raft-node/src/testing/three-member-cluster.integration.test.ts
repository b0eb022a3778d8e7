// A real 3-member cluster of member processes on loopback, driven by Debian's etcdctl 3.4.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { addressOf, LocalCluster, type MemberProcess } from "./local-cluster.js";

const run = promisify(execFile);
const ctl = etcdctl;

async function statusOf(m: MemberProcess): Promise<{ leader: number; id: number; raftIndex: number }> {
  const out = JSON.parse(await ctl(addressOf(m), ["endpoint", "status", "-w", "json"]));
  const s = out[0].Status;
  return { leader: s.leader, id: s.header.member_id, raftIndex: s.raftIndex };
}

async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (${String(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("three-member cluster with etcdctl", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let cluster: LocalCluster;
  let eps: string;

  before(async () => {
    cluster = await LocalCluster.start({ size: 3 });
    eps = cluster.members.map(addressOf).join(",");
  });

  after(async () => {
    await cluster?.close();
  });

  it("puts, gets with range options, deletes", async () => {
    for (const [k, v] of [
      ["foo1", "a"],
      ["foo2", "bb"],
      ["foo3", "c"],
      ["zoo", "z"],
    ]) {
      assert.equal((await ctl(eps, ["put", k!, v!])).trim(), "OK");
    }
    assert.equal(await ctl(eps, ["get", "foo2"]), "foo2\nbb\n");
    assert.equal(await ctl(eps, ["get", "foo", "--prefix", "--keys-only"]), "foo1\n\nfoo2\n\nfoo3\n\n");
    assert.equal(
      await ctl(eps, ["get", "foo", "--prefix", "--limit=1", "--sort-by=KEY", "--order=DESCEND"]),
      "foo3\nc\n",
    );
    const counted = JSON.parse(await ctl(eps, ["get", "foo", "--prefix", "--limit=1", "-w", "json"]));
    assert.equal(counted.count, 3);
    assert.equal(counted.more, true);
    const first = JSON.parse(await ctl(eps, ["get", "foo1", "-w", "json"]));
    await ctl(eps, ["put", "foo1", "changed"]);
    assert.equal(
      await ctl(eps, ["get", "foo1", `--rev=${first.kvs[0].mod_revision}`, "--print-value-only"]),
      "a\n",
    );
    assert.equal(
      await ctl(eps, ["get", "foo", "--from-key", "--keys-only", "--limit=2"]),
      "foo1\n\nfoo2\n\n",
    );
    assert.equal((await ctl(eps, ["del", "foo", "--prefix"])).trim(), "3");
    assert.equal(await ctl(eps, ["get", "foo", "--prefix"]), "");
    // Serializable reads are answered by any member from its own state.
    assert.equal(
      await ctl(addressOf(cluster.members[2]!), ["get", "zoo", "--consistency=s", "--print-value-only"]),
      "z\n",
    );
  });

  it("refuses bad requests with etcd's errors and changes nothing", async () => {
    await assert.rejects(ctl(eps, ["put", "", "v"]), /key is not provided/);
    await assert.rejects(ctl(eps, ["put", "k", "v", "--lease=1234"]), /requested lease not found/);
    await assert.rejects(ctl(eps, ["get", "zoo", "--rev=100000"]), /future revision/);
    assert.equal(await ctl(eps, ["get", "k"]), "");
  });

  it("runs a txn", async () => {
    await ctl(eps, ["put", "tx", "1"]);
    const out = await ctl(eps, ["txn"], 'value("tx") = "1"\n\nput tx 2\nget tx\n\nput tx failed\n\n');
    assert.match(out, /^SUCCESS\n\nOK\n\ntx\n2\n$/);
    const failed = await ctl(eps, ["txn"], 'value("tx") = "1"\n\nput tx 3\n\nget tx\n\n');
    assert.match(failed, /^FAILURE\n\ntx\n2\n$/);
  });

  it("watches from a past revision (history) and live", async () => {
    const first = JSON.parse(await ctl(eps, ["put", "w1", "x", "-w", "json"]));
    await ctl(eps, ["put", "w1", "y"]);
    const watcher = spawn("etcdctl", [`--endpoints=${eps}`, "watch", "w1", `--rev=${first.header.revision}`]);
    let out = "";
    watcher.stdout.on("data", (c) => {
      out += c;
    });
    try {
      await eventually("history events", async () => (out.includes("w1\ny\n") ? true : undefined));
      await ctl(eps, ["put", "w1", "live"]);
      await eventually("live event", async () => (out.includes("w1\nlive\n") ? true : undefined));
      assert.equal(out, "PUT\nw1\nx\nPUT\nw1\ny\nPUT\nw1\nlive\n");
    } finally {
      watcher.kill();
    }
  });

  it("grants, keeps alive, inspects and revokes leases; revoking deletes attached keys", async () => {
    const granted = await ctl(eps, ["lease", "grant", "60"]);
    const id = /lease ([0-9a-f]+) granted with TTL\(60s\)/.exec(granted)?.[1];
    assert.ok(id, granted);
    await ctl(eps, ["put", "leased", "v", `--lease=${id}`]);
    // Keep-alive and time-to-live on every member: followers forward to the leader.
    for (const m of cluster.members) {
      assert.match(
        await ctl(addressOf(m), ["lease", "keep-alive", "--once", id]),
        new RegExp(`lease ${id} keepalived with TTL\\(60\\)`),
      );
      assert.match(
        await ctl(addressOf(m), ["lease", "timetolive", id, "--keys"]),
        new RegExp(
          `lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased\\]\\)`,
        ),
      );
    }
    assert.match(await ctl(eps, ["lease", "list"]), new RegExp(id));
    assert.match(await ctl(eps, ["lease", "revoke", id]), /revoked/);
    assert.equal(await ctl(eps, ["get", "leased"]), "");
    assert.match(await ctl(eps, ["lease", "timetolive", id]), /already expired/);
  });

  it("expires a lease that is not kept alive", async () => {
    const granted = await ctl(eps, ["lease", "grant", "3"]);
    const id = /lease ([0-9a-f]+) granted/.exec(granted)![1]!;
    await ctl(eps, ["put", "shortlived", "v", `--lease=${id}`]);
    await eventually("lease expiry", async () =>
      (await ctl(eps, ["get", "shortlived"])) === "" ? true : undefined,
    );
  });

  it("reports status and health, defragments, lists alarms, saves a snapshot", async () => {
    const statuses = await Promise.all(cluster.members.map(statusOf));
    const leaders = new Set(statuses.map((s) => s.leader));
    assert.equal(leaders.size, 1, "every member names the same leader");
    assert.ok(statuses.some((s) => s.id === [...leaders][0]));
    // etcdctl 3.4 prints health to stderr.
    const health = await run("etcdctl", [`--endpoints=${eps}`, "endpoint", "health"]);
    assert.equal(
      health.stderr.match(/is healthy: successfully committed proposal/g)?.length,
      3,
      health.stderr,
    );
    for (const m of cluster.members)
      assert.match(await ctl(addressOf(m), ["defrag"]), /Finished defragmenting/);
    assert.equal(await ctl(eps, ["alarm", "list"]), "");
    const file = join(cluster.root, "snap.db");
    assert.match(await ctl(addressOf(cluster.members[0]!), ["snapshot", "save", file]), /Snapshot saved/);
    assert.ok((await stat(file)).size > 32);
    const hashes = JSON.parse(await ctl(eps, ["endpoint", "hashkv", "-w", "json"]));
    assert.equal(
      new Set(hashes.map((h: { HashKV: { hash: number } }) => h.HashKV.hash)).size,
      1,
      "members agree",
    );
  });

  it("serves etcdctl lock and elect (v3lock and v3election)", async () => {
    const holder = spawn("etcdctl", [`--endpoints=${eps}`, "lock", "the-lock"]);
    let held = "";
    holder.stdout.on("data", (c) => {
      held += c;
    });
    await eventually("first lock holder", async () =>
      /^the-lock\/[0-9a-f]+\n\n$/.test(held) ? true : undefined,
    );
    const waiter = spawn("etcdctl", [`--endpoints=${eps}`, "lock", "the-lock", "echo", "got-it"]);
    let waited = "";
    waiter.stdout.on("data", (c) => {
      waited += c;
    });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(waited, "", "the second contender waits while the lock is held");
    holder.kill("SIGINT");
    await eventually("second contender gets the lock", async () =>
      waited === "got-it\n" ? true : undefined,
    );

    const candidate = spawn("etcdctl", [`--endpoints=${eps}`, "elect", "the-election", "p1"]);
    let campaigned = "";
    candidate.stdout.on("data", (c) => {
      campaigned += c;
    });
    try {
      await eventually("candidate elected", async () =>
        /^the-election\/[0-9a-f]+\np1\n$/.test(campaigned) ? true : undefined,
      );
      const observer = spawn("etcdctl", [`--endpoints=${eps}`, "elect", "-l", "the-election"]);
      let observed = "";
      observer.stdout.on("data", (c) => {
        observed += c;
      });
      try {
        await eventually("observer sees the leader", async () =>
          observed === campaigned ? true : undefined,
        );
      } finally {
        observer.kill();
      }
    } finally {
      candidate.kill("SIGINT");
    }
  });

  it("adds a learner, promotes it, and removes a member", async () => {
    const newcomer = await cluster.newMember("m4");
    const added = await ctl(eps, ["member", "add", "m4", `--peer-urls=${newcomer.peerUrl}`, "--learner"]);
    const id = /Member\s+([0-9a-f]+)\s+added/.exec(added)?.[1];
    assert.ok(id, added);
    const initial = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)![1]!;
    await cluster.join(newcomer, initial);
    await eventually("learner listed as started", async () => {
      const list = await ctl(eps, ["member", "list"]);
      return list.includes(`${id}, started, m4, ${newcomer.peerUrl}, ${newcomer.clientUrl}, true`)
        ? true
        : undefined;
    });
    await assert.rejects(ctl(addressOf(newcomer), ["put", "x", "y"]), /rpc not supported for learner/);
    assert.equal(
      await ctl(addressOf(newcomer), ["get", "zoo", "--consistency=s", "--print-value-only"]),
      "z\n",
    );
    await eventually("promotion", async () =>
      (await ctl(eps, ["member", "promote", id])).includes("promoted") ? true : undefined,
    );
    assert.match(await ctl(eps, ["member", "list"]), new RegExp(`${id}, started, m4, .*, false`));
    assert.match(await ctl(eps, ["member", "remove", id]), /removed from cluster/);
    await eventually("removed member exits", async () => (newcomer.child === undefined ? true : undefined));
    assert.doesNotMatch(await ctl(eps, ["member", "list"]), new RegExp(id));
  });

  it("keeps its data across a restart", async () => {
    const m = cluster.members[1]!;
    await ctl(eps, ["put", "durable", "yes"]);
    assert.equal(await cluster.stop(m, "SIGTERM"), "SIGTERM");
    await cluster.restart(m);
    assert.equal(await ctl(addressOf(m), ["get", "durable", "--print-value-only"]), "yes\n");
  });

  it("survives SIGKILL of the leader under writes: new leader, no acknowledged write lost, rejoin", async () => {
    const all = cluster.members.slice(0, 3);
    const leaderId = (await statusOf(all[0]!)).leader;
    const statuses = await Promise.all(all.map(async (m) => ({ m, s: await statusOf(m) })));
    const leader = statuses.find((x) => x.s.id === leaderId)!.m;
    const others = all.filter((m) => m !== leader);
    const othersEps = others.map(addressOf).join(",");

    const acknowledged: number[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; i < 400 && !stop; i++) {
        try {
          await ctl(othersEps, ["put", `loop/${String(i).padStart(4, "0")}`, String(i)]);
          acknowledged.push(i);
        } catch {
          // Writes during the election may fail; only acknowledged ones must survive.
        }
      }
    })();
    await eventually("some writes", async () => (acknowledged.length >= 5 ? true : undefined));
    const killedAt = Date.now();
    await cluster.stop(leader, "SIGKILL");
    const newLeader = await eventually("a new leader", async () => {
      const s = await statusOf(others[0]!);
      return s.leader !== 0 && s.leader !== leaderId ? s.leader : undefined;
    });
    const failoverMs = Date.now() - killedAt;
    process.stdout.write(
      `# failover: new leader ${newLeader.toString(16)} seen ${failoverMs} ms after SIGKILL\n`,
    );
    assert.ok(failoverMs < 15_000, `failover took ${failoverMs} ms`);
    const countAtKill = acknowledged.length;
    await eventually("writes continue", async () =>
      acknowledged.length >= countAtKill + 5 ? true : undefined,
    );
    stop = true;
    await writer;
    const keys = new Set(
      (await ctl(othersEps, ["get", "loop/", "--prefix", "--keys-only"])).split("\n").filter((l) => l !== ""),
    );
    for (const i of acknowledged)
      assert.ok(keys.has(`loop/${String(i).padStart(4, "0")}`), `lost write ${i}`);
    await cluster.restart(leader);
    await eventually("the killed member catches up", async () => {
      const out = await ctl(addressOf(leader), [
        "get",
        "loop/",
        "--prefix",
        "--keys-only",
        "--consistency=s",
      ]);
      return out.split("\n").filter((l) => l !== "").length === keys.size ? true : undefined;
    });
  });
});
