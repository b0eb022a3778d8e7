#!/usr/bin/env node
// Entry point: parse configuration, start the gateway (or, with --workers N, a pool of N gateway
// processes sharing its ports), stop it cleanly on SIGTERM/SIGINT.

import cluster from "node:cluster";
import { startTracing, stopOnSignals } from "@etcd-ts/telemetry";
import pino from "pino";
import { ConfigError, parseConfig, USAGE } from "./config/gateway-config.js";
import { Gateway } from "./gateway.js";
import { reportWorkerReady, runWorkerPool } from "./workers/worker-pool.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`etcd-ts-gateway: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    throw err;
  }
  if (config.workers > 1 && cluster.isPrimary) {
    runWorkerPool(config.workers, pino({ name: "api-gateway", level: config.logLevel }));
    return;
  }
  // Before the servers: the SDK is loaded only when OTEL_* asks for it.
  const tracingHandle = await startTracing("api-gateway");
  const base = pino({ name: "api-gateway", level: config.logLevel });
  const logger = cluster.isWorker ? base.child({ worker: cluster.worker?.id }) : base;
  const gateway = await Gateway.start({
    ...config,
    logger,
    processMetrics: true,
    metricsAcrossWorkers: cluster.isWorker,
  });
  stopOnSignals(() => gateway.stop(), logger, tracingHandle);
  if (cluster.isWorker) reportWorkerReady();
}

main().catch((err: unknown) => {
  process.stderr.write(
    `etcd-ts-gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
