// Service definitions adapted for the member: they remember each request's wire bytes, and
// may write answers with a codec of our own instead of the generated one. Remembering bytes: A write is proposed to Raft as
// the bytes the client sent (inside the entry envelope), so the member never encodes a request
// it has just decoded; the decoded object is still needed to validate it and to answer.
import type { ServiceDefinition } from "@grpc/grpc-js";

const wireBytes = new WeakMap<object, Buffer>();

/** The bytes `request` was decoded from, when it came through a definition made here. */
export function requestBytes(request: object): Buffer | undefined {
  return wireBytes.get(request);
}

export function keepingRequestBytes<D extends ServiceDefinition>(
  definition: D,
  methods: readonly (keyof D)[],
): D {
  const copy = { ...definition };
  for (const name of methods) {
    const method = definition[name]!;
    const decode = method.requestDeserialize;
    copy[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        const request = decode(bytes) as object;
        wireBytes.set(request, bytes);
        return request;
      },
    } as D[keyof D];
  }
  return copy;
}

/**
 * The definition with `encoders` writing the named methods' responses. The KV service answers
 * with the store's shapes (revisions as numbers) and mvcc's response codec, so a Range never
 * goes through ts-proto's bigint encoder.
 */
export function encodingResponsesWith<D extends ServiceDefinition>(
  definition: D,
  // biome-ignore lint/suspicious/noExplicitAny: each encoder takes its own response shape
  encoders: Partial<Record<keyof D, (response: any) => Buffer>>,
): D {
  const copy = { ...definition };
  for (const [name, encode] of Object.entries(encoders)) {
    const method = definition[name as keyof D]!;
    copy[name as keyof D] = { ...method, responseSerialize: encode } as D[keyof D];
  }
  return copy;
}
