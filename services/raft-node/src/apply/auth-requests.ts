// Auth entries as state machine requests: each changes the auth store (auth/) and writes its
// rows in the apply's RocksDB batch (the "auth" column), as etcd's applierV3backend.Auth* do.
// Reads (UserGet/List, RoleGet/List) go through Raft too, as in etcd, so they are linearizable
// and checked by the auth link like every other entry.
import { authBackend, etcdserverpb } from "@etcd-ts/api";
import {
  AUTH_COLUMN,
  type AuthRow,
  type AuthStore,
  type PublishedKeys,
  type SimpleTokens,
  simpleToken,
} from "../auth/mod.js";
import type { ExternalApply, MvccRequest } from "../mvcc/mod.js";
import { EntryKind } from "./entry-envelope.js";

export interface AuthApplyParts {
  store: AuthStore;
  tokens: SimpleTokens;
  /** False with JWT tokens: the proposer signs one, nothing is kept. */
  assignSimpleTokens: boolean;
  /** services/auth's published verification keys. */
  signingKeys: PublishedKeys;
}

/** What an applied Authenticate answers: the proposer turns it into a token (simple or JWT). */
export interface AuthenticateApplied {
  token: string;
  username: string;
  revision: number;
}

export function isAuthKind(kind: EntryKind): boolean {
  return kind >= EntryKind.AuthEnable && kind <= EntryKind.AuthSigningKeyDelete;
}

/** The name a read-style auth entry asks about (the auth link lets a user read itself). */
export function authSubject(kind: EntryKind, payload: Uint8Array): string | undefined {
  if (kind === EntryKind.AuthUserGet) return etcdserverpb.AuthUserGetRequest.decode(payload).name;
  if (kind === EntryKind.AuthRoleGet) return etcdserverpb.AuthRoleGetRequest.decode(payload).role;
  return undefined;
}

export function authRequest(
  kind: EntryKind,
  payload: Uint8Array,
  index: number,
  parts: AuthApplyParts,
): MvccRequest {
  const { store, tokens, assignSimpleTokens, signingKeys } = parts;
  const write = (context: ExternalApply, rows: AuthRow[]) => {
    for (const row of rows) {
      if (row.value === undefined) context.del(AUTH_COLUMN, row.key);
      else context.put(AUTH_COLUMN, row.key, row.value);
    }
  };
  const change = (apply: () => AuthRow[], after?: () => void): MvccRequest => ({
    external: (context) => {
      write(context, apply());
      after?.();
      return {};
    },
  });
  const read = (answer: () => unknown): MvccRequest => ({ external: () => answer() });
  const keySetChange = (apply: () => AuthRow[]): MvccRequest => ({
    external: (context): authBackend.SigningKeySet => {
      write(context, apply());
      return { keys: signingKeys.list() };
    },
  });
  switch (kind) {
    case EntryKind.AuthEnable:
      return change(() => store.authEnable());
    case EntryKind.AuthDisable:
      return change(
        () => store.authDisable(),
        () => tokens.clear(),
      );
    case EntryKind.Authenticate: {
      const r = etcdserverpb.AuthenticateRequest.decode(payload);
      return {
        external: (): AuthenticateApplied => {
          // etcd's Authenticate at apply: the password was checked by the proposer; the user
          // must still exist and have a password.
          store.passwordHashOf(r.name);
          const token = simpleToken(r.password, index);
          if (assignSimpleTokens) tokens.assign(token, r.name);
          return { token, username: r.name, revision: store.revision };
        },
      };
    }
    case EntryKind.AuthUserAdd: {
      const r = etcdserverpb.AuthUserAddRequest.decode(payload);
      return change(() =>
        store.userAdd(r.name, Buffer.from(r.hashedPassword, "latin1"), r.options?.noPassword ?? false),
      );
    }
    case EntryKind.AuthUserDelete: {
      const r = etcdserverpb.AuthUserDeleteRequest.decode(payload);
      return change(
        () => store.userDelete(r.name),
        () => tokens.invalidateUser(r.name),
      );
    }
    case EntryKind.AuthUserChangePassword: {
      const r = etcdserverpb.AuthUserChangePasswordRequest.decode(payload);
      return change(
        () => store.userChangePassword(r.name, Buffer.from(r.hashedPassword, "latin1")),
        () => tokens.invalidateUser(r.name),
      );
    }
    case EntryKind.AuthUserGrantRole: {
      const r = etcdserverpb.AuthUserGrantRoleRequest.decode(payload);
      return change(() => store.userGrantRole(r.user, r.role));
    }
    case EntryKind.AuthUserRevokeRole: {
      const r = etcdserverpb.AuthUserRevokeRoleRequest.decode(payload);
      return change(() => store.userRevokeRole(r.name, r.role));
    }
    case EntryKind.AuthUserGet: {
      const r = etcdserverpb.AuthUserGetRequest.decode(payload);
      return read(() => ({ roles: store.userGet(r.name) }));
    }
    case EntryKind.AuthUserList:
      return read(() => ({ users: store.userList() }));
    case EntryKind.AuthRoleAdd: {
      const r = etcdserverpb.AuthRoleAddRequest.decode(payload);
      return change(() => store.roleAdd(r.name));
    }
    case EntryKind.AuthRoleDelete: {
      const r = etcdserverpb.AuthRoleDeleteRequest.decode(payload);
      return change(() => store.roleDelete(r.role));
    }
    case EntryKind.AuthRoleGrantPermission: {
      const r = etcdserverpb.AuthRoleGrantPermissionRequest.decode(payload);
      const perm = r.perm ?? { permType: 0, key: Buffer.alloc(0), rangeEnd: Buffer.alloc(0) };
      return change(() =>
        store.roleGrantPermission(r.name, {
          permType: perm.permType,
          key: perm.key,
          rangeEnd: perm.rangeEnd,
        }),
      );
    }
    case EntryKind.AuthRoleRevokePermission: {
      const r = etcdserverpb.AuthRoleRevokePermissionRequest.decode(payload);
      return change(() => store.roleRevokePermission(r.role, r.key, r.rangeEnd));
    }
    case EntryKind.AuthRoleGet: {
      const r = etcdserverpb.AuthRoleGetRequest.decode(payload);
      return read(() => ({ perm: store.roleGet(r.role) }));
    }
    case EntryKind.AuthRoleList:
      return read(() => ({ roles: store.roleList() }));
    case EntryKind.AuthSigningKeyPut: {
      const r = authBackend.SigningKey.decode(payload);
      return keySetChange(() => signingKeys.put(r));
    }
    case EntryKind.AuthSigningKeyDelete: {
      const r = authBackend.DeleteSigningKeyRequest.decode(payload);
      return keySetChange(() => signingKeys.delete(r.kid));
    }
    default:
      throw new Error(`not an auth entry kind: ${kind}`);
  }
}
