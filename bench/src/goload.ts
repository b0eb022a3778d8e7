// One way for the benches to run bench/goload (the lean Go load generator, built from Debian's
// packages by bench/goload/build.sh) and read its one-line JSON result.
import { spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// This file sits at bench/src/goload.ts and bench/dist/goload.js alike.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const GOLOAD_DIR = join(root, "bench/goload");
/** The binary: $GOLOAD, else bench/goload/bin/goload. */
export const GOLOAD_BIN = process.env.GOLOAD ?? join(GOLOAD_DIR, "bin/goload");

/** What goload prints (the fields the benches read; the rest is kept as it came). */
export interface GoloadResult {
  ok: number;
  errors: number;
  error_codes?: Record<string, number>;
  error_samples?: string[];
  elapsed_s: number;
  ops_per_s: number;
  latency_ms: {
    p50: number | null;
    p90?: number | null;
    p99: number | null;
    p999?: number | null;
    max?: number | null;
  };
  client_cpu: { us_per_op: number; pct_of_machine: number };
  timed_out?: boolean;
  [field: string]: unknown;
}

export interface GoloadRun {
  result: Promise<GoloadResult>;
  /** Ends the run at once (its result then rejects). */
  kill(): void;
}

/**
 * Starts goload with `args`; its result rejects, with goload's last lines of stderr, when it
 * exits non-zero, prints no result, or runs past `hardTimeoutMs` (killed). `onPhase` hears
 * goload's "goload: phase NAME" lines as they come (watch-latency: puts-start, puts-end).
 */
export function startGoload(
  args: string[],
  hardTimeoutMs = 600_000,
  onPhase?: (phase: string) => void,
): GoloadRun {
  const child = spawn(GOLOAD_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  const result = new Promise<GoloadResult>((resolvePromise, reject) => {
    let out = "";
    let err = "";
    let partial = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
    });
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      err = (err + c).slice(-2000);
      if (onPhase === undefined) return;
      const lines = (partial + c).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) if (line.startsWith("goload: phase ")) onPhase(line.slice(14).trim());
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), hardTimeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`goload (${GOLOAD_BIN}) did not start: ${e.message}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) {
        try {
          return resolvePromise(JSON.parse(line) as GoloadResult);
        } catch {
          // reported below
        }
      }
      reject(new Error(`goload exit ${signal ?? code}: ${err.trim().split("\n").slice(-3).join(" | ")}`));
    });
  });
  return { result, kill: () => child.kill("SIGKILL") };
}

/** Runs goload with `args` to its end. */
export function runGoload(args: string[], hardTimeoutMs?: number): Promise<GoloadResult> {
  return startGoload(args, hardTimeoutMs).result;
}
