import assert from "node:assert/strict";
import { test } from "node:test";
import { corruptionEvidence } from "./periodic-corrupt-check.js";

const leader = { hash: 100, revision: 50, compactRevision: 10 };

test("intact: same hashes at the same compaction, peers at or behind the leader", () => {
  assert.deepEqual(
    corruptionEvidence(leader, leader, [
      { id: 2n, hash: 100, revision: 50, compactRevision: 10 },
      { id: 3n, hash: 100, revision: 48, compactRevision: 10 },
    ]),
    [],
  );
});

test("a peer's hash differs at the leader's compaction revision", () => {
  const evidence = corruptionEvidence(leader, leader, [
    { id: 2n, hash: 101, revision: 50, compactRevision: 10 },
  ]);
  assert.equal(evidence.length, 1);
  assert.match(evidence[0]!, /member 2 has hash 101 at revision 50/);
});

test("a peer compacted elsewhere is not compared by hash (etcd skips it)", () => {
  assert.deepEqual(
    corruptionEvidence(leader, leader, [{ id: 2n, hash: 7, revision: 50, compactRevision: 9 }]),
    [],
  );
});

test("a peer ahead of the leader, in revision or compaction, is evidence", () => {
  const ahead = corruptionEvidence(leader, leader, [
    { id: 2n, hash: 100, revision: 51, compactRevision: 11 },
  ]);
  assert.equal(ahead.length, 2);
  assert.match(ahead[0]!, /revision 51, past the leader's 50/);
  assert.match(ahead[1]!, /compacted at 11, past the leader's 10/);
});

test("the leader's own hash changing at the same revision is evidence; a new revision is not", () => {
  assert.equal(corruptionEvidence(leader, { ...leader, hash: 5 }, []).length, 1);
  assert.deepEqual(corruptionEvidence(leader, { ...leader, hash: 5, revision: 51 }, []), []);
});

test("peers that did not answer are skipped", () => {
  assert.deepEqual(corruptionEvidence(leader, leader, [{ id: 2n, error: "unavailable" }]), []);
});
