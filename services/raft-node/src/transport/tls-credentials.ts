// How a member dials other members (peer URLs) and the leader's client URL (forwarded lease
// calls): as etcd does, with its certificate files when they are given (the server is verified
// against the trusted CA, and our certificate is offered for the server's client-cert check),
// without verification for auto-TLS, in plaintext for http URLs.
import { readFileSync } from "node:fs";
import type { TlsFiles } from "@etcd-ts/api";
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";

/** undefined: auto-TLS (encrypt, verify nothing). */
export type DialTls = { ca: Buffer | null; cert: Buffer; key: Buffer } | undefined;

/** Reads one side's files for dialling; undefined (auto-TLS) when the side has none. */
export function dialTlsFrom(files: TlsFiles | undefined): DialTls {
  if (files === undefined) return undefined;
  return {
    ca: files.trustedCaFile ? readFileSync(files.trustedCaFile) : null,
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
  };
}

export function channelCredentialsFor(url: string, dial: DialTls): ChannelCredentials {
  if (!url.startsWith("https:")) return credentials.createInsecure();
  if (dial === undefined) return credentials.createSsl(null, null, null, { rejectUnauthorized: false });
  return credentials.createSsl(dial.ca, dial.key, dial.cert);
}
