import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { AuthStore } from "../auth/mod.js";
import { type ApplyResult, MvccStore, putRequest, rangeRequest } from "../mvcc/mod.js";
import { applierChain } from "./applier-chain.js";

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
