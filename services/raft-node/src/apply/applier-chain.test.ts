import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { AuthStore, PermissionType } from "../auth/mod.js";
import { type ApplyResult, MvccStore, putRequest, rangeRequest } from "../mvcc/mod.js";
import { applierChain, type ChainEntry } from "./applier-chain.js";
import { EntryKind } from "./entry-envelope.js";

async function withStore(quotaBytes: number, body: (store: MvccStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "applier-chain-"));
  const store = await MvccStore.open(join(dir, "db"), { quotaBytes });
  try {
    await body(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const put = (key: string) => ({ put: putRequest({ key, value: "v" }) });
const status = (r: ApplyResult) => (r.status === "failed" ? r.error.message : r.status);

describe("applier chain (etcd's quotaApplierV3 -> backend)", () => {
  it("applies a write past the quota but answers its proposer 'database space exceeded'", () =>
    withStore(1, async (store) => {
      const chain = applierChain(
        () => store,
        () => new AuthStore(),
        () => [],
      );
      const [over, notCounted] = await chain.applyBatch([
        { index: 1, term: 1, request: put("a"), quota: put("a") },
        { index: 2, term: 1, request: put("b") },
      ]);
      assert.ok(over!.status === "failed" && isEtcdError(over!.error, "NoSpace"), status(over!));
      assert.equal(notCounted!.status, "applied");
      // Every member leaves the same state whatever its backend size: both puts are in.
      const kvs = (await store.range(rangeRequest({ key: "a", rangeEnd: "c" }))).kvs;
      assert.deepEqual(
        kvs.map((kv) => `${kv.key}@${kv.modRevision}`),
        ["a@2", "b@3"],
      );
      assert.equal(store.appliedIndex, 2);
    }));

  it("answers with the backend's result while the quota has room", () =>
    withStore(1 << 30, async (store) => {
      const [result] = await applierChain(
        () => store,
        () => new AuthStore(),
        () => [],
      ).applyBatch([{ index: 1, term: 1, request: put("a"), quota: put("a") }]);
      assert.equal(status(result!), "applied");
    }));
});

describe("applier chain: the auth link (etcd's authApplierV3)", () => {
  /** root, and alice who may write /a/ ; auth on. */
  function authStore(): AuthStore {
    const auth = new AuthStore();
    auth.userAdd("root", Buffer.from("h"), false);
    auth.userGrantRole("root", "root");
    auth.roleAdd("a");
    auth.roleGrantPermission("a", {
      permType: PermissionType.READWRITE,
      key: Buffer.from("/a/"),
      rangeEnd: Buffer.from("/a0"),
    });
    auth.userAdd("alice", Buffer.from("h"), false);
    auth.userGrantRole("alice", "a");
    auth.authEnable();
    return auth;
  }
  const putBy = (index: number, key: string, username: string, revision: number): ChainEntry => ({
    index,
    term: 1,
    request: put(key),
    kind: EntryKind.Put,
    caller: { username, revision },
  });

  it("refuses a write outside the caller's permissions and applies the rest of the batch", () =>
    withStore(1 << 30, async (store) => {
      const auth = authStore();
      const rev = auth.revision;
      const results = await applierChain(
        () => store,
        () => auth,
        () => [],
      ).applyBatch([
        putBy(1, "/a/1", "alice", rev),
        putBy(2, "/b/1", "alice", rev),
        { index: 3, term: 1, request: put("/a/2"), kind: EntryKind.Put },
        putBy(4, "/b/2", "root", rev),
      ]);
      assert.deepEqual(results.map(status), [
        "applied",
        "etcdserver: permission denied",
        "etcdserver: user name is empty",
        "applied",
      ]);
      const kvs = (await store.range(rangeRequest({ key: "/", rangeEnd: "0" }))).kvs;
      assert.deepEqual(
        kvs.map((kv) => kv.key.toString()),
        ["/a/1", "/b/2"],
      );
      assert.equal(store.appliedIndex, 4);
    }));

  it("sees an auth change made earlier in the same batch, as one-at-a-time apply does", () =>
    withStore(1 << 30, async (store) => {
      const auth = authStore();
      const rev = auth.revision;
      const revoke: ChainEntry = {
        index: 2,
        term: 1,
        kind: EntryKind.AuthUserRevokeRole,
        caller: { username: "root", revision: rev },
        request: { external: () => auth.userRevokeRole("alice", "a") && {} },
      };
      const results = await applierChain(
        () => store,
        () => auth,
        () => [],
      ).applyBatch([putBy(1, "/a/1", "alice", rev), revoke, putBy(3, "/a/2", "alice", rev)]);
      assert.deepEqual(results.map(status), [
        "applied",
        "applied",
        "etcdserver: revision of auth store is old",
      ]);
    }));

  it("lets only root make admin calls, and lets a user revoke only leases whose keys it may write", () =>
    withStore(1 << 30, async (store) => {
      const auth = authStore();
      const rev = auth.revision;
      const admin = (index: number, username: string): ChainEntry => ({
        index,
        term: 1,
        kind: EntryKind.AuthUserList,
        caller: { username, revision: rev },
        request: { external: () => ({ users: auth.userList() }) },
      });
      const revoke = (index: number, lease: bigint): ChainEntry => ({
        index,
        term: 1,
        kind: EntryKind.LeaseRevoke,
        subject: lease,
        caller: { username: "alice", revision: rev },
        request: { external: () => ({}) },
      });
      const keys = (id: bigint) => (id === 7n ? ["/a/x", "/b/x"] : ["/a/y"]);
      const results = await applierChain(
        () => store,
        () => auth,
        keys,
      ).applyBatch([admin(1, "alice"), admin(2, "root"), revoke(3, 7n), revoke(4, 8n)]);
      assert.deepEqual(results.map(status), [
        "etcdserver: permission denied",
        "applied",
        "etcdserver: permission denied",
        "applied",
      ]);
    }));
});
