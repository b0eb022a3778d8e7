import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  decodeConfChange,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeMessage,
  decodeSnapshotMetadata,
  encodeConfChange,
  encodeConfState,
  encodedMessageSize,
  encodeEntry,
  encodeHardState,
  encodeMessage,
  encodeSnapshotMetadata,
} from "./codec.js";
import { RaftError } from "./errors.js";
import { ConfChangeType, type Entry, EntryType, type Message, MessageType } from "./types.js";

const bytes = (...b: number[]) => new Uint8Array(b);
const BIG = Number.MAX_SAFE_INTEGER;
/** The largest node ID: etcd member IDs use all 64 bits. */
const MAX_ID = 2n ** 64n - 1n;

const sampleEntry: Entry = {
  term: 7,
  index: 2 ** 40 + 3,
  type: EntryType.ConfChange,
  data: bytes(1, 2, 3, 0, 255),
};

const sampleMessage: Message = {
  type: MessageType.MsgSnap,
  to: 3n,
  from: MAX_ID,
  term: 12,
  logTerm: 11,
  index: 1000,
  entries: [sampleEntry, { term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array(0) }],
  commit: 999,
  snapshot: {
    metadata: { index: 900, term: 10, confState: { voters: [1n, 2n, 3n], learners: [4n] } },
    data: new Uint8Array(1000).fill(9),
  },
  reject: true,
  rejectHint: 77,
  context: bytes(0xca, 0xfe),
};

describe("codec round trips", () => {
  test("entry", () => {
    assert.deepEqual(decodeEntry(encodeEntry(sampleEntry)), sampleEntry);
    const empty: Entry = { term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) };
    assert.deepEqual(decodeEntry(encodeEntry(empty)), empty);
  });

  test("hard state, including the largest safe integers", () => {
    for (const h of [
      { term: 0, vote: 0n, commit: 0 },
      { term: BIG, vote: 2n ** 32n, commit: 2 ** 31 - 1 },
      { term: 127, vote: 128n, commit: 16384 },
      { term: 1, vote: MAX_ID, commit: 1 },
      { term: 1, vote: BigInt(BIG) + 1n, commit: 1 },
    ]) {
      assert.deepEqual(decodeHardState(encodeHardState(h)), h);
    }
  });

  test("conf change and conf state", () => {
    const c = { type: ConfChangeType.AddLearnerNode, nodeId: 0xdeadbeef12345678n, context: bytes(104, 105) };
    assert.deepEqual(decodeConfChange(encodeConfChange(c)), c);
    const cs = { voters: [1n, 5n, BigInt(BIG), MAX_ID], learners: [] };
    assert.deepEqual(decodeConfState(encodeConfState(cs)), cs);
  });

  test("snapshot metadata", () => {
    const m = { index: 5, term: 2, confState: { voters: [1n], learners: [2n, 3n] } };
    assert.deepEqual(decodeSnapshotMetadata(encodeSnapshotMetadata(m)), m);
  });

  test("message with every field set", () => {
    assert.deepEqual(decodeMessage(encodeMessage(sampleMessage)), sampleMessage);
  });

  test("message with optional fields absent decodes without them", () => {
    const m: Message = {
      type: MessageType.MsgHeartbeat,
      to: 1n,
      from: 2n,
      term: 3,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 4,
      reject: false,
      rejectHint: 0,
    };
    const d = decodeMessage(encodeMessage(m));
    assert.deepEqual(d, m);
    assert.equal("snapshot" in d, false);
    assert.equal("context" in d, false);
  });

  test("an empty context is kept distinct from no context", () => {
    const m: Message = { ...sampleMessage, snapshot: undefined, context: new Uint8Array(0) };
    delete m.snapshot;
    assert.deepEqual(decodeMessage(encodeMessage(m)).context, new Uint8Array(0));
  });

  test("varints are compact", () => {
    assert.equal(encodeHardState({ term: 1, vote: 2n, commit: 3 }).length, 3);
    assert.equal(encodeHardState({ term: 128, vote: 0n, commit: 0 }).length, 4);
  });
});

describe("codec rejects malformed input", () => {
  const isMalformed = (e: unknown) => e instanceof RaftError && /malformed/.test(e.message);

  test("every truncation of a message is an error", () => {
    const full = encodeMessage(sampleMessage);
    for (let n = 0; n < full.length; n++) {
      assert.throws(() => decodeMessage(full.subarray(0, n)), isMalformed, `truncated to ${n} bytes`);
    }
  });

  test("every truncation of an entry and a hard state is an error", () => {
    for (const [enc, dec] of [
      [encodeEntry(sampleEntry), decodeEntry],
      [encodeHardState({ term: 300, vote: 2n, commit: 70000 }), decodeHardState],
    ] as const) {
      for (let n = 0; n < enc.length; n++) assert.throws(() => dec(enc.subarray(0, n)), isMalformed);
    }
  });

  test("trailing bytes are an error", () => {
    const enc = encodeHardState({ term: 1, vote: 2n, commit: 3 });
    assert.throws(() => decodeHardState(bytes(...enc, 0)), isMalformed);
  });

  test("unknown tags are errors", () => {
    assert.throws(() => decodeEntry(bytes(1, 1, 2, 0)), /bad entry type/);
    assert.throws(() => decodeConfChange(bytes(3, 1, 0)), /bad conf change type/);
    assert.throws(() => decodeMessage(bytes(19, 0, 0, 0, 0, 0, 0, 0, 0, 0)), /bad message type/);
    assert.throws(() => decodeMessage(bytes(1, 0, 0, 0, 0, 0, 0, 0, 8, 0)), /unknown flags/);
  });

  test("integers beyond 2^53 and overlong varints are errors", () => {
    // 2^56 as a varint: eight continuation groups.
    assert.throws(
      () => decodeHardState(bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0)),
      isMalformed,
    );
    // 2^53 exactly.
    assert.throws(
      () => decodeHardState(bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0)),
      /too large/,
    );
    // A non-minimal encoding of 0 would let two encodings mean one value.
    assert.throws(() => decodeHardState(bytes(0x80, 0x00, 0, 0)), /non-minimal/);
  });

  test("node IDs of every bit length: the LEB128 bytes, size and value of a bigint reference", () => {
    // The reference: 7 bits at a time in bigints, as the codec wrote IDs before the 32-bit halves.
    const leb128 = (v: bigint) => {
      const out: number[] = [];
      while (v >= 0x80n) {
        out.push(Number(v & 0x7fn) | 0x80);
        v >>= 7n;
      }
      out.push(Number(v));
      return out;
    };
    const ids = [0n, 1n, MAX_ID, 0x8000_0000_0000_0000n, 0xfedc_ba98_7654_3210n];
    for (let k = 1n; k <= 64n; k++)
      ids.push(2n ** k - 1n, 2n ** (k - 1n), 2n ** (k - 1n) + (0x5a5a_5a5a_5a5an % 2n ** (k - 1n)));
    for (const vote of ids) {
      const enc = encodeHardState({ term: 1, vote, commit: 1 });
      assert.deepEqual([...enc], [1, ...leb128(vote), 1], `vote ${vote}`);
      assert.equal(decodeHardState(enc).vote, vote);
      const m: Message = {
        type: MessageType.MsgHeartbeat,
        to: vote,
        from: MAX_ID - vote,
        term: 1,
        logTerm: 0,
        index: 0,
        entries: [],
        commit: 0,
        reject: false,
        rejectHint: 0,
      };
      assert.equal(encodedMessageSize(m), encodeMessage(m).length, `message to ${vote}`);
      assert.deepEqual(decodeMessage(encodeMessage(m)), m);
    }
    // Bit 64 and above, an eleventh byte and a non-minimal ID are refused.
    assert.throws(() => decodeHardState(bytes(1, ...leb128(MAX_ID).slice(0, 9), 0x02, 1)), /beyond 64 bits/);
    // 2^64 exactly.
    assert.throws(() => decodeHardState(bytes(1, ...Array(9).fill(0x80), 0x02, 1)), /beyond 64 bits/);
    assert.throws(() => decodeHardState(bytes(1, ...Array(10).fill(0x80), 0x01, 1)), /too long/);
    assert.throws(() => decodeHardState(bytes(1, 0x81, 0x80, 0x00, 1)), /non-minimal/);
  });

  test("a length or count larger than the input is an error, without allocating it", () => {
    assert.throws(() => decodeEntry(bytes(1, 1, 0, 0xff, 0xff, 0xff, 0x7f)), /truncated bytes/);
    assert.throws(() => decodeConfState(bytes(0xff, 0xff, 0xff, 0x7f)), /count/);
  });

  test("encoding a value that is not a safe unsigned integer is refused", () => {
    assert.throws(() => encodeHardState({ term: -1, vote: 0n, commit: 0 }), RaftError);
    assert.throws(() => encodeHardState({ term: 1.5, vote: 0n, commit: 0 }), RaftError);
    assert.throws(() => encodeHardState({ term: 2 ** 53, vote: 0n, commit: 0 }), RaftError);
  });
});
