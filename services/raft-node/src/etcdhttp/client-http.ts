// What etcd serves over HTTP/1.1 on its client port besides the JSON gateway (which is
// @etcd-ts/api's jsonGatewayHandler, put in front of this by v3rpc/client-server.ts; etcd 3.4's
// etcdserver/api/etcdhttp): /health and /version, with etcd's bodies, status codes and headers,
// plus 3.5's /livez and /readyz, which orchestrators probe, and Prometheus's /metrics. The client
// port's first-bytes routing (@etcd-ts/api's client-port.ts) sends HTTP/1.x connections here;
// --listen-metrics-urls get the same handler limited to /metrics and /health. On the client
// port, @etcd-ts/api's AccessControl runs first (--host-whitelist, --cors, OPTIONS).

import type http from "node:http";
import { writeMetrics } from "@etcd-ts/telemetry";
import type { Registry } from "prom-client";

export interface HealthProbe {
  /** An alarm (NOSPACE, CORRUPT) is raised somewhere in the cluster. */
  alarmRaised(): boolean;
  hasLeader(): boolean;
  /** A linearizable read through Raft: what etcd's /health proves with a quorum GET. */
  linearizableRead(): Promise<void>;
}

export interface ClientHttpOptions {
  probe: HealthProbe;
  serverVersion: string;
  clusterVersion: string;
  /** etcd gives the quorum read of /health one second. */
  healthTimeoutMs?: number;
  /** Served at /metrics. */
  metrics: Registry;
  /**
   * "metrics": only /metrics and /health, as etcd serves them on --listen-metrics-urls;
   * "client" (default): everything the client port answers over HTTP/1.1.
   */
  routes?: "client" | "metrics";
}

/** etcd's /health verdict: no alarm, a leader, and a quorum read answered in time. */
export async function checkHealth(probe: HealthProbe, timeoutMs: number): Promise<boolean> {
  if (probe.alarmRaised() || !probe.hasLeader()) return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([probe.linearizableRead().then(() => true as const), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export function clientHttpHandler(options: ClientHttpOptions): http.RequestListener {
  const timeoutMs = options.healthTimeoutMs ?? 1000;
  const version = JSON.stringify({ etcdserver: options.serverVersion, etcdcluster: options.clusterVersion });
  const text = (
    res: http.ServerResponse,
    status: number,
    body: string,
    headers: http.OutgoingHttpHeaders = {},
  ) => {
    res.writeHead(status, {
      "content-type": "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  };
  const metricsOnly = options.routes === "metrics";
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (metricsOnly && path !== "/metrics" && path !== "/health") {
      text(res, 404, "404 page not found\n", { "x-content-type-options": "nosniff" });
      return;
    }
    const probeRoute = path === "/health" || path === "/livez" || path === "/readyz";
    if (probeRoute && req.method !== "GET") {
      text(res, 405, "Method Not Allowed\n", { allow: "GET" });
      return;
    }
    switch (path) {
      case "/metrics":
        writeMetrics(options.metrics, res);
        return;
      case "/version":
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(version),
        });
        res.end(version);
        return;
      case "/health":
        void checkHealth(options.probe, timeoutMs).then((healthy) => {
          const body = JSON.stringify({ health: String(healthy) });
          // Go's http.Error adds a newline to the 503 body; the 200 body has none.
          if (healthy) text(res, 200, body);
          else text(res, 503, `${body}\n`);
        });
        return;
      case "/livez":
        // The process answers: it is alive (3.5's livez checks nothing more by default).
        text(res, 200, "ok");
        return;
      case "/readyz":
        void checkHealth(options.probe, timeoutMs).then((ready) => {
          if (ready) text(res, 200, "ok");
          else text(res, 503, "not ready\n");
        });
        return;
      default:
        text(res, 404, "404 page not found\n", { "x-content-type-options": "nosniff" });
    }
  };
}
