// etcdserverpb.Auth (etcd's api/v3rpc/auth.go over v3_server.go's Authenticator): every call
// but Authenticate and AuthStatus goes through Raft carrying its caller, and the auth link
// of the applier chain decides whether the caller may make it (root only, once auth is on).
// Passwords are hashed by the member before proposing; Authenticate compares off the apply path.
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import { apiHeader } from "../mvcc/mod.js";
import type { AuthMethod, EtcdServer } from "../server/mod.js";
import { callerOf } from "./caller.js";
import { type UnaryCall, unary } from "./rpc-errors.js";

export function authService(member: EtcdServer): UntypedServiceImplementation {
  /** A call through Raft; its answer gets etcd's header. */
  const through = (method: AuthMethod) =>
    unary(async (req: Record<string, unknown>, call: UnaryCall<Record<string, unknown>>) => {
      const caller = await callerOf(member, call);
      const res = (await member.authCall(method, req, caller, call.traceContext)) as Record<string, unknown>;
      return { ...res, header: apiHeader(member.header()) };
    });
  return {
    authStatus: unary(async () => ({
      header: apiHeader(member.header()),
      enabled: member.authEnabled,
      authRevision: BigInt(member.authRevision),
    })),
    authenticate: unary(async (req: etcdserverpb.AuthenticateRequest) => {
      const token = await member.authenticate(req.name, req.password);
      return { header: apiHeader(member.header()), token };
    }),
    authEnable: through("authEnable"),
    authDisable: through("authDisable"),
    userAdd: through("userAdd"),
    userDelete: through("userDelete"),
    userChangePassword: through("userChangePassword"),
    userGrantRole: through("userGrantRole"),
    userRevokeRole: through("userRevokeRole"),
    userGet: through("userGet"),
    userList: through("userList"),
    roleAdd: through("roleAdd"),
    roleDelete: through("roleDelete"),
    roleGrantPermission: unary(async (req: etcdserverpb.AuthRoleGrantPermissionRequest, call) => {
      if (req.perm === undefined) throw new EtcdError("PermissionNotGiven");
      const caller = await callerOf(member, call);
      await member.authCall(
        "roleGrantPermission",
        req as unknown as Record<string, unknown>,
        caller,
        call.traceContext,
      );
      return { header: apiHeader(member.header()) };
    }),
    roleRevokePermission: through("roleRevokePermission"),
    roleGet: through("roleGet"),
    roleList: through("roleList"),
  };
}
