#!/usr/bin/env node
// Entry point: parse configuration, start the auth service, stop it cleanly on SIGTERM/SIGINT.
import { startTracing, stopOnSignals } from "@etcd-ts/telemetry";
import pino from "pino";
import { AuthService } from "./auth-service.js";
import { ConfigError, parseConfig, USAGE } from "./config/auth-config.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`etcd-ts-auth: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    throw err;
  }
  // Before the servers: the SDK is loaded only when OTEL_* asks for it.
  const tracingHandle = await startTracing("auth");
  const logger = pino({ name: "auth", level: config.logLevel });
  const service = await AuthService.start({ ...config, logger, processMetrics: true });
  stopOnSignals(() => service.stop(), logger, tracingHandle);
}

main().catch((err: unknown) => {
  process.stderr.write(`etcd-ts-auth: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
