// etcd's JWT tokens (auth/jwt.go): claims `username`, `revision` (the auth revision at
// Authenticate) and `exp`, signed by the member that answers Authenticate and verified by any
// member holding the public key. RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA, as
// etcd's --auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...
// (the JWS itself, shared with services/auth and the gateway, is @etcd-ts/api's auth/jws.ts).
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { EtcdError, etcdClaims, isJwsAlgorithm, signJws, verifyJws } from "@etcd-ts/api";
import type { AuthInfo } from "./auth-store.js";

export interface JwtOptions {
  signMethod: string;
  publicKey: KeyObject;
  /** Absent: verify only (etcd refuses Authenticate on such a member). */
  privateKey?: KeyObject | undefined;
  ttlMs: number;
}

const DEFAULT_TTL_MS = 5 * 60 * 1000;

/**
 * Parses etcd's option string after "jwt," (pub-key, priv-key, sign-method, ttl) and loads the
 * keys. `parseDuration` is the flags' Go-duration parser.
 */
export function parseJwtOptions(options: string, parseDuration: (value: string) => number): JwtOptions {
  const fields = new Map<string, string>();
  for (const part of options.split(",")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0) throw new Error(`invalid --auth-token option ${JSON.stringify(part)}`);
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const signMethod = fields.get("sign-method") ?? "";
  if (!isJwsAlgorithm(signMethod)) throw new Error(`auth: invalid auth signature method ${signMethod}`);
  const pub = fields.get("pub-key");
  const priv = fields.get("priv-key");
  if (pub === undefined && priv === undefined) throw new Error("auth: missing key data");
  const privateKey = priv === undefined ? undefined : createPrivateKey(readFileSync(priv));
  const publicKey = pub !== undefined ? createPublicKey(readFileSync(pub)) : createPublicKey(privateKey!);
  const ttl = fields.get("ttl");
  return {
    signMethod,
    publicKey,
    privateKey,
    ttlMs: ttl === undefined ? DEFAULT_TTL_MS : parseDuration(ttl),
  };
}

const b64 = (data: Buffer | string) => Buffer.from(data).toString("base64url");

export class JwtTokens {
  constructor(
    private readonly options: JwtOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** etcd's assign: a token for `username` checked at auth `revision`. */
  assign(username: string, revision: number): string {
    if (this.options.privateKey === undefined) throw new EtcdError("AuthFailed");
    const header = b64(JSON.stringify({ alg: this.options.signMethod, typ: "JWT" }));
    const exp = Math.floor((this.now() + this.options.ttlMs) / 1000);
    const claims = b64(JSON.stringify({ exp, revision, username }));
    const input = `${header}.${claims}`;
    const signature = signJws(this.options.signMethod, this.options.privateKey, input);
    return `${input}.${b64(signature)}`;
  }

  /** etcd's info: the caller a valid, unexpired token names; undefined otherwise. */
  info(token: string): AuthInfo | undefined {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    const [header, claims, signature] = parts as [string, string, string];
    try {
      const head = JSON.parse(Buffer.from(header, "base64url").toString()) as { alg?: unknown };
      if (head.alg !== this.options.signMethod) return undefined;
      const ok = verifyJws(
        this.options.signMethod,
        this.options.publicKey,
        `${header}.${claims}`,
        Buffer.from(signature, "base64url"),
      );
      if (!ok) return undefined;
      return etcdClaims(claims, this.now());
    } catch {
      return undefined;
    }
  }
}
