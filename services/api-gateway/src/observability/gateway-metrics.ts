// Prometheus metrics for the gateway, in a registry of its own (served on the JSON port's
// /metrics, with @etcd-ts/telemetry's process and grpc_server_* metrics). Method labels are gRPC
// method names ("Range"), member labels hex member IDs (the per-member routing).

import { CountingHistogram, type CountingHistogramChild, collectProcessMetrics } from "@etcd-ts/telemetry";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { Counter, Gauge, Registry } from "prom-client";

export interface RangeCacheCounts {
  readonly hits: number;
  readonly misses: number;
  readonly invalidations: number;
  readonly size: number;
}

type CounterChild = ReturnType<Counter<string>["labels"]>;

export class GatewayMetrics {
  readonly registry = new Registry();

  /** What /metrics serves: this registry, or in a `--workers` gateway every worker's together. */
  exposition: () => Promise<string> = () => this.registry.metrics();

  readonly requests = new Counter({
    name: "etcd_gateway_requests_total",
    help: "Calls answered, by method, the member that answered last, and gRPC status code name.",
    labelNames: ["method", "member", "code"] as const,
    registers: [this.registry],
    collect: () => this.syncAnswered(),
  });

  readonly latency = new CountingHistogram({
    name: "etcd_gateway_request_duration_seconds",
    help: "Time from a unary call's arrival to its answer, retries included.",
    labelNames: ["method"] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly retries = new Counter({
    name: "etcd_gateway_retries_total",
    help: "Calls sent again to a member after a failure the client never saw.",
    labelNames: ["method"] as const,
    registers: [this.registry],
  });

  readonly upstreamErrors = new Counter({
    name: "etcd_gateway_upstream_errors_total",
    help: "Failed upstream calls, by member and gRPC status code name, whether retried or not.",
    labelNames: ["member", "code"] as const,
    registers: [this.registry],
  });

  readonly clientWatches = new Gauge({
    name: "etcd_gateway_client_watches",
    help: "Watches clients hold open through this gateway.",
    registers: [this.registry],
  });

  readonly upstreamWatches = new Gauge({
    name: "etcd_gateway_upstream_watches",
    help: "Watches this gateway holds on members (shared by identical client watches).",
    registers: [this.registry],
  });

  readonly keepAlivesReceived = new Counter({
    name: "etcd_gateway_lease_keepalives_received_total",
    help: "Lease keep-alive requests received from clients.",
    registers: [this.registry],
  });

  readonly keepAlivesSent = new Counter({
    name: "etcd_gateway_lease_keepalives_sent_total",
    help: "Lease keep-alive requests sent to members (one answers many client requests).",
    registers: [this.registry],
  });

  readonly natsConnected = new Gauge({
    name: "etcd_gateway_nats_connected",
    help: "1 while connected to NATS for control-plane events (absent without --nats-url).",
    registers: [],
    // A state, not an amount: with --workers, 1 only when every worker is connected.
    aggregator: "min",
  });

  readonly leaderAnnouncements = new Counter({
    name: "etcd_gateway_leader_announcements_total",
    help: "Leader elections heard over NATS (routing moved before the next probe when newer).",
    registers: [],
  });

  readonly hasLeader = new Gauge({
    name: "etcd_gateway_has_leader",
    help: "1 when the gateway knows the cluster's leader.",
    registers: [this.registry],
    aggregator: "min",
  });

  readonly rangeCacheHits = new Counter({
    name: "etcd_gateway_range_cache_hits_total",
    help: "Range calls (serializable, or linearizable after a read barrier) answered from the gateway's watch-fed cache.",
    registers: [this.registry],
    collect: () => this.syncRangeCache(),
  });

  readonly rangeCacheMisses = new Counter({
    name: "etcd_gateway_range_cache_misses_total",
    help: "Cacheable Range calls the cache could not answer (sent to a member).",
    registers: [this.registry],
    collect: () => this.syncRangeCache(),
  });

  readonly rangeCacheInvalidations = new Counter({
    name: "etcd_gateway_range_cache_invalidations_total",
    help: "Cached Range answers dropped because a watch event touched their key range.",
    registers: [this.registry],
    collect: () => this.syncRangeCache(),
  });

  readonly tokensRefused = new Counter({
    name: "etcd_gateway_auth_tokens_refused_total",
    help: "Calls refused by the gateway itself for an invalid auth token (no member was asked), by reason.",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  readonly readBarrierProbes = new Counter({
    name: "etcd_gateway_read_barrier_probes_total",
    help: "Linearizable rounds to the leader, each shared by every linearizable Range waiting for it.",
    registers: [this.registry],
  });

  readonly rangeCacheEntries = new Gauge({
    name: "etcd_gateway_range_cache_entries",
    help: "Range answers held in the gateway's cache.",
    registers: [this.registry],
    collect: () => this.syncRangeCache(),
  });

  // The cache counts in plain fields (cheaper than a prom-client call per read); the
  // counters catch up with them whenever metrics are collected.
  private rangeCacheSource: RangeCacheCounts | undefined;
  private readonly rangeCacheSeen = { hits: 0, misses: 0, invalidations: 0 };

  // Label children cached by key: resolving labels hashes them, on every call otherwise.
  private readonly requestChildren = new Map<string, CounterChild>();
  private readonly latencyChildren = new Map<string, CountingHistogramChild>();
  private readonly retryChildren = new Map<string, CounterChild>();
  private readonly errorChildren = new Map<string, CounterChild>();

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectProcessMetrics(this.registry);
  }

  /**
   * Calls answered since `requests` was last collected, by method, member and code: plain
   * numbers on the call path (a key string per call and a prom-client child's inc(), which
   * hashes its labels, were 3% of the gateway's time on cached reads), added when collected.
   */
  private readonly answeredCounts = new Map<string, Map<string, number[]>>();

  /** One call answered (status `code`), `seconds` after it arrived when measured. */
  answered(method: string, member: string, code: number, seconds: number | undefined): void {
    let byMember = this.answeredCounts.get(method);
    if (byMember === undefined) {
      byMember = new Map();
      this.answeredCounts.set(method, byMember);
    }
    let byCode = byMember.get(member);
    if (byCode === undefined) {
      byCode = [];
      byMember.set(member, byCode);
    }
    byCode[code] = (byCode[code] ?? 0) + 1;
    if (seconds === undefined) return;
    let hist = this.latencyChildren.get(method);
    if (hist === undefined) {
      hist = this.latency.labels(method);
      this.latencyChildren.set(method, hist);
    }
    hist.observe(seconds);
  }

  private syncAnswered(): void {
    for (const [method, byMember] of this.answeredCounts)
      for (const [member, byCode] of byMember)
        byCode.forEach((count, code) => {
          if (count === 0) return;
          byCode[code] = 0;
          const key = `${method}\u0000${member}\u0000${code}`;
          let child = this.requestChildren.get(key);
          if (child === undefined) {
            child = this.requests.labels(method, member, codeName(code));
            this.requestChildren.set(key, child);
          }
          child.inc(count);
        });
  }

  /** Reports `source`'s counts from now on. */
  /** With --nats-url: the NATS metrics are served too. */
  followControlPlane(): void {
    this.registry.registerMetric(this.natsConnected);
    this.registry.registerMetric(this.leaderAnnouncements);
  }

  observeRangeCache(source: RangeCacheCounts): void {
    this.rangeCacheSource = source;
  }

  private syncRangeCache(): void {
    const source = this.rangeCacheSource;
    if (source === undefined) return;
    const seen = this.rangeCacheSeen;
    if (source.hits > seen.hits) this.rangeCacheHits.inc(source.hits - seen.hits);
    if (source.misses > seen.misses) this.rangeCacheMisses.inc(source.misses - seen.misses);
    if (source.invalidations > seen.invalidations)
      this.rangeCacheInvalidations.inc(source.invalidations - seen.invalidations);
    seen.hits = source.hits;
    seen.misses = source.misses;
    seen.invalidations = source.invalidations;
    this.rangeCacheEntries.set(source.size);
  }

  retried(method: string): void {
    let child = this.retryChildren.get(method);
    if (child === undefined) {
      child = this.retries.labels(method);
      this.retryChildren.set(method, child);
    }
    child.inc();
  }

  upstreamError(member: string, code: number): void {
    const key = `${member}\u0000${code}`;
    let child = this.errorChildren.get(key);
    if (child === undefined) {
      child = this.upstreamErrors.labels(member, codeName(code));
      this.errorChildren.set(key, child);
    }
    child.inc();
  }
}

function codeName(code: number): string {
  return GrpcStatus[code] ?? String(code);
}
