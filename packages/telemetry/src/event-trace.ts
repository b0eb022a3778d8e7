// Every stamp with its absolute time (process.hrtime: CLOCK_MONOTONIC, comparable between the
// processes of one machine), HTTP/2 socket reads and writes and GC pauses too, appended to
// <ETCD_TS_TRACE_EVENTS>.<pid> once a second: to line up one call's path across processes
// (members, the gateway, goload's -trace-file; bench/src/profile/hops.ts reads them). Off (the
// default), `eventTrace` is undefined and a call site costs one comparison.
import { appendFileSync } from "node:fs";
import { constants, PerformanceObserver, performance } from "node:perf_hooks";
import { socketTaps } from "@etcd-ts/api";

/** perf_hooks' NODE_PERFORMANCE_GC_* flags, by value. */
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
};

class EventTrace {
  private lines: string[] = [];

  constructor(private readonly file: string) {
    const hr0 = Number(process.hrtime.bigint());
    const p0 = performance.now();
    setInterval(() => this.flush(), 1000).unref();
    process.on("exit", () => this.flush());
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const at = hr0 + (e.startTime - p0) * 1e6;
        // The pause's kind (hops.js --tail tells scavenges from full collections).
        const detail = (e as { detail?: { kind?: number } }).detail;
        const kind = GC_KINDS[detail?.kind ?? 0] ?? "other";
        this.lines.push(`${Math.round(at)} gc.start ${kind}`, `${Math.round(at + e.duration * 1e6)} gc.end`);
      }
    }).observe({ entryTypes: ["gc"] });
    socketTaps.write = (socket, bytes) => {
      const s = socket as { localPort?: number; remotePort?: number };
      this.add(`w ${s.localPort}>${s.remotePort} ${bytes}`);
    };
    socketTaps.data = (socket, bytes) => {
      const s = socket as { localPort?: number; remotePort?: number };
      this.add(`d ${s.localPort}<${s.remotePort} ${bytes}`);
    };
  }

  add(label: string): void {
    this.lines.push(`${process.hrtime.bigint()} ${label}`);
  }

  private flush(): void {
    if (this.lines.length === 0) return;
    appendFileSync(`${this.file}.${process.pid}`, `${this.lines.join("\n")}\n`);
    this.lines = [];
  }
}

const traceFile = process.env.ETCD_TS_TRACE_EVENTS;
export const eventTrace: EventTrace | undefined =
  traceFile === undefined || traceFile === "" ? undefined : new EventTrace(traceFile);
