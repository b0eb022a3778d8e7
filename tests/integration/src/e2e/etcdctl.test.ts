// etcdctl 3.4 against the full stack: every command goes through the gateway's gRPC port
// unless it is a per-member command (endpoint status/health, defrag), which names members.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type CommandResult, ETCDCTL, EtcdctlProcess, etcdctl, Stack, sleep } from "./stack.js";

interface JsonHeader {
  cluster_id: number;
  member_id: number;
  revision: number;
  raft_term: number;
}
interface JsonKv {
  key: string;
  value?: string;
  create_revision: number;
  mod_revision: number;
  version: number;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => Buffer.from(s ?? "", "base64").toString();

function ok(r: CommandResult): string {
  assert.equal(r.code, 0, `etcdctl failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Parses etcdctl's "simple" get output: key and value lines alternating. */
function pairs(stdout: string): [string, string][] {
  const lines = stdout.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) out.push([lines[i] ?? "", lines[i + 1] ?? ""]);
  return out;
}

describe("etcdctl 3.4 through the gateway", {
  timeout: 120_000,
  skip: existsSync(ETCDCTL) ? false : `etcdctl not installed at ${ETCDCTL}`,
}, () => {
  let stack: Stack;
  let gw: string;
  /** Members as host:port (see the http:// test below for why not URLs). */
  let members: string;
  let scratch: string;
  const ctl = (args: string[], input?: string) => etcdctl(gw, args, input === undefined ? {} : { input });

  before(async () => {
    stack = await Stack.start();
    gw = stack.gatewayAddr;
    members = stack.memberEndpoints.replaceAll("http://", "");
    scratch = await mkdtemp(join(tmpdir(), "e2e-etcdctl-"));
  });
  after(async () => {
    await stack?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("put and get: --prefix, --from-key, --limit, --sort-by, --order, --keys-only", async () => {
    for (const [k, v] of [
      ["r/b", "2"],
      ["r/a", "3"],
      ["r/c", "1"],
      ["s/x", "9"],
    ] as const) {
      assert.equal(ok(await ctl(["put", k, v])), "OK\n");
    }
    assert.deepEqual(pairs(ok(await ctl(["get", "r/", "--prefix"]))), [
      ["r/a", "3"],
      ["r/b", "2"],
      ["r/c", "1"],
    ]);
    const fromKey = ok(await ctl(["get", "r/c", "--from-key", "--keys-only"]))
      .split("\n")
      .filter((l) => l !== "");
    assert.deepEqual(fromKey.slice(0, 2), ["r/c", "s/x"]);
    assert.ok(!fromKey.includes("r/b"));
    assert.deepEqual(pairs(ok(await ctl(["get", "r/", "--prefix", "--limit=2"]))), [
      ["r/a", "3"],
      ["r/b", "2"],
    ]);
    assert.deepEqual(pairs(ok(await ctl(["get", "r/", "--prefix", "--sort-by=VALUE", "--order=ASCEND"]))), [
      ["r/c", "1"],
      ["r/b", "2"],
      ["r/a", "3"],
    ]);
    assert.deepEqual(
      pairs(ok(await ctl(["get", "r/", "--prefix", "--sort-by=KEY", "--order=DESCEND", "--limit=2"]))),
      [
        ["r/c", "1"],
        ["r/b", "2"],
      ],
    );
    // --limit keeps the full count and sets more=true, as etcd does.
    const limited = JSON.parse(ok(await ctl(["get", "r/", "--prefix", "--limit=1", "-w", "json"]))) as {
      kvs: JsonKv[];
      count: number;
      more?: boolean;
    };
    assert.equal(limited.kvs.length, 1);
    assert.equal(limited.count, 3);
    assert.equal(limited.more, true);
  });

  test("--count-only does not exist in etcdctl 3.4: the count comes from -w json", async () => {
    const r = await ctl(["get", "r/", "--prefix", "--count-only"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown flag: --count-only/);
  });

  test("-w json: revisions in the header, --rev reads the past", async () => {
    const put1 = JSON.parse(ok(await ctl(["put", "rev/k", "one", "-w", "json"]))) as { header: JsonHeader };
    const put2 = JSON.parse(ok(await ctl(["put", "rev/k", "two", "-w", "json"]))) as { header: JsonHeader };
    assert.ok(put1.header.revision > 0);
    assert.equal(put2.header.revision, put1.header.revision + 1);
    assert.ok(put1.header.cluster_id > 0 && put1.header.member_id > 0 && put1.header.raft_term > 0);
    const now = JSON.parse(ok(await ctl(["get", "rev/k", "-w", "json"]))) as {
      header: JsonHeader;
      kvs: JsonKv[];
      count: number;
    };
    assert.ok(now.header.revision >= put2.header.revision);
    assert.equal(now.header.cluster_id, put1.header.cluster_id);
    assert.equal(now.count, 1);
    const kv = now.kvs[0];
    assert.ok(kv);
    assert.equal(kv.key, b64("rev/k"));
    assert.equal(unb64(kv.value), "two");
    assert.equal(kv.create_revision, put1.header.revision);
    assert.equal(kv.mod_revision, put2.header.revision);
    assert.equal(kv.version, 2);
    const past = JSON.parse(
      ok(await ctl(["get", "rev/k", "-w", "json", `--rev=${put1.header.revision}`])),
    ) as { kvs: JsonKv[] };
    assert.equal(unb64(past.kvs[0]?.value), "one");
    const before = JSON.parse(
      ok(await ctl(["get", "rev/k", "-w", "json", `--rev=${put1.header.revision - 1}`])),
    ) as { kvs?: JsonKv[] };
    assert.equal(before.kvs, undefined);
  });

  test("del --prev-kv and --prefix", async () => {
    ok(await ctl(["put", "d/1", "a"]));
    ok(await ctl(["put", "d/2", "b"]));
    ok(await ctl(["put", "d/3", "c"]));
    assert.equal(ok(await ctl(["del", "d/1", "--prev-kv"])), "1\nd/1\na\n");
    assert.equal(ok(await ctl(["del", "d/", "--prefix"])), "2\n");
    assert.equal(ok(await ctl(["get", "d/", "--prefix"])), "");
    assert.equal(ok(await ctl(["del", "d/missing"])), "0\n");
  });

  test("txn from stdin: compares, success and failure branches", async () => {
    ok(await ctl(["put", "t/k", "1"]));
    const success = ok(
      await ctl(["txn"], 'value("t/k") = "1"\n\nput t/k 2\nput t/other yes\n\nput t/k failed\n\n'),
    );
    assert.equal(success, "SUCCESS\n\nOK\n\nOK\n");
    assert.deepEqual(pairs(ok(await ctl(["get", "t/", "--prefix"]))), [
      ["t/k", "2"],
      ["t/other", "yes"],
    ]);
    const failure = ok(await ctl(["txn", "-w", "json"], 'value("t/k") = "1"\n\nput t/k 3\n\nget t/k\n\n'));
    const parsed = JSON.parse(failure) as {
      succeeded?: boolean;
      responses: { Response: { ResponseRange?: { kvs: JsonKv[] } } }[];
    };
    assert.notEqual(parsed.succeeded, true);
    assert.equal(unb64(parsed.responses[0]?.Response.ResponseRange?.kvs[0]?.value), "2");
    assert.equal(ok(await ctl(["get", "t/k", "--print-value-only"])), "2\n");
  });

  test("watch --rev replays history, then follows live events", async () => {
    const first = JSON.parse(ok(await ctl(["put", "w/a", "1", "-w", "json"]))) as { header: JsonHeader };
    ok(await ctl(["put", "w/b", "2"]));
    ok(await ctl(["del", "w/a"]));
    const watch = new EtcdctlProcess(gw, ["watch", "w/", "--prefix", `--rev=${first.header.revision}`]);
    try {
      // A DELETE prints the key and an empty value line.
      const expectedHistory = "PUT\nw/a\n1\nPUT\nw/b\n2\nDELETE\nw/a\n\n";
      assert.ok(
        await watch.waitFor((s) => s.includes(expectedHistory)),
        `history: ${watch.stdout} ${watch.stderr}`,
      );
      ok(await ctl(["put", "w/c", "3"]));
      assert.ok(await watch.waitFor((s) => s.includes("PUT\nw/c\n3\n")), `live: ${watch.stdout}`);
      assert.equal(watch.stdout, `${expectedHistory}PUT\nw/c\n3\n`);
    } finally {
      await watch.stop();
    }
  });

  test("watch --rev below the compacted revision is refused with etcd's message", async () => {
    const a = JSON.parse(ok(await ctl(["put", "c/k", "1", "-w", "json"]))) as { header: JsonHeader };
    const b = JSON.parse(ok(await ctl(["put", "c/k", "2", "-w", "json"]))) as { header: JsonHeader };
    assert.equal(
      ok(await ctl(["compact", String(b.header.revision)])),
      `compacted revision ${b.header.revision}\n`,
    );
    const watch = new EtcdctlProcess(gw, ["watch", "c/k", `--rev=${a.header.revision}`]);
    const exited = await Promise.race([watch.wait(), sleep(10_000).then(() => "timeout")]);
    await watch.stop();
    assert.notEqual(exited, "timeout", "watch on a compacted revision did not end");
    assert.match(
      watch.stdout + watch.stderr,
      /watch was canceled \(etcdserver: mvcc: required revision has been compacted\)/,
    );
    const old = await ctl(["get", "c/k", `--rev=${a.header.revision}`]);
    assert.notEqual(old.code, 0);
    assert.match(old.stderr, /etcdserver: mvcc: required revision has been compacted/);
    // At the compacted revision itself the watch is allowed and replays from there.
    const atCompact = new EtcdctlProcess(gw, ["watch", "c/k", `--rev=${b.header.revision}`]);
    try {
      assert.ok(await atCompact.waitFor((s) => s.includes("PUT\nc/k\n2\n")), atCompact.stderr);
    } finally {
      await atCompact.stop();
    }
  });

  test("lease grant, keep-alive --once, timetolive --keys, revoke removes the keys", async () => {
    const grant = ok(await ctl(["lease", "grant", "30"]));
    const match = /^lease ([0-9a-f]+) granted with TTL\(30s\)\n$/.exec(grant);
    assert.ok(match, grant);
    const id = match[1] as string;
    ok(await ctl(["put", "--lease", id, "l/a", "1"]));
    ok(await ctl(["put", "--lease", id, "l/b", "2"]));
    assert.equal(
      ok(await ctl(["lease", "keep-alive", "--once", id])),
      `lease ${id} keepalived with TTL(30)\n`,
    );
    const ttl = ok(await ctl(["lease", "timetolive", "--keys", id]));
    assert.match(
      ttl,
      new RegExp(
        `^lease ${id} granted with TTL\\(30s\\), remaining\\((\\d+)s\\), attached keys\\(\\[l/a l/b\\]\\)\\n$`,
      ),
    );
    const remaining = Number(/remaining\((\d+)s\)/.exec(ttl)?.[1]);
    assert.ok(remaining > 20 && remaining <= 30, ttl);
    assert.ok(ok(await ctl(["lease", "list"])).includes(id));
    assert.equal(ok(await ctl(["lease", "revoke", id])), `lease ${id} revoked\n`);
    assert.equal(ok(await ctl(["get", "l/", "--prefix"])), "");
    assert.match(ok(await ctl(["lease", "timetolive", id])), new RegExp(`lease ${id} already expired`));
    const again = await ctl(["lease", "keep-alive", "--once", id]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /etcdserver: requested lease not found/);
  });

  test("keep-alive right after revoke is refused (lease not found)", async () => {
    const id = /^lease ([0-9a-f]+) granted/.exec(ok(await ctl(["lease", "grant", "30"])))?.[1];
    assert.ok(id);
    ok(await ctl(["lease", "keep-alive", "--once", id]));
    ok(await ctl(["lease", "revoke", id]));
    const r = await ctl(["lease", "keep-alive", "--once", id]);
    assert.notEqual(r.code, 0, `revoked lease kept alive: ${r.stdout}`);
    assert.match(r.stderr, /etcdserver: requested lease not found/);
  });

  test("lock: runs the command under the lock, a second holder waits for the first", async () => {
    const once = await ctl(["lock", "e2e-lock", "--", "echo", "locked"]);
    if (once.code !== 0 && /Unimplemented/i.test(once.stderr)) {
      assert.fail(`the Lock service answered Unimplemented: ${once.stderr}`);
    }
    assert.equal(ok(once), "locked\n");
    const holder = new EtcdctlProcess(gw, ["lock", "e2e-lock2"]);
    let waiter: EtcdctlProcess | undefined;
    try {
      assert.ok(await holder.waitFor((s) => s.startsWith("e2e-lock2/")), `holder: ${holder.stderr}`);
      waiter = new EtcdctlProcess(gw, ["lock", "e2e-lock2", "--", "echo", "second"]);
      await sleep(1_500);
      assert.equal(waiter.stdout, "", "the second locker got the lock while the first held it");
      // SIGINT makes etcdctl close its session (revoke its lease), releasing the lock.
      await holder.stop("SIGINT");
      assert.equal(
        await Promise.race([waiter.wait(), sleep(15_000).then(() => "timeout")]),
        0,
        waiter.stderr,
      );
      assert.equal(waiter.stdout, "second\n");
    } finally {
      await holder.stop();
      await waiter?.stop();
    }
  });

  test("elect: a campaign becomes leader and its proposal is visible; -l observes it", async () => {
    const candidate = new EtcdctlProcess(gw, ["elect", "e2e-elect", "proposal-1"]);
    const observer = new EtcdctlProcess(gw, ["elect", "-l", "e2e-elect"]);
    try {
      assert.ok(
        await candidate.waitFor((s) => /^e2e-elect\/[0-9a-f]+\nproposal-1\n/.test(s)),
        `campaign: ${candidate.stdout} ${candidate.stderr}`,
      );
      assert.doesNotMatch(candidate.stderr, /Unimplemented/i);
      assert.ok(await observer.waitFor((s) => s.includes("proposal-1")), `observe: ${observer.stderr}`);
      assert.equal(ok(await ctl(["get", "e2e-elect/", "--prefix", "--print-value-only"])), "proposal-1\n");
    } finally {
      await candidate.stop("SIGINT");
      await observer.stop();
    }
    // Resigning (SIGINT closes the session) removes the candidate's key.
    assert.equal(ok(await ctl(["get", "e2e-elect/", "--prefix"])), "");
  });

  test("member list", async () => {
    const table = ok(await ctl(["member", "list"]));
    const rows = table.split("\n").filter((l) => l !== "");
    assert.equal(rows.length, 3);
    for (const m of stack.cluster.members) {
      assert.ok(
        rows.some((r) => r.includes(`, started, ${m.name}, ${m.peerUrl}, ${m.clientUrl}, false`)),
        `${m.name} missing in:\n${table}`,
      );
    }
  });

  test("endpoint status and health against the members; exactly one leader", async () => {
    const status = JSON.parse(ok(await etcdctl(members, ["endpoint", "status", "-w", "json"]))) as {
      Endpoint: string;
      Status: { header: JsonHeader; leader: number; raftTerm: number; version: string };
    }[];
    assert.equal(status.length, 3);
    const leaders = new Set(status.map((s) => s.Status.leader));
    assert.equal(leaders.size, 1);
    const ids = status.map((s) => s.Status.header.member_id);
    assert.ok(ids.includes([...leaders][0] as number));
    assert.equal(new Set(ids).size, 3);
    for (const s of status) assert.equal(s.Status.version, "3.4.23");
    // etcdctl 3.4 prints the health lines on stderr.
    const healthResult = await etcdctl(members, ["endpoint", "health"]);
    ok(healthResult);
    const health = healthResult.stdout + healthResult.stderr;
    assert.equal((health.match(/is healthy: successfully committed proposal/g) ?? []).length, 3, health);
    // Through the gateway: one answer (the leader's, as the README says).
    const viaGateway = JSON.parse(ok(await ctl(["endpoint", "status", "-w", "json"]))) as {
      Status: { header: JsonHeader; leader: number };
    }[];
    assert.equal(viaGateway[0]?.Status.header.member_id, viaGateway[0]?.Status.leader);
  });

  test("per-endpoint Maintenance calls with http:// URLs (etcdctl's documented form)", async () => {
    // clientv3 dials these with the URL as target, so grpc-go sends `:authority: http://...`.
    const urls = stack.memberEndpoints;
    const status = ok(await etcdctl(urls, ["endpoint", "status"]));
    assert.equal(status.trim().split("\n").length, 3, status);
    const hashes = ok(await etcdctl(urls, ["endpoint", "hashkv"]));
    assert.equal(
      new Set(
        hashes
          .trim()
          .split("\n")
          .map((l) => l.split(", ")[1]),
      ).size,
      1,
      hashes,
    );
    // --cluster: the endpoints come from member list, as URLs.
    const cluster = ok(await etcdctl(urls.split(",")[0]!, ["endpoint", "status", "--cluster", "-w", "json"]));
    assert.equal((JSON.parse(cluster) as unknown[]).length, 3);
    const defrag = ok(await etcdctl(urls, ["defrag"]));
    assert.equal((defrag.match(/Finished defragmenting etcd member\[http:/g) ?? []).length, 3, defrag);
    // And the gateway's port takes the URL form too.
    assert.match(ok(await etcdctl(`http://${gw}`, ["endpoint", "status"])), /^http:\/\//);
  });

  test("a member's client port answers etcd's HTTP/1.1 endpoints next to gRPC", async () => {
    const member = stack.memberEndpoints.split(",")[0]!;
    const health = await fetch(`${member}/health`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), '{"health":"true"}');
    const version = await fetch(`${member}/version`);
    assert.deepEqual(await version.json(), { etcdserver: "3.4.23", etcdcluster: "3.4.0" });
    assert.equal((await fetch(`${member}/health`, { method: "POST" })).status, 405);
    assert.equal((await fetch(`${member}/no-such-path`)).status, 404);
    // gRPC still works on that port after HTTP/1.1 connections came and went.
    ok(await etcdctl(member, ["put", "after-http1", "x"]));
  });

  test("defrag the members and through the gateway; alarm list is empty", async () => {
    const d = ok(await etcdctl(members, ["defrag"]));
    assert.equal((d.match(/Finished defragmenting etcd member/g) ?? []).length, 3, d);
    assert.equal(ok(await ctl(["defrag"])), `Finished defragmenting etcd member[${gw}]\n`);
    assert.equal(ok(await ctl(["alarm", "list"])), "");
    ok(await ctl(["put", "after-defrag", "x"]));
    assert.equal(ok(await ctl(["get", "after-defrag", "--print-value-only"])), "x\n");
  });

  test("snapshot save writes etcd's file format, which snapshot status reads", async () => {
    const file = join(scratch, "snap.db");
    const r = await ctl(["snapshot", "save", file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Snapshot saved at/);
    assert.ok(existsSync(file));
    assert.ok(statSync(file).size > 0);
    // Through the gateway too it is etcd's file: etcdctl reads it back.
    const status = await ctl(["snapshot", "status", file, "-w", "json"]);
    assert.equal(status.code, 0, status.stderr);
    assert.ok((JSON.parse(status.stdout) as { revision: number }).revision > 0);
  });

  test("errors carry etcd's messages", async () => {
    const emptyKey = await ctl(["put", "", "x"]);
    assert.notEqual(emptyKey.code, 0);
    assert.match(emptyKey.stderr, /Error: etcdserver: key is not provided/);

    const puts = Array.from({ length: 129 }, (_, i) => `put big/${i} v`).join("\n");
    const tooMany = await ctl(["txn"], `\n${puts}\n\n\n`);
    assert.notEqual(tooMany.code, 0);
    assert.match(tooMany.stderr, /Error: etcdserver: too many operations in txn request/);
    assert.match(tooMany.stderr, /code = InvalidArgument/);
    // 128 is still allowed.
    const max = await ctl(["txn"], `\n${puts.split("\n").slice(0, 128).join("\n")}\n\n\n`);
    assert.equal(max.code, 0, max.stderr);
    assert.match(max.stdout, /^SUCCESS\n/);

    const head = JSON.parse(ok(await ctl(["get", "x", "-w", "json"]))) as { header: JsonHeader };
    const future = await ctl(["get", "x", `--rev=${head.header.revision + 1000}`]);
    assert.notEqual(future.code, 0);
    assert.match(future.stderr, /Error: etcdserver: mvcc: required revision is a future revision/);
    assert.match(future.stderr, /code = OutOfRange/);

    // Over --max-request-bytes (1.5 MiB) but under gRPC's receive limit: the member refuses it
    // and nothing is written.
    const tooLarge = await ctl(["put", "too-large"], "v".repeat(1.6 * 1024 * 1024));
    assert.notEqual(tooLarge.code, 0);
    assert.match(tooLarge.stderr, /Error: etcdserver: request is too large/);
    assert.match(tooLarge.stderr, /code = InvalidArgument/);
    assert.equal(ok(await ctl(["get", "too-large", "--keys-only"])), "");
  });
});
