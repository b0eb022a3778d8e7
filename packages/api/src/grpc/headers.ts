// gRPC-over-HTTP/2 header values, both directions (PROTOCOL-HTTP2.md): grpc-timeout,
// grpc-message, and custom metadata. Used by the gateway's upstream channel (client side)
// and GrpcHttp2Server (server side).

import type http2 from "node:http2";
import grpc from "@grpc/grpc-js";

/** grpc-timeout allows at most 8 digits: milliseconds, or seconds when longer. */
export function grpcTimeout(remainingMs: number): string {
  const ms = Math.max(0, Math.ceil(remainingMs));
  return ms <= 99_999_999 ? `${ms}m` : `${Math.min(99_999_999, Math.ceil(ms / 1000))}S`;
}

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * The absolute deadline a grpc-timeout header ("100m", "5S": 1-8 digits and a unit) sets, from
 * now. Read by hand, not by a regular expression: Go clients send one on every call.
 */
export function deadlineFrom(header: string | string[] | undefined): number | undefined {
  if (typeof header !== "string" || header.length < 2 || header.length > 9) return undefined;
  const last = header.length - 1;
  let value = 0;
  for (let i = 0; i < last; i++) {
    const digit = header.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  const unitMs = TIMEOUT_UNIT_MS[header[last]!];
  return unitMs === undefined ? undefined : Date.now() + value * unitMs;
}

/** grpc-message is percent-encoded outside printable ASCII (and '%' itself). */
export function encodeGrpcMessage(details: string): string {
  let plain = true;
  for (let i = 0; i < details.length; i++) {
    const c = details.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return details;
  let out = "";
  for (const byte of Buffer.from(details, "utf8")) {
    out +=
      byte < 0x20 || byte > 0x7e || byte === 0x25
        ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
        : String.fromCharCode(byte);
  }
  return out;
}

export function decodeGrpcMessage(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * The custom metadata among HTTP/2 headers (pseudo-headers and `reserved` left out; `-bin`
 * values base64-decoded); undefined when there is none.
 */
export function metadataFromHeaders(
  headers: http2.IncomingHttpHeaders,
  reserved: ReadonlySet<string>,
): grpc.Metadata | undefined {
  let md: grpc.Metadata | undefined;
  for (const key in headers) {
    if (key.startsWith(":") || reserved.has(key)) continue;
    const value = headers[key];
    if (value === undefined) continue;
    md ??= new grpc.Metadata();
    for (const v of Array.isArray(value) ? value : [value]) addMetadata(md, key, v);
  }
  return md;
}

/**
 * The metadata of headers given as name, value, name, value... (a server call's custom
 * headers, already without pseudo-headers and reserved ones); undefined when there is none.
 */
export function metadataFromFields(fields: readonly string[]): grpc.Metadata | undefined {
  if (fields.length === 0) return undefined;
  const md = new grpc.Metadata();
  for (let i = 0; i < fields.length; i += 2) addMetadata(md, fields[i]!, fields[i + 1]!);
  return md;
}

/** One header value into metadata: a `-bin` value is base64 (PROTOCOL-HTTP2.md). */
function addMetadata(md: grpc.Metadata, key: string, value: string): void {
  if (key.endsWith("-bin")) md.add(key, Buffer.from(value, "base64"));
  else md.add(key, value);
}
