// A watch that starts far behind the head (revision 1 after thousands of writes, as a client
// resuming after a disconnect does) catches up from history and then follows live writes:
// exactly the prefix's events, in revision order, none twice, none missing across the switch
// from history to the live stream, while writes keep landing during the catch-up.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import { credentials } from "@grpc/grpc-js";
import { startMemberProcess } from "./local-cluster.js";

const HISTORY_PUTS = 6_000;
const WRITERS = 16;
const PREFIX = "catch/";

describe("watch catch-up from far behind on a real member", { timeout: 120_000 }, () => {
  let dir: string;
  let member: ChildProcess;
  let endpoint: string;
  let kv: etcdserverpb.KVClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "watch-catch-up-"));
    const [client, peer] = [await freePort(), await freePort()];
    endpoint = `127.0.0.1:${client}`;
    member = await startMemberProcess([
      "--name",
      "w1",
      "--data-dir",
      join(dir, "data"),
      "--listen-client-urls",
      `http://${endpoint}`,
      "--advertise-client-urls",
      `http://${endpoint}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-cluster",
      `w1=http://127.0.0.1:${peer}`,
    ]);
    kv = new etcdserverpb.KVClient(endpoint, credentials.createInsecure());
  });

  after(async () => {
    kv?.close();
    member?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  /** Puts `key`, resolving to the revision it was written at. */
  const put = (key: string, value: string) =>
    new Promise<number>((resolve, reject) =>
      kv.put(
        etcdserverpb.PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }),
        (err, res) => (err ? reject(err) : resolve(Number(res!.header!.revision))),
      ),
    );

  /** `count` puts over WRITERS concurrent callers; one in `every` goes to the watched prefix. */
  async function writeMany(count: number, every: number, tag: string, expected: Map<number, string>) {
    let next = 0;
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        while (next < count) {
          const i = next++;
          const key = i % every === 0 ? `${PREFIX}${tag}${i}` : `other/${i % 500}`;
          const revision = await put(key, `${tag}${i}`);
          if (key.startsWith(PREFIX)) expected.set(revision, key);
        }
      }),
    );
  }

  it("a watch from revision 1 gets exactly the prefix's history, then the live writes", async () => {
    const expected = new Map<number, string>();
    await writeMany(HISTORY_PUTS, 50, "h", expected);

    const watch = new etcdserverpb.WatchClient(endpoint, credentials.createInsecure());
    const stream = watch.watch();
    const seen: [number, string][] = [];
    let live: Promise<void> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`caught up ${seen.length} of ${expected.size} events`)),
          60_000,
        );
        let liveDone = false;
        const check = () => {
          if (liveDone && seen.length >= expected.size) {
            clearTimeout(timer);
            resolve();
          }
        };
        stream.on("error", reject);
        stream.on("data", (res: etcdserverpb.WatchResponse) => {
          if (res.canceled) reject(new Error(`watch canceled: ${res.cancelReason}`));
          for (const e of res.events) seen.push([Number(e.kv!.modRevision), e.kv!.key.toString()]);
          // Writes race the catch-up from its first answer on.
          live ??= writeMany(1_000, 10, "l", expected).then(() => {
            liveDone = true;
            check();
          });
          live.catch(reject);
          check();
        });
        stream.write(
          etcdserverpb.WatchRequest.fromPartial({
            createRequest: { key: Buffer.from(PREFIX), rangeEnd: Buffer.from("catch0"), startRevision: 1n },
          }),
        );
      });
      await live;
      // Nothing after the last expected event either (a duplicate would arrive as an extra).
      const last = await put(`${PREFIX}final`, "f");
      expected.set(last, `${PREFIX}final`);
      const deadline = Date.now() + 10_000;
      while (seen.length < expected.size && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
    } finally {
      stream.cancel();
      watch.close();
    }
    const want = [...expected].sort((a, b) => a[0] - b[0]);
    assert.equal(want.length, HISTORY_PUTS / 50 + 1_000 / 10 + 1);
    assert.deepEqual(seen, want);
  });
});
