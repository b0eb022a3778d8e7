// A member started from etcd's YAML config file alone (--config-file; flags and ETCD_* next to
// it are ignored, as in etcd), with --experimental-watch-progress-notify-interval taken from the
// file: a progress_notify watch hears the revision while nothing changes.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import { credentials } from "@grpc/grpc-js";
import { startMemberProcess } from "./local-cluster.js";

describe("a member configured by --config-file", () => {
  let dir: string;
  let member: ChildProcess;
  let endpoint: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "config-file-"));
    const [client, peer] = [await freePort(), await freePort()];
    endpoint = `127.0.0.1:${client}`;
    const config = join(dir, "etcd.yml");
    await writeFile(
      config,
      [
        "name: from-file",
        `data-dir: ${join(dir, "data")}`,
        `listen-client-urls: http://${endpoint}`,
        `advertise-client-urls: http://${endpoint}`,
        `listen-peer-urls: http://127.0.0.1:${peer}`,
        `initial-advertise-peer-urls: http://127.0.0.1:${peer}`,
        `initial-cluster: from-file=http://127.0.0.1:${peer}`,
        "experimental-watch-progress-notify-interval: 300ms",
        "log-outputs: [stderr]",
        "",
      ].join("\n"),
    );
    member = await startMemberProcess(["--config-file", config, "--name", "ignored"], {
      ...process.env,
      ETCD_LISTEN_CLIENT_URLS: "http://127.0.0.1:1",
    });
  });

  after(async () => {
    member?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("takes its name and URLs from the file, and sends progress notifications at its interval", async () => {
    const cluster = new etcdserverpb.ClusterClient(endpoint, credentials.createInsecure());
    const members = await new Promise<etcdserverpb.MemberListResponse>((resolve, reject) =>
      cluster.memberList(etcdserverpb.MemberListRequest.fromPartial({}), (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
    cluster.close();
    assert.deepEqual(
      members.members.map((m) => m.name),
      ["from-file"],
    );

    const watch = new etcdserverpb.WatchClient(endpoint, credentials.createInsecure());
    const stream = watch.watch();
    try {
      const responses: etcdserverpb.WatchResponse[] = [];
      const started = Date.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no progress notification: ${JSON.stringify(responses)}`)),
          5000,
        );
        stream.on("data", (res: etcdserverpb.WatchResponse) => {
          responses.push(res);
          if (!res.created && res.events.length === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
        stream.on("error", reject);
        stream.write(
          etcdserverpb.WatchRequest.fromPartial({
            createRequest: { key: Buffer.from("quiet"), progressNotify: true },
          }),
        );
      });
      const progress = responses.at(-1)!;
      assert.ok((progress.header?.revision ?? 0) >= 1);
      assert.equal(progress.watchId, responses[0]!.watchId);
      // Well before the 10-minute default.
      assert.ok(Date.now() - started < 5000);
    } finally {
      stream.cancel();
      watch.close();
    }
  });
});
