// Service definitions that remember each request's wire bytes. A write is proposed to Raft as
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
