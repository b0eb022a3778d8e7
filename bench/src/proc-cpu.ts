// CPU time of server processes from /proc (Linux): what a bench run cost the servers, beside
// what it cost the client. The one reader every bench uses.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** utime + stime of a process so far, in seconds; 0 for none or one that is gone. */
export function cpuSeconds(pid: number | undefined): number {
  return pid === undefined ? 0 : statCpuSeconds(`/proc/${pid}/stat`);
}

/** utime + stime of one thread of this process so far (the main thread's id is the pid). */
export function threadCpuSeconds(tid: number): number {
  return statCpuSeconds(`/proc/self/task/${tid}/stat`);
}

function statCpuSeconds(path: string): number {
  try {
    const stat = readFileSync(path, "utf8");
    // Fields after the command name (which may hold spaces and parentheses), from field 3 on.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/**
 * A process and its live descendants (a gateway's --workers): a process's own utime and stime
 * leave its children out until they are reaped, so a tree is counted process by process.
 */
export function processTree(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${tree[i]}/task`);
    } catch {}
    for (const task of tasks) {
      try {
        const children = readFileSync(`/proc/${tree[i]}/task/${task}/children`, "utf8").trim();
        if (children !== "") tree.push(...children.split(" ").map(Number));
      } catch {}
    }
  }
  return tree;
}

/** A process's resident set (VmRSS) in KiB; null for none or one that is gone. */
export function rssKiB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** CPU seconds of `pids` together (each counted once). */
export function totalCpuSeconds(pids: readonly number[]): number {
  return [...new Set(pids)].reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** One thread's counters so far: what tells which threads wake and work per call. */
export interface ThreadStat {
  tid: number;
  /**
   * Its name (/proc comm), "main" for the process's first thread; Node 20 names all its threads
   * "node", so those get their thread id's offset from the pid ("node+7"), stable between reads
   * (V8's platform workers start before libuv's pool, which starts on first use).
   */
  name: string;
  /** On-CPU time (schedstat, ns precision; stat's 10 ms ticks are too coarse per call). */
  cpuSeconds: number;
  /** Time it was runnable but waited for a core (schedstat). */
  runQueueSeconds: number;
  /** Context switches: the thread blocked (waited for something) / was preempted. */
  voluntary: number;
  involuntary: number;
}

/** Every live thread of `pid`; threads that end between two reads drop out of a diff. */
export function threadStats(pid: number): ThreadStat[] {
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const stats: ThreadStat[] = [];
  for (const tid of tids) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const name = Number(tid) === pid ? "main" : comm === "node" ? `node+${Number(tid) - pid}` : comm;
      const sched = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      stats.push({
        tid: Number(tid),
        name,
        cpuSeconds: Number(sched[0]) / 1e9,
        runQueueSeconds: Number(sched[1]) / 1e9,
        voluntary: Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0),
        involuntary: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0),
      });
    } catch {}
  }
  return stats;
}

export interface ThreadGroupDelta {
  /** Threads of this name alive at both reads. */
  threads: number;
  cpuSeconds: number;
  runQueueSeconds: number;
  voluntary: number;
  involuntary: number;
}

/** Per thread name, what the threads of that name did between two threadStats reads. */
export function threadDeltas(
  before: readonly ThreadStat[],
  after: readonly ThreadStat[],
): Map<string, ThreadGroupDelta> {
  const earlier = new Map(before.map((t) => [t.tid, t]));
  const byName = new Map<string, ThreadGroupDelta>();
  for (const t of after) {
    const b = earlier.get(t.tid);
    if (b === undefined) continue;
    const sum = byName.get(t.name) ?? {
      threads: 0,
      cpuSeconds: 0,
      runQueueSeconds: 0,
      voluntary: 0,
      involuntary: 0,
    };
    sum.threads++;
    sum.cpuSeconds += t.cpuSeconds - b.cpuSeconds;
    sum.runQueueSeconds += t.runQueueSeconds - b.runQueueSeconds;
    sum.voluntary += t.voluntary - b.voluntary;
    sum.involuntary += t.involuntary - b.involuntary;
    byName.set(t.name, sum);
  }
  return byName;
}
