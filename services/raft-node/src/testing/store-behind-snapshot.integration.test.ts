// A member whose database is behind the newest Raft snapshot on its disk (an older copy put
// back, a rollback, a removed database) must refuse to start, as etcd does, rather than serve a
// state machine missing the entries between the two: Raft replays only what follows the
// snapshot, and the log before it is gone. A real member, real RocksDB, real snapshots
// (--snapshot-count 50), and the database files swapped between runs as an operator would.
import assert from "node:assert/strict";
import { cp, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AckedWrites } from "./acked-writes.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

describe("a database behind the newest snapshot", { timeout: 180_000 }, () => {
  it("is refused at start with etcd's message; the database that matches starts", async () => {
    const cluster = await LocalCluster.start({
      size: 1,
      flags: ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"],
    });
    try {
      const m = cluster.members[0]!;
      const dbDir = join(m.dataDir, "member", "snap", "db");
      const writes = new AckedWrites([addressOf(m)]);
      await writes.run(() => writes.acked.size >= 10, 30_000, 1);
      await cluster.stop(m);
      // The database as of ~10 entries: taken before any snapshot (the first is due at 50).
      await cp(dbDir, `${dbDir}.early`, { recursive: true });
      await cluster.restart(m);
      await writes.run(() => writes.acked.size >= 170, 60_000, 2);
      await cluster.stop(m);
      const snaps = (await readdir(join(m.dataDir, "member", "snap"))).filter((f) => f.endsWith(".snap"));
      assert.ok(snaps.length > 0, "snapshots were taken");

      await rename(dbDir, `${dbDir}.current`);
      await rename(`${dbDir}.early`, dbDir);
      const early = await cluster.startUntilServingOrExit(m);
      assert.notEqual(early, "ready", `started on an early database:\n${m.output}`);
      assert.match(m.output, /database file \(\S+ index \d+\) does not match with snapshot \(index \d+\)/);

      await rm(dbDir, { recursive: true, force: true });
      const missing = await cluster.startUntilServingOrExit(m);
      assert.notEqual(missing, "ready", `started without a database:\n${m.output}`);
      assert.match(m.output, /database file \(\S+\) of the backend is missing/);

      await rename(`${dbDir}.current`, dbDir);
      assert.equal(await cluster.startUntilServingOrExit(m), "ready", m.output);
      assert.deepEqual(await writes.missingOn(addressOf(m)), []);
    } finally {
      await cluster.close();
    }
  });
});
