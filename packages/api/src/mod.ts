// The etcd v3 API as code: one namespace per proto package, named as etcd names them, so
// server code reads like etcd's (`etcdserverpb.RangeRequest`, `mvccpb.KeyValue`,
// `server.addService(etcdserverpb.KVService, ...)`). Each namespace holds the message
// types and codecs, the enums, and for services the grpc-js definition (`KVService`),
// the server interface (`KVServer`) and the client class (`KVClient`).

export * from "./errors.js";
/**
 * The etcd release whose API this project speaks, as members report it (Status, /version): etcd
 * clients and tools (Patroni, kube-apiserver) choose features by it.
 */
export const ETCD_SERVER_VERSION = "3.4.23";
export const ETCD_CLUSTER_VERSION = "3.4.0";
export {
  etcdClaims,
  isJwsAlgorithm,
  jwsKeyId,
  signJws,
  type TokenClaims,
  unverifiedExpiryMs,
  verifyJws,
} from "./auth/jws.js";
export { type KeyedTokenCheck, VerificationKeys } from "./auth/verification-keys.js";
export * as authpb from "./gen/authpb/auth.js";
export * as etcdserverpb from "./gen/etcdserverpb/rpc.js";
/** gRPC's health checking protocol (proto/grpc/health/v1/health.proto), served by grpc/health.ts. */
export * as healthpb from "./gen/grpc/health/v1/health.js";
export { HTTP_ROUTES, type HttpRoute } from "./gen/http-routes.js";
/** What services/auth asks of the members, on their peer URLs (proto/internal/auth-backend.proto). */
export * as authBackend from "./gen/internal/auth-backend.js";
/** Many unary calls over one stream, gateway to member (proto/internal/forward.proto). */
export * as forward from "./gen/internal/forward.js";
/** The member-to-member transport (proto/internal/peer.proto); never exposed to clients. */
export * as peer from "./gen/internal/peer.js";
export * as mvccpb from "./gen/mvccpb/kv.js";
export * as v3electionpb from "./gen/v3electionpb/v3election.js";
export * as v3lockpb from "./gen/v3lockpb/v3lock.js";
export { CallEvents } from "./grpc/call-events.js";
export { ReplayingSocket } from "./grpc/client-port.js";
export { callDeadlines, type DeadlineSlot, type DeadlineTarget, DeadlineTimers } from "./grpc/deadlines.js";
export {
  type CallFrame,
  type CallResult,
  decodeCallFrame,
  decodeCallResult,
  encodeCallFrame,
  encodeCallResult,
  FORWARD_CALLS_PATH,
  forwardedCallsHandler,
} from "./grpc/forwarded-calls.js";
// The client side of our HTTP/2 core (the peer transport's outbound calls, the gateway's to members).
export {
  type ClientStreamEvents,
  H2ClientConnection,
  H2ClientStream,
} from "./grpc/h2/client-connection.js";
export { ClientSocketConnection, type ClientTls, type DialOptions } from "./grpc/h2/client-socket.js";
export { H2_ERROR, type IncomingHeaders, type SessionIo } from "./grpc/h2/session.js";
export { type FramingCore, SocketOutput, socketTaps } from "./grpc/h2/socket-output.js";
export {
  deadlineFrom,
  decodeGrpcMessage,
  encodeGrpcMessage,
  grpcTimeout,
  metadataFromHeaders,
} from "./grpc/headers.js";
export {
  ALL_SERVICES,
  HEALTH_CHECK_PATH,
  HEALTH_WATCH_PATH,
  HealthStatuses,
  ServingStatus,
  serveHealth,
} from "./grpc/health.js";
// HTTP/2 framing and HPACK, for tools that read a peer connection's first request (a proxy on a
// member's peer port finding its sender).
export {
  completeFrameAt,
  encodeLiteralHeaderBlock,
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  HeaderBlockDecoder,
  type HeaderField,
  HTTP2_PREFACE,
  headersFragment,
} from "./grpc/http2-frames.js";
export {
  type CallKind,
  type CallStatus,
  type GrpcCallObserver,
  GrpcHttp2Server,
  type GrpcHttp2ServerOptions,
  type GrpcMethodObserver,
  MAX_SEND_MESSAGE_BYTES,
  MessageParts,
  type MessageWriter,
  type MethodHandler,
  messageTooLarge,
  ServerCall,
} from "./grpc/http2-server.js";
export type { KeepalivePolicy } from "./grpc/keepalive.js";
export { type GrpcListener, listenGrpc, parseGrpcTarget } from "./grpc/listen.js";
export {
  frameGrpcMessage,
  GrpcFramingError,
  MessageDeframer,
  messagePrefix,
} from "./grpc/message-framing.js";
export {
  NO_LEADER_ROUNDS,
  NO_LEADER_STATUS,
  noLeaderError,
  RequireLeaderGuard,
  RequireLeaderStreams,
  requiresLeader,
} from "./grpc/require-leader.js";
export {
  fromEtcdJson,
  type JsonEnumTable,
  type JsonField,
  JsonFormatError,
  type JsonMessageTable,
  type JsonScalarKind,
  toEtcdJson,
} from "./json-codec.js";
export {
  AccessControl,
  ALLOW_ALL_ACCESS,
  hostnameOf,
  unrecognizedHostBody,
} from "./json-gateway/access-control.js";
export {
  GATEWAY_CHANNEL_OPTIONS,
  grpcClientBackend,
} from "./json-gateway/grpc-client-backend.js";
export { JsonBodyError, JsonValueSplitter, parseJsonValues } from "./json-gateway/json-body.js";
export {
  type GatewayCallError,
  type GatewayStream,
  type GatewayStreamSink,
  type GatewayUnaryOutcome,
  gatewayErrorBody,
  type JsonGatewayBackend,
  type JsonGatewayOptions,
  jsonGatewayHandler,
} from "./json-gateway/json-gateway.js";
export { jsonToWire, wireToJson } from "./json-wire.js";
export { CipherSuiteError, opensslCiphers } from "./tls/cipher-suites.js";
export { revokedSerials, serialHex } from "./tls/revocation-list.js";
export {
  createTlsServer,
  loadServerTls,
  rejectionMessage,
  type ServerTls,
  serverTlsFromKeyPair,
  TlsConfigError,
  type TlsConnectionHandlers,
  type TlsFiles,
  type TlsRejection,
  verifiedCommonName,
} from "./tls/server-tls.js";
export {
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LENGTH_DELIMITED,
  WIRE_VARINT,
  WireFormatError,
  WireReader,
  WireWriter,
} from "./wire/protobuf-wire.js";
export { decodePutRequest } from "./wire/put-request.js";
export { etcdRequestCheck, goCamelCase, type RequestCheck, unmarshalError } from "./wire/unmarshal-check.js";
export { encodeWatchResponse, type WatchResponseParts } from "./wire/watch-response.js";
