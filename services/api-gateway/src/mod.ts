// The gateway's public surface: start one in-process (tests, tools), or configure it the
// way the command line does.

export { ConfigError, type GatewayConfig, parseConfig } from "./config/gateway-config.js";
export { Gateway, type GatewayOptions } from "./gateway.js";
export { TARGET_MEMBER_METADATA } from "./proxy/unary-forwarder.js";
export { etcdMissingReason, startEtcd } from "./testing/etcd-cluster.js";
