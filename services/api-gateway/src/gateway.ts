// Assembles the gateway's parts: cluster tracking, the gRPC proxy with its coalescers, and
// (when given an address) the JSON gateway. main.ts and tests start it the same way.

import { readFileSync } from "node:fs";
import type net from "node:net";
import {
  createTlsServer,
  EtcdError,
  type GrpcHttp2Server,
  HealthStatuses,
  loadServerTls,
  parseGrpcTarget,
  RequireLeaderGuard,
  rejectionMessage,
  type TlsFiles,
  type TlsRejection,
} from "@etcd-ts/api";
import { ControlPlane, registerControlPlaneMetrics } from "@etcd-ts/events";
import { traceLogFields } from "@etcd-ts/telemetry";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { CertificateTokens } from "./auth/certificate-tokens.js";
import { PublishedKeyList } from "./auth/published-key-list.js";
import { TokenGate } from "./auth/token-gate.js";
import { DEFAULT_RANGE_CACHE_OPTIONS, RangeCache } from "./cache/range-cache.js";
import { RangeCacheFeed } from "./cache/range-cache-feed.js";
import { followAuthEvents, followClusterEvents } from "./cluster/cluster-events.js";
import { ClusterTracker } from "./cluster/cluster-tracker.js";
import { splitHostPort } from "./config/gateway-config.js";
import { createGrpcServer } from "./grpc-server.js";
import { createJsonGateway } from "./json/json-gateway.js";
import type { KeepAliveHub } from "./lease/keepalive-hub.js";
import { createKeepAliveHub } from "./lease/keepalive-proxy.js";
import { GatewayMetrics } from "./observability/gateway-metrics.js";
import { AuthServiceForwarder } from "./proxy/auth-service-forwarder.js";
import { OpenStreams } from "./proxy/open-streams.js";
import { StreamForwarder } from "./proxy/stream-forwarder.js";
import { UnaryForwarder } from "./proxy/unary-forwarder.js";
import type { ClusterSnapshot } from "./routing/member-selection.js";
import type { WatchHub } from "./watch/watch-hub.js";
import { createWatchHub } from "./watch/watch-proxy.js";
import { clusterMetricsSource } from "./workers/worker-pool.js";

export interface GatewayOptions {
  endpoints: string[];
  listenAddr: string;
  /** Omit to run without the JSON gateway. */
  jsonListenAddr?: string | undefined;
  refreshIntervalMs: number;
  /** The members' election timeout: `hasleader` client streams end after three without a leader. Default 1,000 (etcd's). */
  electionTimeoutMs?: number;
  keepAliveReuseMs: number;
  /** On stop, how long to serve with /readyz at 503 before draining (GatewayConfig). Default 0. */
  shutdownDelayMs?: number;
  /** Serializable Range answers to cache (watch-fed); 0 turns the cache off. Default 10,000. */
  serializableCacheEntries?: number;
  /** services/auth replicas (host:port) for Authenticate; none: the members answer it. */
  authEndpoints?: string[];
  /** With auth on, the Range cache's watch authenticates as this user (root); none: cache off under auth. */
  rangeCacheUser?: { name: string; password: string } | undefined;
  /** nats:// URLs: follow leader announcements (routing moves before the next probe). */
  natsUrl?: string | undefined;
  logger: Logger;
  processMetrics?: boolean;
  /** TLS to clients on both ports (see config/gateway-config.ts). */
  serverTls?: TlsFiles | undefined;
  /** TLS to members: file paths of the CA and the client certificate. */
  upstreamTls?: { cacert: string; cert: string; key: string } | undefined;
  /** A worker of a `--workers` pool: /metrics serves every worker's metrics (workers/worker-pool.ts). */
  metricsAcrossWorkers?: boolean;
}

const AUTH_NOT_ENABLED = new EtcdError("AuthNotEnabled").details;

/**
 * How often the published JWT keys are listed again. A token naming a key not held lists them at
 * once, so this only bounds how long a withdrawn key keeps verifying here (members refuse its
 * tokens meanwhile: the gateway check is an early refusal, never the last word).
 */
const PUBLISHED_KEYS_REFRESH_MS = 30_000;

/** Where the gateway is in its life: /readyz and grpc.health.v1 say "not ready" from the stop. */
interface Lifecycle {
  shuttingDown: boolean;
  shutdownDelayMs: number;
  /** The gRPC health service's statuses: SERVING until the stop (as /readyz), then NOT_SERVING. */
  health: HealthStatuses;
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
    private readonly requireLeader: RequireLeaderGuard,
    private readonly server: GrpcHttp2Server,
    private readonly json: FastifyInstance | undefined,
    /** The JSON port's own listener when it serves TLS (fastify's server then never listens). */
    private readonly jsonTlsListener: net.Server | undefined,
    readonly grpcPort: number,
    readonly jsonPort: number | undefined,
    private readonly logger: Logger,
    private readonly controlPlane: ControlPlane | undefined,
    private readonly authService: AuthServiceForwarder | undefined,
    private readonly publishedKeys: PublishedKeyList,
    private readonly lifecycle: Lifecycle,
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    const { logger } = options;
    const metrics = new GatewayMetrics({ processMetrics: options.processMetrics ?? false });
    if (options.metricsAcrossWorkers === true) metrics.exposition = clusterMetricsSource(metrics.registry);
    const serverTls = options.serverTls === undefined ? undefined : loadServerTls(options.serverTls);
    const onTlsRejected = (r: TlsRejection) => logger.warn({ ...r }, rejectionMessage(r));
    const upstream = options.upstreamTls;
    const read = (path: string) => (path === "" ? undefined : readFileSync(path));
    const upstreamTls =
      upstream === undefined
        ? undefined
        : { ca: read(upstream.cacert), cert: read(upstream.cert), key: read(upstream.key) };
    const tracker = new ClusterTracker({
      seeds: options.endpoints,
      refreshIntervalMs: options.refreshIntervalMs,
      probeTimeoutMs: 2_000,
      logger,
      upstreamTls,
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
      registerControlPlaneMetrics(metrics.registry, controlPlane);
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
      const authOf = (snapshot: ClusterSnapshot) => {
        feed.setAuthEnabled(snapshot.authEnabled ?? false, snapshot.authEnabledAsOf ?? 0);
        feed.authRevisionSeen(snapshot.authRevision ?? 0);
      };
      authOf(tracker.snapshot());
      tracker.onChange(authOf);
      if (controlPlane !== undefined) {
        followAuthEvents(controlPlane, tracker, (event) => {
          feed.authRevisionSeen(event.revision);
          // Only ever towards "on" from an event: one from an older leader must not turn a
          // cache answering tokenless reads back on (the probe turns it off again, with its time).
          if (event.enabled) feed.setAuthEnabled(true);
        });
      }
    }
    const authService =
      options.authEndpoints !== undefined && options.authEndpoints.length > 0
        ? new AuthServiceForwarder(options.authEndpoints, upstreamTls)
        : undefined;
    // Read once now, so the first tokens find their keys held.
    const publishedKeys = new PublishedKeyList(
      () => tracker.peerUrls(),
      upstreamTls,
      logger,
      PUBLISHED_KEYS_REFRESH_MS,
    );
    void publishedKeys.refetch().catch(() => {});
    publishedKeys.listWhenMembersKnown((listener) => tracker.onChange(listener));
    const tokenGate = new TokenGate(publishedKeys, ({ method, reason, client, trace }) => {
      metrics.tokensRefused.labels(reason).inc();
      logger.warn({ method, reason, client, ...traceLogFields(trace) }, "refused an invalid auth token");
    });
    const unary = new UnaryForwarder(
      tracker,
      metrics,
      logger,
      { maxAttempts: 12, retryBudgetMs: 10_000 },
      rangeCache,
      authService,
      tokenGate,
    );
    const cacheUser = options.rangeCacheUser;
    if (rangeCache !== undefined && cacheUser !== undefined) {
      rangeCache.authenticate = () =>
        unary.authenticate(cacheUser.name, cacheUser.password).catch((err: unknown) => {
          logger.warn(
            { user: cacheUser.name, err: String(err) },
            "range cache: its watch could not authenticate",
          );
          throw err;
        });
    }
    const streams = new StreamForwarder(tracker, metrics, logger, 6, tokenGate);
    const keepAlives = createKeepAliveHub(tracker, metrics, logger, options.keepAliveReuseMs);
    const openStreams = new OpenStreams();
    const requireLeader = new RequireLeaderGuard(
      () => tracker.snapshot().leaderId !== undefined,
      options.electionTimeoutMs ?? 1_000,
    );
    const healthy = () => {
      const { leaderId, members } = tracker.snapshot();
      return members.some((m) => m.id === leaderId && m.healthy);
    };
    // One JSON gateway: on its own port when asked, and on the gRPC port for HTTP/1.1 clients.
    const lifecycle: Lifecycle = {
      shuttingDown: false,
      shutdownDelayMs: options.shutdownDelayMs ?? 0,
      health: new HealthStatuses(),
    };
    const ready = () => !lifecycle.shuttingDown;
    const json = createJsonGateway({
      healthy,
      ready,
      unary,
      watches,
      keepAlives,
      metrics,
      logger,
      tokenGate,
    });
    await json.ready();
    // A client certificate's CN as the user (etcd's --client-cert-auth) needs both a verified
    // client certificate and services/auth to sign a token for it.
    const certificateTokens =
      serverTls?.verifiesPeers === true && authService !== undefined
        ? new CertificateTokens(
            (cn) => authService.commonNameToken(cn),
            (user, error) =>
              // Auth off: tokens do not matter, and the call goes on without one.
              logger[error.includes(AUTH_NOT_ENABLED) ? "debug" : "warn"](
                { user, error },
                "no token for a client certificate's CN",
              ),
          )
        : undefined;
    if (certificateTokens !== undefined) {
      const seen = (snapshot: ClusterSnapshot) =>
        certificateTokens.authRevisionSeen(snapshot.authRevision ?? 0);
      seen(tracker.snapshot());
      tracker.onChange(seen);
      if (controlPlane !== undefined)
        followAuthEvents(controlPlane, tracker, (event) =>
          certificateTokens.authRevisionSeen(event.revision),
        );
    }
    const server = createGrpcServer({
      certificateTokens,
      unary,
      streams,
      watches,
      keepAlives,
      metrics,
      logger,
      openStreams,
      requireLeader,
      health: lifecycle.health,
      tokenGate,
      http1: (req, res) => json.server.emit("request", req, res),
      tls: serverTls,
      onTlsRejected,
    });
    const grpcPort = await server.listen(options.listenAddr);
    let jsonPort: number | undefined;
    let jsonTlsListener: net.Server | undefined;
    if (options.jsonListenAddr !== undefined && serverTls !== undefined) {
      const listener = createTlsServer(serverTls, ["http/1.1"], {
        secure: (socket) => json.server.emit("connection", socket),
        rejected: onTlsRejected,
      });
      await new Promise<void>((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(parseGrpcTarget(options.jsonListenAddr!), () => resolve());
      });
      const address = listener.address();
      jsonPort = typeof address === "object" && address !== null ? address.port : undefined;
      jsonTlsListener = listener;
    } else if (options.jsonListenAddr !== undefined) {
      const { host, port } = splitHostPort(options.jsonListenAddr);
      await json.listen({ host, port });
      const address = json.server.address();
      jsonPort = typeof address === "object" && address !== null ? address.port : port;
    }
    logger.info(
      {
        grpcPort,
        jsonPort,
        members: tracker.snapshot().members.length,
        authService: options.authEndpoints ?? [],
      },
      "gateway listening",
    );
    return new Gateway(
      tracker,
      metrics,
      watches,
      keepAlives,
      rangeCache,
      openStreams,
      requireLeader,
      server,
      json,
      jsonTlsListener,
      grpcPort,
      jsonPort,
      logger,
      controlPlane,
      authService,
      publishedKeys,
      lifecycle,
    );
  }

  /** Stops accepting calls, lets running unary calls finish (bounded), then closes upstreams. */
  async stop(graceMs = 5_000): Promise<void> {
    this.lifecycle.shuttingDown = true;
    this.lifecycle.health.shutdown();
    const delayMs = this.lifecycle.shutdownDelayMs;
    if (delayMs > 0) {
      // Everything still served; only /readyz says 503, for the balancer to notice.
      this.logger.info(
        { delay_ms: delayMs },
        "gateway shutting down: not ready, serving until the delay ends",
      );
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    this.logger.info("gateway stopping");
    // Streams (watches, keep-alives) never finish on their own: end them, then drain.
    this.openStreams.endAll();
    this.lifecycle.health.close();
    this.requireLeader.close();
    this.rangeCache?.close();
    this.watches.close();
    this.keepAlives.close();
    if (this.jsonTlsListener !== undefined) {
      this.jsonTlsListener.close();
      this.json?.server.closeAllConnections();
    }
    await Promise.all([
      this.server.close(graceMs),
      // fastify's own server never listened when the JSON port serves TLS.
      this.jsonTlsListener === undefined ? this.json?.close() : undefined,
    ]);
    this.tracker.close();
    await this.controlPlane?.close();
    this.authService?.close();
    this.publishedKeys.close();
  }
}
