// Worker threads of this package: starting one on a module, built or from the sources, and
// lowering a worker's CPU priority.
import { readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import { basename } from "node:path";
import { Worker, type WorkerOptions } from "node:worker_threads";

/**
 * A Worker running the module `name` beside `base` (a caller's import.meta.url): `name.js` when
 * built, `name.ts` when run from the sources (node --import tsx), which Node 20 does not hand
 * tsx's loader on to, so the worker loads it through tsx's API.
 */
export function startThreadModule(name: string, base: string, options: WorkerOptions): Worker {
  const fromSources = base.endsWith(".ts");
  const entry = new URL(`./${name}${fromSources ? ".ts" : ".js"}`, base);
  if (!fromSources) return new Worker(entry, options);
  const load = `import("tsx/esm/api").then((api) => api.tsImport(${JSON.stringify(entry.href)}, ${JSON.stringify(base)}))`;
  return new Worker(load, { ...options, eval: true });
}

/**
 * Gives the calling thread a nice value (0-19; higher yields the CPU to others). Linux keeps a
 * nice value per thread, and setpriority on a thread ID changes that thread only.
 */
export function lowerThreadPriority(nice: number): void {
  try {
    setPriority(Number(basename(readlinkSync("/proc/thread-self"))), nice);
  } catch {
    // Not Linux: the thread runs at the process's priority.
  }
}
