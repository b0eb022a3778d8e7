// Prometheus metrics for the auth service, served on its HTTP port's /metrics with
// @etcd-ts/telemetry's process_* and grpc_server_* metrics.
import { collectProcessMetrics } from "@etcd-ts/telemetry";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AuthenticateResult } from "../authenticate/authenticator.js";

/** What the gauges read at each scrape. */
export interface KeySource {
  readonly rotations: number;
  publishedCount(): number;
}

export class AuthMetrics {
  readonly registry = new Registry();
  /** Set once the signing keys exist. */
  keys: KeySource | undefined;

  readonly authentications = new Counter({
    name: "etcd_auth_service_authenticate_total",
    help: "Authenticate calls, by result: ok, failed (wrong password or user), limited (over a failed-login budget), error.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });

  readonly latency = new Histogram({
    name: "etcd_auth_service_authenticate_duration_seconds",
    help: "Time to answer Authenticate (member read, bcrypt, signing).",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly rotations: Gauge = new Gauge({
    name: "etcd_auth_service_key_rotations",
    help: "Signing keys this process has published and signed with since it started.",
    registers: [this.registry],
    collect: (): void => this.rotations.set(this.keys?.rotations ?? 0),
  });

  readonly publishedKeys: Gauge = new Gauge({
    name: "etcd_auth_service_published_keys",
    help: "Verification keys in the cluster's published set (every replica's), as last read.",
    registers: [this.registry],
    collect: (): void => this.publishedKeys.set(this.keys?.publishedCount() ?? 0),
  });

  constructor(options: { processMetrics: boolean }) {
    if (options.processMetrics) collectProcessMetrics(this.registry);
    for (const result of ["ok", "failed", "limited", "error"]) this.authentications.labels(result);
  }

  observe(result: AuthenticateResult, seconds: number): void {
    this.authentications.labels(result).inc();
    this.latency.observe(seconds);
  }
}
