import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EtcdError } from "@etcd-ts/api";
import { type AuthRow, AuthStore, PermissionType } from "./auth-store.js";

const b = (s: string) => Buffer.from(s);
const etcdError = (name: string) => (err: unknown) => err instanceof EtcdError && err.kind === name;

/** Applies rows to a table the way the member's batch does, for restore round-trips. */
function persist(table: Map<string, Buffer>, rows: AuthRow[]): void {
  for (const r of rows) {
    if (r.value === undefined) table.delete(r.key.toString("latin1"));
    else table.set(r.key.toString("latin1"), r.value);
  }
}

function withRoot(): { store: AuthStore; table: Map<string, Buffer> } {
  const store = new AuthStore();
  const table = new Map<string, Buffer>();
  persist(table, store.userAdd("root", b("$2b$hash"), false));
  persist(table, store.roleAdd("root"));
  persist(table, store.userGrantRole("root", "root"));
  return { store, table };
}

describe("auth store rules", () => {
  it("enable needs the root user with the root role", () => {
    const store = new AuthStore();
    assert.throws(() => store.authEnable(), etcdError("RootUserNotExist"));
    store.userAdd("root", b("h"), false);
    assert.throws(() => store.authEnable(), etcdError("RootRoleNotExist"));
    store.userGrantRole("root", "root");
    store.authEnable();
    assert.equal(store.enabled, true);
    assert.deepEqual(store.authEnable(), [], "enabling again changes nothing");
  });

  it("root cannot be deleted or lose its role while auth is on, and can once it is off", () => {
    const { store } = withRoot();
    store.authEnable();
    assert.throws(() => store.userDelete("root"), etcdError("InvalidAuthMgmt"));
    assert.throws(() => store.userRevokeRole("root", "root"), etcdError("InvalidAuthMgmt"));
    assert.throws(() => store.roleDelete("root"), etcdError("InvalidAuthMgmt"));
    store.authDisable();
    store.userRevokeRole("root", "root");
    store.userDelete("root");
    assert.equal(store.hasUser("root"), false);
  });

  it("answers etcd's errors for unknown, duplicate and empty names", () => {
    const { store } = withRoot();
    assert.throws(() => store.userAdd("", b("h"), false), etcdError("UserEmpty"));
    assert.throws(() => store.userAdd("root", b("h"), false), etcdError("UserAlreadyExist"));
    assert.throws(() => store.userGet("nobody"), etcdError("UserNotFound"));
    assert.throws(() => store.userDelete("nobody"), etcdError("UserNotFound"));
    assert.throws(() => store.userGrantRole("root", "nope"), etcdError("RoleNotFound"));
    assert.throws(() => store.userRevokeRole("root", "nope"), etcdError("RoleNotGranted"));
    assert.throws(() => store.roleAdd(""), etcdError("RoleEmpty"));
    assert.throws(() => store.roleAdd("root"), etcdError("RoleAlreadyExist"));
    assert.throws(() => store.roleGet("nope"), etcdError("RoleNotFound"));
    store.roleAdd("r");
    assert.throws(() => store.roleRevokePermission("r", b("k"), b("")), etcdError("PermissionNotGranted"));
  });

  it("bumps the revision once per change, not for a no-op or a refused change (enable included, as etcd 3.4)", () => {
    const { store } = withRoot();
    assert.equal(store.revision, 3);
    store.userGrantRole("root", "root");
    assert.equal(store.revision, 3);
    assert.throws(() => store.userAdd("root", b("h"), false));
    assert.equal(store.revision, 3);
    store.authEnable();
    assert.equal(store.revision, 3);
    store.roleAdd("r");
    store.roleGrantPermission("r", { permType: PermissionType.READ, key: b("a"), rangeEnd: b("") });
    assert.equal(store.revision, 5);
    store.authDisable();
    assert.equal(store.revision, 6);
  });

  it("checks passwords only while enabled, and never for a no-password user", () => {
    const { store } = withRoot();
    assert.throws(() => store.passwordHashOf("root"), etcdError("AuthNotEnabled"));
    store.userAdd("svc", b(""), true);
    store.authEnable();
    assert.deepEqual(store.passwordHashOf("root"), b("$2b$hash"));
    assert.throws(() => store.passwordHashOf("svc"), etcdError("AuthFailed"));
    assert.throws(() => store.passwordHashOf("nobody"), etcdError("AuthFailed"));
  });

  it("deleting a role takes it from every user", () => {
    const { store } = withRoot();
    store.roleAdd("r");
    store.userAdd("u", b("h"), false);
    store.userGrantRole("u", "r");
    store.roleDelete("r");
    assert.deepEqual(store.userGet("u"), []);
  });

  it("restores exactly what its rows say (etcd's keys: authEnabled, authRevision, users, roles)", () => {
    const { store, table } = withRoot();
    persist(table, store.roleAdd("r"));
    persist(
      table,
      store.roleGrantPermission("r", {
        permType: PermissionType.READWRITE,
        key: b("/a/"),
        rangeEnd: b("/a0"),
      }),
    );
    persist(table, store.userAdd("u", b("hash-u"), false));
    persist(table, store.userGrantRole("u", "r"));
    persist(table, store.authEnable());
    assert.ok(table.has("authEnabled") && table.has("authRevision"));
    const copy = new AuthStore();
    copy.restore([...table].map(([k, v]) => ({ key: Buffer.from(k, "latin1"), value: v })));
    assert.equal(copy.enabled, true);
    assert.equal(copy.revision, store.revision);
    assert.deepEqual(copy.userList(), ["root", "u"]);
    assert.deepEqual(copy.roleGet("r"), store.roleGet("r"));
    assert.deepEqual(copy.passwordHashOf("u"), b("hash-u"));
    copy.isPutPermitted({ username: "u", revision: copy.revision }, b("/a/x"));
  });
});

describe("auth store permission checks", () => {
  function enabledWith(perms: { type: number; key: string; end: string }[]) {
    const { store } = withRoot();
    store.roleAdd("r");
    for (const p of perms)
      store.roleGrantPermission("r", { permType: p.type, key: b(p.key), rangeEnd: b(p.end) });
    store.userAdd("u", b("h"), false);
    store.userGrantRole("u", "r");
    store.authEnable();
    return { store, u: { username: "u", revision: store.revision } };
  }

  it("everything is allowed while auth is off", () => {
    const { store } = withRoot();
    store.isPutPermitted(undefined, b("x"));
    store.isAdminPermitted(undefined);
  });

  it("a single-key permission covers that key only", () => {
    const { store, u } = enabledWith([{ type: PermissionType.READWRITE, key: "k", end: "" }]);
    store.isPutPermitted(u, b("k"));
    store.isRangePermitted(u, b("k"), b(""));
    assert.throws(() => store.isPutPermitted(u, b("k2")), etcdError("PermissionDenied"));
    assert.throws(() => store.isRangePermitted(u, b("k"), b("l")), etcdError("PermissionDenied"));
  });

  it("a prefix permission covers keys and ranges inside the prefix, not beyond", () => {
    const { store, u } = enabledWith([{ type: PermissionType.READWRITE, key: "/a/", end: "/a0" }]);
    store.isPutPermitted(u, b("/a/x"));
    store.isRangePermitted(u, b("/a/"), b("/a0"));
    store.isDeleteRangePermitted(u, b("/a/b"), b("/a/c"));
    assert.throws(() => store.isRangePermitted(u, b("/a/"), b("/b")), etcdError("PermissionDenied"));
    assert.throws(() => store.isRangePermitted(u, b(""), b("\0")), etcdError("PermissionDenied"));
    assert.throws(() => store.isPutPermitted(u, b("/b/x")), etcdError("PermissionDenied"));
  });

  it("a from-key permission (range_end \\0) is unbounded above", () => {
    const { store, u } = enabledWith([{ type: PermissionType.READ, key: "m", end: "\0" }]);
    store.isRangePermitted(u, b("m"), b("\0"));
    store.isRangePermitted(u, b("zzz"), b(""));
    assert.throws(() => store.isRangePermitted(u, b("a"), b("\0")), etcdError("PermissionDenied"));
  });

  it("READ and WRITE are separate; READWRITE grants both", () => {
    const { store, u } = enabledWith([
      { type: PermissionType.READ, key: "r", end: "" },
      { type: PermissionType.WRITE, key: "w", end: "" },
    ]);
    store.isRangePermitted(u, b("r"), b(""));
    store.isPutPermitted(u, b("w"));
    assert.throws(() => store.isPutPermitted(u, b("r")), etcdError("PermissionDenied"));
    assert.throws(() => store.isRangePermitted(u, b("w"), b("")), etcdError("PermissionDenied"));
  });

  it("adjacent permissions together cover a range neither covers alone", () => {
    const { store, u } = enabledWith([
      { type: PermissionType.READ, key: "a", end: "c" },
      { type: PermissionType.READ, key: "c", end: "e" },
    ]);
    store.isRangePermitted(u, b("b"), b("d"));
    assert.throws(() => store.isRangePermitted(u, b("b"), b("f")), etcdError("PermissionDenied"));
  });

  it("no user, an old revision, a deleted user and a revoked role are each refused with etcd's error", () => {
    const { store, u } = enabledWith([{ type: PermissionType.READWRITE, key: "k", end: "" }]);
    assert.throws(() => store.isPutPermitted(undefined, b("k")), etcdError("UserEmpty"));
    assert.throws(() => store.isAdminPermitted(undefined), etcdError("UserEmpty"));
    assert.throws(() => store.isAdminPermitted(u), etcdError("PermissionDenied"));
    store.userRevokeRole("u", "r");
    assert.throws(() => store.isPutPermitted(u, b("k")), etcdError("AuthOldRevision"));
    const fresh = { username: "u", revision: store.revision };
    assert.throws(() => store.isPutPermitted(fresh, b("k")), etcdError("PermissionDenied"));
    store.userDelete("u");
    const later = { username: "u", revision: store.revision };
    assert.throws(() => store.isPutPermitted(later, b("k")), etcdError("PermissionDenied"));
    assert.throws(() => store.isAdminPermitted(later), etcdError("UserNotFound"));
    store.isAdminPermitted({ username: "root", revision: store.revision });
  });
});
