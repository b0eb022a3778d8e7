// etcdserverpb.Auth: authentication is not implemented yet, so AuthStatus says it is disabled
// and every other call is answered UNIMPLEMENTED by grpc-js (no handler given), which clients
// report clearly instead of half-working RBAC.
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { EtcdServer } from "../server/mod.js";
import { unary } from "./rpc-errors.js";

export function authService(member: EtcdServer): UntypedServiceImplementation {
  return {
    authStatus: unary(async () => ({ header: member.header(), enabled: false, authRevision: 0 })),
  };
}
