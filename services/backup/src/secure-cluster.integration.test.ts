// The backup service against a closed cluster: members that require client certificates
// (scripts/gen-test-certs.sh makes a fresh CA) and have auth enabled. Backups and deltas go over
// mTLS as root; a missing or wrong user is refused at once, with the member's reason.
import assert from "node:assert/strict";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { LocalCluster, startMemberProcess } from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";
import { backupCli } from "./s3rver-process.testing.js";

const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;
const run = promisify(execFile);
const script = resolve(import.meta.dirname, "../../../scripts/gen-test-certs.sh");

describe("backups of a cluster with client certificates and auth enabled", {
  skip: haveEtcdctl ? false : "etcdctl not installed",
  timeout: 120_000,
}, () => {
  const dir = mkdtempSync(join(tmpdir(), "backup-secure-"));
  const cert = (name: string) => join(dir, "certs", name);
  const tlsFlags = () => [
    `--cacert=${cert("ca.crt")}`,
    `--cert=${cert("client.crt")}`,
    `--key=${cert("client.key")}`,
  ];
  let cluster: LocalCluster;
  let endpoint: string;
  const ctl = (...args: string[]) =>
    run("etcdctl", [`--endpoints=${endpoint}`, ...tlsFlags(), ...args]).then((r) => r.stdout);

  before(async () => {
    execFileSync("bash", [script, join(dir, "certs")]);
    cluster = await LocalCluster.start({
      size: 1,
      clientScheme: "https",
      flags: [
        "--bcrypt-cost=4",
        ...["--cert-file", cert("server.crt"), "--key-file", cert("server.key")],
        ...["--trusted-ca-file", cert("ca.crt"), "--client-cert-auth"],
      ],
    });
    endpoint = cluster.members[0]!.clientUrl;
    await ctl("user", "add", "root:rootpw");
    await ctl("role", "add", "root");
    await ctl("user", "grant-role", "root", "root");
    await ctl("user", "add", "alice:alicepw");
    await ctl("auth", "enable");
    for (let i = 0; i < 10; i++) await ctl("--user=root:rootpw", "put", `s/${i}`, `v${i}`);
  });
  after(async () => {
    await cluster?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("takes a full backup and a delta over mTLS as root (flags and ETCD_BACKUP_* variables)", async () => {
    const store = join(dir, "store");
    const full = await backupCli([
      "now",
      "--endpoints",
      endpoint,
      ...tlsFlags(),
      "--user=root:rootpw",
      "--dir",
      store,
    ]);
    assert.equal(full.code, 0, full.err);
    assert.match(full.out, /^backup \S+ from https:\/\/127\.0\.0\.1:\d+ \(leader [0-9a-f]+\)/);
    await ctl("--user=root:rootpw", "put", "s/after", "x");
    process.env.ETCD_BACKUP_USER = "root";
    process.env.ETCD_BACKUP_PASSWORD = "rootpw";
    try {
      const delta = await backupCli(["delta", "--endpoints", endpoint, ...tlsFlags(), "--dir", store]);
      assert.equal(delta.code, 0, delta.err);
      assert.match(delta.out, /revisions (\d+)\.\.\1, \d+ bytes/);
    } finally {
      delete process.env.ETCD_BACKUP_USER;
      delete process.env.ETCD_BACKUP_PASSWORD;
    }
    const listed = await backupCli(["list", "--dir", store]);
    assert.match(listed.out, /\tdelta\t/);
  });

  it("point-in-time restore replays the deltas as root, and the restored member keeps auth on", async () => {
    const store = join(dir, "store");
    const [id] = (await backupCli(["list", "--dir", store])).out.split("\t");
    const status = await ctl("--user=root:rootpw", "get", "s/after", "-w", "json");
    const target = Number(/"mod_revision":(\d+)/.exec(status)![1]);
    const peer = `http://127.0.0.1:${await freePort()}`;
    const client = `http://127.0.0.1:${await freePort()}`;
    const restoreTo = (dataDir: string, ...user: string[]) =>
      backupCli([
        "restore",
        id!,
        "--dir",
        store,
        `--to-revision=${target}`,
        ...user,
        "--name=r",
        `--data-dir=${dataDir}`,
        `--initial-cluster=r=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
      ]);
    const anonymous = await restoreTo(join(dir, "no-user"));
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.err, /user name is empty.*give --user root:PASSWORD/);
    const restored = await restoreTo(join(dir, "restored"), "--user=root:rootpw");
    assert.equal(restored.code, 0, restored.err);
    assert.match(restored.err, new RegExp(`\\+ \\d+ revisions from deltas -> revision ${target}`));
    const member = await startMemberProcess([
      "--name=r",
      `--data-dir=${join(dir, "restored")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=r=${peer}`,
    ]);
    try {
      const at = (...args: string[]) => run("etcdctl", [`--endpoints=${client}`, ...args]);
      await assert.rejects(at("get", "s/after"), /user name is empty/);
      assert.equal((await at("--user=root:rootpw", "get", "s/after", "--print-value-only")).stdout, "x\n");
    } finally {
      member.kill("SIGKILL");
    }
  });

  it("refuses at once, with the member's reason: a wrong password, a user who is not root, no user", async () => {
    const store = join(dir, "refused");
    const cases: [string[], RegExp][] = [
      [
        ["--user=root:wrong"],
        /authenticate as root on .*: etcdserver: authentication failed, invalid user ID or password/,
      ],
      [["--user=alice", "--password=alicepw"], /refused user alice: auth: permission denied/],
      // No --user: the client certificate's CN ("client") is the user, as in etcd, and unknown.
      [[], /refused a caller with no --user: auth: user name not found/],
    ];
    for (const [user, reason] of cases) {
      const started = Date.now();
      const r = await backupCli(["now", "--endpoints", endpoint, ...tlsFlags(), ...user, "--dir", store]);
      assert.equal(r.code, 1, `${user.join(" ")}: ${r.out}`);
      assert.match(r.err, reason, user.join(" "));
      assert.ok(Date.now() - started < 10_000, "refused credentials are not retried with back-off");
    }
    // Plaintext to a TLS member, or TLS without a CA: a clear configuration error.
    const plain = await backupCli(["now", "--endpoints", endpoint, "--dir", store]);
    assert.match(plain.err, /https endpoint .* needs --cacert/);
  });
});
