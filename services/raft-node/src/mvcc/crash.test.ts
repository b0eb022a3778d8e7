import assert from "node:assert/strict";
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { extname, join } from "node:path";
import type { Readable, Writable } from "node:stream";
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

/** A writer process, spawned ahead of its turn so its start-up overlaps the previous round. */
class Writer {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private acked = 0;
  private onReady: (() => void) | undefined;
  private readonly exited: Promise<ChildRun>;

  constructor(dir: string, seed: number, sync: boolean) {
    this.child = spawn(
      process.execPath,
      [...childExecArgv, childScript, dir, String(seed), String(MAX_INDEX), sync ? "sync" : "async"],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    let pending = "";
    this.child.stdout.setEncoding("utf8");
    this.child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        const [what, index] = line.split(" ");
        if (what === "acked") this.acked = Number(index);
        if (what === "ready") this.onReady?.();
      }
    });
    this.exited = new Promise((resolve, reject) => {
      this.child.on("error", reject);
      this.child.on("exit", (code, signal) => {
        if (signal !== "SIGKILL" && code !== 0) reject(new Error(`writer exited with ${code ?? signal}`));
        else resolve({ acked: this.acked, exitedByItself: signal !== "SIGKILL" });
      });
    });
  }

  /** Lets the writer open the store, then SIGKILLs it `killAfterMs` after it is ready. */
  async run(killAfterMs: number): Promise<ChildRun> {
    let timer: NodeJS.Timeout | undefined;
    this.onReady = () => {
      timer = setTimeout(() => this.child.kill("SIGKILL"), killAfterMs);
    };
    this.child.stdin.write("go\n");
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** For a writer that never got its turn. */
  async discard(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.exited.catch(() => undefined);
  }
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
    // A failure names its seed; CRASH_SEED=<seed> replays its workload (the kill times stay random).
    const seed =
      process.env.CRASH_SEED !== undefined
        ? Number(process.env.CRASH_SEED)
        : Math.floor(Math.random() * 2 ** 31);
    const context = `seed ${seed}`;
    const model = new ReferenceKv();
    let modelIndex = 0;
    let acked = 0;
    let killedMidWrite = 0;
    try {
      let writer = new Writer(location, seed, false);
      for (let round = 0; round < KILLS; round++) {
        const ackedBefore = acked;
        const current = writer;
        const running = current.run(20 + Math.floor(Math.random() * 200));
        writer = new Writer(location, seed, round % 2 === 0);
        const run = await running;
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
      await writer.discard();
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
