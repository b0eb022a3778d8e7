// Sends Authenticate to services/auth when the gateway is given its addresses
// (--auth-endpoints): password checks and token signing leave the members. The call's bytes go
// as they came (the auth service serves etcd's own Authenticate method), with the client's
// address in x-forwarded-for so the service's per-address failed-login budget counts the real
// client, not this gateway. A client cannot choose that address: any value it sent is replaced.
import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { MemberChannel } from "../cluster/member-channel.js";
import type { UpstreamTls } from "../cluster/upstream-client.js";
import type { CallCancellation, UnaryOutcome } from "./unary-forwarder.js";

export const AUTHENTICATE_PATH = "/etcdserverpb.Auth/Authenticate";
export const FORWARDED_FOR_METADATA = "x-forwarded-for";
/** services/auth's method for a client certificate's CN (its common-name-tokens.ts). */
const COMMON_NAME_TOKEN_PATH = "/etcdts.gatewayauth.GatewayAuth/CommonNameToken";
const DEFAULT_TIMEOUT_MS = 10_000;

export class AuthServiceForwarder {
  private readonly channels: MemberChannel[];
  private next = 0;

  /** `tls`: dial the replicas over TLS, as members are dialled (the gateway's --cacert/--cert/--key). */
  constructor(addresses: readonly string[], tls?: UpstreamTls) {
    if (addresses.length === 0) throw new Error("no auth service address");
    this.channels = addresses.map((a) => new MemberChannel(a, tls));
  }

  /**
   * Round-robin over the replicas; an UNAVAILABLE answer or a connection failure moves the call
   * to the next one (an unavailable replica checked no password, so nothing is counted twice).
   * `metadata`: the caller's own copy of what may be forwarded (forwardableMetadata, cloned);
   * the client's address is set in it here.
   */
  async forward(
    request: Buffer,
    metadata: grpc.Metadata,
    clientAddress: string | undefined,
    deadlineMs: number | undefined,
    cancellation: CallCancellation | undefined,
  ): Promise<UnaryOutcome> {
    metadata.remove(FORWARDED_FOR_METADATA);
    if (clientAddress !== undefined) metadata.set(FORWARDED_FOR_METADATA, clientAddress);
    const deadline = deadlineMs ?? Date.now() + DEFAULT_TIMEOUT_MS;
    const first = this.next++ % this.channels.length;
    let last: UnaryOutcome | undefined;
    for (let i = 0; i < this.channels.length && !cancellation?.cancelled; i++) {
      const channel = this.channels[(first + i) % this.channels.length]!;
      const { result, cancel } = channel.call(AUTHENTICATE_PATH, request, metadata, deadline);
      cancellation?.track(cancel);
      try {
        last = await result;
      } finally {
        cancellation?.track(undefined);
      }
      if (last.error?.code !== grpc.status.UNAVAILABLE) return last;
    }
    return (
      last ?? {
        error: {
          code: grpc.status.CANCELLED,
          details: "etcd-ts gateway: call cancelled",
          metadata: new grpc.Metadata(),
        },
        response: undefined,
        trailers: undefined,
      }
    );
  }

  /**
   * A token for a client certificate's CN (services/auth's CommonNameToken: it answers only a
   * gateway whose own certificate it trusts), or the replica's error; the next replica on
   * UNAVAILABLE, as for Authenticate.
   */
  async commonNameToken(commonName: string): Promise<{ token: string } | { error: string }> {
    const request = Buffer.from(
      etcdserverpb.AuthenticateRequest.encode({ name: commonName, password: "" }).finish(),
    );
    const deadline = Date.now() + DEFAULT_TIMEOUT_MS;
    const first = this.next++ % this.channels.length;
    let error = "no auth service replica answered";
    for (let i = 0; i < this.channels.length; i++) {
      const channel = this.channels[(first + i) % this.channels.length]!;
      const outcome = await channel.call(COMMON_NAME_TOKEN_PATH, request, new grpc.Metadata(), deadline)
        .result;
      if (outcome.error === undefined)
        return { token: etcdserverpb.AuthenticateResponse.decode(outcome.response!).token };
      error = `${grpc.status[outcome.error.code] ?? outcome.error.code}: ${outcome.error.details}`;
      if (outcome.error.code !== grpc.status.UNAVAILABLE) break;
    }
    return { error };
  }

  close(): void {
    for (const c of this.channels) c.close();
  }
}
