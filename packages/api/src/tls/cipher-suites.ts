// etcd's --cipher-suites takes Go's names for TLS 1.2 suites (crypto/tls); Node speaks
// OpenSSL's. Go ignores the list for TLS 1.3 (its 1.3 suites are fixed), so the names of the
// 1.3 suites are accepted and change nothing, and TLS 1.3 keeps OpenSSL's defaults.

import tls from "node:tls";

const GO_TO_OPENSSL: Record<string, string> = {
  TLS_RSA_WITH_RC4_128_SHA: "RC4-SHA",
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: "DES-CBC3-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA: "AES128-SHA",
  TLS_RSA_WITH_AES_256_CBC_SHA: "AES256-SHA",
  TLS_RSA_WITH_AES_128_CBC_SHA256: "AES128-SHA256",
  TLS_RSA_WITH_AES_128_GCM_SHA256: "AES128-GCM-SHA256",
  TLS_RSA_WITH_AES_256_GCM_SHA384: "AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: "ECDHE-ECDSA-RC4-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: "ECDHE-ECDSA-AES128-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: "ECDHE-ECDSA-AES256-SHA",
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: "ECDHE-RSA-RC4-SHA",
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: "ECDHE-RSA-DES-CBC3-SHA",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: "ECDHE-RSA-AES128-SHA",
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: "ECDHE-RSA-AES256-SHA",
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: "ECDHE-RSA-AES128-SHA256",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "ECDHE-RSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "ECDHE-RSA-AES256-GCM-SHA384",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ECDHE-ECDSA-AES256-GCM-SHA384",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
  // etcd's own aliases (pkg/tlsutil).
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "ECDHE-RSA-CHACHA20-POLY1305",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305",
};

const TLS13_SUITES = new Set([
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
]);

export class CipherSuiteError extends Error {
  override name = "CipherSuiteError";
}

/**
 * Go cipher-suite names, in order of preference -> an OpenSSL cipher string for Node's `ciphers`
 * (the TLS 1.2 suites named, then OpenSSL's default TLS 1.3 suites); undefined for an empty list
 * (OpenSSL's defaults). An unknown name is refused with etcd's message.
 */
export function opensslCiphers(goNames: readonly string[]): string | undefined {
  if (goNames.length === 0) return undefined;
  const tls12: string[] = [];
  for (const name of goNames) {
    const openssl = GO_TO_OPENSSL[name];
    if (openssl !== undefined) tls12.push(openssl);
    else if (!TLS13_SUITES.has(name)) throw new CipherSuiteError(`unexpected TLS cipher suite "${name}"`);
  }
  const tls13 = tls.DEFAULT_CIPHERS.split(":").filter((c) => c.startsWith("TLS_"));
  return [...tls13, ...tls12].join(":");
}
