// How the gateway dials members (member-channel.ts does the dialling): TLS material and the
// address of a client URL. `passThrough` is grpc-js's (de)serializer for raw bytes, for tests
// and tools that talk to a gateway or member with grpc-js.

export const passThrough = (bytes: Buffer): Buffer => bytes;

/**
 * How the gateway dials members: plaintext, or TLS verified against `ca` (etcd grpc-proxy's
 * --cacert) offering `cert`/`key` for members that require client certificates (--cert, --key).
 */
export interface UpstreamTls {
  ca: Buffer | undefined;
  cert: Buffer | undefined;
  key: Buffer | undefined;
}

/**
 * "http://127.0.0.1:2379" -> "127.0.0.1:2379"; undefined for schemes the gateway cannot dial
 * (https only when it dials members over TLS, `secure`).
 */
export function addressFromClientUrl(url: string, secure = false): string | undefined {
  const match = /^(?:https?:\/\/)?([^/]+?)\/?$/.exec(url.trim());
  if (match === null || url.startsWith("unix")) return undefined;
  if (url.startsWith("https://") !== secure && url.includes("://")) return undefined;
  return match[1];
}
