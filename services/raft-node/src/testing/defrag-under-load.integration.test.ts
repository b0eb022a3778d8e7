// Maintenance.Defragment under a put load (issue 15, etcd issue 9222): a member defragmenting a
// database of a few hundred MB keeps acknowledging puts, because only the final swap holds the
// store; the defragmented size is what Status reports once the RPC returns (etcd's semantics).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { credentials, Metadata } from "@grpc/grpc-js";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf } from "./local-cluster.js";
import { suiteResources } from "./suite-clusters.fixture.js";

const MiB = 1024 * 1024;

function put(client: etcdserverpb.KVClient, key: string, value: Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    client.put(
      etcdserverpb.PutRequest.fromPartial({ key: Buffer.from(key), value }),
      new Metadata(),
      { deadline: Date.now() + 30_000 },
      (err) => (err === null ? resolve() : reject(err)),
    ),
  );
}

async function dbSize(ep: string): Promise<{ dbSize: number; dbSizeInUse: number }> {
  const [s] = JSON.parse(await etcdctl(ep, ["endpoint", "status", "-w", "json"])) as {
    Status: { dbSize: number; dbSizeInUse: number };
  }[];
  return s!.Status;
}

describe("defragmentation under a put load", {
  timeout: 240_000,
  skip: !haveEtcdctl && "etcdctl not installed",
}, () => {
  const owned = suiteResources();

  it("keeps acknowledging puts while it copies, and shrinks the database", async () => {
    const cluster = await owned.cluster({ size: 1 });
    const m = cluster.members[0]!;
    const ep = addressOf(m);
    const client = new etcdserverpb.KVClient(ep, credentials.createInsecure());
    try {
      // ~160 MB of incompressible values written twice, the first copy compacted away: the
      // defragmentation copies ~160 MB and leaves ~160 MB of garbage behind.
      const keys = 320;
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < keys; i += 4) {
          await Promise.all(
            [0, 1, 2, 3].map((j) =>
              put(client, `big/${String(i + j).padStart(4, "0")}`, randomBytes(MiB / 2)),
            ),
          );
        }
      }
      const status = JSON.parse(await etcdctl(ep, ["get", "big/0000", "-w", "json"])) as {
        header: { revision: number };
      };
      await etcdctl(ep, ["compact", String(status.header.revision), "--physical"]);
      const before = await dbSize(ep);

      // 8 writers of small puts, bounded; each completion's time is kept.
      const completions: number[] = [];
      const acked = new Set<string>();
      let stop = false;
      const writers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; !stop && i < 100_000; i++) {
          const key = `small/${w}/${i % 100}`;
          await put(client, key, Buffer.alloc(256, 120));
          completions.push(performance.now());
          acked.add(key);
        }
      });
      await new Promise((r) => setTimeout(r, 500));
      const started = performance.now();
      assert.match(await etcdctl(ep, ["defrag"]), /Finished defragmenting/);
      const ended = performance.now();
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(writers);

      const during = completions.filter((t) => t > started && t < ended);
      let gap = 0;
      let last = started;
      for (const t of during) {
        gap = Math.max(gap, t - last);
        last = t;
      }
      gap = Math.max(gap, ended - last);
      const defragMs = ended - started;
      console.log(
        `defrag ${defragMs.toFixed(0)} ms, ${during.length} puts completed meanwhile, longest gap ${gap.toFixed(0)} ms; ${
          m.output.split("\n").find((l) => l.includes("finished defragmenting")) ?? "no log line"
        }`,
      );
      // The old defragmentation held every apply for its whole copy: no put completed and the
      // gap was the defragmentation's length. Now only the swap holds them.
      assert.ok(during.length > 0, `no put completed during a ${defragMs.toFixed(0)} ms defragmentation`);
      assert.ok(
        gap < Math.max(1_000, defragMs / 2),
        `puts stalled ${gap.toFixed(0)} ms of a ${defragMs.toFixed(0)} ms defragmentation`,
      );
      const after = await dbSize(ep);
      assert.ok(after.dbSize < before.dbSize * 0.75, `dbSize ${before.dbSize} -> ${after.dbSize}`);
      // Every big key survived with its second value's size.
      const count = JSON.parse(
        await etcdctl(ep, ["get", "big/", "--prefix", "--keys-only", "-w", "json"]),
      ) as {
        count: number;
      };
      assert.equal(count.count, keys);

      // The member now lives in its copy (snap/db.defrag, marked); killed there, it restarts
      // from the copy, moved back to snap/db, with every acknowledged put.
      const snap = join(m.dataDir, "member", "snap");
      const dbEntries = async () =>
        (await readdir(snap))
          .filter((f) => f.startsWith("db"))
          .sort()
          .join(",");
      // The replaced database is closed and removed in the background.
      await eventually(
        "the old snap/db removed",
        async () => (await dbEntries()) === "db.defrag,db.defrag.complete",
      );
      await etcdctl(ep, ["put", "after-defrag", "yes"]);
      await cluster.stop(m, "SIGKILL");
      await cluster.restart(m);
      assert.deepEqual(
        (await readdir(snap)).filter((f) => f.startsWith("db")),
        ["db"],
      );
      assert.match(await etcdctl(ep, ["get", "after-defrag"]), /yes/);
      const small = JSON.parse(
        await etcdctl(ep, ["get", "small/", "--prefix", "--keys-only", "-w", "json"]),
      ) as {
        count: number;
      };
      assert.equal(small.count, acked.size, "every acknowledged put's key");
    } finally {
      client.close();
    }
  });
});
