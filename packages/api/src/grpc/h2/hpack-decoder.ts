// HPACK decoding (RFC 7541): the header blocks a peer sends us, with the peer's dynamic table.
// Pure: bytes in, fields out; one decoder per connection sees every block in order.
//
// Ours rather than hpack.js (spdy's): that one streams every field through an object and a
// Buffer of its own and re-decodes table entries; a profile put it at ~8% of the gateway's
// busy time. Here the fields of a block land in two reused arrays, and a table entry is stored
// as the strings it decoded to once: gRPC's request headers (:path, content-type, te,
// user-agent, authorization...) come as table indexes after a connection's first call, and
// then cost an array read each. The table is bounded as RFC 7541 says: hpack.js was created
// with `table: { size }`, an option it does not read, so its table never evicted and grew by an
// entry for every grpc-timeout value a client sent, for as long as the connection lived.
//
// Strings are latin1 (one char per octet), as HTTP/2 header values are octets and our encoder
// (http2-frames.ts) writes latin1: a string's length is its size in octets, which RFC 7541's
// table accounting (4.1) counts.

/** A malformed header block: a connection error COMPRESSION_ERROR (RFC 9113 4.3). */
export class HpackError extends Error {
  constructor(
    message: string,
    /** The block decoded past the header-list limit, not a malformed one (ENHANCE_YOUR_CALM). */
    readonly tooLarge = false,
  ) {
    super(message);
  }
}

/** SETTINGS_HEADER_TABLE_SIZE's default (RFC 9113 6.5.2): we never advertise another. */
export const HPACK_DEFAULT_TABLE_BYTES = 4096;
/**
 * grpc-go's default limit on a decoded header list (16 MiB, RFC 9113's size: name + value + 32
 * per field), which etcd's server keeps: a block of table indexes can otherwise decode to
 * ~4,000 times its size.
 */
export const HPACK_DEFAULT_MAX_LIST_BYTES = 16 * 1024 * 1024;

/** RFC 7541 Appendix A. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length;
const STATIC_NAMES = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES = STATIC_TABLE.map((e) => e[1]);

/** RFC 7541 4.1: an entry's size is its octets plus 32. */
const ENTRY_OVERHEAD = 32;

/**
 * The Huffman code's lengths per symbol (RFC 7541 Appendix B; 256 is EOS). The code is
 * canonical (codes of one length are consecutive, in symbol order, shorter codes first), so the
 * lengths define it; the tests check codes derived from them against the RFC's.
 */
// biome-ignore format: a table
export const HUFFMAN_CODE_LENGTHS: readonly number[] = [
  13,23,28,28,28,28,28,28,28,24,30,28,28,30,28,28,28,28,28,28,28,28,30,28,28,28,28,28,28,28,28,28,
  6,10,10,12,13,6,8,11,10,10,8,11,8,6,6,6,5,5,5,6,6,6,6,6,6,6,7,8,15,6,12,10,
  13,6,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,8,7,8,13,19,13,14,6,
  15,5,6,5,6,5,6,6,6,5,7,7,6,6,6,5,6,7,6,5,5,6,7,7,7,7,7,15,11,14,13,28,
  20,22,20,20,22,22,22,23,22,23,23,23,23,23,24,23,24,24,22,23,24,23,23,23,23,21,22,23,22,23,23,24,
  22,21,20,22,22,23,23,21,23,22,22,24,21,22,23,23,21,21,22,21,23,22,23,23,20,22,22,22,23,22,22,23,
  26,26,20,19,22,23,22,25,26,26,26,27,27,26,24,25,19,21,26,27,27,26,27,24,21,21,26,26,28,27,27,27,
  20,24,20,21,22,21,21,23,22,22,25,25,24,24,26,23,26,27,26,26,27,27,27,27,27,28,27,27,27,27,27,26,
  30,
];
const EOS = 256;

/** The canonical codes of HUFFMAN_CODE_LENGTHS (RFC 7541 Appendix B's "code as hex"). */
export function huffmanCodes(): number[] {
  const symbols = HUFFMAN_CODE_LENGTHS.map((_, s) => s).sort(
    (a, b) => HUFFMAN_CODE_LENGTHS[a]! - HUFFMAN_CODE_LENGTHS[b]! || a - b,
  );
  const codes: number[] = new Array(HUFFMAN_CODE_LENGTHS.length);
  let code = -1;
  let bits = 0;
  for (const s of symbols) {
    const length = HUFFMAN_CODE_LENGTHS[s]!;
    code = (code + 1) * 2 ** (length - bits); // codes reach 30 bits: no 32-bit shifts
    bits = length;
    codes[s] = code;
  }
  return codes;
}

// The decoder reads 4 bits at a time (as nghttp2 does): a state is an inner node of the code's
// tree (256 of them for 257 symbols, the root is 0), and HUFFMAN_STEP[state * 16 + nibble] is
// the state after those 4 bits, whether they completed a symbol (at most one: codes have 5 bits
// or more) and which, or whether they completed EOS (an error in a string, RFC 7541 5.2).
const STEP_EMIT = 0x100;
const STEP_FAIL = 0x200;
const HUFFMAN_STEP = new Uint32Array(256 * 16);
/** 1: a string may end in this state (its padding is fewer than 8 bits, all ones: EOS's prefix). */
const HUFFMAN_ACCEPT = new Uint8Array(256);

function buildHuffmanDecoder(): void {
  // The tree: an inner node's children are inner node IDs (>= 0) or symbols (-1 - symbol).
  const zero: number[] = [0];
  const one: number[] = [0];
  let nodes = 1;
  const codes = huffmanCodes();
  for (let s = 0; s <= EOS; s++) {
    const length = HUFFMAN_CODE_LENGTHS[s]!;
    let node = 0;
    for (let i = length - 1; i >= 0; i--) {
      const bit = Math.floor(codes[s]! / 2 ** i) % 2;
      const children = bit === 0 ? zero : one;
      if (i === 0) {
        children[node] = -1 - s;
        break;
      }
      if (children[node] === 0 || children[node] === undefined) {
        children[node] = nodes;
        zero[nodes] = 0;
        one[nodes] = 0;
        nodes++;
      }
      node = children[node]!;
    }
  }
  for (let state = 0; state < nodes; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let step = 0;
      for (let i = 3; i >= 0; i--) {
        const next = ((nibble >> i) & 1) === 0 ? zero[node]! : one[node]!;
        if (next >= 0) {
          node = next;
          continue;
        }
        const symbol = -1 - next;
        if (symbol === EOS) step |= STEP_FAIL;
        else step |= STEP_EMIT | (symbol << 16);
        node = 0;
      }
      HUFFMAN_STEP[state * 16 + nibble] = step | node;
    }
  }
  // Padding: up to 7 one-bits from the root (the most significant bits of EOS's code).
  let node = 0;
  for (let depth = 0; depth <= 7; depth++) {
    HUFFMAN_ACCEPT[node] = 1;
    node = one[node]!;
  }
}
buildHuffmanDecoder();

/**
 * One connection's HPACK decoder. `decode` takes a whole header block (HEADERS plus its
 * CONTINUATIONs) and leaves its fields in `names`/`values`/`neverIndexed` [0, count): arrays
 * reused by the next block, so a caller copies what it keeps (the strings themselves are
 * immutable and may be kept).
 */
export class HpackDecoder {
  readonly names: string[] = [];
  readonly values: string[] = [];
  /** The field came as "never indexed" (RFC 7541 6.2.3): a proxy must forward it so. */
  readonly neverIndexed: boolean[] = [];
  count = 0;

  // The dynamic table as a ring, newest at `head`: dynamic index 0 (HPACK index 62) is
  // slots[head], index i is slots[(head - i) mod capacity].
  private readonly tableNames: string[];
  private readonly tableValues: string[];
  private readonly capacity: number;
  private head = 0;
  private entries = 0;
  private tableBytes = 0;
  /** The table's current maximum (size updates move it, up to `limit`). */
  private maxTableBytes: number;
  /** Huffman output, grown as needed (a string decodes to at most 8/5 of its octets). */
  private scratch = Buffer.allocUnsafe(256);
  private pos = 0;
  /** Where the block being decoded ends. */
  private end = 0;

  constructor(
    /** The SETTINGS_HEADER_TABLE_SIZE we advertised: size updates above it are errors. */
    private readonly limit = HPACK_DEFAULT_TABLE_BYTES,
    private readonly maxListBytes = HPACK_DEFAULT_MAX_LIST_BYTES,
  ) {
    this.maxTableBytes = limit;
    // Every entry is at least 32 octets, so the table never holds more than limit / 32.
    this.capacity = Math.max(1, Math.floor(limit / ENTRY_OVERHEAD));
    this.tableNames = new Array(this.capacity).fill("");
    this.tableValues = new Array(this.capacity).fill("");
  }

  /** The dynamic table's entries, newest first (tests). */
  tableEntries(): [name: string, value: string][] {
    const out: [string, string][] = [];
    for (let i = 0; i < this.entries; i++) {
      const slot = (this.head - i + this.capacity) % this.capacity;
      out.push([this.tableNames[slot]!, this.tableValues[slot]!]);
    }
    return out;
  }

  /** The dynamic table's size in RFC 7541's octets (tests). */
  get tableSize(): number {
    return this.tableBytes;
  }

  /**
   * Decodes one whole header block, `block[start, end)` (a HEADERS frame's fragment read where it
   * is, no view of it made); throws HpackError (the connection must end: its table is lost).
   */
  decode(block: Buffer, start = 0, end = block.length): number {
    this.end = end;
    const names = this.names;
    const values = this.values;
    const neverIndexed = this.neverIndexed;
    let count = 0;
    let listBytes = 0;
    this.pos = start;
    while (this.pos < end) {
      const b = block[this.pos]!;
      let name: string;
      let value: string;
      let never = false;
      if (b & 0x80) {
        // Indexed field (6.1): the common case for gRPC's repeated headers.
        let index = b & 0x7f;
        if (index === 0x7f) index = this.integer(block, 7);
        else this.pos++;
        if (index === 0) throw new HpackError("indexed field 0");
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index - 1]!;
          value = STATIC_VALUES[index - 1]!;
        } else {
          const d = index - STATIC_COUNT - 1;
          if (d >= this.entries) throw new HpackError(`index ${index} beyond the table`);
          const slot = (this.head - d + this.capacity) % this.capacity;
          name = this.tableNames[slot]!;
          value = this.tableValues[slot]!;
        }
      } else if (b & 0x40) {
        // Literal with incremental indexing (6.2.1): 6-bit name index.
        name = this.literalName(block, 6);
        value = this.string(block);
        this.insert(name, value);
      } else if (b & 0x20) {
        // Dynamic table size update (6.3): only before the block's first field (4.2).
        if (count > 0) throw new HpackError("table size update after a field");
        const size = this.integer(block, 5);
        if (size > this.limit) throw new HpackError(`table size ${size} above ${this.limit}`);
        this.maxTableBytes = size;
        this.evictTo(size);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001): 4-bit name index.
        never = (b & 0x10) !== 0;
        name = this.literalName(block, 4);
        value = this.string(block);
      }
      listBytes += name.length + value.length + ENTRY_OVERHEAD;
      if (listBytes > this.maxListBytes)
        throw new HpackError(`header list above ${this.maxListBytes} bytes`, true);
      names[count] = name;
      values[count] = value;
      neverIndexed[count] = never;
      count++;
    }
    this.count = count;
    return count;
  }

  /** A literal's name: an index (the prefix's bits, not 0) or a string after the first byte. */
  private literalName(block: Buffer, prefixBits: number): string {
    const mask = (1 << prefixBits) - 1;
    if ((block[this.pos]! & mask) === 0) {
      this.pos++;
      return this.string(block);
    }
    const index = this.integer(block, prefixBits);
    if (index <= STATIC_COUNT) return STATIC_NAMES[index - 1]!;
    const d = index - STATIC_COUNT - 1;
    if (d >= this.entries) throw new HpackError(`name index ${index} beyond the table`);
    return this.tableNames[(this.head - d + this.capacity) % this.capacity]!;
  }

  /** RFC 7541 5.1: an integer with an N-bit prefix starting at `pos`. */
  private integer(block: Buffer, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let value = block[this.pos++]! & mask;
    if (value < mask) return value;
    // At most 4 more bytes: 2^28 is far beyond any length or index a 1 MiB block can hold.
    for (let shift = 0; shift <= 21; shift += 7) {
      if (this.pos >= this.end) throw new HpackError("truncated integer");
      const b = block[this.pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
    }
    throw new HpackError("integer overflow");
  }

  /** RFC 7541 5.2: a string literal (Huffman-coded or raw octets) at `pos`. */
  private string(block: Buffer): string {
    if (this.pos >= this.end) throw new HpackError("truncated string");
    const huffman = (block[this.pos]! & 0x80) !== 0;
    const length = this.integer(block, 7);
    const from = this.pos;
    const to = from + length;
    if (to > this.end) throw new HpackError("truncated string");
    this.pos = to;
    if (!huffman) return block.toString("latin1", from, to);
    return this.huffman(block, from, to);
  }

  private huffman(block: Buffer, from: number, to: number): string {
    // A symbol takes 5 bits or more: at most 8/5 of the input's octets come out.
    const most = Math.ceil(((to - from) * 8) / 5);
    if (this.scratch.length < most)
      this.scratch = Buffer.allocUnsafe(Math.max(most, this.scratch.length * 2));
    const out = this.scratch;
    let n = 0;
    let state = 0;
    for (let i = from; i < to; i++) {
      const b = block[i]!;
      let step = HUFFMAN_STEP[(state << 4) | (b >> 4)]!;
      if (step & STEP_FAIL) throw new HpackError("EOS in a Huffman string");
      if (step & STEP_EMIT) out[n++] = step >>> 16;
      state = step & 0xff;
      step = HUFFMAN_STEP[(state << 4) | (b & 0x0f)]!;
      if (step & STEP_FAIL) throw new HpackError("EOS in a Huffman string");
      if (step & STEP_EMIT) out[n++] = step >>> 16;
      state = step & 0xff;
    }
    if (HUFFMAN_ACCEPT[state] !== 1) throw new HpackError("bad Huffman padding");
    return out.toString("latin1", 0, n);
  }

  /** RFC 7541 4.4: a new entry evicts the oldest until it fits; one larger than the table empties it. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.maxTableBytes) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.maxTableBytes - size);
    this.head = (this.head + 1) % this.capacity;
    this.tableNames[this.head] = name;
    this.tableValues[this.head] = value;
    this.entries++;
    this.tableBytes += size;
  }

  private evictTo(bytes: number): void {
    while (this.tableBytes > bytes) {
      const oldest = (this.head - this.entries + 1 + this.capacity) % this.capacity;
      this.tableBytes -= this.tableNames[oldest]!.length + this.tableValues[oldest]!.length + ENTRY_OVERHEAD;
      this.tableNames[oldest] = "";
      this.tableValues[oldest] = "";
      this.entries--;
    }
  }
}
