// go-grpc-prometheus's server metrics (grpc_server_*), which etcd registers on its client port
// and etcd's dashboard and alerts read: the same names, labels, code names and buckets, fed by
// @etcd-ts/api's GrpcHttp2Server through its per-method observer hook.

import type { CallKind, GrpcCallObserver, GrpcMethodObserver } from "@etcd-ts/api";
import { Counter, type Registry } from "prom-client";
import { CountingHistogram, type CountingHistogramChild } from "./counting-histogram.js";

/** grpc-go's codes.Code.String(), indexed by code: the grpc_code label's values. */
export const GRPC_CODE_NAMES = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
] as const;

/** go-grpc-prometheus's grpc_type label for each kind of call. */
const GRPC_TYPE: Record<CallKind, string> = {
  unary: "unary",
  "server-stream": "server_stream",
  bidi: "bidi_stream",
};

/**
 * In the order Go's client_golang prints labels (sorted by name, grpc_code first on
 * grpc_server_handled_total): tools and etcd's e2e suite match the series' text as etcd writes it.
 */
const LABELS = ["grpc_method", "grpc_service", "grpc_type"] as const;

export interface GrpcServerMetricsOptions {
  /**
   * Also count message bytes as etcd does on its client port
   * (etcd_network_client_grpc_{sent,received}_bytes_total).
   */
  etcdClientBytes?: boolean;
  /**
   * grpc_server_handling_seconds, observed on every call. Default on; a member turns it on only
   * with --metrics=extensive, as etcd does (grpc_prometheus.EnableHandlingTimeHistogram).
   */
  handlingTime?: boolean;
}

type CounterChild = ReturnType<Counter<string>["labels"]>;

export class GrpcServerMetrics implements GrpcCallObserver {
  private readonly started: Counter<string>;
  private readonly handled: Counter<string>;
  private readonly received: Counter<string>;
  private readonly sent: Counter<string>;
  private readonly handling: CountingHistogram | undefined;
  private readonly clientSentBytes: Counter | undefined;
  private readonly clientReceivedBytes: Counter | undefined;

  constructor(registry: Registry, options: GrpcServerMetricsOptions = {}) {
    const registers = [registry];
    this.started = new Counter({
      name: "grpc_server_started_total",
      collect: () => this.sync(),
      help: "Total number of RPCs started on the server.",
      labelNames: LABELS,
      registers,
    });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      collect: () => this.sync(),
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: ["grpc_code", ...LABELS],
      registers,
    });
    this.received = new Counter({
      name: "grpc_server_msg_received_total",
      collect: () => this.sync(),
      help: "Total number of RPC stream messages received on the server.",
      labelNames: LABELS,
      registers,
    });
    this.sent = new Counter({
      name: "grpc_server_msg_sent_total",
      collect: () => this.sync(),
      help: "Total number of gRPC stream messages sent by the server.",
      labelNames: LABELS,
      registers,
    });
    // go-grpc-prometheus's default buckets (prometheus.DefBuckets). etcd's etcdGRPCRequestsSlow
    // alert reads it, so etcd's mixin expects --metrics=extensive.
    if (options.handlingTime ?? true) {
      this.handling = new CountingHistogram({
        name: "grpc_server_handling_seconds",
        help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
        labelNames: LABELS,
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      });
    }
    if (options.etcdClientBytes) {
      this.clientSentBytes = new Counter({
        name: "etcd_network_client_grpc_sent_bytes_total",
        collect: () => this.sync(),
        help: "The total number of bytes sent to grpc clients.",
        registers,
      });
      this.clientReceivedBytes = new Counter({
        name: "etcd_network_client_grpc_received_bytes_total",
        collect: () => this.sync(),
        help: "The total number of bytes received from grpc clients.",
        registers,
      });
    }
  }

  /** Every method's plain counts, added to the counters when scraped. */
  private readonly methods: MethodCounts[] = [];

  /**
   * Resolves a method's label children once, at registration, and creates its series at zero
   * as go-grpc-prometheus's InitializeMetrics does, so rate() sees the first call. A call adds
   * to plain numbers (a prom-client child's inc() hashes its labels on every call); they reach
   * the counters when scraped. Only the handling-time histogram is observed per call.
   */
  method(path: string, kind: CallKind): GrpcMethodObserver {
    const slash = path.lastIndexOf("/");
    const labels = [path.slice(slash + 1), path.slice(1, slash), GRPC_TYPE[kind]] as const;
    const handledByCode = GRPC_CODE_NAMES.map((code) => this.handled.labels(code, ...labels));
    for (const child of handledByCode) child.inc(0);
    const started = this.started.labels(...labels);
    const received = this.received.labels(...labels);
    const sent = this.sent.labels(...labels);
    started.inc(0);
    received.inc(0);
    sent.inc(0);
    this.handling?.zero({ grpc_method: labels[0], grpc_service: labels[1], grpc_type: labels[2] });
    const counts = new MethodCounts(
      { started, received, sent, handledByCode },
      this.handling?.labels(...labels),
    );
    this.methods.push(counts);
    return counts;
  }

  /** Adds what every method counted since the last scrape (the first counter collected does it all). */
  private sync(): void {
    let receivedBytes = 0;
    let sentBytes = 0;
    for (const m of this.methods) {
      const [inBytes, outBytes] = m.flush();
      receivedBytes += inBytes;
      sentBytes += outBytes;
    }
    if (receivedBytes > 0) this.clientReceivedBytes?.inc(receivedBytes);
    if (sentBytes > 0) this.clientSentBytes?.inc(sentBytes);
  }
}

interface MethodChildren {
  started: CounterChild;
  received: CounterChild;
  sent: CounterChild;
  handledByCode: readonly CounterChild[];
}

class MethodCounts implements GrpcMethodObserver {
  private startedCount = 0;
  private receivedCount = 0;
  private sentCount = 0;
  private receivedBytes = 0;
  private sentBytes = 0;
  private readonly handledCounts: number[] = new Array(GRPC_CODE_NAMES.length).fill(0);

  constructor(
    private readonly children: MethodChildren,
    private readonly handlingChild: CountingHistogramChild | undefined,
  ) {}

  started(): void {
    this.startedCount++;
  }

  received(bytes: number): void {
    this.receivedCount++;
    this.receivedBytes += bytes;
  }

  sent(bytes: number): void {
    this.sentCount++;
    this.sentBytes += bytes;
  }

  handled(code: number, seconds: number): void {
    // A code outside grpc-go's table is reported as Unknown, as grpc-go would.
    this.handledCounts[code < this.handledCounts.length ? code : 2]!++;
    this.handlingChild?.observe(seconds);
  }

  /** Moves the counts into the counters; returns the bytes received and sent since the last flush. */
  flush(): [number, number] {
    const c = this.children;
    if (this.startedCount > 0) c.started.inc(this.startedCount);
    if (this.receivedCount > 0) c.received.inc(this.receivedCount);
    if (this.sentCount > 0) c.sent.inc(this.sentCount);
    for (let code = 0; code < this.handledCounts.length; code++) {
      if (this.handledCounts[code]! > 0) c.handledByCode[code]!.inc(this.handledCounts[code]);
      this.handledCounts[code] = 0;
    }
    const bytes: [number, number] = [this.receivedBytes, this.sentBytes];
    this.startedCount = this.receivedCount = this.sentCount = this.receivedBytes = this.sentBytes = 0;
    return bytes;
  }
}
