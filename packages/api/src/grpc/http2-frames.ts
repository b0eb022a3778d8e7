// HTTP/2 framing (RFC 9113 section 4) and HPACK (RFC 7541) helpers: reading a connection's first
// header block (packages/testing's peer-sender) and encoding header blocks as literals (the
// gRPC server's responses, h2/). Pure: bytes in, bytes out.

import { HpackDecoder } from "./h2/hpack-decoder.js";

export const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const FRAME_HEADER_BYTES = 9;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  SETTINGS: 0x4,
  CONTINUATION: 0x9,
} as const;

export const FrameFlag = {
  ACK: 0x1,
  END_STREAM: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

/** The header of the frame starting at `offset`, or undefined when the whole frame is not there yet. */
export function completeFrameAt(buf: Buffer, offset: number): FrameHeader | undefined {
  if (buf.length - offset < FRAME_HEADER_BYTES) return undefined;
  const length = buf.readUIntBE(offset, 3);
  if (buf.length - offset < FRAME_HEADER_BYTES + length) return undefined;
  return {
    length,
    type: buf[offset + 3]!,
    flags: buf[offset + 4]!,
    streamId: buf.readUInt32BE(offset + 5) & 0x7fffffff,
  };
}

/** The header block fragment of a HEADERS frame's payload: padding and priority fields removed. */
export function headersFragment(
  payload: Buffer,
  flags: number,
): { fragment: Buffer; priority: Buffer | undefined } {
  let start = 0;
  let end = payload.length;
  if (flags & FrameFlag.PADDED) {
    const padding = payload[0] ?? 0;
    start = 1;
    end -= padding;
  }
  let priority: Buffer | undefined;
  if (flags & FrameFlag.PRIORITY) {
    priority = payload.subarray(start, start + 5);
    start += 5;
  }
  if (end < start) throw new Http2FramingError("HEADERS padding longer than the frame");
  return { fragment: payload.subarray(start, end), priority };
}

export class Http2FramingError extends Error {}

export interface HeaderField {
  name: string;
  value: string;
  neverIndex: boolean;
}

/**
 * Decodes a connection's header blocks in order. HPACK is stateful (a dynamic table per
 * connection), so one decoder must see every block of the connection.
 */
export class HeaderBlockDecoder {
  private readonly decoder = new HpackDecoder();

  /** Throws HpackError on a malformed block. */
  decode(block: Buffer): HeaderField[] {
    const d = this.decoder;
    const count = d.decode(block);
    const fields: HeaderField[] = [];
    for (let i = 0; i < count; i++)
      fields.push({ name: d.names[i]!, value: d.values[i]!, neverIndex: d.neverIndexed[i]! });
    return fields;
  }
}

/**
 * Encodes fields as literals that never touch the receiver's dynamic table (RFC 7541 6.2.2 and
 * 6.2.3), so the block means the same to a decoder whatever it decoded before.
 */
export function encodeLiteralHeaderBlock(fields: readonly HeaderField[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    parts.push(Buffer.from([f.neverIndex ? 0x10 : 0x00]));
    parts.push(encodeString(f.name), encodeString(f.value));
  }
  return Buffer.concat(parts);
}

function encodeString(text: string): Buffer {
  const bytes = Buffer.from(text, "latin1");
  return Buffer.concat([encodeInteger(bytes.length, 7, 0x00), bytes]);
}

/** RFC 7541 5.1: an integer with an N-bit prefix; `high` holds the bits above the prefix. */
export function encodeInteger(value: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([high | value]);
  const out = [high | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}
