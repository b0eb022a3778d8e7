// etcdts.authbackend.AuthBackend (proto/internal/auth-backend.proto): what services/auth asks
// of a member, served on the peer URLs beside the Raft transport. Password hashes already cross
// the peer links (UserAdd entries, snapshots) and nothing else in the cluster, so they are
// handed out there and never on the client port; whoever may reach the peer port can already
// send Raft messages, so this adds no reach an attacker did not have. One named user per call,
// no listing.
import { type authBackend, isEtcdError } from "@etcd-ts/api";
import { traceGrpcJsUnary } from "@etcd-ts/telemetry";
import { type ServerUnaryCall, type sendUnaryData, status } from "@grpc/grpc-js";

const SERVICE = "/etcdts.authbackend.AuthBackend/";

export interface AuthBackendHost {
  authCredential(name: string): Promise<authBackend.CredentialResponse>;
  putSigningKey(key: authBackend.SigningKey): Promise<authBackend.SigningKeySet>;
  deleteSigningKey(kid: string): Promise<authBackend.SigningKeySet>;
  listSigningKeys(): Promise<authBackend.SigningKeySet>;
  readAuthRevision(): Promise<authBackend.AuthRevisionResponse>;
}

interface Logger {
  warn(details: Record<string, unknown>, message: string): void;
}

export function authBackendService(host: AuthBackendHost, logger: Logger): authBackend.AuthBackendServer {
  const answer = <Req, Res>(
    method: string,
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    run: (request: Req) => Promise<Res>,
  ) => {
    // A server span under the auth service's own (its calls carry traceparent), when tracing is on.
    traceGrpcJsUnary(SERVICE + method, call.metadata, () => run(call.request)).then(
      (response) => callback(null, response),
      (err: unknown) => {
        // etcd's errors (not enabled, authentication failed, timeouts) reach services/auth as
        // etcd sends them, so it can answer its caller with them unchanged.
        if (isEtcdError(err)) return callback({ code: err.code, details: err.details });
        logger.warn({ error: String(err), peer: call.getPeer() }, "auth backend call refused");
        callback({ code: status.INVALID_ARGUMENT, details: String((err as Error).message ?? err) });
      },
    );
  };
  return {
    credential: (call, callback) => answer("Credential", call, callback, (r) => host.authCredential(r.name)),
    putSigningKey: (call, callback) => answer("PutSigningKey", call, callback, (r) => host.putSigningKey(r)),
    deleteSigningKey: (call, callback) =>
      answer("DeleteSigningKey", call, callback, (r) => host.deleteSigningKey(r.kid)),
    listSigningKeys: (call, callback) =>
      answer("ListSigningKeys", call, callback, () => host.listSigningKeys()),
    authRevision: (call, callback) => answer("AuthRevision", call, callback, () => host.readAuthRevision()),
  };
}
