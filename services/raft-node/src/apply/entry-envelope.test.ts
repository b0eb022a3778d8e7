import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeEnvelope,
  ENVELOPE_HEADER_BYTES,
  ENVELOPE_TRACE_BYTES,
  EntryKind,
  EnvelopeFormatError,
  encodeEnvelope,
  envelopeProposerAndSeq,
  envelopeTrace,
} from "./entry-envelope.js";

describe("entry envelope", () => {
  it("round-trips kind, proposer, sequence and payload, with 53-bit IDs", () => {
    const payload = Buffer.from([10, 3, 102, 111, 111]);
    const proposer = 2n ** 64n - 1n;
    const seq = 2 ** 40 + 7;
    const bytes = encodeEnvelope(EntryKind.Txn, proposer, seq, payload);
    assert.equal(bytes.length, ENVELOPE_HEADER_BYTES + payload.length);
    const env = decodeEnvelope(bytes);
    assert.equal(env.kind, EntryKind.Txn);
    assert.equal(env.proposer, proposer);
    assert.equal(env.seq, seq);
    assert.deepEqual(Buffer.from(env.payload), payload);
  });

  it("has a fixed big-endian layout", () => {
    const bytes = encodeEnvelope(EntryKind.Put, 0x0102030405n, 9, new Uint8Array([0xaa]));
    assert.deepEqual([...bytes], [1, 1, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0, 0, 0, 0, 0, 0, 0, 9, 0xaa]);
  });

  it("reads the proposer and sequence in place, from an entry inside a larger buffer", () => {
    const entry = encodeEnvelope(EntryKind.Put, 2n ** 63n + 5n, 2 ** 40 + 7, new Uint8Array([1]));
    const inside = Buffer.concat([Buffer.from([0xff, 0xff, 0xff]), entry]).subarray(3);
    assert.deepEqual(envelopeProposerAndSeq(inside), [2n ** 63n + 5n, 2 ** 40 + 7]);
  });

  it("decodes a view of the entry, not a copy", () => {
    const bytes = encodeEnvelope(EntryKind.Put, 1n, 1, new Uint8Array([1, 2, 3]));
    const env = decodeEnvelope(bytes);
    assert.equal(env.payload.buffer, bytes.buffer);
  });

  it("refuses truncated, unknown-version and unknown-kind entries", () => {
    assert.throws(() => decodeEnvelope(new Uint8Array(5)), EnvelopeFormatError);
    const bad = encodeEnvelope(EntryKind.Put, 1n, 1, new Uint8Array(0));
    bad[0] = 3;
    assert.throws(() => decodeEnvelope(bad), /version/);
    const badKind = encodeEnvelope(EntryKind.Put, 1n, 1, new Uint8Array(0));
    badKind[1] = 200;
    assert.throws(() => decodeEnvelope(badKind), /kind/);
  });

  it("carries the caller's name and auth revision when there is one (version 2)", () => {
    const payload = new Uint8Array([7, 8]);
    const env = decodeEnvelope(
      encodeEnvelope(EntryKind.Put, 5n, 6, payload, { username: "älice", revision: 2 ** 40 + 3 }),
    );
    assert.deepEqual(env.caller, { username: "älice", revision: 2 ** 40 + 3 });
    assert.deepEqual([...env.payload], [7, 8]);
    assert.equal(env.seq, 6);
    assert.equal(env.proposer, 5n);
    assert.equal(decodeEnvelope(encodeEnvelope(EntryKind.Put, 5n, 6, payload)).caller, undefined);
    const cut = encodeEnvelope(EntryKind.Put, 5n, 6, new Uint8Array(0), { username: "bob", revision: 1 });
    assert.throws(() => decodeEnvelope(cut.subarray(0, cut.length - 1)), EnvelopeFormatError);
  });

  it("carries a sampled request's span context only when given one, with or without a caller", () => {
    const trace = new Uint8Array(ENVELOPE_TRACE_BYTES).map((_, i) => i + 1);
    const payload = new Uint8Array([7, 8]);
    const plain = encodeEnvelope(EntryKind.Put, 5n, 6, payload);
    const traced = encodeEnvelope(EntryKind.Put, 5n, 6, payload, undefined, trace);
    assert.equal(traced.length, plain.length + ENVELOPE_TRACE_BYTES);
    assert.equal(traced[0], 0x81);
    assert.equal(envelopeTrace(plain), undefined);
    assert.equal(decodeEnvelope(plain).trace, undefined);
    assert.deepEqual([...envelopeTrace(traced)!], [...trace]);
    const env = decodeEnvelope(traced);
    assert.deepEqual([...env.trace!], [...trace]);
    assert.deepEqual([...env.payload], [7, 8]);
    const withCaller = decodeEnvelope(
      encodeEnvelope(EntryKind.Txn, 5n, 6, payload, { username: "bob", revision: 9 }, trace),
    );
    assert.deepEqual(withCaller.caller, { username: "bob", revision: 9 });
    assert.deepEqual([...withCaller.trace!], [...trace]);
    assert.deepEqual([...withCaller.payload], [7, 8]);
    assert.equal(withCaller.seq, 6);
    assert.throws(() => decodeEnvelope(traced.subarray(0, ENVELOPE_HEADER_BYTES + 3)), EnvelopeFormatError);
    assert.throws(
      () => encodeEnvelope(EntryKind.Put, 1n, 1, payload, undefined, new Uint8Array(3)),
      RangeError,
    );
  });

  it("refuses IDs it cannot represent exactly", () => {
    assert.throws(() => encodeEnvelope(EntryKind.Put, 2n ** 64n, 1, new Uint8Array(0)), RangeError);
    assert.throws(() => encodeEnvelope(EntryKind.Put, -1n, 1, new Uint8Array(0)), RangeError);
    assert.throws(() => encodeEnvelope(EntryKind.Put, 1n, -1, new Uint8Array(0)), RangeError);
  });
});
