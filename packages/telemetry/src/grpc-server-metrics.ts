// go-grpc-prometheus's server metrics (grpc_server_*), which etcd registers on its client port
// and etcd's dashboard and alerts read: the same names, labels, code names and buckets, fed by
// @etcd-ts/api's GrpcHttp2Server through its per-method observer hook.

import type { CallKind, GrpcCallObserver, GrpcMethodObserver } from "@etcd-ts/api";
import { Counter, Histogram, type Registry } from "prom-client";

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

const LABELS = ["grpc_type", "grpc_service", "grpc_method"] as const;

export interface GrpcServerMetricsOptions {
  /**
   * Also count message bytes as etcd does on its client port
   * (etcd_network_client_grpc_{sent,received}_bytes_total).
   */
  etcdClientBytes?: boolean;
}

type CounterChild = ReturnType<Counter<string>["labels"]>;
type HistogramChild = ReturnType<Histogram<string>["labels"]>;

export class GrpcServerMetrics implements GrpcCallObserver {
  private readonly started: Counter<string>;
  private readonly handled: Counter<string>;
  private readonly received: Counter<string>;
  private readonly sent: Counter<string>;
  private readonly handling: Histogram<string>;
  private readonly clientSentBytes: Counter | undefined;
  private readonly clientReceivedBytes: Counter | undefined;

  constructor(registry: Registry, options: GrpcServerMetricsOptions = {}) {
    const registers = [registry];
    this.started = new Counter({
      name: "grpc_server_started_total",
      help: "Total number of RPCs started on the server.",
      labelNames: LABELS,
      registers,
    });
    this.handled = new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: [...LABELS, "grpc_code"],
      registers,
    });
    this.received = new Counter({
      name: "grpc_server_msg_received_total",
      help: "Total number of RPC stream messages received on the server.",
      labelNames: LABELS,
      registers,
    });
    this.sent = new Counter({
      name: "grpc_server_msg_sent_total",
      help: "Total number of gRPC stream messages sent by the server.",
      labelNames: LABELS,
      registers,
    });
    // go-grpc-prometheus's default buckets (prometheus.DefBuckets). etcd turns this histogram
    // on with --metrics=extensive; it is always on here because etcdGRPCRequestsSlow reads it.
    this.handling = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      labelNames: LABELS,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    if (options.etcdClientBytes) {
      this.clientSentBytes = new Counter({
        name: "etcd_network_client_grpc_sent_bytes_total",
        help: "The total number of bytes sent to grpc clients.",
        registers,
      });
      this.clientReceivedBytes = new Counter({
        name: "etcd_network_client_grpc_received_bytes_total",
        help: "The total number of bytes received from grpc clients.",
        registers,
      });
    }
  }

  /**
   * Resolves a method's label children once, at registration (so a call costs counter
   * increments only), and creates its series at zero as go-grpc-prometheus's
   * InitializeMetrics does, so rate() sees the first call.
   */
  method(path: string, kind: CallKind): GrpcMethodObserver {
    const slash = path.lastIndexOf("/");
    const labels = [GRPC_TYPE[kind], path.slice(1, slash), path.slice(slash + 1)] as const;
    const handledByCode = GRPC_CODE_NAMES.map((code) => this.handled.labels(...labels, code));
    for (const child of handledByCode) child.inc(0);
    const started = this.started.labels(...labels);
    const received = this.received.labels(...labels);
    const sent = this.sent.labels(...labels);
    started.inc(0);
    received.inc(0);
    sent.inc(0);
    this.handling.zero({ grpc_type: labels[0], grpc_service: labels[1], grpc_method: labels[2] });
    return new MethodCounters(
      started,
      received,
      sent,
      handledByCode,
      this.handling.labels(...labels),
      this.clientReceivedBytes,
      this.clientSentBytes,
    );
  }
}

class MethodCounters implements GrpcMethodObserver {
  constructor(
    private readonly startedChild: CounterChild,
    private readonly receivedChild: CounterChild,
    private readonly sentChild: CounterChild,
    private readonly handledByCode: readonly CounterChild[],
    private readonly handlingChild: HistogramChild,
    private readonly receivedBytes: Counter | undefined,
    private readonly sentBytes: Counter | undefined,
  ) {}

  started(): void {
    this.startedChild.inc();
  }

  received(bytes: number): void {
    this.receivedChild.inc();
    this.receivedBytes?.inc(bytes);
  }

  sent(bytes: number): void {
    this.sentChild.inc();
    this.sentBytes?.inc(bytes);
  }

  handled(code: number, seconds: number): void {
    // A code outside grpc-go's table is reported as Unknown, as grpc-go would.
    (this.handledByCode[code] ?? this.handledByCode[2]!).inc();
    this.handlingChild.observe(seconds);
  }
}
