// etcd's --client-crl-file / --peer-crl-file check (pkg/transport/listener_tls.go): a peer
// certificate whose serial number is listed in the CRL is refused. Like etcd, only the serial
// numbers are read: neither the CRL's signature nor its nextUpdate is checked (OpenSSL's own CRL
// check would refuse every connection once the CRL is past its nextUpdate, which etcd's test
// fixtures are).

/** The serial numbers a CRL (PEM or DER) revokes, as lowercase hex without leading zeros. */
export function revokedSerials(crl: Buffer): Set<string> {
  const der = crl.includes("-----BEGIN X509 CRL-----") ? pemBody(crl.toString("latin1")) : crl;
  const list = readTlv(der, 0, "CRL");
  const tbs = readTlv(der, list.start, "tbsCertList");
  let at = tbs.start;
  const next = () => {
    if (at >= tbs.end) return undefined;
    const tlv = readTlv(der, at, "tbsCertList field");
    at = tlv.end;
    return tlv;
  };
  let field = next();
  if (field?.tag === 0x02) field = next(); // version
  // signature AlgorithmIdentifier, issuer Name, thisUpdate
  field = next();
  field = next();
  field = next();
  if (field !== undefined && (field.tag === 0x17 || field.tag === 0x18)) field = next(); // nextUpdate
  const serials = new Set<string>();
  if (field === undefined || field.tag !== 0x30) return serials; // no revokedCertificates
  for (let entryAt = field.start; entryAt < field.end; ) {
    const entry = readTlv(der, entryAt, "revoked certificate");
    const serial = readTlv(der, entry.start, "serial number");
    if (serial.tag !== 0x02) throw new Error("CRL: revoked certificate without a serial number");
    serials.add(serialHex(der.subarray(serial.start, serial.end)));
    entryAt = entry.end;
  }
  return serials;
}

/** A serial number's bytes (or Node's hex) -> lowercase hex without leading zeros. */
export function serialHex(serial: Buffer | string): string {
  const hex = (typeof serial === "string" ? serial : serial.toString("hex")).toLowerCase();
  return hex.replace(/^0+(?=.)/, "");
}

function pemBody(text: string): Buffer {
  const match = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/.exec(text);
  if (match === null) throw new Error("CRL: no PEM block");
  return Buffer.from(match[1]!.replace(/\s+/g, ""), "base64");
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function readTlv(der: Buffer, at: number, what: string): Tlv {
  if (at + 2 > der.length) throw new Error(`CRL: ${what} truncated`);
  const tag = der[at]!;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || start + bytes > der.length)
      throw new Error(`CRL: ${what} has a bad length`);
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i]!;
    start += bytes;
  }
  if (start + length > der.length) throw new Error(`CRL: ${what} truncated`);
  return { tag, start, end: start + length };
}
