import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { describe, it } from "node:test";
import { type authBackend, signJws, VerificationKeys } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { judgeToken, type KeySource, TokenGate, type TokenRefusalReport, tokenOf } from "./token-gate.js";

const b64 = (v: string | Buffer) => Buffer.from(v).toString("base64url");
const NOW = 1_700_000_000_000;

function es256(kid: string, notAfterMs = NOW + 3_600_000) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
  const record: authBackend.SigningKey = { kid, jwk: JSON.stringify(jwk), notAfterMs: BigInt(notAfterMs) };
  return { privateKey, record };
}

function jwt(
  privateKey: KeyObject,
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
): string {
  const input = `${b64(JSON.stringify({ alg: "ES256", typ: "JWT", ...header }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(signJws("ES256", privateKey, input))}`;
}

const live = { username: "alice", revision: 4, exp: NOW / 1000 + 300 };
const expired = { ...live, exp: NOW / 1000 - 1 };

function withToken(token: string, key = "token"): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set(key, token);
  return m;
}

/** A key source whose refetch publishes `later` (what the members hold by then). */
class Members implements KeySource {
  readonly keys = new VerificationKeys();
  lists = 0;
  constructor(
    private readonly later: authBackend.SigningKey[],
    private readonly reachable = true,
  ) {}
  async refetch(): Promise<void> {
    this.lists++;
    if (!this.reachable) throw new Error("unreachable");
    this.keys.replaceAll(this.later);
  }
}

describe("judgeToken", () => {
  const k1 = es256("k1");
  const keys = new VerificationKeys();
  keys.put(k1.record);

  it("passes a token a published key signed, with its claims", () => {
    assert.deepEqual(judgeToken(keys, jwt(k1.privateKey, { kid: "k1" }, live), NOW, false), {
      pass: true,
      claims: { username: "alice", revision: 4 },
    });
  });

  it("refuses a token once its exp passes, though it was verified (and remembered) before", () => {
    const token = jwt(k1.privateKey, { kid: "k1" }, { ...live, exp: NOW / 1000 + 5 });
    assert.deepEqual(judgeToken(keys, token, NOW, false), {
      pass: true,
      claims: { username: "alice", revision: 4 },
    });
    assert.deepEqual(judgeToken(keys, token, NOW + 5_000, false), { pass: false, reason: "expired" });
  });

  it("refuses an expired token, a forged one and one another key signed", () => {
    const other = es256("k1");
    assert.deepEqual(judgeToken(keys, jwt(k1.privateKey, { kid: "k1" }, expired), NOW, false), {
      pass: false,
      reason: "expired",
    });
    const forged = jwt(k1.privateKey, { kid: "k1" }, live).replace(
      /\.[^.]+\./,
      `.${b64(JSON.stringify({ ...live, username: "root" }))}.`,
    );
    assert.deepEqual(judgeToken(keys, forged, NOW, false), {
      pass: false,
      reason: "bad signature or claims",
    });
    assert.deepEqual(judgeToken(keys, jwt(other.privateKey, { kid: "k1" }, live), NOW, false), {
      pass: false,
      reason: "bad signature or claims",
    });
    assert.deepEqual(judgeToken(keys, jwt(k1.privateKey, { kid: "k1", alg: "ES384" }, live), NOW, false), {
      pass: false,
      reason: "bad signature or claims",
    });
  });

  it("refuses every token of a key past its not_after", () => {
    const old = es256("old", NOW - 1);
    const held = new VerificationKeys();
    held.put(old.record);
    assert.deepEqual(judgeToken(held, jwt(old.privateKey, { kid: "old" }, live), NOW, false), {
      pass: false,
      reason: "key expired",
    });
  });

  it("asks for a newer list on an unknown key, and refuses it only after one", () => {
    const t = jwt(k1.privateKey, { kid: "k9" }, live);
    assert.deepEqual(judgeToken(keys, t, NOW, false), { unknownKey: "k9" });
    assert.deepEqual(judgeToken(keys, t, NOW, true), { pass: false, reason: "unknown key" });
  });

  it("leaves simple tokens and live kid-less JWTs to the members, refusing expired kid-less ones", () => {
    assert.deepEqual(judgeToken(keys, "QxVnoGpLvtaIVjVd.14", NOW, false), { pass: true });
    assert.deepEqual(judgeToken(keys, jwt(k1.privateKey, {}, live), NOW, false), { pass: true });
    assert.deepEqual(judgeToken(keys, jwt(k1.privateKey, {}, expired), NOW, false), {
      pass: false,
      reason: "expired",
    });
    assert.deepEqual(judgeToken(keys, "eyJub3QiOiJqd3QifQ.garbage.x", NOW, false), { pass: true });
  });
});

describe("TokenGate", () => {
  const k1 = es256("k1");
  const k2 = es256("k2");
  const call = { method: "Range", client: "127.0.0.1" };

  it("reads the token as members do: `token`, else `authorization`", () => {
    assert.equal(tokenOf(new grpc.Metadata()), undefined);
    assert.equal(tokenOf(withToken("abc", "authorization")), "abc");
    const both = withToken("from-token");
    both.set("authorization", "from-authorization");
    assert.equal(tokenOf(both), "from-token");
  });

  it("passes calls without a token, and reports each refusal once", async () => {
    const reports: TokenRefusalReport[] = [];
    const gate = new TokenGate(
      new Members([k1.record]),
      (r) => reports.push(r),
      () => NOW,
    );
    assert.deepEqual(gate.judge(undefined, call), { pass: true });
    const verdict = await gate.judge(jwt(k1.privateKey, { kid: "k1" }, expired), call);
    assert.deepEqual(verdict, { pass: false, reason: "expired" });
    assert.deepEqual(reports, [{ ...call, reason: "expired" }]);
  });

  it("lists the keys again once for a key it does not hold (a rotation), then verifies", async () => {
    const members = new Members([k1.record, k2.record]);
    members.keys.put(k1.record);
    const gate = new TokenGate(members, undefined, () => NOW);
    const verdict = await gate.judge(jwt(k2.privateKey, { kid: "k2" }, live), call);
    assert.deepEqual(verdict, { pass: true, claims: { username: "alice", revision: 4 } });
    assert.equal(members.lists, 1);
    assert.deepEqual(
      gate.judge(jwt(k2.privateKey, { kid: "k2" }, live), call),
      verdict,
      "held now: synchronous",
    );
    assert.deepEqual(await gate.judge(jwt(k2.privateKey, { kid: "k3" }, live), call), {
      pass: false,
      reason: "unknown key",
    });
    assert.equal(members.lists, 2);
  });

  it("lets the member decide when no member lists the keys", async () => {
    const gate = new TokenGate(new Members([], false), undefined, () => NOW);
    assert.deepEqual(await gate.judge(jwt(k1.privateKey, { kid: "k1" }, live), call), { pass: true });
  });
});
