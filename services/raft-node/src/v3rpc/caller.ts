// Who makes a call: etcd's AuthInfoFromCtx reads the token from the gRPC metadata "token"
// (etcdctl, clientv3) or "authorization" (the JSON gateway's header), and asks the auth store;
// without a token, the CN of a verified client certificate names the caller (--client-cert-auth).
import { EtcdError } from "@etcd-ts/api";
import type { Metadata } from "@grpc/grpc-js";
import type { AuthInfo } from "../auth/mod.js";
import type { AuthApi } from "../server/mod.js";

export function tokenOf(metadata: Metadata | undefined): string | undefined {
  if (metadata === undefined) return undefined;
  const value = metadata.get("token")[0] ?? metadata.get("authorization")[0];
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : value.toString();
}

/** What a call says about who makes it: its metadata, and the CN of its verified client certificate. */
export interface CallIdentity {
  readonly metadata?: Metadata | undefined;
  readonly peerCommonName?: string | undefined;
  /** One request header, when the call can read it without building `metadata` (per call, on every put). */
  header?(name: string): string | undefined;
}

/**
 * The caller, or undefined without a token; an unknown or expired token: InvalidAuthToken. As in
 * etcd (EtcdServer.AuthInfoFromCtx), a token wins; without one, the client certificate's CN
 * (only with --client-cert-auth).
 */
export function callerOf(server: AuthApi, call: CallIdentity): Promise<AuthInfo | undefined> {
  const token = callToken(call);
  if (token === undefined && call.peerCommonName !== undefined) {
    return Promise.resolve(server.authInfoFromCertificate(call.peerCommonName));
  }
  return server.authInfoFromToken(token);
}

/**
 * The call carries neither a token nor a verified certificate's CN: callerOf would resolve to
 * no caller without asking anything (a hot path can skip its promise).
 */
export function anonymousCall(call: CallIdentity): boolean {
  return call.peerCommonName === undefined && callToken(call) === undefined;
}

function callToken(call: CallIdentity): string | undefined {
  // The same value as tokenOf(metadata): the first value of the header, which is what the
  // metadata built from the headers holds first.
  return call.header !== undefined
    ? (call.header("token") ?? call.header("authorization"))
    : tokenOf(call.metadata);
}

/**
 * etcd's doSerialize: a local read checked against the caller's permission, then refused if
 * the auth store changed while it was served (the answer may hold what the caller lost).
 */
export async function permittedRead<T>(
  server: AuthApi,
  caller: AuthInfo | undefined,
  check: () => void,
  read: () => Promise<T>,
): Promise<T> {
  check();
  const result = await read();
  if (server.authEnabled && caller !== undefined && caller.revision !== server.authRevision) {
    throw new EtcdError("AuthOldRevision");
  }
  return result;
}
