// The HPACK decoder: RFC 7541 Appendix C (the dynamic table after each block), malformed blocks,
// hpack.js's encoder (another implementation) over many blocks, and real header blocks from
// node:http2's client (nghttp2's encoder) through a server connection.
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { describe, it } from "node:test";
import hpack from "hpack.js";
import { encodeInteger, encodeLiteralHeaderBlock } from "../http2-frames.js";
import { HpackDecoder, HpackError, HUFFMAN_CODE_LENGTHS, huffmanCodes } from "./hpack-decoder.js";
import { ServerConnection } from "./server-connection.js";
import { headersObject, type IncomingHeaders } from "./session.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function fields(d: HpackDecoder, count: number): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < count; i++) out.push([d.names[i]!, d.values[i]!]);
  return out;
}

/** A block, the fields it decodes to, the dynamic table after it (newest first) and its size. */
type Step = [block: string, want: [string, string][], table: [string, string][], size: number];

function series(tableBytes: number, steps: Step[]): void {
  const d = new HpackDecoder(tableBytes);
  for (const [i, [block, want, table, size]] of steps.entries()) {
    assert.deepEqual(fields(d, d.decode(hex(block))), want, `block ${i}`);
    assert.deepEqual(d.tableEntries(), table, `table after block ${i}`);
    assert.equal(d.tableSize, size, `table size after block ${i}`);
  }
}

const C3_C4_WANT: [string, string][][] = [
  [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ],
  [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ],
  [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ],
];
const C3_C4_TABLES: [string, string][][] = [
  [[":authority", "www.example.com"]],
  [
    ["cache-control", "no-cache"],
    [":authority", "www.example.com"],
  ],
  [
    ["custom-key", "custom-value"],
    ["cache-control", "no-cache"],
    [":authority", "www.example.com"],
  ],
];
const C3_C4_SIZES = [57, 110, 164];

const DATE_21 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE_22 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const C5_C6_WANT: [string, string][][] = [
  [
    [":status", "302"],
    ["cache-control", "private"],
    ["date", DATE_21],
    ["location", LOCATION],
  ],
  [
    [":status", "307"],
    ["cache-control", "private"],
    ["date", DATE_21],
    ["location", LOCATION],
  ],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", DATE_22],
    ["location", LOCATION],
    ["content-encoding", "gzip"],
    ["set-cookie", COOKIE],
  ],
];
const C5_C6_TABLES: [string, string][][] = [
  [
    ["location", LOCATION],
    ["date", DATE_21],
    ["cache-control", "private"],
    [":status", "302"],
  ],
  [
    [":status", "307"],
    ["location", LOCATION],
    ["date", DATE_21],
    ["cache-control", "private"],
  ],
  [
    ["set-cookie", COOKIE],
    ["content-encoding", "gzip"],
    ["date", DATE_22],
  ],
];
const C5_C6_SIZES = [222, 222, 215];

const steps = (blocks: string[], want: [string, string][][], tables: [string, string][][], sizes: number[]) =>
  blocks.map((b, i): Step => [b, want[i]!, tables[i]!, sizes[i]!]);

/** Encodes `text` with the code derived from HUFFMAN_CODE_LENGTHS, padded with ones (tests only). */
function huffmanEncode(text: Buffer): Buffer {
  const codes = huffmanCodes();
  let bits = "";
  for (const byte of text) bits += codes[byte]!.toString(2).padStart(HUFFMAN_CODE_LENGTHS[byte]!, "0");
  while (bits.length % 8 !== 0) bits += "1";
  const out = Buffer.alloc(bits.length / 8);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  return out;
}

function decodeError(block: Buffer, decoder = new HpackDecoder()): HpackError {
  try {
    decoder.decode(block);
  } catch (err) {
    assert.ok(err instanceof HpackError, String(err));
    return err;
  }
  assert.fail(`decoded ${block.toString("hex")}`);
}

describe("HPACK decoder", () => {
  it("derives RFC 7541 Appendix B's codes from the code lengths", () => {
    const codes = huffmanCodes();
    // [symbol, code, bits] rows of Appendix B.
    const rows: [number, number, number][] = [
      [0, 0x1ff8, 13],
      [10, 0x3ffffffc, 30],
      [32, 0x14, 6],
      [48, 0x0, 5],
      [97, 0x3, 5],
      [122, 0x7b, 7],
      [123, 0x7ffe, 15],
      [255, 0x3ffffee, 26],
      [256, 0x3fffffff, 30],
    ];
    for (const [symbol, code, bits] of rows) {
      assert.equal(codes[symbol], code, `symbol ${symbol}`);
      assert.equal(HUFFMAN_CODE_LENGTHS[symbol], bits, `symbol ${symbol}`);
    }
  });

  it("decodes C.2's single representations", () => {
    const cases: [string, [string, string], boolean, [string, string][]][] = [
      [
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        ["custom-key", "custom-header"],
        false,
        [["custom-key", "custom-header"]],
      ],
      ["040c 2f73 616d 706c 652f 7061 7468", [":path", "/sample/path"], false, []],
      ["1008 7061 7373 776f 7264 0673 6563 7265 74", ["password", "secret"], true, []],
      ["82", [":method", "GET"], false, []],
    ];
    for (const [block, field, never, table] of cases) {
      const d = new HpackDecoder();
      assert.equal(d.decode(hex(block)), 1);
      assert.deepEqual(fields(d, 1), [field]);
      assert.equal(d.neverIndexed[0], never);
      assert.deepEqual(d.tableEntries(), table);
    }
  });

  it("decodes C.3's requests (no Huffman)", () => {
    series(
      4096,
      steps(
        [
          "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
          "8286 84be 5808 6e6f 2d63 6163 6865",
          "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        C3_C4_WANT,
        C3_C4_TABLES,
        C3_C4_SIZES,
      ),
    );
  });

  it("decodes C.4's requests (Huffman)", () => {
    series(
      4096,
      steps(
        [
          "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
          "8286 84be 5886 a8eb 1064 9cbf",
          "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
        C3_C4_WANT,
        C3_C4_TABLES,
        C3_C4_SIZES,
      ),
    );
  });

  it("decodes C.5's responses with evictions (256-octet table, no Huffman)", () => {
    series(
      256,
      steps(
        [
          `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
           2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
           6c65 2e63 6f6d`,
          "4803 3330 37c1 c0bf",
          `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
           54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
           5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
           3d31`,
        ],
        C5_C6_WANT,
        C5_C6_TABLES,
        C5_C6_SIZES,
      ),
    );
  });

  it("decodes C.6's responses with evictions (256-octet table, Huffman)", () => {
    series(
      256,
      steps(
        [
          `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
           2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
          "4883 640e ffc1 c0bf",
          `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
           77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
           9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
        ],
        C5_C6_WANT,
        C5_C6_TABLES,
        C5_C6_SIZES,
      ),
    );
  });

  it("decodes every octet value through Huffman and as raw octets (latin1 strings)", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const huffman = huffmanEncode(all);
    const name = Buffer.from([0x00, 0x01, 0x78]); // literal without indexing, new name "x"
    const d = new HpackDecoder();
    const coded = Buffer.concat([name, encodeInteger(huffman.length, 7, 0x80), huffman]);
    assert.deepEqual(fields(d, d.decode(coded)), [["x", all.toString("latin1")]]);
    const raw = Buffer.concat([name, encodeInteger(all.length, 7, 0x00), all]);
    assert.deepEqual(fields(d, d.decode(raw)), [["x", all.toString("latin1")]]);
  });

  it("handles size updates: eviction, an entry larger than the table, the limit, only at a block's start", () => {
    const d = new HpackDecoder();
    d.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")); // one 57-octet entry
    assert.equal(d.tableSize, 57);
    // Size update to 0 empties the table; to 4096 again (both at the start), then an index
    // into the now-empty table is out of range.
    assert.equal(d.decode(hex("20 3fe11f 82")), 1);
    assert.deepEqual(d.tableEntries(), []);
    assert.match(decodeError(hex("be"), d).message, /beyond the table/);
    // An entry larger than the table (here 40 octets) empties it and is not added.
    const small = new HpackDecoder(256);
    small.decode(hex("3f09")); // size update to 40 (31 + 9)
    small.decode(hex("4003 6162 6303 7878 78")); // abc: xxx, 38 octets: fits
    assert.deepEqual(small.tableEntries(), [["abc", "xxx"]]);
    small.decode(hex("4003 6162 6305 7979 7979 79")); // abc: yyyyy, 40 octets: fits alone
    assert.deepEqual(small.tableEntries(), [["abc", "yyyyy"]]);
    small.decode(hex("4003 6162 6306 7a7a 7a7a 7a7a")); // 41 octets: larger than the table
    assert.deepEqual(small.tableEntries(), []);
    assert.equal(small.tableSize, 0);
    // Above the limit we advertised, after a field: errors.
    assert.match(decodeError(hex("3fe21f")).message, /above 4096/);
    assert.match(decodeError(hex("82 20")).message, /after a field/);
  });

  it("rejects malformed blocks with HpackError", () => {
    const cases: [string, RegExp][] = [
      ["80", /indexed field 0/],
      ["be", /beyond the table/], // index 62, empty table
      ["ff 80 80 80 80 01", /integer overflow/],
      ["7e 01 61", /name index 62 beyond/],
      ["ff", /truncated integer/],
      ["00", /truncated string/],
      ["40 0a 6375", /truncated string/],
      ["00 01 61 81 00", /bad Huffman padding/], // "0" then three zero bits
      ["00 01 61 81 ff", /bad Huffman padding/], // eight bits of padding
      ["00 01 61 82 1f ff", /bad Huffman padding/], // "a" then a byte of padding
      ["00 01 61 85 ff ff ff ff fc", /EOS/], // EOS, then "?"
    ];
    for (const [block, message] of cases) assert.match(decodeError(hex(block)).message, message, block);
  });

  it("limits the decoded header list", () => {
    const d = new HpackDecoder(4096, 120);
    d.decode(hex("4003 6162 6303 7878 78")); // abc: xxx, 38 octets
    assert.equal(d.decode(hex("be be be")), 3); // 114
    const err = decodeError(hex("be be be be"), d);
    assert.equal(err.tooLarge, true);
  });

  it("decodes what hpack.js's encoder makes of many gRPC-like blocks (table churn and evictions)", () => {
    const compressor = hpack.compressor.create({ table: { maxSize: 4096 } });
    const d = new HpackDecoder();
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const word = (length: number) =>
      Array.from({ length }, () => String.fromCharCode(0x20 + random(0x5f))).join("");
    for (let call = 0; call < 500; call++) {
      const headers: [string, string][] = [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", `/etcdserverpb.KV/${["Range", "Put", "Txn"][random(3)]}`],
        [":authority", "127.0.0.1:2379"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ["grpc-timeout", `${random(100_000)}m`],
        ["user-agent", "grpc-go/1.26.0"],
        ["authorization", word(20 + random(200))],
        [`x-custom-${random(50)}`, word(random(600))],
      ];
      compressor.write(headers.map(([name, value]) => ({ name, value })));
      const block = compressor.read() as Buffer;
      assert.deepEqual(fields(d, d.decode(block)), headers, `call ${call}`);
    }
    // The blocks added far more than 4,096 octets: both tables evicted all along, in step.
    assert.ok(d.tableSize <= 4096 && d.tableEntries().length < 4096 / 32);
  });

  it("decodes node:http2's request headers (nghttp2's encoder) through a server connection", async (t) => {
    const seen: IncomingHeaders[] = [];
    const server = net.createServer((socket) => {
      new ServerConnection(
        socket,
        {
          stream: (stream, fields) => {
            seen.push(headersObject(fields));
            stream.events = { data() {}, end() {}, close() {}, drain() {} };
            stream.respond(
              encodeLiteralHeaderBlock([{ name: ":status", value: "200", neverIndex: false }]),
              true,
            );
          },
        },
        { windowBytes: 65_535, maxConcurrentStreams: 100 },
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    t.after(() => session.destroy());
    const sent: Record<string, string>[] = [];
    for (let call = 0; call < 50; call++) {
      const headers = {
        ":method": "POST",
        ":path": `/etcdserverpb.KV/${call % 2 === 0 ? "Range" : "Put"}`,
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-timeout": `${99_000 - call}m`,
        authorization: `token-${call % 3}`,
        "x-bytes": `${"é".repeat(call % 5)}~${call}`,
      };
      sent.push(headers);
      const request = session.request(headers, { endStream: true });
      await new Promise<void>((resolve, reject) => {
        request.on("response", () => resolve());
        request.on("error", reject);
      });
      request.close();
    }
    assert.equal(seen.length, 50);
    for (const [i, headers] of sent.entries()) {
      const got = seen[i]!;
      for (const [name, value] of Object.entries(headers)) {
        // node:http2 sends header values as latin1 octets: é is one octet, as we decode it.
        assert.equal(got[name], value, `call ${i} ${name}`);
      }
      assert.equal(got[":authority"], `127.0.0.1:${port}`);
      assert.equal(got[":scheme"], "http");
    }
  });
});
