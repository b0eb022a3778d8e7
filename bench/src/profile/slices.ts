// Where a member's thread was busy without a break while a Range was answered: reads a V8 CPU
// profile (`--cpu-prof`, e.g. range-full.js --prof DIR) and a range-full timeline (range-full.js
// --timeline), and prints the stretches of samples with no idle one between them (the loop
// never waited in epoll) that are at least --min-ms long, each with its offset from the Range's
// start and its heaviest functions, then the slowest puts with the stretches they overlapped.
// A stretch may hold several turns of the event loop; one put waits at most a turn per hop.
//   node bench/dist/profile/slices.js LEADER.cpuprofile TIMELINE.json [--min-ms 5] [--puts 10]
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface Timeline {
  range_start_ns: number;
  range_ms: number;
  puts: { at_ns: number; at_ms: number; ms: number }[];
}

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { "min-ms": { type: "string", default: "5" }, puts: { type: "string", default: "10" } },
});
const [profileFile, timelineFile] = positionals;
if (profileFile === undefined || timelineFile === undefined)
  throw new Error("usage: slices.js LEADER.cpuprofile TIMELINE.json [--min-ms 5] [--puts 10]");
const minMs = Number(args["min-ms"]);
const profile = JSON.parse(readFileSync(profileFile, "utf8")) as CpuProfile;
const timeline = JSON.parse(readFileSync(timelineFile, "utf8")) as Timeline;

const frames = new Map<number, string>();
const idle = new Set<number>();
for (const n of profile.nodes) {
  const { functionName, url, lineNumber } = n.callFrame;
  if (functionName === "(idle)") idle.add(n.id);
  frames.set(
    n.id,
    url === "" ? functionName : `${functionName || "(anon)"} ${basename(url)}:${lineNumber + 1}`,
  );
}

/** Milliseconds from the Range's start (profile times are CLOCK_MONOTONIC microseconds). */
const rangeStartUs = timeline.range_start_ns / 1000;
const windowEndMs = timeline.range_ms + 1000;
interface Stretch {
  fromMs: number;
  ms: number;
  counts: Map<string, number>;
}
const stretches: Stretch[] = [];
let current: Stretch | undefined;
let t = profile.startTime;
let busyMs = 0;
let sampledMs = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const delta = profile.timeDeltas[i]! / 1000;
  t += profile.timeDeltas[i]!;
  const atMs = (t - rangeStartUs) / 1000;
  if (atMs < 0 || atMs > windowEndMs) continue;
  sampledMs += delta;
  const node = profile.samples[i]!;
  if (idle.has(node)) {
    if (current !== undefined && current.ms >= minMs) stretches.push(current);
    current = undefined;
    continue;
  }
  busyMs += delta;
  current ??= { fromMs: atMs - delta, ms: 0, counts: new Map() };
  current.ms = atMs - current.fromMs;
  const name = frames.get(node)!;
  current.counts.set(name, (current.counts.get(name) ?? 0) + 1);
}
if (current !== undefined && current.ms >= minMs) stretches.push(current);

const f1 = (x: number) => x.toFixed(1);
const heaviest = (s: Stretch, n: number) => {
  const total = [...s.counts.values()].reduce((a, b) => a + b, 0);
  return [...s.counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, c]) => `${name} ${Math.round((100 * c) / total)}%`)
    .join("; ");
};
console.log(
  `Range ${f1(timeline.range_ms)} ms; window to +1 s after it: busy ${f1(busyMs)} of ${f1(sampledMs)} ms sampled; ` +
    `${stretches.length} stretches >= ${minMs} ms, ${f1(stretches.reduce((a, s) => a + s.ms, 0))} ms in them`,
);
for (const s of stretches) console.log(`  +${f1(s.fromMs)} ms: ${f1(s.ms)} ms  ${heaviest(s, 4)}`);

const during = timeline.puts.filter((p) => p.at_ms >= 0 && p.at_ms < timeline.range_ms);
const slowest = [...during].sort((a, b) => b.ms - a.ms).slice(0, Number(args.puts));
console.log(`\nslowest of ${during.length} puts during the Range:`);
for (const p of slowest) {
  const overlapping = stretches.filter((s) => s.fromMs < p.at_ms + p.ms && s.fromMs + s.ms > p.at_ms);
  console.log(
    `  put at +${f1(p.at_ms)} ms took ${f1(p.ms)} ms; stretches: ${overlapping.map((s) => `+${f1(s.fromMs)} (${f1(s.ms)} ms)`).join(", ") || "none"}`,
  );
}
