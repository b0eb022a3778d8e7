// How a long-running service process ends: on SIGTERM or SIGINT it stops once (the service's own
// stop: listeners closed, calls drained), exports the spans still buffered, and exits 0, or 1
// when stopping failed. Shared by the gateway and the auth service.
import type { TracingHandle } from "./tracing.js";

interface StopLogger {
  info(details: object, message: string): void;
  error(details: object, message: string): void;
}

export function stopOnSignals(
  stop: () => Promise<void>,
  logger: StopLogger,
  tracing: TracingHandle | undefined,
): void {
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    stop()
      .then(() => tracing?.shutdown())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}
