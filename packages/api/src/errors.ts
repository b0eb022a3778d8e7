// etcd's errors, byte-exact: clients (etcdctl, clientv3, python etcd3) match on these
// strings and codes. Source: etcd api/v3rpc/rpctypes/error.go. Every error this project
// returns to a client comes from this table; handlers never build messages of their own.
import { status as GrpcStatus } from "@grpc/grpc-js";

const { INVALID_ARGUMENT, OUT_OF_RANGE, RESOURCE_EXHAUSTED, NOT_FOUND, FAILED_PRECONDITION } = GrpcStatus;
const { PERMISSION_DENIED, UNAUTHENTICATED, UNAVAILABLE, DATA_LOSS, CANCELLED, DEADLINE_EXCEEDED, UNKNOWN } =
  GrpcStatus;

export const ETCD_ERRORS = {
  EmptyKey: [INVALID_ARGUMENT, "etcdserver: key is not provided"],
  KeyNotFound: [INVALID_ARGUMENT, "etcdserver: key not found"],
  ValueProvided: [INVALID_ARGUMENT, "etcdserver: value is provided"],
  LeaseProvided: [INVALID_ARGUMENT, "etcdserver: lease is provided"],
  TooManyOps: [INVALID_ARGUMENT, "etcdserver: too many operations in txn request"],
  DuplicateKey: [INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"],
  InvalidSortOption: [INVALID_ARGUMENT, "etcdserver: invalid sort option"],
  RequestTooLarge: [INVALID_ARGUMENT, "etcdserver: request is too large"],
  AuthFailed: [INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password"],
  UserEmpty: [INVALID_ARGUMENT, "etcdserver: user name is empty"],
  RoleEmpty: [INVALID_ARGUMENT, "etcdserver: role name is empty"],
  PermissionNotGiven: [INVALID_ARGUMENT, "etcdserver: permission not given"],
  AuthOldRevision: [INVALID_ARGUMENT, "etcdserver: revision of auth store is old"],
  MemberBadURLs: [INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"],
  NoSpace: [RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"],
  TooManyRequests: [RESOURCE_EXHAUSTED, "etcdserver: too many requests"],
  // Not etcd's (etcd has no login rate limit): services/auth's answer while a user or client
  // address is over its failed-login budget, even to the right password.
  TooManyFailedLogins: [
    RESOURCE_EXHAUSTED,
    "etcdserver: too many failed authentication attempts, try again later",
  ],
  Compacted: [OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"],
  FutureRev: [OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"],
  LeaseTTLTooLarge: [OUT_OF_RANGE, "etcdserver: too large lease TTL"],
  LeaseNotFound: [NOT_FOUND, "etcdserver: requested lease not found"],
  MemberNotFound: [NOT_FOUND, "etcdserver: member not found"],
  LeaseExist: [FAILED_PRECONDITION, "etcdserver: lease already exists"],
  MemberExist: [FAILED_PRECONDITION, "etcdserver: member ID already exist"],
  PeerURLExist: [FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"],
  MemberNotEnoughStarted: [
    FAILED_PRECONDITION,
    "etcdserver: re-configuration failed due to not enough started members",
  ],
  MemberNotLearner: [FAILED_PRECONDITION, "etcdserver: can only promote a learner member"],
  LearnerNotReady: [
    FAILED_PRECONDITION,
    "etcdserver: can only promote a learner member which is in sync with leader",
  ],
  TooManyLearners: [FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"],
  ClusterIdMismatch: [FAILED_PRECONDITION, "etcdserver: cluster ID mismatch"],
  RootUserNotExist: [FAILED_PRECONDITION, "etcdserver: root user does not exist"],
  RootRoleNotExist: [FAILED_PRECONDITION, "etcdserver: root user does not have root role"],
  UserAlreadyExist: [FAILED_PRECONDITION, "etcdserver: user name already exists"],
  UserNotFound: [FAILED_PRECONDITION, "etcdserver: user name not found"],
  RoleAlreadyExist: [FAILED_PRECONDITION, "etcdserver: role name already exists"],
  RoleNotFound: [FAILED_PRECONDITION, "etcdserver: role name not found"],
  RoleNotGranted: [FAILED_PRECONDITION, "etcdserver: role is not granted to the user"],
  PermissionNotGranted: [FAILED_PRECONDITION, "etcdserver: permission is not granted to the role"],
  AuthNotEnabled: [FAILED_PRECONDITION, "etcdserver: authentication is not enabled"],
  NotLeader: [FAILED_PRECONDITION, "etcdserver: not leader"],
  NotCapable: [UNAVAILABLE, "etcdserver: not capable"],
  // etcd 3.4/3.5 answer Unavailable so that clients retry on another endpoint.
  LearnerNotSupported: [UNAVAILABLE, "etcdserver: rpc not supported for learner"],
  BadLeaderTransferee: [FAILED_PRECONDITION, "etcdserver: bad leader transferee"],
  PermissionDenied: [PERMISSION_DENIED, "etcdserver: permission denied"],
  InvalidAuthToken: [UNAUTHENTICATED, "etcdserver: invalid auth token"],
  // Deleting the root user or revoking its root role.
  InvalidAuthMgmt: [INVALID_ARGUMENT, "etcdserver: invalid auth management"],
  NoLeader: [UNAVAILABLE, "etcdserver: no leader"],
  LeaderChanged: [UNAVAILABLE, "etcdserver: leader changed"],
  Stopped: [UNAVAILABLE, "etcdserver: server stopped"],
  Timeout: [UNAVAILABLE, "etcdserver: request timed out"],
  TimeoutDueToLeaderFail: [
    UNAVAILABLE,
    "etcdserver: request timed out, possibly due to previous leader failure",
  ],
  TimeoutDueToConnectionLost: [UNAVAILABLE, "etcdserver: request timed out, possibly due to connection lost"],
  TimeoutWaitAppliedIndex: [
    UNAVAILABLE,
    "etcdserver: request timed out, waiting for the applied index took too long",
  ],
  Unhealthy: [UNAVAILABLE, "etcdserver: unhealthy cluster"],
  Corrupt: [DATA_LOSS, "etcdserver: corrupt cluster"],
  // Maintenance.Downgrade (etcd 3.5+).
  ClusterVersionUnavailable: [UNAVAILABLE, "etcdserver: cluster version not found during downgrade"],
  WrongDowngradeVersionFormat: [INVALID_ARGUMENT, "etcdserver: wrong downgrade target version format"],
  InvalidDowngradeTargetVersion: [INVALID_ARGUMENT, "etcdserver: invalid downgrade target version"],
  DowngradeInProcess: [FAILED_PRECONDITION, "etcdserver: cluster has a downgrade job in progress"],
  NoInflightDowngrade: [FAILED_PRECONDITION, "etcdserver: no inflight downgrade job"],
  // etcd 3.4's auth package's own errors, which its authMaintenanceServer (Defragment, Hash,
  // HashKV, Snapshot) returns untranslated, so grpc-go sends them as code 2 (Unknown).
  AuthPackageInvalidAuthToken: [UNKNOWN, "auth: invalid auth token"],
  AuthPackageUserEmpty: [UNKNOWN, "auth: user name is empty"],
  AuthPackageUserNotFound: [UNKNOWN, "auth: user name not found"],
  AuthPackagePermissionDenied: [UNKNOWN, "auth: permission denied"],
  WatchCanceled: [CANCELLED, "etcdserver: watch canceled"],
  RequestCanceled: [CANCELLED, "etcdserver: request canceled"],
  DeadlineExceeded: [DEADLINE_EXCEEDED, "etcdserver: context deadline exceeded"],
} as const satisfies Record<string, readonly [GrpcStatus, string]>;

export type EtcdErrorKind = keyof typeof ETCD_ERRORS;

/**
 * An error a client sees as etcd would send it. Shaped like grpc-js's StatusObject
 * (`code`, `details`) so a handler can pass it straight to its callback.
 */
export class EtcdError extends Error {
  readonly code: GrpcStatus;
  readonly details: string;

  constructor(readonly kind: EtcdErrorKind) {
    const [code, message] = ETCD_ERRORS[kind];
    super(message);
    this.name = "EtcdError";
    this.code = code;
    this.details = message;
  }
}

export function isEtcdError(err: unknown, kind?: EtcdErrorKind): err is EtcdError {
  return err instanceof EtcdError && (kind === undefined || err.kind === kind);
}

const UNTRANSLATED: Partial<Record<EtcdErrorKind, EtcdErrorKind>> = {
  InvalidAuthToken: "AuthPackageInvalidAuthToken",
  UserEmpty: "AuthPackageUserEmpty",
  UserNotFound: "AuthPackageUserNotFound",
  PermissionDenied: "AuthPackagePermissionDenied",
};

/**
 * An auth check's refusal as etcd 3.4's maintenance server sends it: the auth package's words
 * and code 2 (`auth: permission denied`), not etcdserver's (`etcdserver: permission denied`, 7).
 * Any other error is returned as it is.
 */
export function untranslatedAuthError(err: unknown): unknown {
  if (!(err instanceof EtcdError)) return err;
  const kind = UNTRANSLATED[err.kind];
  return kind === undefined ? err : new EtcdError(kind);
}

const BY_MESSAGE = new Map<string, EtcdErrorKind>(
  (Object.keys(ETCD_ERRORS) as EtcdErrorKind[]).map((kind) => [ETCD_ERRORS[kind][1], kind]),
);

/** Recognises an etcd error that crossed a gRPC hop (a member's answer relayed by the gateway). */
export function etcdErrorFromMessage(message: string): EtcdError | undefined {
  const kind = BY_MESSAGE.get(message);
  return kind === undefined ? undefined : new EtcdError(kind);
}

/**
 * The HTTP status etcd's JSON gateway gives a gRPC code: grpc-gateway v1's table (etcd 3.4 links
 * v1.9; v2 changed CANCELLED to 499 and FAILED_PRECONDITION to 400), checked against etcd 3.4.23:
 * a user added twice answers 412.
 */
export function httpStatusForGrpcCode(code: GrpcStatus): number {
  switch (code) {
    case GrpcStatus.OK:
      return 200;
    case GrpcStatus.CANCELLED:
      return 408;
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.OUT_OF_RANGE:
      return 400;
    case GrpcStatus.FAILED_PRECONDITION:
      return 412;
    case GrpcStatus.DEADLINE_EXCEEDED:
      return 504;
    case GrpcStatus.NOT_FOUND:
      return 404;
    case GrpcStatus.ALREADY_EXISTS:
    case GrpcStatus.ABORTED:
      return 409;
    case GrpcStatus.PERMISSION_DENIED:
      return 403;
    case GrpcStatus.UNAUTHENTICATED:
      return 401;
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 429;
    case GrpcStatus.UNIMPLEMENTED:
      return 501;
    case GrpcStatus.UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}
