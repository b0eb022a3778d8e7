// services/auth's calls to the members' AuthBackend service (proto/internal/auth-backend.proto),
// on their peer URLs. Any member answers (each does a linearizable read or a Raft proposal), so
// a call goes to the member that answered last and moves to the next on a transport failure or
// an "unavailable" answer (a member without a leader, stopping, timing out); etcd's own errors
// (authentication failed, not enabled) are answers and come back as they are.
import { authBackend } from "@etcd-ts/api";
import { type TraceContext, withTraceparent } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";

const CALL_TIMEOUT_MS = 5_000;

/** An error a member answered, as gRPC carried it (etcd's code and message). */
export interface MemberError {
  code: grpc.status;
  details: string;
}

export function isMemberError(err: unknown): err is MemberError {
  return typeof err === "object" && err !== null && "code" in err && "details" in err;
}

export class MemberBackend {
  private readonly clients: authBackend.AuthBackendClient[];
  private current = 0;

  /** `tls`: how to dial https:// peer URLs (the CA members are checked against, our certificate). */
  constructor(peerUrls: readonly string[], tls?: { ca: Buffer; cert?: Buffer; key?: Buffer }) {
    if (peerUrls.length === 0) throw new Error("no member peer URLs");
    this.clients = peerUrls.map((url) => {
      const parsed = new URL(url.includes("://") ? url : `http://${url}`);
      if (parsed.protocol === "https:" && tls === undefined) throw new Error(`${url}: https:// needs a CA`);
      const channel =
        parsed.protocol === "https:"
          ? grpc.credentials.createSsl(tls!.ca, tls!.key ?? null, tls!.cert ?? null)
          : grpc.credentials.createInsecure();
      return new authBackend.AuthBackendClient(parsed.host, channel, {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
      });
    });
  }

  /** `trace`: the caller's span, whose traceparent the call carries to the member. */
  credential(name: string, trace?: TraceContext): Promise<authBackend.CredentialResponse> {
    return this.call((c, done) =>
      c.credential({ name }, withTraceparent(new grpc.Metadata(), trace), this.options(), done),
    );
  }

  putSigningKey(key: authBackend.SigningKey): Promise<authBackend.SigningKeySet> {
    return this.call((c, done) => c.putSigningKey(key, new grpc.Metadata(), this.options(), done));
  }

  deleteSigningKey(kid: string): Promise<authBackend.SigningKeySet> {
    return this.call((c, done) => c.deleteSigningKey({ kid }, new grpc.Metadata(), this.options(), done));
  }

  listSigningKeys(): Promise<authBackend.SigningKeySet> {
    return this.call((c, done) => c.listSigningKeys({}, new grpc.Metadata(), this.options(), done));
  }

  /** Whether auth is on and the auth store's revision (a linearizable read on a member). */
  authRevision(): Promise<authBackend.AuthRevisionResponse> {
    return this.call((c, done) => c.authRevision({}, new grpc.Metadata(), this.options(), done));
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private options(): Partial<grpc.CallOptions> {
    return { deadline: Date.now() + CALL_TIMEOUT_MS };
  }

  private async call<T>(
    send: (
      client: authBackend.AuthBackendClient,
      done: (err: grpc.ServiceError | null, res: T) => void,
    ) => void,
  ): Promise<T> {
    let last: grpc.ServiceError | undefined;
    for (let tried = 0; tried < this.clients.length; tried++) {
      const index = (this.current + tried) % this.clients.length;
      try {
        const result = await new Promise<T>((resolve, reject) =>
          send(this.clients[index]!, (err, res) => (err ? reject(err) : resolve(res))),
        );
        this.current = index;
        return result;
      } catch (err) {
        const e = err as grpc.ServiceError;
        if (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.DEADLINE_EXCEEDED) throw e;
        last = e;
      }
    }
    throw last ?? new Error("no member answered");
  }
}
