// Assembles the gateway's parts: cluster tracking, the gRPC proxy with its coalescers, and
// (when given an address) the JSON gateway. main.ts and tests start it the same way.

import type { GrpcHttp2Server } from "@etcd-ts/api";
import { ControlPlane } from "@etcd-ts/events";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { DEFAULT_RANGE_CACHE_OPTIONS, RangeCache } from "./cache/range-cache.js";
import { RangeCacheFeed } from "./cache/range-cache-feed.js";
import { followClusterEvents } from "./cluster/cluster-events.js";
import { ClusterTracker } from "./cluster/cluster-tracker.js";
import { splitHostPort } from "./config/gateway-config.js";
import { createJsonGateway } from "./json/json-gateway.js";
import type { KeepAliveHub } from "./lease/keepalive-hub.js";
import { createKeepAliveHub } from "./lease/keepalive-proxy.js";
import { GatewayMetrics } from "./observability/gateway-metrics.js";
import { createGrpcServer } from "./proxy/grpc-server.js";
import { OpenStreams } from "./proxy/open-streams.js";
import { StreamForwarder } from "./proxy/stream-forwarder.js";
import { UnaryForwarder } from "./proxy/unary-forwarder.js";
import type { WatchHub } from "./watch/watch-hub.js";
import { createWatchHub } from "./watch/watch-proxy.js";

export interface GatewayOptions {
  endpoints: string[];
  listenAddr: string;
  /** Omit to run without the JSON gateway. */
  jsonListenAddr?: string | undefined;
  refreshIntervalMs: number;
  keepAliveReuseMs: number;
  /** Serializable Range answers to cache (watch-fed); 0 turns the cache off. Default 10,000. */
  serializableCacheEntries?: number;
  /** nats:// URLs: follow leader announcements (routing moves before the next probe). */
  natsUrl?: string | undefined;
  logger: Logger;
  processMetrics?: boolean;
}

export class Gateway {
  private constructor(
    readonly tracker: ClusterTracker,
    readonly metrics: GatewayMetrics,
    readonly watches: WatchHub,
    readonly keepAlives: KeepAliveHub,
    /** Undefined when the serializable Range cache is off. */
    readonly rangeCache: RangeCacheFeed | undefined,
    private readonly openStreams: OpenStreams,
    private readonly server: GrpcHttp2Server,
    private readonly json: FastifyInstance | undefined,
    readonly grpcPort: number,
    readonly jsonPort: number | undefined,
    private readonly logger: Logger,
    private readonly controlPlane: ControlPlane | undefined,
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    const { logger } = options;
    const metrics = new GatewayMetrics({ processMetrics: options.processMetrics ?? false });
    const tracker = new ClusterTracker({
      seeds: options.endpoints,
      refreshIntervalMs: options.refreshIntervalMs,
      probeTimeoutMs: 2_000,
      logger,
    });
    tracker.onChange((snapshot) => metrics.hasLeader.set(snapshot.leaderId === undefined ? 0 : 1));
    await tracker.start();
    // After the first probe round: the cluster ID filters announcements from other clusters.
    let controlPlane: ControlPlane | undefined;
    if (options.natsUrl !== undefined && options.natsUrl !== "") {
      controlPlane = ControlPlane.start({
        url: options.natsUrl,
        name: `etcd-ts gateway ${options.listenAddr}`,
        log: (level, message, details) => logger[level](details ?? {}, message),
      });
      followClusterEvents(controlPlane, tracker, metrics);
    }
    const watches = createWatchHub(tracker, metrics, logger);
    const cacheEntries = options.serializableCacheEntries ?? DEFAULT_RANGE_CACHE_OPTIONS.maxEntries;
    let rangeCache: RangeCacheFeed | undefined;
    if (cacheEntries > 0) {
      const cache = new RangeCache({ ...DEFAULT_RANGE_CACHE_OPTIONS, maxEntries: cacheEntries });
      metrics.observeRangeCache(cache);
      rangeCache = new RangeCacheFeed(cache, watches);
      const feed = rangeCache;
      feed.setAuthEnabled(tracker.snapshot().authEnabled ?? false);
      tracker.onChange((snapshot) => feed.setAuthEnabled(snapshot.authEnabled ?? false));
    }
    const unary = new UnaryForwarder(
      tracker,
      metrics,
      logger,
      { maxAttempts: 12, retryBudgetMs: 10_000 },
      rangeCache,
    );
    const streams = new StreamForwarder(tracker, metrics, logger, 6);
    const keepAlives = createKeepAliveHub(tracker, metrics, logger, options.keepAliveReuseMs);
    const openStreams = new OpenStreams();
    const healthy = () => {
      const { leaderId, members } = tracker.snapshot();
      return members.some((m) => m.id === leaderId && m.healthy);
    };
    // One JSON gateway: on its own port when asked, and on the gRPC port for HTTP/1.1 clients.
    const json = createJsonGateway({ healthy, unary, watches, keepAlives, metrics, logger });
    await json.ready();
    const server = createGrpcServer({
      unary,
      streams,
      watches,
      keepAlives,
      metrics,
      logger,
      openStreams,
      http1: (req, res) => json.server.emit("request", req, res),
    });
    const grpcPort = await server.listen(options.listenAddr);
    let jsonPort: number | undefined;
    if (options.jsonListenAddr !== undefined) {
      const { host, port } = splitHostPort(options.jsonListenAddr);
      await json.listen({ host, port });
      const address = json.server.address();
      jsonPort = typeof address === "object" && address !== null ? address.port : port;
    }
    logger.info({ grpcPort, jsonPort, members: tracker.snapshot().members.length }, "gateway listening");
    return new Gateway(
      tracker,
      metrics,
      watches,
      keepAlives,
      rangeCache,
      openStreams,
      server,
      json,
      grpcPort,
      jsonPort,
      logger,
      controlPlane,
    );
  }

  /** Stops accepting calls, lets running unary calls finish (bounded), then closes upstreams. */
  async stop(graceMs = 5_000): Promise<void> {
    this.logger.info("gateway stopping");
    // Streams (watches, keep-alives) never finish on their own: end them, then drain.
    this.openStreams.endAll();
    this.rangeCache?.close();
    this.watches.close();
    this.keepAlives.close();
    await Promise.all([this.server.close(graceMs), this.json?.close()]);
    this.tracker.close();
    await this.controlPlane?.close();
  }
}
