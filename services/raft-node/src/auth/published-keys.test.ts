import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { describe, it } from "node:test";
import { jwsKeyId } from "@etcd-ts/api";
import { PublishedKeys } from "./published-keys.js";

const b64 = (v: string | Buffer) => Buffer.from(v).toString("base64url");

function es256(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
  return { privateKey, record: { kid, jwk: JSON.stringify(jwk), notAfterMs: 10_000_000n } };
}

function token(privateKey: KeyObject, header: Record<string, unknown>, claims: Record<string, unknown>) {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  const signature = sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64(signature)}`;
}

describe("PublishedKeys", () => {
  const claims = { username: "alice", revision: 7, exp: 5_000 };

  it("accepts a token signed by a published key, with etcd's claims", () => {
    const keys = new PublishedKeys();
    const k = es256("k1");
    assert.equal(keys.put(k.record).length, 1);
    const t = token(k.privateKey, { alg: "ES256", kid: "k1", typ: "JWT" }, claims);
    assert.equal(jwsKeyId(t), "k1");
    assert.deepEqual(keys.check(t, "k1", 1_000_000), { info: { username: "alice", revision: 7 } });
  });

  it("refuses expired tokens, keys past notAfter, other algorithms and bad signatures", () => {
    const keys = new PublishedKeys();
    const k = es256("k1");
    const other = es256("k2");
    keys.put(k.record);
    const good = token(k.privateKey, { alg: "ES256", kid: "k1" }, claims);
    assert.ok("info" in keys.check(good, "k1", 1_000_000), "verified (and remembered)");
    assert.deepEqual(keys.check(good, "k1", 5_000_000), { invalid: true }, "exp passed");
    assert.deepEqual(keys.check(good, "k1", 10_000_000), { invalid: true }, "key past notAfter");
    const forged = token(other.privateKey, { alg: "ES256", kid: "k1" }, claims);
    assert.deepEqual(keys.check(forged, "k1", 1_000_000), { invalid: true });
    const none = `${b64(JSON.stringify({ alg: "none", kid: "k1" }))}.${b64(JSON.stringify(claims))}.`;
    assert.deepEqual(keys.check(none, "k1", 1_000_000), { invalid: true });
  });

  it("reports an unknown key (the member then waits for what is committed) and forgets withdrawn ones", () => {
    const keys = new PublishedKeys();
    const k = es256("k1");
    const t = token(k.privateKey, { alg: "ES256", kid: "k1" }, claims);
    assert.deepEqual(keys.check(t, "k1", 0), { unknownKey: "k1" });
    keys.put(k.record);
    assert.ok("info" in keys.check(t, "k1", 0));
    assert.deepEqual(keys.delete("k1"), [{ key: Buffer.from("k/k1"), value: undefined }]);
    assert.deepEqual(keys.check(t, "k1", 0), { unknownKey: "k1" });
  });

  it("refuses to publish private key material or an unknown algorithm", () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = JSON.stringify({ ...privateKey.export({ format: "jwk" }), kid: "p", alg: "ES256" });
    assert.throws(() => PublishedKeys.validate({ kid: "p", jwk, notAfterMs: 1n }), /private key/);
    assert.deepEqual(new PublishedKeys().put({ kid: "p", jwk, notAfterMs: 1n }), []);
    const k = es256("h");
    const hs = JSON.stringify({ ...JSON.parse(k.record.jwk), alg: "HS256" });
    assert.throws(() => PublishedKeys.validate({ kid: "h", jwk: hs, notAfterMs: 1n }), /unsupported alg/);
  });

  it("restores from the auth column's rows, ignoring the auth store's", () => {
    const keys = new PublishedKeys();
    const k = es256("k1");
    const rows = keys.put(k.record).map((r) => ({ key: r.key, value: r.value! }));
    const restored = new PublishedKeys();
    restored.restore([{ key: Buffer.from("authEnabled"), value: Buffer.from([1]) }, ...rows]);
    assert.deepEqual(
      restored.list().map((r) => r.kid),
      ["k1"],
    );
    assert.equal(jwsKeyId("abcdefghijklmnop.42"), undefined, "a simple token has no kid");
  });
});
