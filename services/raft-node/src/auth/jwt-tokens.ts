// etcd's JWT tokens (auth/jwt.go): claims `username`, `revision` (the auth revision at
// Authenticate) and `exp`, signed by the member that answers Authenticate and verified by any
// member holding the public key. RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA, as
// etcd's --auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...
//
// node:crypto rather than `jose`: verification runs on every request in the RPC layer and must
// be synchronous there (a watch stream's creates must keep their order; an await per call would
// reorder them), and jose only offers async sign/verify. The JWS encoding is small and fixed.
import { constants, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { EtcdError } from "@etcd-ts/api";
import type { AuthInfo } from "./auth-store.js";

export interface JwtOptions {
  signMethod: string;
  publicKey: KeyObject;
  /** Absent: verify only (etcd refuses Authenticate on such a member). */
  privateKey?: KeyObject | undefined;
  ttlMs: number;
}

interface Algorithm {
  hash: string | null;
  padding?: number;
  saltLength?: number;
  dsaEncoding?: "ieee-p1363";
}

const ALGORITHMS: Record<string, Algorithm> = {
  RS256: { hash: "sha256", padding: constants.RSA_PKCS1_PADDING },
  RS384: { hash: "sha384", padding: constants.RSA_PKCS1_PADDING },
  RS512: { hash: "sha512", padding: constants.RSA_PKCS1_PADDING },
  PS256: { hash: "sha256", padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
  PS384: { hash: "sha384", padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 },
  PS512: { hash: "sha512", padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 },
  ES256: { hash: "sha256", dsaEncoding: "ieee-p1363" },
  ES384: { hash: "sha384", dsaEncoding: "ieee-p1363" },
  ES512: { hash: "sha512", dsaEncoding: "ieee-p1363" },
  EdDSA: { hash: null },
};

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
  if (ALGORITHMS[signMethod] === undefined)
    throw new Error(`auth: invalid auth signature method ${signMethod}`);
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
  private readonly algorithm: Algorithm;

  constructor(
    private readonly options: JwtOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.algorithm = ALGORITHMS[options.signMethod]!;
  }

  /** etcd's assign: a token for `username` checked at auth `revision`. */
  assign(username: string, revision: number): string {
    if (this.options.privateKey === undefined) throw new EtcdError("AuthFailed");
    const header = b64(JSON.stringify({ alg: this.options.signMethod, typ: "JWT" }));
    const exp = Math.floor((this.now() + this.options.ttlMs) / 1000);
    const claims = b64(JSON.stringify({ exp, revision, username }));
    const input = `${header}.${claims}`;
    const signature = sign(
      this.algorithm.hash,
      Buffer.from(input),
      keyParams(this.algorithm, this.options.privateKey),
    );
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

/**
 * The caller etcd's claims name (`username`, `revision`), unless `exp` has passed. Throws on a
 * part that is not base64url JSON.
 */
export function etcdClaims(claimsPart: string, nowMs: number): AuthInfo | undefined {
  const body = JSON.parse(Buffer.from(claimsPart, "base64url").toString()) as Record<string, unknown>;
  if (typeof body.exp === "number" && body.exp * 1000 <= nowMs) return undefined;
  if (typeof body.username !== "string" || typeof body.revision !== "number") return undefined;
  return { username: body.username, revision: body.revision };
}

function keyParams(a: Algorithm, key: KeyObject) {
  return {
    key,
    ...(a.padding !== undefined ? { padding: a.padding } : {}),
    ...(a.saltLength !== undefined ? { saltLength: a.saltLength } : {}),
    ...(a.dsaEncoding !== undefined ? { dsaEncoding: a.dsaEncoding } : {}),
  };
}

/** Whether `alg` is a JWS algorithm etcd signs tokens with (and this module verifies). */
export function isJwsAlgorithm(alg: unknown): alg is string {
  return typeof alg === "string" && Object.hasOwn(ALGORITHMS, alg);
}

/** Checks a JWS signature over `signingInput` ("header.claims") with `alg` and a public key. */
export function verifyJws(alg: string, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  const a = ALGORITHMS[alg];
  if (a === undefined) return false;
  return verify(a.hash, Buffer.from(signingInput), keyParams(a, key), signature);
}
