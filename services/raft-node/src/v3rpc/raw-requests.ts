// A write's wire bytes, and service definitions that write answers with a codec of our own
// instead of the generated one. A write is proposed to Raft as the bytes the client sent (inside
// the entry envelope), so the member never encodes a request it has just decoded; the decoded
// object is still needed to validate it and to answer.
import type { ServiceDefinition } from "@grpc/grpc-js";

/**
 * The bytes a call's request was decoded from, when the call keeps them: a unary call served through
 * grpc-adapter.ts holds the one message its request was decoded from. Undefined otherwise (the
 * caller then encodes the request).
 */
export function requestBytes(call: { readonly requestBytes?: Buffer }): Buffer | undefined {
  return call.requestBytes;
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
