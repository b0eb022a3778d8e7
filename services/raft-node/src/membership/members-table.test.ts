import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isEtcdError } from "@etcd-ts/api";
import { memberCodec } from "./member-codec.js";
import {
  learnerInSync,
  type MemberInfo,
  MembersTable,
  memberRowKey,
  removedRowKey,
} from "./members-table.js";

const m = (id: bigint, url: string, isLearner = false): MemberInfo => ({
  id,
  name: "",
  peerUrls: [url],
  clientUrls: [],
  isLearner,
});

const kind = (fn: () => void) => {
  try {
    fn();
  } catch (err) {
    if (isEtcdError(err)) return err.kind;
    throw err;
  }
  return undefined;
};

describe("MembersTable", () => {
  it("adds, publishes attributes, promotes and removes, returning the rows to persist", () => {
    const table = new MembersTable(memberCodec);
    assert.equal(table.add(m(2n, "http://b:2380")).length, 1);
    table.add(m(1n, "http://a:2380"));
    assert.deepEqual(
      table.list().map((x) => x.id),
      [1n, 2n],
      "listed by ID",
    );
    const rows = table.setAttributes(1n, "n1", ["http://a:2379"]);
    assert.deepEqual(rows[0]!.key, memberRowKey(1n));
    assert.equal(memberCodec.decode(rows[0]!.value!).name, "n1");
    table.add(m(3n, "http://c:2380", true));
    assert.equal(table.learners().length, 1);
    table.add({ ...m(3n, "http://c:2380"), isLearner: false });
    assert.equal(table.get(3n)?.isLearner, false, "AddNode on a learner promotes it");
    const removed = table.remove(2n);
    assert.deepEqual(
      removed.map((r) => r.key.toString()),
      [removedRowKey(2n).toString(), memberRowKey(2n).toString()],
    );
    assert.equal(removed[1]!.value, undefined);
    assert.equal(table.isRemoved(2n), true);
    assert.deepEqual(table.add(m(2n, "http://b:2380")), [], "a removed ID never comes back");
  });

  it("re-adding a known member (bootstrap replay) changes nothing", () => {
    const table = new MembersTable(memberCodec);
    table.add(m(1n, "http://a:2380"));
    table.setAttributes(1n, "n1", ["http://a:2379"]);
    assert.deepEqual(table.add(m(1n, "")), []);
    assert.equal(table.get(1n)?.name, "n1");
  });

  it("checks requests with etcd's errors", () => {
    const table = new MembersTable(memberCodec);
    table.add(m(1n, "http://a:2380"));
    table.add(m(5n, "http://l:2380", true));
    assert.equal(
      kind(() => table.checkAdd(m(1n, "http://z:2380"), 1)),
      "MemberExist",
    );
    assert.equal(
      kind(() => table.checkAdd(m(2n, "http://a:2380"), 1)),
      "PeerURLExist",
    );
    assert.equal(
      kind(() => table.checkAdd(m(2n, "http://b:2380", true), 1)),
      "TooManyLearners",
    );
    assert.equal(
      kind(() => table.checkAdd(m(2n, "http://b:2380"), 1)),
      undefined,
    );
    assert.equal(
      kind(() => table.checkRemove(9n)),
      "MemberNotFound",
    );
    assert.equal(
      kind(() => table.checkPromote(1n)),
      "MemberNotLearner",
    );
    assert.equal(
      kind(() => table.checkPromote(9n)),
      "MemberNotFound",
    );
    assert.equal(
      kind(() => table.checkUpdate(1n, ["http://l:2380"])),
      "PeerURLExist",
    );
    assert.equal(
      kind(() => table.checkUpdate(1n, ["http://a:2380"])),
      undefined,
    );
  });

  it("restores from its persisted rows", () => {
    const table = new MembersTable(memberCodec);
    const rows = new Map<string, { key: Buffer; value: Buffer }>();
    const keep = (changes: { key: Buffer; value: Buffer | undefined }[]) => {
      for (const r of changes) {
        if (r.value === undefined) rows.delete(r.key.toString());
        else rows.set(r.key.toString(), { key: r.key, value: r.value });
      }
    };
    keep(table.add(m(1n, "http://a:2380")));
    keep(table.add(m(2n, "http://b:2380")));
    keep(table.setAttributes(2n, "n2", ["http://b:2379"]));
    keep(table.remove(1n));
    const again = new MembersTable(memberCodec);
    again.restore(rows.values());
    assert.deepEqual(again.list(), table.list());
    assert.equal(again.isRemoved(1n), true);
  });

  it("applies etcd's strict reconfiguration check to started (published) voters", () => {
    const table = new MembersTable(memberCodec);
    table.add(m(1n, "http://a:2380"));
    table.setAttributes(1n, "n1", []);
    assert.equal(
      kind(() => table.checkEnoughStartedToAdd()),
      undefined,
      "a second member for a one-member cluster",
    );
    table.add(m(2n, "http://b:2380"));
    assert.equal(
      kind(() => table.checkEnoughStartedToAdd()),
      "MemberNotEnoughStarted",
      "1 of 3 started",
    );
    table.setAttributes(2n, "n2", []);
    assert.equal(
      kind(() => table.checkEnoughStartedToAdd()),
      undefined,
    );
    table.add(m(3n, "http://c:2380"));
    assert.equal(
      kind(() => table.checkEnoughStartedToRemove(1n)),
      "MemberNotEnoughStarted",
      "n2 alone of {n2, unstarted 3}",
    );
    assert.equal(
      kind(() => table.checkEnoughStartedToRemove(3n)),
      undefined,
    );
  });

  it("judges a learner in sync at 90% of the leader's log", () => {
    assert.equal(learnerInSync(90, 100), true);
    assert.equal(learnerInSync(89, 100), false);
  });
});
