// Kills a process that is appending to the WAL at random moments, many times, and checks
// after each kill that everything it was told is durable is there and intact, that a torn
// tail is cut off, and that appending resumes. SIGKILL keeps the page cache, so what it
// tests is the process side (partial writes, group commit acknowledgement, recovery), not
// power loss; segment-scan.test.ts covers the torn shapes a power loss can leave.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { seededRandom } from "@etcd-ts/raft";
import { isWorkloadEntry, workloadEntry } from "./crash-workload.fixture.js";
import { Wal } from "./wal.js";

const KILLS = 20;
const SEGMENT_BYTES = 32 * 1024;

// Same extension as this file: .ts under tsx, .js when run from dist.
const childScript = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "./wal-crash-child.ts" : "./wal-crash-child.js", import.meta.url),
);
// The runner's own flags (--test and friends) must not reach the child; the loader flags must.
const childExecArgv = process.execArgv.filter((arg) => !arg.startsWith("--test"));

interface RunLog {
  ready?: number;
  acks: { first: number; last: number; term: number; commit: number }[];
  markers: number[];
}

interface CrashRun {
  /** Lets the loaded child open the WAL and append; SIGKILLs it lifetimeMs after it is ready. */
  start(lifetimeMs: number): Promise<RunLog>;
  abandon(): void;
}

/** Spawns a child that loads its modules (slow under tsx) and then waits to be started. */
function spawnCrashRun(dir: string, seed: number, term: number): CrashRun {
  const child = spawn(
    process.execPath,
    [...childExecArgv, childScript, dir, String(seed), String(term), String(SEGMENT_BYTES)],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  const log: RunLog = { acks: [], markers: [] };
  let lifetimeMs = 0;
  let killTimer: NodeJS.Timeout | undefined;
  let pending = "";
  let stderr = "";
  let onLoaded: () => void = () => {};
  const loaded = new Promise<void>((resolve) => {
    onLoaded = resolve;
  });
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    pending += chunk;
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      const [kind, ...nums] = pending.slice(0, nl).split(" ");
      const n = nums.map(Number);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf("\n");
      if (kind === "loaded") {
        onLoaded();
      } else if (kind === "ready") {
        log.ready = n[0];
        killTimer = setTimeout(() => child.kill("SIGKILL"), lifetimeMs);
      } else if (kind === "ack") {
        log.acks.push({ first: n[0], last: n[1], term: n[2], commit: n[3] });
      } else if (kind === "marker") {
        log.markers.push(n[0]);
      }
    }
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  return {
    async start(ms: number): Promise<RunLog> {
      lifetimeMs = ms;
      // A child that never gets ready (fails on open) must not hang the test.
      const guard = setTimeout(() => child.kill("SIGKILL"), 30_000);
      try {
        await Promise.race([loaded, exited]);
        child.stdin.write("go\n");
        const { code, signal } = await exited;
        if (signal !== "SIGKILL" || log.ready === undefined) {
          throw new Error(`child exited with code ${code} signal ${signal} before being killed:\n${stderr}`);
        }
        return log;
      } finally {
        clearTimeout(guard);
        clearTimeout(killTimer);
      }
    },
    abandon(): void {
      child.kill("SIGKILL");
    },
  };
}

test("acknowledged entries survive SIGKILL at random moments, over and over", {
  timeout: 120_000,
}, async (t) => {
  const root = await mkdtemp(join(tmpdir(), "wal-crash-"));
  const dir = join(root, "wal");
  // Fixed by default so a failure reproduces; WAL_CRASH_SEED explores other schedules.
  const seed = Number(process.env.WAL_CRASH_SEED ?? 20261125);
  const random = seededRandom(seed);
  /** term of every acknowledged entry, by index. */
  const acked = new Map<number, number>();
  let ackedCommit = 0;
  let ackedMarker = 0;
  let tornTails = 0;
  let totalAcks = 0;
  let next: CrashRun | undefined;
  try {
    next = spawnCrashRun(dir, Math.floor(random() * 2 ** 31), 1);
    for (let run = 1; run <= KILLS; run++) {
      const current: CrashRun = next!;
      // The next child loads while this one runs; it touches the WAL only once started.
      next = run < KILLS ? spawnCrashRun(dir, Math.floor(random() * 2 ** 31), run + 1) : undefined;
      const log = await current.start(20 + Math.floor(random() * 180));
      totalAcks += log.acks.length;
      for (const ack of log.acks) {
        for (let i = ack.first; i <= ack.last; i++) acked.set(i, ack.term);
        ackedCommit = Math.max(ackedCommit, ack.commit);
      }
      for (const m of log.markers) ackedMarker = Math.max(ackedMarker, m);

      const { wal, recovered } = await Wal.open(dir);
      const base = recovered.snapshot?.index ?? 0;
      assert.ok(
        base >= ackedMarker,
        `run ${run}: snapshot marker ${base} is older than acknowledged ${ackedMarker}`,
      );
      const byIndex = new Map(recovered.entries.map((e) => [e.index, e]));
      recovered.entries.forEach((e, k) => {
        assert.equal(e.index, base + 1 + k, `run ${run}: log not contiguous at ${e.index}`);
        assert.ok(isWorkloadEntry(e), `run ${run}: entry ${e.index} damaged`);
      });
      for (const [index, term] of acked) {
        if (index <= base) continue;
        const e = byIndex.get(index);
        assert.ok(
          e,
          `run ${run}: acknowledged entry ${index} lost (recovered up to ${recovered.entries.at(-1)?.index})`,
        );
        assert.equal(
          e.term,
          term,
          `run ${run}: entry ${index} has term ${e.term}, acknowledged with ${term}`,
        );
      }
      assert.ok((recovered.hardState?.commit ?? 0) >= ackedCommit, `run ${run}: hard state went back`);
      await wal.close();
      if (recovered.tornTail) {
        tornTails++;
        // Cut at the offset: nothing of the torn record is left. The open WAL may since have
        // written preallocated zeros after it (64 KiB at a time while idle), so the file is
        // the records up to the offset and zeros after, not exactly the offset long.
        const bytes = await readFile(recovered.tornTail.file);
        assert.ok(bytes.length >= recovered.tornTail.offset, `run ${run}: cut short of the torn tail`);
        assert.ok(
          bytes.subarray(recovered.tornTail.offset).every((b) => b === 0),
          `run ${run}: bytes of the torn record left after offset ${recovered.tornTail.offset}`,
        );
      }
      // Entries recovered but never acknowledged are now part of the log the next run extends.
      for (const e of recovered.entries) if (!acked.has(e.index)) acked.set(e.index, e.term);
    }

    const { wal, recovered } = await Wal.open(dir);
    assert.equal(recovered.tornTail, undefined, "a reopened, already repaired log reported a torn tail");
    const appendAt = (recovered.entries.at(-1)?.index ?? recovered.snapshot?.index ?? 0) + 1;
    await wal.save({ term: KILLS + 1, vote: 1n, commit: appendAt - 1 }, [workloadEntry(appendAt, KILLS + 1)]);
    await wal.close();
    const final = await Wal.open(dir);
    assert.equal(final.recovered.entries.at(-1)?.index, appendAt);
    await final.wal.close();
    assert.ok(
      totalAcks > KILLS,
      `only ${totalAcks} acknowledgements over ${KILLS} runs: the child barely ran`,
    );
    t.diagnostic(
      `seed ${seed}: ${KILLS} kills, ${totalAcks} acknowledged saves, ${acked.size} entries, ${tornTails} torn tails cut`,
    );
  } finally {
    next?.abandon();
    await rm(root, { recursive: true, force: true });
  }
});
