// Summarises V8 CPU profiles (`node --cpu-prof`, or `npm run bench -- --profile DIR`): where
// the sampled time went, by layer (idle, GC, Node's HTTP/2, grpc-js, our packages, ...) and
// by function (self time). Usage: node bench/dist/profile/top.js FILE.cpuprofile... [--top N]
// [--under REGEX [--except REGEX]]: also the share of busy time spent beneath frames whose script
// URL matches --under (inclusive: what those modules cost with everything they call), leaving out
// what runs beneath a frame matching --except (code the matched one only calls on, e.g. the
// metrics observer a tracing observer wraps). For tracing:
//   --under "@opentelemetry|telemetry/dist/(tracing|grpc-server-tracing|child-spans)|(gateway|member)-tracing"
//   --except grpc-server-metrics
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The layer a frame belongs to, from its script URL (or V8's pseudo-frames). */
export function layerOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === "") {
    if (functionName === "(idle)") return "idle";
    if (functionName === "(garbage collector)") return "gc";
    if (functionName === "(program)") return "program (native, unattributed)";
    return "native";
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `npm ${pkg[1]}`;
  if (url.startsWith("node:internal/http2") || url.startsWith("node:http2")) return "node http2";
  if (url.startsWith("node:internal/streams") || url.startsWith("node:stream")) return "node streams";
  if (url.startsWith("node:")) return "node other";
  const ours = /\/(packages|services|bench|tests)\/([^/]+)\//.exec(url);
  if (ours) return `ours ${ours[1]}/${ours[2]}`;
  return "other";
}

export interface Summary {
  file: string;
  totalMs: number;
  layers: { layer: string; ms: number; pct: number }[];
  functions: { name: string; layer: string; ms: number; pct: number }[];
}

/**
 * Busy time (ms) beneath a frame whose URL matches `urls` (but not beneath a later `except`
 * frame), and busy time in all; time spent loading modules (beneath Node's module loader:
 * start-up, an SDK imported once) counts in neither, so the share is what running code costs.
 */
export function inclusive(
  profile: CpuProfile,
  urls: RegExp,
  except?: RegExp,
): { underMs: number; busyMs: number } {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Per node, bits: 1 beneath a matching frame, 2 beneath an `except` frame, 4 beneath the module loader.
  const memo = new Map<number, number>();
  const classify = (id: number): number => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const url = byId.get(id)?.callFrame.url ?? "";
    const up = parent.get(id);
    let bits = up === undefined ? 0 : classify(up);
    if (url.startsWith("node:internal/modules/")) bits |= 4;
    else if (except?.test(url)) bits |= 2;
    else if ((bits & 2) === 0 && urls.test(url)) bits |= 1;
    memo.set(id, bits);
    return bits;
  };
  let underUs = 0;
  let busyUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const bits = classify(id);
    if (byId.get(id)?.callFrame.functionName === "(idle)" || (bits & 4) !== 0) continue;
    const us = profile.timeDeltas[i] ?? 0;
    busyUs += us;
    if (bits === 1) underUs += us;
  }
  return { underMs: Math.round(underUs / 1000), busyMs: Math.round(busyUs / 1000) };
}

export function summarise(file: string, profile: CpuProfile): Summary {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const layers = new Map<string, number>();
  const functions = new Map<string, { layer: string; us: number }>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    total += us;
    const layer = layerOf(frame);
    layers.set(layer, (layers.get(layer) ?? 0) + us);
    const where = frame.url === "" ? "" : ` ${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
    const name = `${frame.functionName || "(anonymous)"}${where}`;
    const f = functions.get(name) ?? { layer, us: 0 };
    f.us += us;
    functions.set(name, f);
  }
  const pct = (us: number) => +((100 * us) / Math.max(total, 1)).toFixed(1);
  return {
    file,
    totalMs: Math.round(total / 1000),
    layers: [...layers]
      .sort((a, b) => b[1] - a[1])
      .map(([layer, us]) => ({ layer, ms: Math.round(us / 1000), pct: pct(us) })),
    functions: [...functions]
      .sort((a, b) => b[1].us - a[1].us)
      .map(([name, f]) => ({ name, layer: f.layer, ms: Math.round(f.us / 1000), pct: pct(f.us) })),
  };
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length);
  const ours = /\/((?:packages|services|bench|tests)\/.*)$/.exec(url);
  return ours ? ours[1] : url.replace(/^file:\/\//, "");
}

function print(s: Summary, top: number): void {
  const busy = s.layers.filter((l) => l.layer !== "idle").reduce((a, l) => a + l.ms, 0);
  console.log(`\n${basename(s.file)}: ${s.totalMs} ms sampled, ${busy} ms busy`);
  console.log("  by layer (share of busy time):");
  for (const l of s.layers) {
    if (l.layer === "idle") continue;
    console.log(`    ${((100 * l.ms) / Math.max(busy, 1)).toFixed(1).padStart(5)}%  ${l.layer}`);
  }
  console.log(`  top ${top} functions by self time (share of busy time):`);
  for (const f of s.functions.filter((f) => f.layer !== "idle").slice(0, top)) {
    console.log(`    ${((100 * f.ms) / Math.max(busy, 1)).toFixed(1).padStart(5)}%  ${f.name}`);
  }
}

function main(argv: string[]): void {
  let top = 25;
  let under: RegExp | undefined;
  let except: RegExp | undefined;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--top") top = Number(argv[++i]);
    else if (argv[i] === "--under") under = new RegExp(argv[++i]!);
    else if (argv[i] === "--except") except = new RegExp(argv[++i]!);
    else files.push(argv[i]!);
  }
  if (files.length === 0) {
    console.error("usage: top FILE.cpuprofile... [--top N] [--under URL-REGEX [--except URL-REGEX]]");
    process.exit(2);
  }
  for (const f of files) {
    const profile = JSON.parse(readFileSync(f, "utf8")) as CpuProfile;
    print(summarise(f, profile), top);
    if (under !== undefined) {
      const { underMs, busyMs } = inclusive(profile, under, except);
      console.log(
        `  beneath /${under.source}/: ${underMs} ms = ${((100 * underMs) / Math.max(busyMs, 1)).toFixed(2)}% of busy time`,
      );
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(basename(process.argv[1]))) {
  main(process.argv.slice(2));
}
