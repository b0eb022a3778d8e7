import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BboltSizeModel } from "./bbolt-size-model.js";
import {
  type CheckpointState,
  checkpointState,
  decodeCheckpoint,
  encodeCheckpoint,
  sameState,
} from "./index-checkpoint.js";
import type { KeyIndex } from "./key-index.js";
import { revisionKey } from "./revision.js";
import { TreeIndex } from "./tree-index.js";

const STATE: CheckpointState = {
  lastRow: 41,
  appliedIndex: 57,
  appliedTerm: 3,
  finishedCompact: 12,
  scheduledCompact: 12,
  modelSize: 81920,
};

/** Every field of every history, for deep comparison. */
function histories(keys: Iterable<KeyIndex>): unknown[] {
  return [...keys].map((ki) => ({
    key: ki.key,
    lease: ki.lease,
    created: ki.created,
    version: ki.version,
    head: [ki.headMain, ki.headSub],
    earlier: ki.earlier,
    past: ki.past?.map((g) => ({ created: g.created, version: g.version, revs: g.revs })) ?? null,
  }));
}

/** An index with every kind of history: single puts, rewrites, tombstones, lone tombstones, leases. */
function sampleIndex(): TreeIndex {
  const index = new TreeIndex();
  let rev = 1;
  for (let i = 0; i < 50; i++) index.put(`key-${i}`, rev++, 0, 0n);
  // A key with bytes above 0x7f (held as latin1) and an empty-ish one.
  index.put("\u00ff\u0080\u0000z", rev++, 0, 0n);
  index.put("\u0000", rev++, 1, 0n);
  index.put("key-3", rev++, 0, 0n);
  index.put("key-3", rev++, 2, 2n ** 62n + 5n);
  index.put("leased", rev++, 0, -7n);
  index.tombstone("key-7", rev++, 0);
  index.put("key-7", rev++, 0, 0n);
  index.put("key-7", rev++, 0, 9n);
  index.tombstone("key-9", rev++, 0);
  index.replay("lone", rev++, 0, true, 0, 0, 0n);
  index.replay("restored", rev++, 0, false, 3, 4, 0n);
  return index;
}

/** A size model holding `count` revisions, reopened (the layout a checkpoint stores). */
function sampleModel(count: number, highWaterBytes: number): BboltSizeModel {
  const elements = new Float64Array(count * 3);
  for (let i = 0; i < count; i++)
    elements.set([i + 1, (i % 3) * 2 + (i % 11 === 0 ? 1 : 0), 100 + (i % 400)], i * 3);
  const model = new BboltSizeModel();
  model.reopenFromElements(elements, highWaterBytes);
  return model;
}

function image(index: TreeIndex, model: BboltSizeModel, state = STATE): Buffer {
  return encodeCheckpoint(state, () => index.values(), index.size, {
    shape: model.shape(),
    leaves: () => model.leaves(),
  });
}

describe("index checkpoint image", () => {
  it("decodes to the same histories, in key order, and the same size model", () => {
    const index = sampleIndex();
    const model = sampleModel(5000, 64 * 1024 * 1024);
    const decoded = decodeCheckpoint(image(index, model));
    assert.ok(typeof decoded !== "string", String(decoded));
    assert.ok(sameState(decoded.state, STATE));
    const loaded = new TreeIndex();
    loaded.load(decoded.keys);
    assert.equal(decoded.keys.histories.size, 4, "only keys with history are objects");
    assert.deepEqual(histories(loaded.values()), histories(index.values()));
    assert.deepEqual(
      loaded.revisions({ start: "", end: "" }, 1000, 0),
      index.revisions({ start: "", end: "" }, 1000, 0),
    );
    const restored = BboltSizeModel.fromShape(decoded.modelShape, decoded.modelElements);
    assert.deepEqual(restored.shape(), model.shape());
    assert.equal(restored.size, model.size);
    assert.equal(restored.sizeInUse, model.sizeInUse);
  });

  it("restores a size model that then models writes and compactions exactly as the original", () => {
    const original = sampleModel(20_000, 0);
    const decoded = decodeCheckpoint(image(new TreeIndex(), original));
    assert.ok(typeof decoded !== "string", String(decoded));
    const restored = BboltSizeModel.fromShape(decoded.modelShape, decoded.modelElements);
    let rev = 20_001;
    for (let round = 0; round < 30; round++) {
      for (const model of [original, restored]) {
        for (let i = 0; i < 200; i++) model.put(revisionKey(rev + i, 0), 256);
        // A compaction slice: revisions from the start go.
        for (let i = 0; i < 150; i++) model.delete(revisionKey(round * 150 + i + 1, 0));
        model.commit();
      }
      rev += 200;
      assert.equal(restored.size, original.size, `size after round ${round}`);
      assert.equal(restored.sizeInUse, original.sizeInUse, `size in use after round ${round}`);
    }
    assert.deepEqual(restored.shape(), original.shape());
  });

  it("reopens from packed elements as from revision keys", () => {
    const keys: { key: Buffer; valueLength: number }[] = [];
    for (let i = 0; i < 3000; i++)
      keys.push({ key: revisionKey(i + 1, i % 2, i % 7 === 0), valueLength: i % 500 });
    const fromKeys = new BboltSizeModel();
    fromKeys.reopen(keys, 10 * 1024 * 1024);
    const elements = new Float64Array(keys.length * 3);
    for (let i = 0; i < keys.length; i++)
      elements.set([i + 1, (i % 2) * 2 + (i % 7 === 0 ? 1 : 0), keys[i]!.valueLength], i * 3);
    const fromElements = new BboltSizeModel();
    fromElements.reopenFromElements(elements, 10 * 1024 * 1024);
    assert.deepEqual(fromElements.shape(), fromKeys.shape());
    assert.deepEqual([...fromElements.leaves()].flat(), [...elements]);
  });

  it("rejects a damaged, torn or foreign file", () => {
    const good = image(sampleIndex(), sampleModel(100, 0));
    const flipped = Buffer.from(good);
    flipped[good.length >> 1]! ^= 0x10;
    assert.match(String(decodeCheckpoint(flipped)), /checksum/);
    assert.match(String(decodeCheckpoint(good.subarray(0, good.length - 8))), /checksum/);
    assert.match(String(decodeCheckpoint(good.subarray(0, 20))), /not an index checkpoint/);
    assert.match(String(decodeCheckpoint(Buffer.from("etcd-ts was here"))), /not an index checkpoint/);
    assert.equal(typeof checkpointState(good), "object");
  });

  it("compares every field of the state", () => {
    for (const field of Object.keys(STATE) as (keyof CheckpointState)[]) {
      assert.equal(sameState(STATE, { ...STATE, [field]: STATE[field] + 1 }), false, field);
    }
    assert.ok(sameState(STATE, { ...STATE }));
  });
});
