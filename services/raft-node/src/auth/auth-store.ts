// etcd's auth store (auth/store.go, 3.4): users, roles, the enabled flag and the auth revision,
// changed only by applied entries so every member holds the same store. Persisted in the "auth"
// column in the same RocksDB batch as the apply, with etcd's layout: `authEnabled` ([1]/[0]) and
// `authRevision` (u64 BE) as in etcd's `auth` bucket, users as authpb.User under "u/<name>" and
// roles as authpb.Role under "r/<name>" (etcd's authUsers / authRoles buckets, keyed by name).
//
// Pure: no I/O, no clock, no hashing. Passwords arrive already hashed (the RPC layer hashes
// before proposing) and are checked outside apply (checkPassword's caller compares the hash).
// Every change returns the rows to write; a refused change throws an EtcdError and changes
// nothing.
import { authpb, EtcdError } from "@etcd-ts/api";
import { intervalOf, type KeyInterval, RangeUnion } from "./range-permissions.js";

export const AUTH_COLUMN = "auth";
export const ROOT_USER = "root";
export const ROOT_ROLE = "root";

export const PermissionType = { READ: 0, WRITE: 1, READWRITE: 2 } as const;

const ENABLED_KEY = Buffer.from("authEnabled");
const REVISION_KEY = Buffer.from("authRevision");
/** Where etcd's authUsers / authRoles buckets live inside the auth column. */
export const AUTH_USER_PREFIX = "u/";
export const AUTH_ROLE_PREFIX = "r/";

export interface AuthRow {
  key: Buffer;
  /** undefined deletes the row. */
  value: Buffer | undefined;
}

/** Who a request comes from, as etcd's RequestHeader carries it (username, auth_revision). */
export interface AuthInfo {
  username: string;
  /** The auth revision the caller's token was checked at; 0: no user. */
  revision: number;
}

export interface Permission {
  permType: number;
  key: Buffer;
  rangeEnd: Buffer;
}

interface UserRecord {
  name: string;
  /** bcrypt hash; empty for a no-password user. */
  password: Buffer;
  /** Sorted, as etcd keeps them. */
  roles: string[];
  noPassword: boolean;
}

interface RoleRecord {
  name: string;
  /** Sorted by key, as etcd keeps them. */
  keyPermission: Permission[];
}

interface UserPermissions {
  read: RangeUnion;
  write: RangeUnion;
}

export class AuthStore {
  private enabledFlag = false;
  private rev = 0;
  private readonly users = new Map<string, UserRecord>();
  private readonly roles = new Map<string, RoleRecord>();
  /** etcd's rangePermCache: rebuilt on every change, by user. */
  private permCache = new Map<string, UserPermissions>();

  get enabled(): boolean {
    return this.enabledFlag;
  }

  get revision(): number {
    return this.rev;
  }

  // ---- queries ------------------------------------------------------------------------------

  /** etcd's CheckPassword before the hash comparison: the hash to compare, or why not. */
  passwordHashOf(name: string): Buffer {
    if (!this.enabledFlag) throw new EtcdError("AuthNotEnabled");
    const user = this.users.get(name);
    if (user === undefined) throw new EtcdError("AuthFailed");
    if (user.noPassword) throw new EtcdError("AuthFailed");
    return user.password;
  }

  hasUser(name: string): boolean {
    return this.users.has(name);
  }

  userGet(name: string): string[] {
    const user = this.users.get(name);
    if (user === undefined) throw new EtcdError("UserNotFound");
    return [...user.roles];
  }

  userList(): string[] {
    return [...this.users.keys()].sort();
  }

  roleGet(name: string): Permission[] {
    const role = this.roles.get(name);
    if (role === undefined) throw new EtcdError("RoleNotFound");
    return role.keyPermission.map((p) => ({ ...p }));
  }

  roleList(): string[] {
    return [...this.roles.keys()].sort();
  }

  hasRole(user: string, role: string): boolean {
    return this.users.get(user)?.roles.includes(role) ?? false;
  }

  // ---- permission checks (etcd's isOpPermitted / IsAdminPermitted) ---------------------------

  isRangePermitted(info: AuthInfo | undefined, key: Buffer, rangeEnd: Buffer): void {
    this.isOpPermitted(info, key, rangeEnd, PermissionType.READ);
  }

  isPutPermitted(info: AuthInfo | undefined, key: Buffer): void {
    this.isOpPermitted(info, key, Buffer.alloc(0), PermissionType.WRITE);
  }

  isDeleteRangePermitted(info: AuthInfo | undefined, key: Buffer, rangeEnd: Buffer): void {
    this.isOpPermitted(info, key, rangeEnd, PermissionType.WRITE);
  }

  isAdminPermitted(info: AuthInfo | undefined): void {
    if (!this.enabledFlag) return;
    if (info === undefined || info.username === "") throw new EtcdError("UserEmpty");
    const user = this.users.get(info.username);
    if (user === undefined) throw new EtcdError("UserNotFound");
    if (!user.roles.includes(ROOT_ROLE)) throw new EtcdError("PermissionDenied");
  }

  private isOpPermitted(info: AuthInfo | undefined, key: Buffer, rangeEnd: Buffer, type: number): void {
    if (!this.enabledFlag) return;
    if (info === undefined || info.revision === 0) throw new EtcdError("UserEmpty");
    if (info.revision < this.rev) throw new EtcdError("AuthOldRevision");
    const user = this.users.get(info.username);
    if (user === undefined) throw new EtcdError("PermissionDenied");
    if (user.roles.includes(ROOT_ROLE)) return;
    const perms = this.permCache.get(info.username);
    if (perms === undefined) throw new EtcdError("PermissionDenied");
    const union = type === PermissionType.READ ? perms.read : perms.write;
    const ok = rangeEnd.length === 0 ? union.containsKey(key) : union.covers(intervalOf(key, rangeEnd));
    if (!ok) throw new EtcdError("PermissionDenied");
  }

  // ---- changes (apply path) -------------------------------------------------------------------

  authEnable(): AuthRow[] {
    if (this.enabledFlag) return [];
    const root = this.users.get(ROOT_USER);
    if (root === undefined) throw new EtcdError("RootUserNotExist");
    if (!root.roles.includes(ROOT_ROLE)) throw new EtcdError("RootRoleNotExist");
    this.enabledFlag = true;
    // etcd 3.4 does not bump the revision on enable (only on disable).
    return [{ key: ENABLED_KEY, value: Buffer.from([1]) }];
  }

  authDisable(): AuthRow[] {
    if (!this.enabledFlag) return [];
    this.enabledFlag = false;
    return [{ key: ENABLED_KEY, value: Buffer.from([0]) }, this.commitRevision()];
  }

  /** `hashedPassword` was computed by the proposer (empty for a no-password user). */
  userAdd(name: string, hashedPassword: Buffer, noPassword: boolean): AuthRow[] {
    if (name.length === 0) throw new EtcdError("UserEmpty");
    if (this.users.has(name)) throw new EtcdError("UserAlreadyExist");
    const user: UserRecord = {
      name,
      password: noPassword ? Buffer.alloc(0) : hashedPassword,
      roles: [],
      noPassword,
    };
    return this.changed([this.putUser(user)]);
  }

  userDelete(name: string): AuthRow[] {
    if (this.enabledFlag && name === ROOT_USER) throw new EtcdError("InvalidAuthMgmt");
    if (!this.users.has(name)) throw new EtcdError("UserNotFound");
    this.users.delete(name);
    return this.changed([{ key: userKey(name), value: undefined }]);
  }

  userChangePassword(name: string, hashedPassword: Buffer): AuthRow[] {
    const user = this.users.get(name);
    if (user === undefined) throw new EtcdError("UserNotFound");
    return this.changed([this.putUser({ ...user, password: hashedPassword })]);
  }

  userGrantRole(name: string, role: string): AuthRow[] {
    const user = this.users.get(name);
    if (user === undefined) throw new EtcdError("UserNotFound");
    if (role !== ROOT_ROLE && !this.roles.has(role)) throw new EtcdError("RoleNotFound");
    if (user.roles.includes(role)) return [];
    return this.changed([this.putUser({ ...user, roles: [...user.roles, role].sort() })]);
  }

  userRevokeRole(name: string, role: string): AuthRow[] {
    if (this.enabledFlag && name === ROOT_USER && role === ROOT_ROLE) throw new EtcdError("InvalidAuthMgmt");
    const user = this.users.get(name);
    if (user === undefined) throw new EtcdError("UserNotFound");
    if (!user.roles.includes(role)) throw new EtcdError("RoleNotGranted");
    return this.changed([this.putUser({ ...user, roles: user.roles.filter((r) => r !== role) })]);
  }

  roleAdd(name: string): AuthRow[] {
    if (name.length === 0) throw new EtcdError("RoleEmpty");
    if (this.roles.has(name)) throw new EtcdError("RoleAlreadyExist");
    return this.changed([this.putRole({ name, keyPermission: [] })]);
  }

  roleDelete(name: string): AuthRow[] {
    if (this.enabledFlag && name === ROOT_ROLE) throw new EtcdError("InvalidAuthMgmt");
    if (!this.roles.has(name)) throw new EtcdError("RoleNotFound");
    this.roles.delete(name);
    const rows: AuthRow[] = [{ key: roleKey(name), value: undefined }];
    for (const user of [...this.users.values()]) {
      if (user.roles.includes(name))
        rows.push(this.putUser({ ...user, roles: user.roles.filter((r) => r !== name) }));
    }
    return this.changed(rows);
  }

  roleGrantPermission(name: string, perm: Permission): AuthRow[] {
    const role = this.roles.get(name);
    if (role === undefined) throw new EtcdError("RoleNotFound");
    const perms = role.keyPermission.map((p) => ({ ...p }));
    const same = perms.find((p) => p.key.equals(perm.key) && p.rangeEnd.equals(perm.rangeEnd));
    if (same !== undefined) same.permType = perm.permType;
    else
      perms.push({
        permType: perm.permType,
        key: Buffer.from(perm.key),
        rangeEnd: Buffer.from(perm.rangeEnd),
      });
    perms.sort((a, b) => Buffer.compare(a.key, b.key));
    return this.changed([this.putRole({ name, keyPermission: perms })]);
  }

  roleRevokePermission(name: string, key: Buffer, rangeEnd: Buffer): AuthRow[] {
    const role = this.roles.get(name);
    if (role === undefined) throw new EtcdError("RoleNotFound");
    const kept = role.keyPermission.filter((p) => !p.key.equals(key) || !p.rangeEnd.equals(rangeEnd));
    if (kept.length === role.keyPermission.length) throw new EtcdError("PermissionNotGranted");
    return this.changed([this.putRole({ name, keyPermission: kept })]);
  }

  /** Rebuilds the store from its persisted rows. */
  restore(rows: Iterable<{ key: Buffer; value: Buffer }>): void {
    this.enabledFlag = false;
    this.rev = 0;
    this.users.clear();
    this.roles.clear();
    for (const { key, value } of rows) {
      if (key.equals(ENABLED_KEY)) this.enabledFlag = value.length === 1 && value[0] === 1;
      else if (key.equals(REVISION_KEY)) this.rev = Number(value.readBigUInt64BE(0));
      else if (key.toString("latin1").startsWith(AUTH_USER_PREFIX)) {
        const u = authpb.User.decode(value);
        this.users.set(u.name.toString(), {
          name: u.name.toString(),
          password: Buffer.from(u.password),
          roles: [...u.roles].sort(),
          noPassword: u.options?.noPassword ?? false,
        });
      } else if (key.toString("latin1").startsWith(AUTH_ROLE_PREFIX)) {
        const r = authpb.Role.decode(value);
        this.roles.set(r.name.toString(), {
          name: r.name.toString(),
          keyPermission: r.keyPermission.map((p) => ({
            permType: p.permType,
            key: Buffer.from(p.key),
            rangeEnd: Buffer.from(p.rangeEnd),
          })),
        });
      }
    }
    this.refreshPermCache();
  }

  private putUser(user: UserRecord): AuthRow {
    this.users.set(user.name, user);
    const value = authpb.User.encode({
      name: Buffer.from(user.name),
      password: user.password,
      roles: user.roles,
      options: { noPassword: user.noPassword },
    }).finish();
    return { key: userKey(user.name), value: Buffer.from(value) };
  }

  private putRole(role: RoleRecord): AuthRow {
    this.roles.set(role.name, role);
    const value = authpb.Role.encode({
      name: Buffer.from(role.name),
      keyPermission: role.keyPermission,
    }).finish();
    return { key: roleKey(role.name), value: Buffer.from(value) };
  }

  private changed(rows: AuthRow[]): AuthRow[] {
    rows.push(this.commitRevision());
    this.refreshPermCache();
    return rows;
  }

  private commitRevision(): AuthRow {
    this.rev += 1;
    const value = Buffer.alloc(8);
    value.writeBigUInt64BE(BigInt(this.rev));
    return { key: REVISION_KEY, value };
  }

  private refreshPermCache(): void {
    const cache = new Map<string, UserPermissions>();
    for (const user of this.users.values()) {
      const read: KeyInterval[] = [];
      const write: KeyInterval[] = [];
      for (const roleName of user.roles) {
        const role = this.roles.get(roleName);
        if (role === undefined) continue;
        for (const p of role.keyPermission) {
          const interval = intervalOf(p.key, p.rangeEnd);
          if (p.permType === PermissionType.READ || p.permType === PermissionType.READWRITE)
            read.push(interval);
          if (p.permType === PermissionType.WRITE || p.permType === PermissionType.READWRITE)
            write.push(interval);
        }
      }
      cache.set(user.name, { read: new RangeUnion(read), write: new RangeUnion(write) });
    }
    this.permCache = cache;
  }
}

function userKey(name: string): Buffer {
  return Buffer.from(`${AUTH_USER_PREFIX}${name}`);
}

function roleKey(name: string): Buffer {
  return Buffer.from(`${AUTH_ROLE_PREFIX}${name}`);
}
