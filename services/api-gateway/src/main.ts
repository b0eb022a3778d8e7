#!/usr/bin/env node
// Entry point: parse configuration, start the gateway, stop it cleanly on SIGTERM/SIGINT.

import { startTracing, stopOnSignals } from "@etcd-ts/telemetry";
import pino from "pino";
import { ConfigError, parseConfig, USAGE } from "./config/gateway-config.js";
import { Gateway } from "./gateway.js";

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
  // Before the servers: the SDK is loaded only when OTEL_* asks for it.
  const tracingHandle = await startTracing("api-gateway");
  const logger = pino({ name: "api-gateway", level: config.logLevel });
  const gateway = await Gateway.start({ ...config, logger, processMetrics: true });
  stopOnSignals(() => gateway.stop(), logger, tracingHandle);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `etcd-ts-gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
