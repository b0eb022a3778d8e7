// --quota-backend-bytes as etcd 3.4 judges it: etcd's TestCtlV3Alarm session (13 pages of quota,
// 4 KiB puts until "database space exceeded") against a real etcd, then against our member with
// the same flags. NOSPACE must come at the same put, the alarm, /health and the sizes Status
// reports must read the same, and compaction + defrag + disarm must make room again.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freePort } from "@etcd-ts/testing";
import { ETCDCTL, haveRealEtcd, sideBySide, singleMemberFlags } from "./side-by-side.fixture.js";

const QUOTA = 13 * 4096;

function etcdctl(endpoint: string, ...args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) =>
    execFile(
      ETCDCTL,
      [`--endpoints=${endpoint}`, "--dial-timeout=3s", "--command-timeout=8s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ ok: err === null, out: `${stdout}${stderr}` }),
    ),
  );
}

interface Session {
  putsBeforeNoSpace: number;
  noSpaceError: string;
  alarmList: string;
  health: string;
  afterDefrag: { dbSize: number; dbSizeInUse: number };
  putAfterDisarm: string;
}

async function status(endpoint: string): Promise<{ dbSize: number; dbSizeInUse: number; revision: number }> {
  const { out } = await etcdctl(endpoint, "endpoint", "status", "-w", "json");
  const field = (name: string) => Number(new RegExp(`"${name}":(\\d+)`).exec(out)![1]);
  return { dbSize: field("dbSize"), dbSizeInUse: field("dbSizeInUse"), revision: field("revision") };
}

async function session(endpoint: string): Promise<Session> {
  assert.ok((await etcdctl(endpoint, "put", "1st_test", "a".repeat(64))).ok);
  let puts = 0;
  let noSpaceError = "";
  for (; puts < 30; puts++) {
    // etcd commits its backend every 100 ms and measures its size at each commit: puts further
    // apart than that are one commit each, the regime the model reproduces exactly (closer puts
    // share a commit on etcd, which then lets one or two more through before it notices).
    await new Promise((r) => setTimeout(r, 300));
    const put = await etcdctl(endpoint, "put", "2nd_test", "b".repeat(4096));
    if (!put.ok) {
      noSpaceError = /Error: (.*)/.exec(put.out)?.[1] ?? put.out;
      break;
    }
  }
  const alarmList = (await etcdctl(endpoint, "alarm", "list")).out;
  const health = await (await fetch(`${endpoint}/health`)).text();
  const { revision } = await status(endpoint);
  assert.ok((await etcdctl(endpoint, "compact", String(revision), "--physical")).ok);
  assert.ok((await etcdctl(endpoint, "defrag")).ok);
  const { dbSize, dbSizeInUse } = await status(endpoint);
  assert.ok((await etcdctl(endpoint, "alarm", "disarm")).ok);
  const putAfterDisarm = (await etcdctl(endpoint, "put", "4th_test", "a".repeat(64))).out;
  return {
    putsBeforeNoSpace: puts,
    noSpaceError,
    alarmList,
    health,
    afterDefrag: { dbSize, dbSizeInUse },
    putAfterDisarm,
  };
}

describe("--quota-backend-bytes trips NOSPACE where etcd 3.4 does", {
  timeout: 180_000,
  skip: haveRealEtcd ? false : "etcd 3.4 not installed",
}, () => {
  let root: string;
  let etcd: Session;
  let ours: Session;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "quota-"));
    const clientUrl = `http://127.0.0.1:${await freePort()}`;
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    ({ etcd, ours } = await sideBySide(
      (dataDir) => [
        ...singleMemberFlags("quota-1", dataDir, clientUrl, peerUrl, "quota-token"),
        "--quota-backend-bytes",
        String(QUOTA),
      ],
      { etcd: join(root, "etcd"), ours: join(root, "ours") },
      () => session(clientUrl),
    ));
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  test("the same number of 4 KiB puts fit, then etcd's error", () => {
    // Three, as etcd when each put is its own backend commit. A starved etcd commits late and
    // judges a put against the size before the previous one, letting one more through; it never
    // stops earlier.
    assert.equal(ours.putsBeforeNoSpace, 3);
    assert.ok(etcd.putsBeforeNoSpace >= ours.putsBeforeNoSpace, `etcd took ${etcd.putsBeforeNoSpace}`);
    assert.equal(ours.noSpaceError, "etcdserver: mvcc: database space exceeded");
    assert.equal(ours.noSpaceError, etcd.noSpaceError);
  });

  test("alarm list and /health report the alarm as etcd does", () => {
    assert.match(ours.alarmList, /^memberID:\d+ alarm:NOSPACE/);
    assert.equal(ours.alarmList, etcd.alarmList);
    assert.equal(ours.health, etcd.health);
  });

  test("after compact --physical and defrag: the same dbSize and dbSizeInUse, and disarm makes room", () => {
    assert.deepEqual(ours.afterDefrag, etcd.afterDefrag);
    assert.equal(etcd.putAfterDisarm, "OK\n");
    assert.equal(ours.putAfterDisarm, etcd.putAfterDisarm);
  });
});
