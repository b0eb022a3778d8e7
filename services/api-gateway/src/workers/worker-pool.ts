// `--workers N`: N gateway processes behind one pair of ports (node:cluster). A Node process
// answers calls on one core; etcd's grpc-proxy answers on every core, so a gateway that must
// keep up with it on a multi-core host runs one worker per core. The gateway is stateless, so
// each worker is a whole gateway (its own member connections, watch-fed cache, coalescers);
// the primary only accepts connections (handing each to a worker in turn), restarts workers
// that die, stops them on a signal, and answers /metrics scrapes with every worker's metrics
// summed (prom-client's AggregatorRegistry over the cluster IPC channel).

import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import { AggregatorRegistry, type Registry } from "prom-client";

const METRICS_REQUEST = "etcd-gateway:metrics-request";
const METRICS_RESPONSE = "etcd-gateway:metrics-response";
const READY = "etcd-gateway:ready";

/** Restarts of a worker that keeps dying back off from 0.5 s to 30 s; a worker that lived a minute resets it. */
export function restartDelayMs(consecutiveDeaths: number): number {
  return Math.min(30_000, 500 * 2 ** (Math.max(1, consecutiveDeaths) - 1));
}
const STABLE_AFTER_MS = 60_000;
/** How long a stopping worker may drain before it is killed (the gateway's own grace is 5 s). */
const STOP_GRACE_MS = 10_000;

interface MetricsRequest {
  type: typeof METRICS_REQUEST;
  id: number;
}
interface MetricsResponse {
  type: typeof METRICS_RESPONSE;
  id: number;
  text?: string;
  error?: string;
}

/**
 * Runs in the primary: forks `workers` gateways (this same entry file, same flags) and keeps
 * them running until SIGTERM/SIGINT, then stops them and exits. Never returns.
 */
export function runWorkerPool(workers: number, logger: Logger): void {
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  let exitCode = 0;
  let deaths = 0;
  /** Until a worker has served once, a worker's death is a start-up failure (bad flags, busy port). */
  let anyReady = false;
  const bornAt = new Map<Worker, number>();

  const fork = () => {
    const worker = cluster.fork();
    bornAt.set(worker, Date.now());
    worker.on("message", (message: MetricsRequest | { type: typeof READY }) => {
      if (message?.type === READY) anyReady = true;
      if (message?.type !== METRICS_REQUEST) return;
      const answer = (body: Omit<MetricsResponse, "type" | "id">) =>
        worker.send({ type: METRICS_RESPONSE, id: message.id, ...body } satisfies MetricsResponse);
      aggregator.clusterMetrics().then(
        (text) => answer({ text }),
        (err: unknown) => answer({ error: String(err) }),
      );
    });
  };

  cluster.on("exit", (worker, code, signal) => {
    const lived = Date.now() - (bornAt.get(worker) ?? Date.now());
    bornAt.delete(worker);
    if (stopping) {
      if (bornAt.size === 0) {
        logger.info({}, "gateway workers stopped");
        process.exit(exitCode);
      }
      return;
    }
    if (!anyReady) {
      // Restarting would fail the same way forever: exit as a single gateway process would.
      logger.fatal({ worker: worker.process.pid, code, signal }, "a gateway worker failed to start");
      exitCode = 1;
      stop("a worker failed to start");
      return;
    }
    deaths = lived >= STABLE_AFTER_MS ? 1 : deaths + 1;
    const delayMs = restartDelayMs(deaths);
    logger.error(
      { worker: worker.process.pid, code, signal, restartInMs: delayMs },
      "gateway worker exited; starting another",
    );
    setTimeout(() => {
      if (!stopping) fork();
    }, delayMs);
  });

  const stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason, workers: bornAt.size }, "shutting down gateway workers");
    if (bornAt.size === 0) process.exit(exitCode);
    for (const worker of bornAt.keys()) worker.process.kill("SIGTERM");
    setTimeout(() => {
      logger.error({ workers: bornAt.size }, "gateway workers did not stop in time; killing them");
      for (const worker of bornAt.keys()) worker.process.kill("SIGKILL");
      process.exit(1);
    }, STOP_GRACE_MS).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  logger.info({ workers }, "starting gateway workers");
  for (let i = 0; i < workers; i++) fork();
}

/** Runs in a worker once its gateway serves: from then on, a worker that dies is replaced. */
export function reportWorkerReady(): void {
  process.send?.({ type: READY });
}

/**
 * Runs in a worker: offers `registry` to the primary's aggregation and returns what /metrics
 * serves, every worker's metrics together (a scrape reaches whichever worker its connection went to).
 */
export function clusterMetricsSource(registry: Registry): () => Promise<string> {
  // Constructing it adds prom-client's worker-side listener; setRegistries picks what it reports.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  let nextId = 0;
  const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
  process.on("message", (message: MetricsResponse) => {
    if (message?.type !== METRICS_RESPONSE) return;
    const waiter = pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.text !== undefined) waiter.resolve(message.text);
    else waiter.reject(new Error(`metrics from the gateway's workers: ${message.error ?? "no answer"}`));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      process.send?.({ type: METRICS_REQUEST, id } satisfies MetricsRequest);
    });
}
