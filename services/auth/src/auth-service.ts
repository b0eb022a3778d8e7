// Assembles the auth service: etcd's Authenticate over gRPC for the gateways (the same method
// path and messages as a member's, so a gateway forwards the call's bytes unchanged), and an
// HTTP port for the JWKS, /health and /metrics. main.ts and tests start it the same way.
import { readFileSync } from "node:fs";
import {
  EtcdError,
  etcdserverpb,
  GrpcHttp2Server,
  isEtcdError,
  loadServerTls,
  rejectionMessage,
  type ServerCall,
} from "@etcd-ts/api";
import { ControlPlane, registerControlPlaneMetrics } from "@etcd-ts/events";
import { GrpcServerMetrics, serverObserver, traceContextOf } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import bcrypt from "bcrypt";
import Fastify, { type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { Authenticator } from "./authenticate/authenticator.js";
import { COMMON_NAME_TOKEN_PATH, CommonNameTokens } from "./authenticate/common-name-tokens.js";
import { VerifiedPasswords } from "./authenticate/verified-passwords.js";
import type { AuthConfig } from "./config/auth-config.js";
import { NoSigningKeyError, SigningKeys } from "./keys/signing-keys.js";
import { isMemberError, MemberBackend } from "./members/member-backend.js";
import { AuthMetrics } from "./observability/auth-metrics.js";
import { FailedLoginLimiter } from "./rate-limit/failed-login-limiter.js";
import { SharedBudgets } from "./rate-limit/shared-budgets.js";

export const AUTHENTICATE_PATH = "/etcdserverpb.Auth/Authenticate";
/** Metadata a gateway sets to its client's address (believed only from --trusted-proxies). */
export const FORWARDED_FOR_METADATA = "x-forwarded-for";
/** etcd's bcrypt cost (bcrypt.DefaultCost), for the decoy hash unknown users are compared with. */
const ETCD_BCRYPT_COST = 10;
const MAX_TRACKED_KEYS = 100_000;

export interface AuthServiceOptions extends Omit<AuthConfig, "logLevel"> {
  logger: Logger;
  processMetrics?: boolean;
}

export class AuthService {
  private constructor(
    readonly keys: SigningKeys,
    readonly metrics: AuthMetrics,
    private readonly backend: MemberBackend,
    private readonly grpcServer: GrpcHttp2Server,
    private readonly http: FastifyInstance,
    readonly grpcPort: number,
    readonly httpPort: number,
    private readonly logger: Logger,
    private readonly controlPlane: ControlPlane | undefined,
  ) {}

  static async start(options: AuthServiceOptions): Promise<AuthService> {
    const { logger } = options;
    const metrics = new AuthMetrics({ processMetrics: options.processMetrics ?? false });
    const read = (path: string) => (path === "" ? undefined : readFileSync(path));
    const backend = new MemberBackend(
      options.endpoints,
      options.peerTrustedCaFile === ""
        ? undefined
        : {
            ca: read(options.peerTrustedCaFile)!,
            cert: read(options.peerCertFile),
            key: read(options.peerKeyFile),
          },
    );
    // The published set is re-read a few times per rotation (at most every 5 s); a new key
    // waits two re-reads before it signs, so every replica's JWKS (and a reader that caches it
    // for max-age = one re-read) has it first.
    const refreshIntervalMs = Math.max(100, Math.min(5_000, options.rotationIntervalMs / 4));
    const keys = new SigningKeys(
      backend,
      {
        alg: options.signMethod,
        tokenTtlMs: options.tokenTtlMs,
        rotationIntervalMs: options.rotationIntervalMs,
        clockSkewMs: Math.min(5_000, options.tokenTtlMs),
        publishLeadMs: 2 * refreshIntervalMs,
        refreshIntervalMs,
      },
      logger,
    );
    metrics.keys = {
      get rotations() {
        return keys.rotations;
      },
      publishedCount: () => keys.jwks().keys.length,
    };
    const controlPlane =
      options.natsUrl === ""
        ? undefined
        : ControlPlane.start({
            url: options.natsUrl,
            name: "etcd-ts auth service",
            log: (level, message, details) => logger[level](details ?? {}, message),
          });
    if (controlPlane !== undefined) registerControlPlaneMetrics(metrics.registry, controlPlane);
    const shared = controlPlane === undefined ? undefined : new SharedBudgets(controlPlane);
    const authenticator = new Authenticator({
      backend,
      keys,
      byUser: new FailedLoginLimiter({
        maxFailures: options.maxFailuresPerUser,
        windowMs: options.failureWindowMs,
        maxKeys: MAX_TRACKED_KEYS,
      }),
      byAddress: new FailedLoginLimiter({
        maxFailures: options.maxFailuresPerAddress,
        windowMs: options.failureWindowMs,
        maxKeys: MAX_TRACKED_KEYS,
      }),
      logger,
      decoyHash: await bcrypt.hash(crypto.randomUUID(), ETCD_BCRYPT_COST),
      verified: new VerifiedPasswords({ ttlMs: options.verifiedPasswordTtlMs, maxEntries: MAX_TRACKED_KEYS }),
      observe: (result, seconds) => metrics.observe(result, seconds),
      ...(shared === undefined ? {} : { decided: (login) => shared.publish(login) }),
    });
    shared?.follow((login) => authenticator.heard(login));

    // Maintenance runs a few times per rotation interval, at most once a second.
    keys.start(Math.min(1_000, refreshIntervalMs));
    await keys.ready();

    const trustAny = options.trustedProxies.includes("*");
    const trusted = new Set(options.trustedProxies);
    const clientOf = (call: ServerCall): string => {
      const peer = call.remoteAddress ?? "unknown";
      if (!trustAny && !trusted.has(peer)) return peer;
      const forwarded = call.metadata.get(FORWARDED_FOR_METADATA)[0];
      return typeof forwarded === "string" && forwarded !== "" ? forwarded.split(",")[0]!.trim() : peer;
    };

    const serverTls =
      options.certFile === ""
        ? undefined
        : loadServerTls({
            certFile: options.certFile,
            keyFile: options.keyFile,
            trustedCaFile: options.trustedCaFile,
            clientCertAuth: options.clientCertAuth,
          });
    const grpcServer = new GrpcHttp2Server({
      // A server span per Authenticate when tracing is on (the gateway's traceparent is its parent).
      observer: serverObserver(new GrpcServerMetrics(metrics.registry)),
      ...(serverTls === undefined
        ? {}
        : {
            tls: serverTls,
            // A gateway refused at the handshake (no or a wrong certificate): etcd's log line.
            onTlsRejected: (r) => logger.warn({ ...r }, rejectionMessage(r)),
          }),
    });
    // Both methods take etcd's AuthenticateRequest and answer its AuthenticateResponse.
    const registerTokenMethod = (
      path: string,
      issue: (
        request: etcdserverpb.AuthenticateRequest,
        call: ServerCall,
      ) => Promise<{ token: string; header: etcdserverpb.ResponseHeader | undefined }>,
    ) =>
      grpcServer.register(path, {
        kind: "unary",
        handle: (call) => {
          let request: etcdserverpb.AuthenticateRequest;
          try {
            request = etcdserverpb.AuthenticateRequest.decode(call.request);
          } catch {
            call.finish({ code: grpc.status.INTERNAL, details: "grpc: error unmarshalling request" });
            return;
          }
          issue(request, call).then(
            ({ token, header }) => {
              call.sendMessage(etcdserverpb.AuthenticateResponse.encode({ header, token }).finish());
              call.finish({ code: grpc.status.OK });
            },
            (err: unknown) => call.finish(statusOf(err, logger)),
          );
        },
      });
    registerTokenMethod(AUTHENTICATE_PATH, (request, call) =>
      authenticator.authenticate(request.name, request.password, clientOf(call), traceContextOf(call)),
    );
    const commonNameTokens = new CommonNameTokens(backend, keys, options.trustedGatewayCns, logger);
    registerTokenMethod(COMMON_NAME_TOKEN_PATH, (request, call) =>
      commonNameTokens.issue(call.peerCommonName, request.name, call.remoteAddress),
    );
    const grpcPort = await grpcServer.listen(options.listenAddr);

    // HTTPS with the same certificate when one is given, but no client certificate asked for:
    // public keys, health and metrics are read by anyone who may reach the port (Prometheus, a
    // load balancer), as etcd serves /metrics and /health to any client of its metrics URLs.
    const http =
      serverTls === undefined
        ? Fastify({ logger: false })
        : (Fastify({
            logger: false,
            https: { cert: serverTls.options.cert, key: serverTls.options.key, minVersion: "TLSv1.2" },
          }) as unknown as FastifyInstance);
    http.get("/.well-known/jwks.json", async (_req, reply) => {
      reply.header("cache-control", `max-age=${Math.floor(refreshIntervalMs / 1000)}`);
      return keys.jwks();
    });
    http.get("/health", async (_req, reply) => {
      const ok = keys.ring.signingKey() !== undefined;
      reply.code(ok ? 200 : 503);
      return { health: ok ? "true" : "false", reason: ok ? "" : "no signing key published" };
    });
    http.get("/metrics", async (_req, reply) => {
      reply.header("content-type", metrics.registry.contentType);
      return metrics.registry.metrics();
    });
    const { host, port } = splitHostPort(options.httpListenAddr);
    await http.listen({ host, port });
    const address = http.server.address();
    const httpPort = typeof address === "object" && address !== null ? address.port : port;
    logger.info(
      {
        grpcPort,
        httpPort,
        tls: options.certFile !== "",
        members: options.endpoints,
        signingKey: keys.ring.signingKey()?.kid,
      },
      "auth service listening",
    );
    return new AuthService(
      keys,
      metrics,
      backend,
      grpcServer,
      http,
      grpcPort,
      httpPort,
      logger,
      controlPlane,
    );
  }

  async stop(graceMs = 5_000): Promise<void> {
    this.logger.info("auth service stopping");
    await Promise.all([this.grpcServer.close(graceMs), this.http.close(), this.keys.stop()]);
    await this.controlPlane?.close();
    this.backend.close();
  }
}

function statusOf(err: unknown, logger: Logger): { code: grpc.status; details: string } {
  if (isEtcdError(err)) return { code: err.code, details: err.details };
  if (isMemberError(err)) return { code: err.code, details: err.details };
  if (err instanceof NoSigningKeyError)
    return { code: grpc.status.UNAVAILABLE, details: new EtcdError("NotCapable").details };
  logger.error({ err }, "Authenticate failed");
  return { code: grpc.status.INTERNAL, details: "etcd-ts auth: internal error" };
}

function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  if (colon < 0) throw new Error(`bad address ${address}`);
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(address.slice(colon + 1)) };
}
