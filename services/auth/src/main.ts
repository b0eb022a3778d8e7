#!/usr/bin/env node
// Entry point: parse configuration, start the auth service, stop it cleanly on SIGTERM/SIGINT.
import { startTracing } from "@etcd-ts/telemetry";
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
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    service
      .stop()
      .then(() => tracingHandle?.shutdown())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err: unknown) => {
  process.stderr.write(`etcd-ts-auth: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
