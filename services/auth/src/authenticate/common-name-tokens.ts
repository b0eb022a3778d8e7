// Tokens for a client certificate's CN, for gateways: etcd takes the CN of a client's verified
// certificate as the user when the call carries no token (--client-cert-auth), but a gateway
// terminates the client's TLS, so members only ever see the gateway's own certificate. A gateway
// that verified its client's certificate asks here for a token naming that CN; this service
// signs it as it signs Authenticate's, so members verify it with the keys they already hold.
//
// Who may ask is the whole of the safety: only a caller whose own verified certificate's CN is in
// --trusted-gateway-cn (the service requires client certificates for that flag), never a client
// that can merely reach this port. A trusted gateway can name any user, as etcd's own gRPC
// gateway could; it names only CNs it verified against its --trusted-ca-file.
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { SigningKeys } from "../keys/signing-keys.js";
import type { MemberBackend } from "../members/member-backend.js";

/** The method a gateway calls (AuthenticateRequest's name: the CN; AuthenticateResponse back). */
export const COMMON_NAME_TOKEN_PATH = "/etcdts.gatewayauth.GatewayAuth/CommonNameToken";

/** The answer to a caller that is not a trusted gateway. */
export const UNTRUSTED_GATEWAY = {
  code: grpc.status.PERMISSION_DENIED,
  details: "etcd-ts auth: only a trusted gateway may ask for a certificate's token",
} as const;

export class CommonNameTokens {
  private readonly trusted: ReadonlySet<string>;

  constructor(
    private readonly backend: Pick<MemberBackend, "authRevision">,
    private readonly keys: Pick<SigningKeys, "sign">,
    trustedGatewayCns: readonly string[],
    private readonly logger: Logger,
  ) {
    this.trusted = new Set(trustedGatewayCns);
  }

  /**
   * A token for `commonName`, asked by the caller whose verified certificate's CN is `callerCn`.
   * Its `revision` is the auth store's now, as etcd's AuthInfoFromTLS takes it; whether the user
   * exists and what it may do is the members' to decide, as for a CN that reaches them directly.
   */
  async issue(
    callerCn: string | undefined,
    commonName: string,
    client: string | undefined,
  ): Promise<{ token: string; header: etcdserverpb.ResponseHeader | undefined }> {
    if (callerCn === undefined || !this.trusted.has(callerCn)) {
      this.logger.warn(
        { caller: callerCn ?? null, client, user: commonName },
        "refused a certificate token: the caller is not a trusted gateway",
      );
      throw UNTRUSTED_GATEWAY;
    }
    if (commonName === "") throw new EtcdError("UserEmpty");
    const { enabled, authRevision, header } = await this.backend.authRevision();
    if (!enabled) throw new EtcdError("AuthNotEnabled");
    return { token: await this.keys.sign(commonName, Number(authRevision)), header };
  }
}
