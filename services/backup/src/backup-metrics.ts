// What `serve` tells Prometheus on its HTTP port (/metrics), beside the process metrics every
// etcd-ts process has (@etcd-ts/telemetry): how old the newest good backup is, its size and
// duration, and how often backups fail or are retried. Alerts want `backup_age_seconds` and
// `increase(backup_failures_total[1h])`.

import type { BackupKind } from "@etcd-ts/events";
import { processRegistry } from "@etcd-ts/telemetry";
import { Counter, Gauge, type Registry } from "prom-client";

export type { BackupKind };
/** What a retry was for: the member streaming the snapshot or watch, or the object store. */
export type RetryStage = "source" | "store";

export class BackupMetrics {
  readonly registry: Registry;
  private lastSuccess: number | undefined;
  private readonly lastSuccessGauge: Gauge<"kind">;
  private readonly size: Gauge<"kind">;
  private readonly duration: Gauge<"kind">;
  private readonly failures: Counter<"kind">;
  private readonly retries: Counter<"stage">;

  constructor(registry: Registry = processRegistry()) {
    this.registry = registry;
    const registers = [registry];
    this.lastSuccessGauge = new Gauge({
      name: "backup_last_success_timestamp_seconds",
      help: "When the newest backup of each kind was stored (Unix time).",
      labelNames: ["kind"],
      registers,
    });
    this.size = new Gauge({
      name: "backup_last_size_bytes",
      help: "Size of the newest stored backup of each kind.",
      labelNames: ["kind"],
      registers,
    });
    this.duration = new Gauge({
      name: "backup_last_duration_seconds",
      help: "How long the newest stored backup of each kind took, retries included.",
      labelNames: ["kind"],
      registers,
    });
    this.failures = new Counter({
      name: "backup_failures_total",
      help: "Backups that failed after every retry.",
      labelNames: ["kind"],
      registers,
    });
    this.retries = new Counter({
      name: "backup_retries_total",
      help: "Attempts that failed and were retried, by what failed.",
      labelNames: ["stage"],
      registers,
    });
    const self = this;
    new Gauge({
      name: "backup_age_seconds",
      help: "Seconds since the newest stored full backup (absent until there is one).",
      // A label so that the series is absent, not 0 (which would read as fresh), before any backup.
      labelNames: ["kind"],
      registers,
      collect() {
        if (self.lastSuccess !== undefined) this.labels("full").set((Date.now() - self.lastSuccess) / 1000);
      },
    });
    for (const kind of ["full", "delta"]) this.failures.labels(kind).inc(0);
    for (const stage of ["source", "store"]) this.retries.labels(stage).inc(0);
  }

  /** The newest full backup already in the store when the service starts. */
  knownFull(at: Date): void {
    this.lastSuccess = Math.max(this.lastSuccess ?? 0, at.getTime());
    this.lastSuccessGauge.labels("full").set(this.lastSuccess / 1000);
  }

  succeeded(kind: BackupKind, bytes: number, seconds: number): void {
    const now = Date.now();
    if (kind === "full") this.lastSuccess = now;
    this.lastSuccessGauge.labels(kind).set(now / 1000);
    this.size.labels(kind).set(bytes);
    this.duration.labels(kind).set(seconds);
  }

  failed(kind: BackupKind): void {
    this.failures.labels(kind).inc();
  }

  retried(stage: RetryStage): void {
    this.retries.labels(stage).inc();
  }
}
