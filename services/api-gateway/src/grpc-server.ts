// The gRPC front door: every etcd method on a node:http2 server that hands handlers the
// request bytes, so request and response bodies stay bytes from the client's socket to the
// member's and back (@etcd-ts/api's GrpcHttp2Server: why not grpc-js's server is there).

import type http from "node:http";
import {
  type CallStatus,
  EtcdError,
  etcdRequestCheck,
  GrpcHttp2Server,
  type HealthStatuses,
  NO_LEADER_STATUS,
  type RequireLeaderGuard,
  type ServerCall,
  type ServerTls,
  serveHealth,
  type TlsRejection,
} from "@etcd-ts/api";
import {
  eventTrace,
  GrpcServerMetrics,
  serverObserver,
  traceContextOf,
  traceLogFields,
  tracing,
} from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { CertificateTokens } from "./auth/certificate-tokens.js";
import { type TokenGate, tokenOf } from "./auth/token-gate.js";
import type { KeepAliveHub } from "./lease/keepalive-hub.js";
import { handleKeepAliveCall } from "./lease/keepalive-proxy.js";
import type { GatewayMetrics } from "./observability/gateway-metrics.js";
import { AUTHENTICATE_PATH } from "./proxy/auth-service-forwarder.js";
import type { EndStream, OpenStreams } from "./proxy/open-streams.js";
import type { StreamForwarder } from "./proxy/stream-forwarder.js";
import { CallCancellation, type UnaryForwarder } from "./proxy/unary-forwarder.js";
import { METHOD_ROUTES, type MethodRoute } from "./routing/method-table.js";
import type { WatchHub } from "./watch/watch-hub.js";
import { handleWatchCall } from "./watch/watch-proxy.js";

export interface GrpcParts {
  unary: UnaryForwarder;
  streams: StreamForwarder;
  watches: WatchHub;
  keepAlives: KeepAliveHub;
  metrics: GatewayMetrics;
  logger: Logger;
  openStreams: OpenStreams;
  /**
   * Client Watch and LeaseKeepAlive streams that ask for a leader (`hasleader: true`,
   * clientv3.WithRequireLeader) are refused, or ended after three rounds, while no member
   * this gateway reaches knows a leader, as a member does with its own; unary calls carry the
   * key to the member, which judges them.
   */
  requireLeader: RequireLeaderGuard;
  /**
   * grpc.health.v1, as a member serves it: the gateway's readiness (its /readyz), not the
   * cluster's health, so a balancer does not drop every gateway while the members elect.
   */
  health: HealthStatuses;
  /**
   * Refuses Watch streams opened with a bad JWT (unary calls and server streams: their
   * forwarders' own). Keep-alive streams carry none a member would read (etcd checks none).
   */
  tokenGate?: TokenGate | undefined;
  /**
   * With client certificates verified (tls.verifiesPeers) and services/auth: a call without a
   * token goes on with one for its certificate's CN (auth/certificate-tokens.ts).
   */
  certificateTokens?: CertificateTokens | undefined;
  /** HTTP/1.1 requests on the gRPC port (etcd's port serves both): the JSON gateway. */
  http1?: http.RequestListener;
  /** TLS to clients (--cert-file ...); refused connections go to `onTlsRejected`. */
  tls?: ServerTls | undefined;
  onTlsRejected?: (rejection: TlsRejection) => void;
}

export function createGrpcServer(parts: GrpcParts): GrpcHttp2Server {
  const server = new GrpcHttp2Server({
    observer: serverObserver(new GrpcServerMetrics(parts.metrics.registry)),
    ...(parts.http1 === undefined ? {} : { http1: parts.http1 }),
    ...(parts.tls === undefined ? {} : { tls: parts.tls }),
    ...(parts.onTlsRejected === undefined ? {} : { onTlsRejected: parts.onTlsRejected }),
  });
  for (const route of METHOD_ROUTES) register(server, route, parts);
  serveHealth(server, parts.health);
  return server;
}

function register(server: GrpcHttp2Server, route: MethodRoute, parts: GrpcParts): void {
  // Requests are refused with etcd's words before they are forwarded or answered from the cache.
  const requestCheck = etcdRequestCheck(route.path);
  const tokens = parts.certificateTokens;
  const handle = (run: (call: ServerCall) => void) =>
    tokens === undefined ? run : (call: ServerCall) => withCertificateToken(tokens, call, run);
  // The stream is ended as the gateway ends its streams itself (its sessions closed first).
  const requiringLeader = (serve: (call: ServerCall) => EndStream) => (call: ServerCall) => {
    let end: EndStream | undefined;
    if (!parts.requireLeader.admit(call, () => end?.(NO_LEADER_STATUS))) return;
    end = serve(call);
  };
  switch (route.route) {
    case "watch":
      server.register(route.path, {
        kind: "bidi",
        requestCheck,
        handle: requiringLeader((call) => {
          // A CN token may be awaited before the stream is served: ended meanwhile, it never is.
          let end: EndStream | undefined;
          let ended = false;
          handle((c) => {
            if (!ended)
              end = handleWatchCall(parts.watches, c, parts.logger, parts.openStreams, parts.tokenGate);
          })(call);
          return (status) => {
            if (end !== undefined) return end(status);
            ended = true;
            call.finish(status ?? { code: grpc.status.OK });
          };
        }),
      });
      return;
    case "keepalive":
      // No token a member would read (etcd checks none on keep-alives): no CN token either.
      server.register(route.path, {
        kind: "bidi",
        requestCheck,
        handle: requiringLeader((call) =>
          handleKeepAliveCall(parts.keepAlives, call, parts.metrics, parts.openStreams),
        ),
      });
      return;
  }
  if (route.shape === "server-stream") {
    server.register(route.path, {
      kind: "server-stream",
      requestCheck,
      handle: handle((call) => void parts.streams.relay(route, call)),
    });
    return;
  }
  server.register(route.path, {
    kind: "unary",
    requestCheck,
    handle: handle((call) => forwardUnary(route, call, parts)),
  });
}

/** Calls sent with a token made for their certificate's CN (not one the client brought). */
const withCnToken = new WeakSet<ServerCall>();

function setCnToken(call: ServerCall, token: string): void {
  call.metadata.set("token", token);
  withCnToken.add(call);
}

/**
 * Runs `run` with the call carrying a token for its client certificate's CN when it brought no
 * token of its own. While the first token for a CN is asked for, the call's events wait (a
 * bidi call's messages reach the handler in order once it runs).
 */
function withCertificateToken(
  tokens: CertificateTokens,
  call: ServerCall,
  run: (call: ServerCall) => void,
): void {
  const cn = call.peerCommonName;
  if (cn === undefined || tokenOf(call.metadata) !== undefined) {
    run(call);
    return;
  }
  const token = tokens.tokenFor(cn);
  if (!(token instanceof Promise)) {
    if (token !== undefined) setCnToken(call, token);
    run(call);
    return;
  }
  const held: [event: string, args: unknown[]][] = [];
  const holders = (["message", "halfClose"] as const).map((event) => {
    const hold = (...args: unknown[]) => held.push([event, args]);
    call.on(event, hold);
    return () => call.off(event, hold);
  });
  void token.then((t) => {
    for (const release of holders) release();
    if (call.cancelled) return;
    if (t !== undefined) setCnToken(call, t);
    run(call);
    for (const [event, args] of held) call.emit(event, ...args);
  });
}

function forwardUnary(route: MethodRoute, call: ServerCall, parts: GrpcParts): void {
  eventTrace?.add("G.call");
  // A cache hit needs no cancellation or metadata object: a serializable read is answered in
  // this turn, a linearizable one once its read barrier returns. Not for a traced call (its
  // span records the route) or one that may get a CN token (tokens given).
  if (
    route.route === "range" &&
    !tracing.enabled &&
    (parts.certificateTokens === undefined || call.peerCommonName === undefined)
  ) {
    const cached = parts.unary.cachedRange(route, call.request, (name) => call.header(name));
    if (cached instanceof Promise) {
      const fromMember = () => {
        if (!call.cancelled) forwardCall(route, call, parts, true);
      };
      cached.then((answer) => {
        if (answer === undefined) return fromMember();
        eventTrace?.add("G.answered");
        call.finishWith(answer, OK);
      }, fromMember);
      return;
    }
    if (cached !== undefined) {
      call.finishWith(cached, OK);
      return;
    }
  }
  forwardCall(route, call, parts, false);
}

/** `cacheTried`: a linearizable Range the cache could not answer after its barrier (cachedRange). */
function forwardCall(route: MethodRoute, call: ServerCall, parts: GrpcParts, cacheTried: boolean): void {
  const cancellation = new CallCancellation();
  call.once("cancelled", () => cancellation.cancel());
  // Only Authenticate needs the client's address (the auth service's per-address budget): the
  // socket lookup stays off every other call.
  const client = route.path === AUTHENTICATE_PATH ? call.remoteAddress : undefined;
  const trace = tracing.enabled ? traceContextOf(call) : undefined;
  forwardWithFreshCertificateToken(route, call, parts, cancellation, trace, client, cacheTried).then(
    (outcome) => {
      eventTrace?.add("G.answered");
      if (outcome.error !== undefined) call.finish(outcome.error);
      else if (outcome.relayed) call.finish({ code: grpc.status.OK, metadata: outcome.trailers });
      else {
        // A large answer goes on in the pieces it came in (member-channel.ts).
        if (outcome.parts !== undefined) {
          call.sendMessageParts(outcome.parts);
          call.finish({ code: grpc.status.OK, metadata: outcome.trailers });
        } else {
          // The message and the status in one go: no flush scheduled for the message alone.
          call.finishWith(outcome.response!, { code: grpc.status.OK, metadata: outcome.trailers });
        }
      }
    },
    (err: unknown) => {
      parts.logger.error({ err, method: route.path, ...traceLogFields(trace) }, "forwarding failed");
      call.finish({ code: grpc.status.INTERNAL, details: "etcd-ts gateway: internal error" });
    },
  );
}

const OK: CallStatus = { code: grpc.status.OK };

const AUTH_OLD_REVISION = new EtcdError("AuthOldRevision").details;

/** A large Range answer goes to this client as it arrives (member-channel.ts, ResponseRelay). */
function relayTo(call: ServerCall): { start: ServerCall["startMessage"] } {
  return { start: (length) => call.startMessage(length) };
}

/**
 * A call sent with a CN token made before an auth change is refused as old by the member (etcd
 * takes the store's revision of the moment for a certificate, so its clients never see that):
 * once, the token is replaced and the call sent again. Safe for writes too: a member refuses an
 * old token before applying anything.
 */
async function forwardWithFreshCertificateToken(
  route: MethodRoute,
  call: ServerCall,
  parts: GrpcParts,
  cancellation: CallCancellation,
  trace: ReturnType<typeof traceContextOf> | undefined,
  client: string | undefined,
  cacheTried: boolean,
) {
  const forward = () =>
    parts.unary.forward(
      route,
      call.request,
      call.sentMetadata,
      call.deadline,
      cancellation,
      trace,
      client,
      route.route === "range" ? relayTo(call) : undefined,
      cacheTried,
    );
  const outcome = await forward();
  const cn = call.peerCommonName;
  const tokens = parts.certificateTokens;
  if (outcome.error?.details !== AUTH_OLD_REVISION || cn === undefined || tokens === undefined)
    return outcome;
  const sent = tokenOf(call.metadata);
  if (sent === undefined || !withCnToken.has(call)) return outcome;
  tokens.forget(cn, sent);
  const fresh = await tokens.tokenFor(cn);
  if (fresh === undefined || fresh === sent) return outcome;
  call.metadata.set("token", fresh);
  return forward();
}
