// A Prometheus histogram for values observed on every call (grpc_server_handling_seconds, the
// gateway's request latency): an observation is a bucket search and three additions on plain
// numbers. prom-client's Histogram child validates and hashes its labels on every observe(),
// which was 4-6% of the gateway's CPU on cached reads (two histograms per call).
//
// It registers with a prom-client Registry as a metric of its own and answers get() in
// prom-client's histogram shape (cumulative _bucket samples with `le`, then _sum and _count),
// so /metrics, and the AggregatorRegistry of a gateway's workers (which sums histograms), show
// it as they show prom-client's.

import type { Metric, Registry } from "prom-client";

export interface CountingHistogramChild {
  observe(value: number): void;
}

class Series implements CountingHistogramChild {
  /** Per bucket, not cumulative; the last is +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export interface CountingHistogramOptions {
  name: string;
  help: string;
  labelNames: readonly string[];
  /** Upper bounds, ascending. */
  buckets: readonly number[];
  registers: readonly Registry[];
}

export class CountingHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  /** A gateway's workers' histograms add up. */
  readonly aggregator = "sum";
  private readonly labelNames: readonly string[];
  private readonly bounds: readonly number[];
  /** By label values joined with NUL. */
  private readonly series = new Map<string, Series>();

  constructor(options: CountingHistogramOptions) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames;
    this.bounds = [...options.buckets].sort((a, b) => a - b);
    // Not one of prom-client's classes, but what its registry reads of one (name, help, type,
    // aggregator, get, reset).
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The series with these label values (in labelNames' order), created at zero: resolve once, observe often. */
  labels(...values: string[]): CountingHistogramChild {
    if (values.length !== this.labelNames.length)
      throw new Error(`${this.name}: ${values.length} label values for ${this.labelNames.length} names`);
    const key = values.join("\u0000");
    let series = this.series.get(key);
    if (series === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, i) => {
        labels[name] = values[i]!;
      });
      series = new Series(labels, this.bounds);
      this.series.set(key, series);
    }
    return series;
  }

  /** Shows the series at zero before its first observation (as prom-client's zero()). */
  zero(labels: Readonly<Record<string, string>>): void {
    this.labels(...this.labelNames.map((name) => labels[name] ?? ""));
  }

  reset(): void {
    this.series.clear();
  }

  async get(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { le: bound, ...s.labels }, value: cumulative, metricName: bucket });
      });
      values.push({ labels: { le: "+Inf", ...s.labels }, value: s.count, metricName: bucket });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
