// Worker threads of this package: starting one on a module, built or from the sources, reading
// its messages in order, and lowering a worker's CPU priority.
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

/** A worker's messages in order, its error or early exit as a failure of next(). */
export class WorkerMessages<M> {
  readonly exited: Promise<number>;
  private readonly messages: M[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;

  /** `name` says whose early exit a failure reports. */
  constructor(
    readonly worker: Worker,
    name: string,
  ) {
    this.exited = new Promise<number>((resolve) => worker.once("exit", resolve));
    worker.on("message", (m: M) => {
      this.messages.push(m);
      this.wake?.();
    });
    worker.once("error", (err) => {
      this.failure = err;
      this.wake?.();
    });
    void this.exited.then((code) => {
      this.failure ??= new Error(`${name} exited (code ${code}) before it was done`);
      this.wake?.();
    });
  }

  async next(): Promise<M> {
    while (this.messages.length === 0) {
      if (this.failure !== undefined) throw this.failure;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
    return this.messages.shift()!;
  }

  /** Terminates the worker (if it still runs) and waits for its exit. */
  async stop(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }
}
