// The bench's cells and how they read: a cell's rounds merged into one, the table's text and
// its ratios. Pure (no processes, no files), so the rules the table's numbers follow are tested
// (cells.test.ts) apart from the run that produces them (run.ts).

import type { GoloadResult } from "../goload.js";
import type { ThreadStat } from "../proc-cpu.js";

/** A cell: goload's result and the servers' CPU per successful op (µs, from /proc). */
export type Cell =
  | {
      result: GoloadResult;
      server_cpu_us_per_op?: number;
      /** Watch rows: server CPU over the puts alone (server_cpu_us_per_op counts the creates too). */
      server_cpu_us_per_put?: number;
      /**
       * Direct targets (etcd, members): each member's CPU per call, the leader first (the
       * endpoint goload's first connection uses), with its busiest thread's share (ours: the
       * event loop's) and the time its threads waited for a core (run queue, schedstat): where
       * a cell's server CPU went, and whether the members waited for the machine. A watch
       * row's: over its measured puts alone (not the creates, nor the warm-up).
       */
      members?: {
        role: "leader" | "follower";
        cpu_us: number;
        top_thread_us: number;
        run_queue_us: number;
      }[];
      /** The unmeasured warm-up before it (--warmup-s): that it ran, and how many calls it made. */
      warmup?:
        | { ok: number; elapsed_s: number; ops_per_s: number; p50_ms: number | null }
        | { error: string };
    }
  | { error: string };

/** A process's CPU, its busiest thread's and its threads' run-queue wait between two reads (s). */
export function threadDelta(before: readonly ThreadStat[], after: readonly ThreadStat[]) {
  const earlier = new Map(before.map((t) => [t.tid, t]));
  let cpu = 0;
  let top = 0;
  let runQueue = 0;
  for (const t of after) {
    const b = earlier.get(t.tid);
    const used = t.cpuSeconds - (b?.cpuSeconds ?? 0);
    cpu += used;
    top = Math.max(top, used);
    runQueue += t.runQueueSeconds - (b?.runQueueSeconds ?? 0);
  }
  return { cpu, top, runQueue };
}

/**
 * One cell from its --cell-rounds rounds: calls, errors and time summed (ops/s over the whole),
 * latency percentiles the median of the rounds' (goload reports no histogram), server and client
 * CPU per call over every round; `rounds` keeps each round's own result. A failed round fails
 * the cell.
 */
export function mergeRounds(cells: Cell[]): Cell {
  const failed = cells.find((c) => "error" in c);
  if (failed !== undefined) return failed;
  const done = cells as Extract<Cell, { result: GoloadResult }>[];
  const results = done.map((c) => c.result);
  const sum = (f: (r: GoloadResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const median = (xs: (number | null | undefined)[]) => {
    const known = xs.filter((x): x is number => typeof x === "number").sort((a, b) => a - b);
    return known.length === 0 ? null : known[Math.floor(known.length / 2)]!;
  };
  const ok = sum((r) => r.ok);
  const elapsed = sum((r) => r.elapsed_s);
  const cpuUs = done.reduce((a, c) => a + (c.server_cpu_us_per_op ?? 0) * c.result.ok, 0);
  const first = results[0]!;
  return {
    result: {
      ...first,
      ok,
      errors: sum((r) => r.errors),
      total: sum((r) => Number(r.total ?? r.ok)),
      elapsed_s: +elapsed.toFixed(3),
      ops_per_s: elapsed > 0 ? +(ok / elapsed).toFixed(1) : 0,
      timed_out: results.some((r) => r.timed_out === true),
      latency_ms: {
        p50: median(results.map((r) => r.latency_ms.p50)),
        p90: median(results.map((r) => r.latency_ms.p90)),
        p99: median(results.map((r) => r.latency_ms.p99)),
      },
      client_cpu: {
        us_per_op: ok > 0 ? Math.round(sum((r) => r.client_cpu.us_per_op * r.ok) / ok) : 0,
        pct_of_machine: median(results.map((r) => r.client_cpu.pct_of_machine)) ?? 0,
      },
      label: String(first.label ?? "").replace(/\/round-1$/, ""),
      rounds: results,
    },
    ...(done.every((c) => c.server_cpu_us_per_op !== undefined) && ok > 0
      ? { server_cpu_us_per_op: Math.round(cpuUs / ok) }
      : {}),
    ...(done[0]!.warmup === undefined ? {} : { warmup: done[0]!.warmup }),
    ...(ok > 0 && done.every((c) => c.members?.length === done[0]!.members?.length && c.members !== undefined)
      ? {
          members: done[0]!.members!.map((m, k) => {
            const per = (f: (x: typeof m) => number) =>
              Math.round(done.reduce((a, c) => a + f(c.members![k]!) * c.result.ok, 0) / ok);
            return {
              role: m.role,
              cpu_us: per((x) => x.cpu_us),
              top_thread_us: per((x) => x.top_thread_us),
              run_queue_us: per((x) => x.run_queue_us),
            };
          }),
        }
      : {}),
  };
}

export const fmtOps = (n: number) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(1));

export const fmtMs = (x: number | null) => (x === null ? "-" : x < 10 ? x.toFixed(2) : x.toFixed(0));

export function cellText(c: Cell | undefined, watch: boolean): string {
  if (c === undefined) return "-";
  if ("error" in c) return "ERROR";
  const r = c.result;
  const errs = r.errors > 0 ? ` ${r.errors}err` : "";
  const cut = r.timed_out ? " (cut)" : "";
  const lat = `${fmtMs(r.latency_ms.p50)}/${fmtMs(r.latency_ms.p99)}`;
  if (watch) {
    // Watch rows: sent->all p50/p99 (the ratio's measure: from the put's send to the last
    // watcher's event), then ack->all p50/p99 (from the put's answer: the fan-out alone, but
    // it rewards a slow answer: an event that beats the ack counts 0).
    const sent = sendToAll(r);
    return `${fmtMs(sent.p50)}/${fmtMs(sent.p99)} ms, ack->all ${lat} (${fmtOps(r.ops_per_s)} put/s)${errs}${cut}`;
  }
  return `${fmtOps(r.ops_per_s)} (${lat})${errs}${cut}${bgPutText(r)}`;
}

/** The writers beside a cell's calls (Scenario.bgPut): puts/s (p50/p99 ms). */
export function bgPutText(r: GoloadResult): string {
  const bg = r.bg_put as
    | { ops_per_s: number; errors: number; latency_ms: { p50: number | null; p99: number | null } }
    | undefined;
  if (bg === undefined) return "";
  const errs = bg.errors > 0 ? ` ${bg.errors}err` : "";
  return ` + put ${fmtOps(bg.ops_per_s)} (${fmtMs(bg.latency_ms.p50)}/${fmtMs(bg.latency_ms.p99)})${errs}`;
}

/** A watch cell's put-sent -> last watcher latencies (goload's send_to_all_ms). */
export function sendToAll(r: GoloadResult): { p50: number | null; p99: number | null } {
  const s = r.send_to_all_ms as { p50?: number | null; p99?: number | null } | undefined;
  return { p50: s?.p50 ?? null, p99: s?.p99 ?? null };
}

export function ratio(a: Cell | undefined, b: Cell | undefined, watch: boolean): string {
  if (!a || !b || "error" in a || "error" in b) return "-";
  if (watch) {
    // Latency scenario: how many times etcd's p50 put-sent -> all-watchers latency ours takes
    // (lower is better). Not ack->all: there the side with the slower put answer looks faster.
    const x = sendToAll(a.result).p50;
    const y = sendToAll(b.result).p50;
    return x !== null && y !== null && y > 0 ? `${(x / y).toFixed(2)}x lat` : "-";
  }
  return b.result.ops_per_s > 0 ? (a.result.ops_per_s / b.result.ops_per_s).toFixed(2) : "-";
}

/** A catch-up cell: ms to the first event of the sparse watch (a scan of all history), to the dense watch's head. */
export function catchupText(c: Cell | undefined): string {
  if (c === undefined) return "-";
  if ("error" in c) return "ERROR";
  const r = c.result;
  const errs = r.errors > 0 ? ` ${r.errors}err` : "";
  // A watch that did not reach the head in time reports its timeout, a lower bound.
  const head = `${r.dense_head_timed_out === true ? ">" : ""}${fmtMs(r.dense_head_ms as number)}`;
  return `first ${fmtMs(r.sparse_first_event_ms as number)} / head ${head} ms${errs}`;
}

/** How many times faster than `b` (b's time / a's time, >1 is better): first event / head. */
export function catchupRatio(a: Cell | undefined, b: Cell | undefined): string {
  if (!a || !b || "error" in a || "error" in b) return "-";
  const x = (field: string) => {
    const ours = a.result[field] as number;
    const theirs = b.result[field] as number;
    return ours > 0 ? (theirs / ours).toFixed(2) : "-";
  };
  // A timed-out head is a lower bound of that side's time: the ratio is a bound too.
  const ourBound = a.result.dense_head_timed_out === true;
  const theirBound = b.result.dense_head_timed_out === true;
  const head =
    ourBound && theirBound ? "-" : `${theirBound ? ">" : ourBound ? "<" : ""}${x("dense_head_ms")}`;
  return `${x("sparse_first_event_ms")}/${head}`;
}

export function membersText(cell: Cell): string {
  if ("error" in cell || cell.members === undefined) return "";
  const each = cell.members.map((m) => `${m.role[0]} ${m.cpu_us}/${m.top_thread_us}/${m.run_queue_us}`);
  return ` {${each.join(", ")} us per call: cpu/top thread/run queue}`;
}

/**
 * `endpoints` with the one at `index` moved first, the rest in their order (index < 0: unchanged):
 * a single-connection cell uses the first endpoint only, so the bench puts the leader there.
 */
export function withFirst(endpoints: readonly string[], index: number): string[] {
  if (index <= 0 || index >= endpoints.length) return [...endpoints];
  return [endpoints[index]!, ...endpoints.filter((_, j) => j !== index)];
}

/** The warm-up of a single-client cell (its call count at most), when --warmup-s is not 0. */
export const SINGLE_CLIENT_WARMUP_S = 8;

/**
 * How a scenario's cell runs: in how many rounds (the targets taking turns) and after how long
 * an unmeasured warm-up (s, 0: none), from --cell-rounds and --warmup-s. `inCell`: the warm-up
 * is the cell's own goload run's (its -warmup-s), not a run of its own before it.
 */
export function cellPlan(
  s: { op: string; clients: number; watchers?: number; bgPut?: unknown },
  opts: { cellRounds: number; warmupS: number },
): { rounds: number; warmupS: number; inCell?: true } {
  // A catch-up row times one watch reading history: neither rounds nor a warm-up apply.
  if (s.op === "watch-catchup") return { rounds: 1, warmupS: 0 };
  // A single-client cell's result moves with what ran just before it and when (the first target
  // of a run measures a machine nobody loaded yet): its calls are split into rounds. Not the rows
  // with writers beside: those report the writers of the whole cell; nor the watch rows (one run
  // times every put to its watchers, the watchers created once).
  const rounds = s.clients === 1 && s.bgPut === undefined && s.watchers === undefined ? opts.cellRounds : 1;
  // The same load for a moment first, unmeasured, for every target alike: a fresh Node process
  // runs its first ~80,000 calls at 0.6-0.7x its steady rate (JIT), a Go one does not; without
  // it a cell measured ours half warm (20-36k vs 40-43k serializable reads/s through the
  // gateway). At one client 2 s is ~1,000 calls, and a fresh cluster's puts only settle after a
  // few thousand (bench/README.md): single-client cells warm up for up to 8 s, all targets alike.
  const warmupS =
    opts.warmupS <= 0 ? 0 : s.clients === 1 ? Math.max(opts.warmupS, SINGLE_CLIENT_WARMUP_S) : opts.warmupS;
  // A watch row's puts (one at a time, each waiting for its key's watchers) warm up inside the
  // cell's own goload run once its watchers exist, as long as a single client's: a run of its own
  // would create them all again. Without it the row timed its 200 puts right after the creates,
  // on fresh processes when run alone (answers 2.1-3.5 ms against 1.3 after other rows;
  // bench/JOURNAL.md "w100k", "w100k2").
  if (s.watchers !== undefined) return warmupS > 0 ? { rounds, warmupS, inCell: true } : { rounds, warmupS };
  return { rounds, warmupS };
}
