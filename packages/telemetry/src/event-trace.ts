// Every stamp with its absolute time (process.hrtime: CLOCK_MONOTONIC, comparable between the
// processes of one machine), HTTP/2 socket reads and writes and GC pauses too, appended to
// <ETCD_TS_TRACE_EVENTS>.<pid> once a second: to line up one call's path across processes
// (members, the gateway, goload's -trace-file; bench/src/profile/hops.ts reads them). Off (the
// default), `eventTrace` is undefined and a call site costs one comparison.
import { appendFileSync } from "node:fs";
import { PerformanceObserver, performance } from "node:perf_hooks";
import { socketTaps } from "@etcd-ts/api";

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
        this.lines.push(`${Math.round(at)} gc.start`, `${Math.round(at + e.duration * 1e6)} gc.end`);
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
