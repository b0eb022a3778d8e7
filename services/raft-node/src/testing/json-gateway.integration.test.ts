// etcd's JSON gateway on the member's client port, compared with a real etcd 3.4: the same HTTP
// session (curl-like POSTs as etcd's e2e v3_curl tests and etcd3gw send them) against etcd, then
// against our member started with the same flags (so the same member and cluster IDs); status,
// content type and body must be the same, byte for byte, but for the auth token (random).
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { haveRealEtcd, sideBySideMember } from "./side-by-side.fixture.js";

interface Exchange {
  request: string;
  status: number;
  contentType: string;
  body: string;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
/** Go's json.Marshal of a LeaseGrantRequest writes the int64 ID as a number beyond 2^53. */
const BIG_ID = "7225847387692964643";

async function session(endpoint: string): Promise<Exchange[]> {
  const log: Exchange[] = [];
  const post = async (path: string, body: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${endpoint}${path}`, { method: "POST", body, headers });
    const text = await res.text();
    log.push({
      request: `POST ${path} ${body}`,
      status: res.status,
      contentType: res.headers.get("content-type") ?? "",
      body: text,
    });
    return text;
  };
  await post("/v3/kv/put", JSON.stringify({ key: b64("foo"), value: b64("bar") }));
  await post("/v3beta/kv/range", JSON.stringify({ key: b64("foo") }));
  await post("/v3/kv/range", "{}");
  await post("/v3/kv/range", '{"key":"Zm9v",');
  // Malformed bodies: refused with encoding/json's and jsonpb's words, as etcd's gateway reads them.
  for (const bad of [
    "{bad json",
    '{"key":"Zm9v",}',
    '{"key":123}',
    '{"key":"-_8="}',
    '{"key":"Zm9v","limit":1.5}',
    '{"key":"Zm9v","limit":"1e3"}',
    '{"key":"Zm9v","sort_order":"BOGUS"}',
    '{"key":"Zm9v","serializable":"yes"}',
    "[]",
  ]) {
    await post("/v3/kv/range", bad);
  }
  await post(
    "/v3/kv/txn",
    JSON.stringify({
      compare: [{ key: b64("foo"), target: "CREATE", create_revision: "2" }],
      success: [{ request_put: { key: b64("foo"), value: b64("baz"), prev_kv: true } }],
      failure: [{ request_range: { key: b64("foo") } }],
    }),
  );
  await post(`/v3/lease/grant`, `{"TTL":60,"ID":${BIG_ID}}`);
  await post(`/v3/lease/keepalive`, `{"ID":${BIG_ID}}\n{"ID":"${BIG_ID}"}`);
  // A stream's first request that does not decode is the call's error (Unknown for a client
  // stream, InvalidArgument for a server stream); a later one ends the client's side.
  await post(`/v3/lease/keepalive`, `{"ID":${BIG_ID}}\n{bad`);
  await post(`/v3/lease/keepalive`, '{"ID":"x"}');
  await post("/v3/watch", "{bad");
  await post("/v3/maintenance/snapshot", "[1]");
  await post(`/v3/kv/put`, JSON.stringify({ key: b64("leased"), value: b64("v"), lease: BIG_ID }));
  await post(`/v3/kv/lease/leases`, "{}");
  await post(`/v3/lease/revoke`, `{"ID":${BIG_ID}}`);
  await post(`/v3/lease/revoke`, `{"ID":${BIG_ID}}`);
  await post("/v3/kv/compaction", JSON.stringify({ revision: "3", physical: true }));
  await post("/v3/kv/range", JSON.stringify({ key: b64("foo"), revision: "2" }));
  await post("/v3/election/proclaim", JSON.stringify({ value: b64("v2") }));
  await post("/v3/election/resign", "{}");
  const campaign = JSON.parse(
    await post("/v3/election/campaign", JSON.stringify({ name: b64("/election"), value: b64("v1") })),
  ) as { leader: Record<string, string> };
  await post("/v3/election/proclaim", JSON.stringify({ leader: campaign.leader, value: b64("v2") }));
  await post("/v3/election/leader", JSON.stringify({ name: b64("/election") }));
  // Without a lease the campaign holds its key with a fresh session lease (time-derived ID),
  // named after it as etcd's concurrency package names it.
  const { lease, key } = campaign.leader as { lease: string; key: string };
  assert.equal(Buffer.from(key, "base64").toString(), `/election/${BigInt(lease).toString(16)}`);
  for (const e of log) {
    e.body = e.body.replaceAll(lease, "<lease>").replaceAll(key, "<key>");
    e.request = e.request.replaceAll(lease, "<lease>").replaceAll(key, "<key>");
  }
  await post("/v3/cluster/member/list", "{}");

  // A watch from revision 1 answers its creation and the history at once; it stays open.
  const abort = new AbortController();
  const watch = await fetch(`${endpoint}/v3/watch`, {
    method: "POST",
    body: JSON.stringify({ create_request: { key: b64("foo"), start_revision: 1 } }),
    signal: abort.signal,
  });
  const reader = watch.body!.getReader();
  let text = "";
  for (let i = 0; i < 10 && text.split("\n").length < 3; i++) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  abort.abort();
  log.push({
    request: "POST /v3/watch",
    status: watch.status,
    contentType: watch.headers.get("content-type") ?? "",
    body: text,
  });

  // etcd 3.4's Alarm answers carry no header.
  await post("/v3/maintenance/alarm", JSON.stringify({ action: "GET" }));
  await post(
    "/v3/maintenance/alarm",
    JSON.stringify({ action: "DEACTIVATE", memberID: "1", alarm: "NOSPACE" }),
  );

  // A refusal with FailedPrecondition: grpc-gateway v1 answers 412 (v2 would say 400).
  await post("/v3/auth/user/add", JSON.stringify({ name: "dup", password: "x" }));
  await post("/v3/auth/user/add", JSON.stringify({ name: "dup", password: "x" }));

  // Auth last: it changes every request after it.
  await post("/v3/auth/user/add", JSON.stringify({ name: "root", password: "toor" }));
  await post("/v3/auth/user/grant", JSON.stringify({ user: "root", role: "root" }));
  await post("/v3/auth/role/add", JSON.stringify({ name: "root" }));
  await post("/v3/auth/user/grant", JSON.stringify({ user: "root", role: "root" }));
  await post("/v3/auth/enable", "{}");
  await post("/v3/kv/put", JSON.stringify({ key: b64("a"), value: b64("b") }));
  const auth = JSON.parse(
    await post("/v3/auth/authenticate", JSON.stringify({ name: "root", password: "toor" })),
  ) as {
    token: string;
  };
  log[log.length - 1]!.body = log[log.length - 1]!.body.replace(auth.token, "<token>");
  await post("/v3/kv/put", JSON.stringify({ key: b64("a"), value: b64("b") }), { Authorization: auth.token });
  await post("/v3/kv/put", JSON.stringify({ key: b64("a"), value: b64("b") }), { Authorization: "bogus" });
  return log;
}

describe("the JSON gateway on the client port, as etcd 3.4 answers it", {
  timeout: 120_000,
  skip: haveRealEtcd ? false : "etcd 3.4 not installed",
}, () => {
  let etcd: Exchange[];
  let ours: Exchange[];

  before(async () => {
    ({ etcd, ours } = await sideBySideMember("gw-1", session));
  });

  test("every exchange: the same status, content type and body", () => {
    assert.equal(ours.length, etcd.length);
    for (let i = 0; i < etcd.length; i++) assert.deepEqual(ours[i], etcd[i]);
  });
});
