import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { extname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ReferenceKv, workloadRequest } from "./crash-workload.js";
import { rangeRequest } from "./request-builders.js";
import { MvccStore } from "./store.js";
import { tempDir } from "./store-fixture.js";

const KILLS = 15;
const MAX_INDEX = 200_000;
const here = fileURLToPath(import.meta.url);
const childScript = join(here, "..", `crash-child${extname(here)}`);
// Keep loader flags (tsx when run from sources), drop the test runner's own.
const childExecArgv = process.execArgv.filter((arg) => !arg.startsWith("--test"));

interface ChildRun {
  acked: number;
  exitedByItself: boolean;
}

/** Starts the writer, lets it acknowledge for a random while, then SIGKILLs it. */
function runAndKill(dir: string, seed: number, sync: boolean, killAfterMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...childExecArgv, childScript, dir, String(seed), String(MAX_INDEX), sync ? "sync" : "async"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let acked = 0;
    let pending = "";
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        const [what, index] = line.split(" ");
        if (what === "acked") acked = Number(index);
        if (what === "ready" && timer === undefined)
          timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      }
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL" && code !== 0) reject(new Error(`writer exited with ${code ?? signal}`));
      else resolve({ acked, exitedByItself: signal !== "SIGKILL" });
    });
  });
}

async function liveState(store: MvccStore): Promise<string[]> {
  const all = await store.range(rangeRequest({ key: "\0", rangeEnd: "\0" }));
  return all.kvs.map(
    (kv) =>
      `${kv.key.toString()}=${kv.value.toString()} c${kv.createRevision} m${kv.modRevision} v${kv.version} l${kv.lease}`,
  );
}

describe("crash safety", () => {
  it(`loses nothing acknowledged and never shows a partial batch across ${KILLS} SIGKILLs`, async (t) => {
    const dir = await tempDir("mvcc-crash-");
    const location = join(dir.path, "db");
    const seed = Math.floor(Math.random() * 2 ** 31);
    const context = `seed ${seed}`;
    const model = new ReferenceKv();
    let modelIndex = 0;
    let acked = 0;
    let killedMidWrite = 0;
    try {
      for (let round = 0; round < KILLS; round++) {
        const ackedBefore = acked;
        const run = await runAndKill(location, seed, round % 2 === 1, 20 + Math.floor(Math.random() * 200));
        acked = Math.max(acked, run.acked);
        if (acked > ackedBefore && !run.exitedByItself) killedMidWrite++;
        const store = await MvccStore.open(location);
        try {
          const applied = store.appliedIndex;
          assert.ok(applied >= acked, `${context}: acknowledged ${acked} but only ${applied} survived`);
          for (; modelIndex < applied; modelIndex++) model.apply(workloadRequest(seed, modelIndex + 1));
          // The applied index and the data were written together: the state is exactly the
          // model after `applied` entries, so no batch is half there.
          assert.deepEqual(await liveState(store), model.snapshot(), `${context}: state at index ${applied}`);
          assert.equal(store.revision, model.revision, `${context}: revision at index ${applied}`);
          assert.equal(
            store.compactRevision,
            model.compactRevision,
            `${context}: compaction at index ${applied}`,
          );
          // Replaying the WAL tail changes nothing.
          const before = await store.hashKV(0);
          const replay = await store.applyBatch(
            Array.from({ length: Math.min(applied, 20) }, (_, i) => {
              const index = applied - i;
              return { index, term: 1, request: workloadRequest(seed, index) };
            }),
          );
          assert.ok(replay.every((r) => r.status === "skipped"));
          assert.equal((await store.hashKV(0)).hash, before.hash);
          await store.compactionDone();
        } finally {
          await store.close();
        }
        if (run.exitedByItself) break;
      }
      assert.ok(killedMidWrite >= KILLS / 2, `${context}: only ${killedMidWrite} kills hit a writing child`);
      t.diagnostic(`${context}: ${killedMidWrite} kills while writing, ${acked} entries acknowledged`);

      // The crashed store's whole history (not just its live state) matches a store that
      // applied the same log without interruption.
      const crashed = await MvccStore.open(location);
      const clean = await MvccStore.open(join(dir.path, "clean"));
      try {
        const n = crashed.appliedIndex;
        for (let i = 1; i <= n; i += 256) {
          const entries = [];
          for (let j = i; j < Math.min(i + 256, n + 1); j++) {
            entries.push({ index: j, term: 1, request: workloadRequest(seed, j) });
          }
          await clean.applyBatch(entries);
        }
        assert.equal(clean.revision, crashed.revision);
        const rev = crashed.revision;
        assert.equal(
          (await clean.hashKV(rev)).hash,
          (await crashed.hashKV(rev)).hash,
          `${context}: history differs`,
        );
      } finally {
        await crashed.close();
        await clean.close();
      }
    } finally {
      await dir.remove();
    }
  });
});
