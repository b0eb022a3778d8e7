// etcd's WAL as its encoder writes it (wal/encoder.go): length word, walpb.Record, padding; the
// CRC chained over records. The real files are read in tests/integration (snapshot-files.test).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WireWriter } from "@etcd-ts/api";
import { crc32c } from "@node-rs/crc32";
import { EtcdWalError, notRestoreShaped, summarizeEtcdWalSegment } from "./etcd-data-dir.js";

const CRC_RECORD = 4;
const ENTRY_RECORD = 2;
const STATE_RECORD = 3;

/** One segment: a crc record carrying `startCrc`, then `records`, then zeros (preallocation). */
function segment(
  records: { type: number; data: Uint8Array }[],
  startCrc = 0,
): { bytes: Buffer; crc: number } {
  const parts: Buffer[] = [];
  let crc = startCrc;
  const add = (type: number, data: Uint8Array, recordCrc: number) => {
    const rec = new WireWriter().varintField(1, type).varintField(2, recordCrc).bytesField(3, data).finish();
    const padding = (8 - (rec.length % 8)) % 8;
    const word = Buffer.alloc(8);
    word.writeBigUInt64LE(BigInt(rec.length) | (padding > 0 ? (0x80n | BigInt(padding)) << 56n : 0n));
    parts.push(word, rec, Buffer.alloc(padding));
  };
  add(CRC_RECORD, new Uint8Array(0), startCrc);
  for (const r of records) {
    crc = crc32c(r.data, crc);
    add(r.type, r.data, crc);
  }
  parts.push(Buffer.alloc(64));
  return { bytes: Buffer.concat(parts), crc };
}

const entry = (index: number, type: number) => ({
  type: ENTRY_RECORD,
  data: new WireWriter()
    .varintField(1, type)
    .varintField(2, 1)
    .varintField(3, index)
    .bytesField(4, "d")
    .finish(),
});
const state = { type: STATE_RECORD, data: new WireWriter().varintField(1, 1).varintField(3, 1).finish() };

describe("etcd's WAL, read to decide an import", () => {
  it("counts a restore's bootstrap (ConfChange entries only) across segments, the CRC chained", () => {
    const first = segment([entry(1, 1), entry(2, 1), state]);
    const second = segment([entry(3, 1)], first.crc);
    const a = summarizeEtcdWalSegment(first.bytes, "0.wal");
    const b = summarizeEtcdWalSegment(second.bytes, "1.wal", a.crc);
    assert.deepEqual(
      {
        confChanges: a.confChanges + b.confChanges,
        normalEntries: a.normalEntries + b.normalEntries,
        lastIndex: b.lastIndex,
      },
      { confChanges: 3, normalEntries: 0, lastIndex: 3 },
    );
    assert.equal(notRestoreShaped(b), undefined);
  });

  it("sees a member that ran: normal entries refuse the import, as does a WAL without a bootstrap", () => {
    const s = summarizeEtcdWalSegment(segment([entry(1, 1), entry(2, 0), entry(3, 0)]).bytes, "0.wal");
    assert.match(notRestoreShaped(s) ?? "", /2 entries beyond the cluster's bootstrap/);
    assert.match(
      notRestoreShaped({ confChanges: 0, normalEntries: 0, lastIndex: 0 }) ?? "",
      /no cluster bootstrap/,
    );
  });

  it("refuses a flipped byte, a broken chain and a record past the end", () => {
    const { bytes, crc } = segment([entry(1, 1), entry(2, 1)]);
    const flipped = Buffer.from(bytes);
    flipped[bytes.indexOf(Buffer.from("d"), 40)] ^= 1;
    assert.throws(() => summarizeEtcdWalSegment(flipped, "0.wal"), EtcdWalError);
    assert.throws(
      () => summarizeEtcdWalSegment(segment([entry(3, 1)], crc + 1).bytes, "1.wal", crc),
      /CRC chain broken/,
    );
    const cut = bytes.subarray(0, 30);
    assert.throws(() => summarizeEtcdWalSegment(cut, "0.wal"), /runs past the end/);
  });
});
