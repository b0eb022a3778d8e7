// etcd 3.4's access controller for HTTP/1.1 on the client port (embed/serve.go accessController,
// etcdserver.AccessController): --host-whitelist refuses plaintext requests whose Host is not
// listed (DNS rebinding, CVE-2018-5702), --cors decides which origins get the CORS headers, and
// every OPTIONS request is a preflight answered 200 with no body before any route is looked at.
// Pure logic over a request and a response: whoever serves HTTP/1.1 puts it in front.

import type http from "node:http";
import type tls from "node:tls";

const ALLOW_METHODS = "POST, GET, OPTIONS, PUT, DELETE";
const ALLOW_HEADERS = "accept, content-type, authorization";

/** etcd's refusal body (errCVE20185702), with the host the request named. */
export function unrecognizedHostBody(host: string): string {
  return `
etcd received your request, but the Host header was unrecognized.

To fix this, choose one of the following options:
- Enable TLS, then any HTTPS request will be allowed.
- Add the hostname you want to use to the whitelist in settings.
  - e.g. etcd --host-whitelist ${JSON.stringify(host)}

This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).
`;
}

/** Go's httputil.GetHostname: the Host header without its port ("[::1]:2379" -> "::1"). */
export function hostnameOf(hostHeader: string): string {
  const bracketed = /^\[([^\]]*)\]:\d*$/.exec(hostHeader);
  if (bracketed) return bracketed[1]!;
  const colon = hostHeader.lastIndexOf(":");
  // net.SplitHostPort fails on a bare host or a bare IPv6 address: the header is the host.
  if (colon === -1 || hostHeader.indexOf(":") !== colon || hostHeader.startsWith("[")) return hostHeader;
  return hostHeader.slice(0, colon);
}

export class AccessControl {
  private readonly origins: ReadonlySet<string>;
  private readonly hosts: ReadonlySet<string>;
  private readonly allOrigins: boolean;
  private readonly allHosts: boolean;

  /** Both lists as etcd holds them; an empty list or one holding "*" allows everything. */
  constructor(corsOrigins: readonly string[] = ["*"], hostWhitelist: readonly string[] = ["*"]) {
    this.origins = new Set(corsOrigins);
    this.hosts = new Set(hostWhitelist);
    this.allOrigins = this.origins.size === 0 || this.origins.has("*");
    this.allHosts = this.hosts.size === 0 || this.hosts.has("*");
  }

  originAllowed(origin: string): boolean {
    return this.allOrigins || this.origins.has(origin);
  }

  hostAllowed(host: string): boolean {
    return this.allHosts || this.hosts.has(host);
  }

  /**
   * Runs etcd's checks on a request before it is routed: returns true if it answered (a Host
   * not whitelisted: 421 with etcd's text; OPTIONS: 200), false to go on to the routes, with
   * the CORS headers already set on `res` when the origin is allowed.
   */
  answered(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (!this.allHosts && (req.socket as tls.TLSSocket).encrypted !== true) {
      const host = hostnameOf(req.headers.host ?? "");
      if (!this.hosts.has(host)) {
        const body = unrecognizedHostBody(host);
        // Go's http.Error: text/plain, nosniff, and a trailing newline.
        res.writeHead(421, {
          "content-type": "text/plain; charset=utf-8",
          "x-content-type-options": "nosniff",
          "content-length": Buffer.byteLength(body) + 1,
        });
        res.end(`${body}\n`);
        return true;
      }
    }
    if (this.allOrigins) this.setCorsHeaders(res, "*");
    else {
      const origin = req.headers.origin;
      if (origin !== undefined && this.origins.has(origin)) this.setCorsHeaders(res, origin);
    }
    if (req.method === "OPTIONS") {
      res.writeHead(200, { "content-length": 0 });
      res.end();
      return true;
    }
    return false;
  }

  private setCorsHeaders(res: http.ServerResponse, origin: string): void {
    res.setHeader("access-control-allow-methods", ALLOW_METHODS);
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("access-control-allow-headers", ALLOW_HEADERS);
  }
}

/** etcd's defaults (--cors '*', --host-whitelist '*'): every host, every origin. */
export const ALLOW_ALL_ACCESS = new AccessControl();
