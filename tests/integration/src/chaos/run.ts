// The longer chaos run, from the command line:
//
//   node --conditions=source --import tsx tests/integration/src/chaos/run.ts \
//     --target etcd|etcd-ts|etcd-ts-dist --duration 600 --seed 42 [--clients 8] [--keys 4]
//     [--faults kill,kill-leader,kill-behind,kill-all,restart,pause,pause-leader,isolate,one-way,bridge,
//       slow-link,flapping-link,two-faults,three-faults] [--opening two-faults (injected first, as in CI)]
//     [--snapshot-count N] [--snapshot-catchup-entries N]
//     (membership faults, not in the default mix: --faults move-leader,replace-member;
//     disk faults, as root: --faults disk-full)
//     [--heartbeat-ms 100] [--election-ms 1000] [--compact-every SECONDS] [--keep]
//
// Prints a summary (ops by outcome, faults injected, checker verdicts, time spent checking)
// and exits 1 unless the verdict is ok. Member RSS and open fds are sampled every 30 s;
// --compact-every compacts the history periodically (up to what every watcher has seen), as a
// long-running deployment's clients do: use it for soaks. With --keep, the member logs and the history stay in
// the run's directory (printed at the end); `--check <that dir>/run` re-runs the checkers on it.

import { parseArgs } from "node:util";
import { TARGET_KINDS, type TargetKind } from "../cluster/targets.js";
import { recheckSavedRun, runChaos } from "./chaos-run.js";
import { ALL_FAULT_KINDS, FAULT_KINDS, type FaultKind } from "./nemesis.js";

const { values } = parseArgs({
  options: {
    target: { type: "string", default: "etcd" },
    duration: { type: "string", default: "60" },
    seed: { type: "string" },
    clients: { type: "string", default: "8" },
    keys: { type: "string", default: "4" },
    watchers: { type: "string", default: "3" },
    faults: { type: "string", default: FAULT_KINDS.join(",") },
    opening: { type: "string", default: "" },
    "op-timeout": { type: "string", default: "2000" },
    "snapshot-count": { type: "string" },
    "snapshot-catchup-entries": { type: "string" },
    "heartbeat-ms": { type: "string", default: "100" },
    "election-ms": { type: "string", default: "1000" },
    "compact-every": { type: "string" },
    keep: { type: "boolean", default: false },
    check: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  // The usage is this file's header comment.
  const { readFileSync } = await import("node:fs");
  const header = readFileSync(new URL(import.meta.url), "utf8").split("\n\n")[0] ?? "";
  console.log(header.replace(/^\/\/ ?/gm, ""));
  process.exit(0);
}

if (values.check !== undefined) {
  const { ok, text } = await recheckSavedRun(values.check);
  console.log(text);
  process.exit(ok ? 0 : 1);
}

const target = values.target as TargetKind;
if (!TARGET_KINDS.includes(target)) throw new Error(`--target must be one of ${TARGET_KINDS.join(", ")}`);
const faults = values.faults.split(",").filter((f) => f.length > 0) as FaultKind[];
const opening = values.opening.split(",").filter((f) => f.length > 0) as FaultKind[];
for (const f of [...faults, ...opening])
  if (!ALL_FAULT_KINDS.includes(f))
    throw new Error(`unknown fault ${f}; known: ${ALL_FAULT_KINDS.join(", ")}`);
const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(values.seed);

const result = await runChaos({
  target,
  seed,
  durationSec: Number(values.duration),
  clients: Number(values.clients),
  keys: Number(values.keys),
  watchers: Number(values.watchers),
  faults,
  openingFaults: opening,
  opTimeoutMs: Number(values["op-timeout"]),
  snapshotCount: values["snapshot-count"] === undefined ? undefined : Number(values["snapshot-count"]),
  snapshotCatchUpEntries:
    values["snapshot-catchup-entries"] === undefined ? undefined : Number(values["snapshot-catchup-entries"]),
  heartbeatMs: Number(values["heartbeat-ms"]),
  electionMs: Number(values["election-ms"]),
  compactEverySec: values["compact-every"] === undefined ? undefined : Number(values["compact-every"]),
  keepFiles: values.keep,
  log: (line) => console.log(line),
});
console.log(result.summary);
process.exit(result.verdict === "ok" ? 0 : 1);
