// TLS as etcd serves it (pkg/transport: TLSInfo.ServerConfig and its TLS listener), shared by
// the member's client and peer ports and the gateway:
// - a trusted CA file or --client-cert-auth makes a client certificate required and verified
//   against that CA (Go's RequireAndVerifyClientCert): a wrong CA or an expired certificate
//   fails the handshake;
// - after the handshake, etcd's own checks: the CRL's serial numbers (read from the file on
//   every connection, as etcd does, so a new CRL needs no restart), the allowed CN or hostname
//   of a peer certificate;
// - every refused connection is logged in etcd's words ("rejected connection from ...") and
//   changes nothing else.

import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { opensslCiphers } from "./cipher-suites.js";
import { revokedSerials, serialHex } from "./revocation-list.js";

/** etcd's TLS flags for one side (client or peer), as file paths. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** "" or absent: no client certificates are asked for (unless clientCertAuth). */
  trustedCaFile?: string;
  clientCertAuth?: boolean;
  crlFile?: string;
  /** Go names (etcd's --cipher-suites); empty: OpenSSL's defaults. */
  cipherSuites?: readonly string[];
  /** Only a peer certificate with this CN is accepted (etcd's --peer-cert-allowed-cn). */
  allowedCn?: string;
  /** Only a peer certificate valid for this host is accepted (--peer-cert-allowed-hostname). */
  allowedHostname?: string;
}

/** A loaded server-side TLS configuration. */
export interface ServerTls {
  readonly options: tls.TlsOptions;
  /** Peers present a verified certificate (so its CN can name the caller). */
  readonly verifiesPeers: boolean;
  readonly crlFile: string | undefined;
  readonly allowedCn: string | undefined;
  readonly allowedHostname: string | undefined;
}

/** One refused connection, in the terms of etcd's log line. */
export interface TlsRejection {
  remoteAddress: string;
  error: string;
  serverName: string;
}

export class TlsConfigError extends Error {
  override name = "TlsConfigError";
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsConfigError(`${what} ${path}: ${(err as Error).message}`);
  }
}

/** Reads the files (once, at start; the CRL again on each connection) and checks they fit. */
export function loadServerTls(files: TlsFiles): ServerTls {
  if (files.allowedCn && files.allowedHostname) {
    throw new TlsConfigError(
      `AllowedCN and AllowedHostname are mutually exclusive (cn="${files.allowedCn}", hostname="${files.allowedHostname}")`,
    );
  }
  const cert = readFile(files.certFile, "cert-file");
  const key = readFile(files.keyFile, "key-file");
  const ca = files.trustedCaFile ? readFile(files.trustedCaFile, "trusted-ca-file") : undefined;
  const verifiesPeers = ca !== undefined || files.clientCertAuth === true;
  const ciphers = opensslCiphers(files.cipherSuites ?? []);
  if (files.crlFile) revokedSerials(readFile(files.crlFile, "crl-file"));
  const options: tls.TlsOptions = {
    cert,
    key,
    minVersion: "TLSv1.2",
    requestCert: verifiesPeers,
    // Verified by refusalAfterHandshake instead, so that every refusal is logged with its reason
    // (Node's own rejection closes the socket silently).
    rejectUnauthorized: false,
    ...(ca !== undefined ? { ca } : {}),
    ...(ciphers !== undefined ? { ciphers, honorCipherOrder: true } : {}),
  };
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new TlsConfigError(`${files.certFile}, ${files.keyFile}: ${(err as Error).message}`);
  }
  return {
    options,
    verifiesPeers,
    crlFile: files.crlFile || undefined,
    allowedCn: files.allowedCn || undefined,
    allowedHostname: files.allowedHostname || undefined,
  };
}

/** A certificate made here (auto-TLS): serves TLS, asks nothing of the peer. */
export function serverTlsFromKeyPair(pair: { cert: Buffer; key: Buffer }): ServerTls {
  return {
    options: { cert: pair.cert, key: pair.key, minVersion: "TLSv1.2" },
    verifiesPeers: false,
    crlFile: undefined,
    allowedCn: undefined,
    allowedHostname: undefined,
  };
}

/** etcd's checks after a successful handshake: why the peer is refused, or undefined. */
export function refusalAfterHandshake(config: ServerTls, socket: tls.TLSSocket): string | undefined {
  if (!config.verifiesPeers) return undefined;
  const cert = socket.getPeerCertificate(true);
  if (cert === null || Object.keys(cert).length === 0) return "tls: client didn't provide a certificate";
  if (!socket.authorized) {
    return `tls: failed to verify client's certificate: ${verificationFailure(socket.authorizationError)}`;
  }
  if (config.allowedCn !== undefined || config.allowedHostname !== undefined) {
    const allowed =
      config.allowedCn !== undefined
        ? commonNameOf(cert) === config.allowedCn
        : tls.checkServerIdentity(config.allowedHostname!, cert) === undefined;
    if (!allowed) return "client certificate authentication failed";
  }
  if (config.crlFile !== undefined) {
    let revoked: Set<string>;
    try {
      revoked = revokedSerials(readFileSync(config.crlFile));
    } catch (err) {
      return (err as Error).message;
    }
    // etcd checks every certificate the peer sent, not only the leaf.
    const seen = new Set<tls.DetailedPeerCertificate>();
    for (let c: tls.DetailedPeerCertificate | undefined = cert; c !== undefined && !seen.has(c); ) {
      seen.add(c);
      const serial = serialHex(c.serialNumber);
      if (revoked.has(serial)) return `transport: certificate serial ${serial} revoked`;
      c = c.issuerCertificate === c ? undefined : c.issuerCertificate;
    }
  }
  return undefined;
}

/** OpenSSL's verification codes in Go's x509 words, which etcd's operators know. */
function verificationFailure(code: Error | string | undefined): string {
  const text = String(code ?? "unknown error");
  if (text === "CERT_HAS_EXPIRED" || text === "CERT_NOT_YET_VALID") {
    return `x509: certificate has expired or is not yet valid (${text})`;
  }
  if (
    text === "UNABLE_TO_VERIFY_LEAF_SIGNATURE" ||
    text === "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" ||
    text === "UNABLE_TO_GET_ISSUER_CERT" ||
    text === "SELF_SIGNED_CERT_IN_CHAIN" ||
    text === "DEPTH_ZERO_SELF_SIGNED_CERT"
  ) {
    return `x509: certificate signed by unknown authority (${text})`;
  }
  return text;
}

function commonNameOf(cert: tls.PeerCertificate): string {
  const cn = cert.subject?.CN as string | string[] | undefined;
  return (Array.isArray(cn) ? cn[0] : cn) ?? "";
}

/**
 * The CN of the peer's verified certificate (etcd's AuthInfoFromTLS: the caller's user name
 * with --client-cert-auth), or undefined without one.
 */
export function verifiedCommonName(socket: {
  authorized?: boolean;
  getPeerCertificate?: () => tls.PeerCertificate;
}): string | undefined {
  if (socket.authorized !== true || socket.getPeerCertificate === undefined) return undefined;
  const cert = socket.getPeerCertificate();
  if (cert === null || Object.keys(cert).length === 0) return undefined;
  return commonNameOf(cert);
}

/** etcd's log line for a refused TLS connection (embed: logTLSHandshakeFailure). */
export function rejectionMessage(r: TlsRejection): string {
  return `rejected connection from "${r.remoteAddress}" (error "${r.error}", ServerName "${r.serverName}")`;
}

export interface TlsConnectionHandlers {
  /** A connection that passed the handshake and etcd's checks. */
  secure(socket: tls.TLSSocket): void;
  /**
   * Plaintext on the same port (etcd serves http:// and https:// URLs on one port); absent: TLS
   * only. The socket's first bytes were put back with unshift: read it with 'data' (or through
   * a ReplayingSocket), as a server reading the handle natively would miss them.
   */
  plain?(socket: net.Socket): void;
  rejected(rejection: TlsRejection): void;
}

function remoteOf(socket: net.Socket | tls.TLSSocket): string {
  const address = socket.remoteAddress ?? "";
  return `${address.includes(":") ? `[${address}]` : address}:${socket.remotePort ?? 0}`;
}

/**
 * A TCP server whose connections go through TLS and etcd's checks before `secure`; with `plain`,
 * a connection whose first byte is not a TLS handshake record goes there instead.
 */
export function createTlsServer(
  config: ServerTls,
  alpn: string[],
  handlers: TlsConnectionHandlers,
): net.Server {
  const tlsServer = tls.createServer({ ...config.options, ALPNProtocols: alpn });
  tlsServer.on("secureConnection", (socket: tls.TLSSocket) => {
    const refusal = refusalAfterHandshake(config, socket);
    if (refusal !== undefined) {
      handlers.rejected({
        remoteAddress: remoteOf(socket),
        error: refusal,
        serverName: (socket as { servername?: string | false }).servername || "",
      });
      socket.destroy();
      return;
    }
    handlers.secure(socket);
  });
  tlsServer.on("tlsClientError", (err: Error & { reason?: string }, socket: tls.TLSSocket) => {
    // A socket already closed has lost its address; the TCP socket under it still knows it.
    const parent = (socket as { _parent?: net.Socket })._parent;
    handlers.rejected({
      remoteAddress: remoteOf(socket.remoteAddress === undefined && parent !== undefined ? parent : socket),
      error: err.reason ?? err.message,
      serverName: (socket as { servername?: string | false }).servername || "",
    });
    socket.destroy();
  });
  return net.createServer({ noDelay: true }, (socket) => {
    if (handlers.plain === undefined) {
      tlsServer.emit("connection", socket);
      return;
    }
    const plain = handlers.plain;
    socket.once("data", (first: Buffer) => {
      // Put back, the bytes reach either side: TLS takes a socket's buffered bytes first.
      socket.pause();
      socket.unshift(first);
      if (first[0] === 0x16) tlsServer.emit("connection", socket);
      else {
        plain(socket);
        socket.resume();
      }
    });
    socket.on("error", () => socket.destroy());
  });
}
