// etcd's --auto-tls / --peer-auto-tls: a self-signed certificate made at start-up and kept under
// <data-dir>/fixtures/{client,peer} (etcd's own paths), reused on restart. Peers and clients of
// an auto-TLS member encrypt but do not verify it (etcd's auto-TLS peers skip verification too).
import { execFile } from "node:child_process";
import { mkdir, readFile, stat } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

/** subjectAltName entries for the hosts a member listens on. */
export function subjectAltNames(hosts: readonly string[]): string {
  const names = new Set<string>(["DNS:localhost", "IP:127.0.0.1"]);
  for (const raw of hosts) {
    const host = raw.replace(/^\[|\]$/g, "");
    if (host === "") continue;
    names.add(isIP(host) ? `IP:${host}` : `DNS:${host}`);
  }
  return [...names].join(",");
}

export async function selfSignedKeyPair(dir: string, hosts: readonly string[]): Promise<KeyPair> {
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const exists = await stat(certPath).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(dir, { recursive: true });
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "365",
      "-subj",
      "/O=etcd",
      "-addext",
      `subjectAltName=${subjectAltNames(hosts)}`,
      "-keyout",
      keyPath,
      "-out",
      certPath,
    ]);
  }
  return { cert: await readFile(certPath), key: await readFile(keyPath) };
}
