// gRPC's length-prefixed messages on an HTTP/2 stream (1 byte flags, 0 = uncompressed, 4 bytes
// big-endian length, the payload), both ways, for every stream reader and writer of ours: the
// server's calls, the gateway's Forward and relay streams.

/** The 5-byte prefix of a message of `length` bytes, uncompressed. */
export function messagePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/** One gRPC message on the wire: flag 0 (not compressed), its 4-byte big-endian length, the bytes. */
export function frameGrpcMessage(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

/** Why a reader refused a message: larger than it takes, or compressed (we negotiate none). */
export class GrpcFramingError extends Error {
  constructor(
    readonly kind: "too-large" | "compressed",
    /** The message's length from its prefix. */
    readonly length: number,
    /** The prefix's flag byte (1: compressed; anything but 0 and 1 is not gRPC). */
    readonly flag = 0,
  ) {
    super(kind === "too-large" ? `message of ${length} bytes is too large` : `message with flag ${flag}`);
  }
}

/**
 * Splits a stream's bytes into messages. Chunks are kept as a list and joined once a whole
 * message is there: a large message arrives in many DATA frames, and joining at every chunk
 * would copy it over and over. Messages are views into the joined bytes (no copy).
 */
export class MessageDeframer {
  private inbox: Buffer[] = [];
  private inboxBytes = 0;

  /** `maxMessageBytes`: a longer message is refused as soon as its prefix is in. */
  constructor(private readonly maxMessageBytes = Number.POSITIVE_INFINITY) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
  }

  /** The next whole message, or undefined until more bytes come; throws GrpcFramingError. */
  next(): Buffer | undefined {
    if (this.inboxBytes < 5) return undefined;
    const head = this.inbox[0]!.length >= 5 ? this.inbox[0]! : this.join();
    const length = head.readUInt32BE(1);
    if (length > this.maxMessageBytes) {
      this.clear();
      throw new GrpcFramingError("too-large", length);
    }
    if (this.inboxBytes < 5 + length) return undefined;
    if (head[0] !== 0) {
      this.clear();
      throw new GrpcFramingError("compressed", length, head[0]);
    }
    const all = this.join();
    const rest = all.subarray(5 + length);
    this.inbox = rest.length > 0 ? [rest] : [];
    this.inboxBytes = rest.length;
    return all.subarray(5, 5 + length);
  }

  /** Bytes of an incomplete message held. */
  get buffered(): number {
    return this.inboxBytes;
  }

  clear(): void {
    this.inbox = [];
    this.inboxBytes = 0;
  }

  private join(): Buffer {
    if (this.inbox.length > 1) this.inbox = [Buffer.concat(this.inbox, this.inboxBytes)];
    return this.inbox[0]!;
  }
}
