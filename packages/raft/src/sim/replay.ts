// Replays simulator schedules by seed.
//
//   node --conditions=source --import tsx packages/raft/src/sim/replay.ts --seed 12345
//     one schedule with its full trace (every step, message, Ready and fault)
//   node --conditions=source --import tsx packages/raft/src/sim/replay.ts --seed 1000 --count 50000
//     a soak run: schedules 1000..50999, one summary line, the seeds of any failures
//   options: --steps N (chaos steps per schedule), --trace / --no-trace
// Compiled: node packages/raft/dist/sim/replay.js --seed 12345

import { parseArgs } from "node:util";
import { InvariantViolation } from "./checker.js";
import { DEFAULT_CHAOS_STEPS, runSchedule, ScheduleFailure, type ScheduleReport } from "./schedule.js";

function main(): number {
  const { values } = parseArgs({
    options: {
      seed: { type: "string" },
      count: { type: "string", default: "1" },
      steps: { type: "string", default: String(DEFAULT_CHAOS_STEPS) },
      trace: { type: "boolean" },
      "no-trace": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || values.seed === undefined) {
    process.stdout.write(
      "usage: replay --seed N [--count K] [--steps S] [--trace|--no-trace]\n" +
        "  replays schedules N..N+K-1; a single schedule prints its trace\n",
    );
    return values.help ? 0 : 2;
  }
  const seed = toInt(values.seed, "--seed");
  const count = toInt(values.count, "--count");
  const chaosSteps = toInt(values.steps, "--steps");
  const trace = values["no-trace"] ? false : (values.trace ?? count === 1);
  const print = trace ? (line: string) => process.stdout.write(`${line}\n`) : undefined;

  const failures: ScheduleFailure[] = [];
  const started = process.cpuUsage();
  let done = 0;
  let last: ScheduleReport | undefined;
  for (let s = seed; s < seed + count; s++) {
    try {
      last = runSchedule(s, { chaosSteps, trace: print });
    } catch (err) {
      if (!(err instanceof ScheduleFailure)) throw err;
      failures.push(err);
      process.stdout.write(`FAIL ${err.message}\n  replay: ${err.replayCommand}\n`);
      // A thrown error that is not a checked invariant (the core threw, say): show where.
      if (count === 1 && err.cause instanceof Error && !(err.cause instanceof InvariantViolation)) {
        process.stdout.write(`${err.cause.stack ?? ""}\n`);
      }
    }
    done++;
    if (count > 1 && done % 1000 === 0) process.stdout.write(`... ${done}/${count} schedules\n`);
  }
  const cpu = process.cpuUsage(started);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  if (count === 1 && last) {
    process.stdout.write(
      `--- ok: ${JSON.stringify(last.stats)}\n--- quiet phase: ${JSON.stringify(last.quiet)}\n`,
    );
  }
  process.stdout.write(
    `${done} schedule(s) from seed ${seed}, ${chaosSteps} chaos steps each: ${failures.length} failed, ` +
      `${cpuSeconds.toFixed(1)} CPU-s\n`,
  );
  return failures.length === 0 ? 0 : 1;
}

function toInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${flag} wants a non-negative integer, got ${text}`);
  return n;
}

// `replay ... | head` closes the pipe early: stop quietly instead of crashing on EPIPE.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});
process.exitCode = main();
