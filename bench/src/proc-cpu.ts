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
