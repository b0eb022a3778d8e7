// etcd's --auto-tls / --peer-auto-tls: a self-signed certificate made at start-up and kept under
// <data-dir>/fixtures/{client,peer} (etcd's own paths), reused on restart. Peers and clients of
// an auto-TLS member encrypt but do not verify it (etcd's auto-TLS peers skip verification too).
//
// Made in-process: Node signs with WebCrypto but has no X.509 writer, so the certificate is
// built with pkijs (PKI.js, a well-kept pure-JS X.509 library on WebCrypto; no global polyfill,
// unlike @peculiar/x509's). No `openssl` binary is needed in the image or on the host.
import { createPrivateKey, webcrypto } from "node:crypto";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { isIP, isIPv4 } from "node:net";
import { join } from "node:path";
import { Integer, OctetString, Utf8String } from "asn1js";
import {
  AltName,
  AttributeTypeAndValue,
  BasicConstraints,
  Certificate,
  CryptoEngine,
  type CryptoEngineParameters,
  Extension,
  ExtKeyUsage,
  GeneralName,
} from "pkijs";

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

/** A subjectAltName entry: a DNS name or an IP address. */
export interface AltNameEntry {
  type: "DNS" | "IP";
  value: string;
}

/** subjectAltName entries for the hosts a member listens on (loopback always). */
export function subjectAltNames(hosts: readonly string[]): AltNameEntry[] {
  const names = new Map<string, AltNameEntry>();
  const add = (entry: AltNameEntry) => names.set(`${entry.type}:${entry.value}`, entry);
  add({ type: "DNS", value: "localhost" });
  add({ type: "IP", value: "127.0.0.1" });
  for (const raw of hosts) {
    const host = raw.replace(/^\[|\]$/g, "");
    if (host !== "") add({ type: isIP(host) ? "IP" : "DNS", value: host });
  }
  return [...names.values()];
}

/** An IP address's bytes (4 or 16), as a certificate's iPAddress name holds them. */
export function ipBytes(ip: string): Uint8Array {
  if (isIPv4(ip)) return Uint8Array.from(ip.split(".").map(Number));
  if (isIP(ip) !== 6) throw new Error(`not an IP address: ${ip}`);
  const zone = ip.indexOf("%");
  let text = zone === -1 ? ip : ip.slice(0, zone);
  // An IPv4 tail (::ffff:10.0.0.1) is two 16-bit groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    text = `${text.slice(0, -v4[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const all = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/**
 * A certificate serial from 16 random bytes, as DER's minimal positive INTEGER: first byte
 * 0x40-0x7f. Clearing only the sign bit left a leading 0x00 in 1 of 128 certificates, which
 * DER forbids before a byte below 0x80 ("illegal padding": OpenSSL refused 1 in 256 of them).
 */
export function serialNumber(random: Uint8Array): Uint8Array {
  const serial = Uint8Array.from(random);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  return serial;
}

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
// pkijs types its engine with the DOM's Crypto, which Node's webcrypto is.
const engine = new CryptoEngine({ name: "node", crypto: webcrypto as CryptoEngineParameters["crypto"] });

/** A self-signed P-256 certificate (O=etcd, as etcd's) for `names`, valid for a year; PEM cert and PKCS#8 key. */
export async function makeSelfSigned(names: readonly AltNameEntry[], now = new Date()): Promise<KeyPair> {
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]);
  const cert = new Certificate();
  cert.version = 2; // X.509 v3
  cert.serialNumber = new Integer({
    valueHex: serialNumber(webcrypto.getRandomValues(new Uint8Array(16))).buffer,
  });
  const organization = () =>
    new AttributeTypeAndValue({ type: "2.5.4.10", value: new Utf8String({ value: "etcd" }) });
  cert.subject.typesAndValues.push(organization());
  cert.issuer.typesAndValues.push(organization());
  cert.notBefore.value = now;
  cert.notAfter.value = new Date(now.getTime() + 365 * 24 * 3600 * 1000);
  const altName = new AltName({
    altNames: names.map((n) =>
      n.type === "DNS"
        ? new GeneralName({ type: 2, value: n.value })
        : new GeneralName({ type: 7, value: new OctetString({ valueHex: ipBytes(n.value).buffer }) }),
    ),
  });
  const basic = new BasicConstraints({ cA: false });
  // Server and client use: a peer presents the same certificate when it dials.
  const usage = new ExtKeyUsage({ keyPurposes: ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"] });
  const extension = (extnID: string, critical: boolean, value: { toSchema(): { toBER(): ArrayBuffer } }) =>
    new Extension({ extnID, critical, extnValue: value.toSchema().toBER(), parsedValue: value });
  cert.extensions = [
    extension("2.5.29.19", true, basic),
    extension("2.5.29.37", false, usage),
    extension("2.5.29.17", false, altName),
  ];
  await cert.subjectPublicKeyInfo.importKey(keys.publicKey, engine);
  await cert.sign(keys.privateKey, "SHA-256", engine);
  const der = Buffer.from(cert.toSchema(true).toBER());
  const pem = `-----BEGIN CERTIFICATE-----\n${der
    .toString("base64")
    .match(/.{1,64}/g)!
    .join("\n")}\n-----END CERTIFICATE-----\n`;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }).export({
    format: "pem",
    type: "pkcs8",
  });
  return { cert: Buffer.from(pem), key: Buffer.from(key) };
}

/** The key pair under `dir`, made on first use (written whole, then renamed into place). */
export async function selfSignedKeyPair(dir: string, hosts: readonly string[]): Promise<KeyPair> {
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const exists = await stat(certPath).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(dir, { recursive: true });
    const pair = await makeSelfSigned(subjectAltNames(hosts));
    await writeFile(`${keyPath}.tmp`, pair.key, { mode: 0o600 });
    await rename(`${keyPath}.tmp`, keyPath);
    await writeFile(`${certPath}.tmp`, pair.cert);
    await rename(`${certPath}.tmp`, certPath);
  }
  return { cert: await readFile(certPath), key: await readFile(keyPath) };
}
