// A member serving its client URL over TLS (--auto-tls), driven by etcdctl 3.4 over TLS.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { freePort } from "@etcd-ts/testing";
import { startMemberProcess } from "./local-cluster.js";

const run = promisify(execFile);
const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;

describe("client URL over auto-TLS", { skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  let dir: string;
  let member: ChildProcess;
  let endpoint: string;

  const ctl = async (args: string[]) => {
    const { stdout } = await run(
      "etcdctl",
      [`--endpoints=${endpoint}`, "--insecure-transport=false", "--insecure-skip-tls-verify", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 15_000 },
    );
    return stdout;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "client-tls-"));
    const [client, peer] = [await freePort(), await freePort()];
    endpoint = `https://127.0.0.1:${client}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    const argv = ["--name", "t1", "--data-dir", join(dir, "data"), "--auto-tls"];
    argv.push("--listen-client-urls", endpoint, "--advertise-client-urls", endpoint);
    argv.push("--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl);
    argv.push("--initial-cluster", `t1=${peerUrl}`);
    member = await startMemberProcess(argv);
  });

  after(async () => {
    member?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("puts, gets and reports status over TLS; plaintext gets no answer", async () => {
    assert.match(await ctl(["put", "tls-key", "tls-value"]), /OK/);
    assert.equal(await ctl(["get", "tls-key", "--print-value-only"]), "tls-value\n");
    assert.match(await ctl(["endpoint", "status"]), /3\.4\.23/);
    await assert.rejects(
      run(
        "etcdctl",
        [`--endpoints=${endpoint.replace("https://", "")}`, "--command-timeout=2s", "get", "tls-key"],
        {
          env: { ...process.env, ETCDCTL_API: "3" },
          timeout: 15_000,
        },
      ),
    );
  });
});
