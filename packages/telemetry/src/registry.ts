// The Prometheus registry every etcd-ts process starts from, and its /metrics answer.

import type http from "node:http";
import { collectDefaultMetrics, Registry } from "prom-client";

/**
 * Adds the process_* and nodejs_* metrics (prom-client's defaults: CPU, memory, open fds, start
 * time, event-loop lag, GC) to `registry`: etcd's dashboard reads process_*. Once per process:
 * the numbers are the process's, whichever registry shows them.
 */
export function collectProcessMetrics(registry: Registry): Registry {
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** A new registry with the process metrics: what a process's main starts from. */
export function processRegistry(): Registry {
  return collectProcessMetrics(new Registry());
}

/** Answers a scrape: the text exposition format, or 500 with the collector's error. */
export function writeMetrics(registry: Registry, res: http.ServerResponse): void {
  registry.metrics().then(
    (body) => {
      res.writeHead(200, { "content-type": registry.contentType, "content-length": Buffer.byteLength(body) });
      res.end(body);
    },
    (err: unknown) => {
      const body = `metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`;
      res.writeHead(500, {
        "content-type": "text/plain; charset=utf-8",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    },
  );
}
