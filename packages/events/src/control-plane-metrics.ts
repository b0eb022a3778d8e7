// A ControlPlane's counters as Prometheus metrics, read at scrape time (the hot path only adds
// to plain numbers), so an operator sees events published, dropped while NATS was away, and
// reconnections on every service's /metrics.
import { Counter, Gauge, type Registry } from "prom-client";
import type { ControlPlane, ControlPlaneCounters } from "./control-plane.js";

const COUNTERS: Record<keyof ControlPlaneCounters, string> = {
  published: "Control-plane events handed to NATS.",
  dropped:
    "Control-plane events dropped: the buffer held while disconnected was full, or the connection was closing.",
  received: "Control-plane messages received on subscribed subjects.",
  malformed: "Received messages that were not their subject's JSON shape.",
  connects: "Successful connections (the first and every reconnection) to NATS.",
};

export function registerControlPlaneMetrics(registry: Registry, plane: ControlPlane): void {
  for (const [field, help] of Object.entries(COUNTERS) as [keyof ControlPlaneCounters, string][]) {
    new Counter({
      name: `etcd_ts_control_plane_${field}_total`,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(plane.counters[field]);
      },
    });
  }
  new Gauge({
    name: "etcd_ts_control_plane_connected",
    help: "1 while connected to NATS, else 0.",
    registers: [registry],
    collect() {
      this.set(plane.connected ? 1 : 0);
    },
  });
}
