// What every etcd-ts process shares to be observed: one Prometheus registry with the process
// metrics, its /metrics answer, and go-grpc-prometheus's server metrics for GrpcHttp2Server.

export { parseExposition, type Sample, sampleValue } from "./exposition.js";
export { GRPC_CODE_NAMES, GrpcServerMetrics, type GrpcServerMetricsOptions } from "./grpc-server-metrics.js";
export { collectProcessMetrics, processRegistry, writeMetrics } from "./registry.js";
