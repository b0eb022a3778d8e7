// Every process's /metrics, scraped as Prometheus does, against what etcd's official Grafana
// dashboard and kube-prometheus's etcd alerts query (etcdMembersDown, etcdNoLeader,
// etcdHighNumberOfLeaderChanges, etcdGRPCRequestsSlow, etcdHighNumberOfFailedGRPCRequests,
// etcdHighFsyncDurations, etcdHighCommitDurations, etcdDatabaseQuotaLowSpace,
// etcdExcessiveDatabaseGrowth, etcdMemberCommunicationSlow, etcdHighNumberOfFailedProposals):
// the same names, label sets, units and buckets as etcd 3.4, and values that move.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseExposition, type Sample, sampleValue } from "@etcd-ts/telemetry";
import { freePort } from "@etcd-ts/testing";
import { etcdctl, Stack, sleep } from "./stack.js";

async function scrape(baseUrl: string): Promise<Sample[]> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, `${baseUrl}/metrics`);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

const named = (samples: readonly Sample[], name: string) => samples.filter((s) => s.name === name);

/** prometheus.ExponentialBuckets as Go prints the le label. */
function exponentialLe(start: number, factor: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0, b = start; i < count; i++, b *= factor) out.push(String(Number(b.toPrecision(12))));
  return [...out, "+Inf"];
}

function bucketsOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): string[] {
  return named(samples, `${name}_bucket`)
    .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .map((s) => s.labels.le!);
}

/** Names every member must serve (etcd 3.4's, for what the dashboard and alerts read). */
const MEMBER_NAMES = [
  "etcd_server_has_leader",
  "etcd_server_is_leader",
  "etcd_server_leader_changes_seen_total",
  "etcd_server_proposals_committed_total",
  "etcd_server_proposals_applied_total",
  "etcd_server_proposals_pending",
  "etcd_server_proposals_failed_total",
  "etcd_server_heartbeat_send_failures_total",
  "etcd_server_slow_apply_total",
  "etcd_server_quota_backend_bytes",
  "etcd_disk_wal_fsync_duration_seconds_bucket",
  "etcd_disk_wal_fsync_duration_seconds_sum",
  "etcd_disk_wal_fsync_duration_seconds_count",
  "etcd_disk_backend_commit_duration_seconds_bucket",
  "etcd_disk_backend_snapshot_duration_seconds_count",
  "etcd_mvcc_db_total_size_in_bytes",
  "etcd_mvcc_db_total_size_in_use_in_bytes",
  "etcd_debugging_mvcc_keys_total",
  "etcd_debugging_mvcc_watcher_total",
  "etcd_mvcc_put_total",
  "etcd_mvcc_delete_total",
  "etcd_mvcc_txn_total",
  "etcd_mvcc_range_total",
  "etcd_network_client_grpc_sent_bytes_total",
  "etcd_network_client_grpc_received_bytes_total",
  "grpc_server_started_total",
  "grpc_server_handled_total",
  "grpc_server_msg_received_total",
  "grpc_server_msg_sent_total",
  "grpc_server_handling_seconds_bucket",
  "process_cpu_seconds_total",
  "process_resident_memory_bytes",
  "process_start_time_seconds",
  "process_open_fds",
];

describe("metrics of a real cluster and gateway", () => {
  let stack: Stack;
  const metricsUrls: Record<string, string> = {};

  before(async () => {
    const perMember: Record<string, string[]> = {};
    for (const name of ["m1", "m2", "m3"]) {
      metricsUrls[name] = `http://127.0.0.1:${await freePort()}`;
      // extensive: grpc_server_handling_seconds, which etcd's mixin (etcdGRPCRequestsSlow) reads.
      perMember[name] = ["--listen-metrics-urls", metricsUrls[name]!, "--metrics", "extensive"];
    }
    stack = await Stack.start([], perMember);
  });

  after(async () => {
    await stack?.close();
  });

  it("members serve etcd's names, label sets and buckets on the client port and --listen-metrics-urls", async () => {
    const ids = new Set<string>();
    let leaders = 0;
    for (const m of stack.cluster.members) {
      for (const base of [m.clientUrl, metricsUrls[m.name]!]) {
        const samples = await scrape(base);
        for (const name of MEMBER_NAMES)
          assert.ok(named(samples, name).length > 0, `${base}: ${name} missing`);
        // etcdNoLeader: etcd_server_has_leader == 0.
        assert.equal(sampleValue(samples, "etcd_server_has_leader"), 1, `${m.name} knows the leader`);
        // etcdHighNumberOfLeaderChanges: increase(...[15m]); each member saw the first election.
        assert.ok(sampleValue(samples, "etcd_server_leader_changes_seen_total")! >= 1);
        assert.equal(sampleValue(samples, "etcd_server_version", { server_version: "3.4.23" }), 1);
        assert.equal(sampleValue(samples, "etcd_cluster_version", { cluster_version: "3.4" }), 1);
        const [id] = named(samples, "etcd_server_id");
        assert.match(id?.labels.server_id ?? "", /^[0-9a-f]+$/);
        ids.add(id!.labels.server_id!);
        if (base === m.clientUrl) leaders += sampleValue(samples, "etcd_server_is_leader")!;
        // etcdHighFsyncDurations / etcdHighCommitDurations: histogram_quantile over etcd's buckets.
        assert.deepEqual(
          bucketsOf(samples, "etcd_disk_wal_fsync_duration_seconds"),
          exponentialLe(0.001, 2, 14),
        );
        assert.deepEqual(
          bucketsOf(samples, "etcd_disk_backend_commit_duration_seconds"),
          exponentialLe(0.001, 2, 14),
        );
        assert.deepEqual(
          bucketsOf(samples, "etcd_disk_backend_snapshot_duration_seconds"),
          exponentialLe(0.01, 2, 17),
        );
        // etcdDatabaseQuotaLowSpace / etcdExcessiveDatabaseGrowth: size over quota.
        assert.ok(sampleValue(samples, "etcd_mvcc_db_total_size_in_bytes")! > 0);
        assert.ok(sampleValue(samples, "etcd_mvcc_db_total_size_in_use_in_bytes")! > 0);
        assert.equal(sampleValue(samples, "etcd_server_quota_backend_bytes"), 2 * 1024 ** 3);
        // etcdGRPCRequestsSlow / the dashboard's RPC rate: go-grpc-prometheus's label sets.
        const handled = named(samples, "grpc_server_handled_total").find(
          (s) => s.labels.grpc_method === "Range" && s.labels.grpc_code === "OK",
        );
        assert.deepEqual(handled?.labels, {
          grpc_type: "unary",
          grpc_service: "etcdserverpb.KV",
          grpc_method: "Range",
          grpc_code: "OK",
        });
        assert.deepEqual(bucketsOf(samples, "grpc_server_handling_seconds", { grpc_method: "Range" }), [
          "0.005",
          "0.01",
          "0.025",
          "0.05",
          "0.1",
          "0.25",
          "0.5",
          "1",
          "2.5",
          "5",
          "10",
          "+Inf",
        ]);
        assert.ok(
          named(samples, "grpc_server_started_total").some(
            (s) => s.labels.grpc_service === "etcdserverpb.Watch" && s.labels.grpc_type === "bidi_stream",
          ),
          "the dashboard's active watch streams: Watch as bidi_stream",
        );
        // etcdMembersDown reads the peer failure rate by To; the dashboard, peer traffic.
        assert.ok(
          named(samples, "etcd_network_peer_sent_bytes_total").some(
            (s) => /^[0-9a-f]+$/.test(s.labels.To!) && s.value > 0,
          ),
        );
        assert.ok(
          named(samples, "etcd_network_peer_received_bytes_total").some(
            (s) => /^[0-9a-f]+$/.test(s.labels.From!) && s.value > 0,
          ),
        );
        assert.ok(sampleValue(samples, "process_start_time_seconds")! > 1.6e9);
      }
    }
    assert.equal(ids.size, 3, "one etcd_server_id per member");
    assert.equal(leaders, 1, "exactly one member reports etcd_server_is_leader 1");
  });

  it("the leader times heartbeats to each peer (etcdMemberCommunicationSlow)", async () => {
    for (let attempt = 0; attempt < 50; attempt++) {
      for (const m of stack.cluster.members) {
        const samples = await scrape(m.clientUrl);
        if (sampleValue(samples, "etcd_server_is_leader") !== 1) continue;
        const counts = named(samples, "etcd_network_peer_round_trip_time_seconds_count").filter(
          (s) => s.value > 0,
        );
        if (counts.length === 2) {
          assert.deepEqual(
            bucketsOf(samples, "etcd_network_peer_round_trip_time_seconds", { To: counts[0]!.labels.To! }),
            exponentialLe(0.0001, 2, 14),
          );
          return;
        }
      }
      await sleep(200);
    }
    assert.fail("no round-trip times on the leader for both peers");
  });

  it("a put moves proposals, the WAL fsync and backend commit histograms, mvcc and gRPC counts", async () => {
    const m = stack.cluster.members[0]!;
    const endpoint = m.clientUrl.replace("http://", "");
    const before = await scrape(m.clientUrl);
    const put = { grpc_method: "Put", grpc_service: "etcdserverpb.KV", grpc_type: "unary" };
    const read = (samples: Sample[]) => ({
      committed: sampleValue(samples, "etcd_server_proposals_committed_total")!,
      applied: sampleValue(samples, "etcd_server_proposals_applied_total")!,
      fsyncs: sampleValue(samples, "etcd_disk_wal_fsync_duration_seconds_count")!,
      commits: sampleValue(samples, "etcd_disk_backend_commit_duration_seconds_count")!,
      puts: sampleValue(samples, "etcd_mvcc_put_total")!,
      keys: sampleValue(samples, "etcd_debugging_mvcc_keys_total")!,
      started: sampleValue(samples, "grpc_server_started_total", put)!,
      ok: sampleValue(samples, "grpc_server_handled_total", { ...put, grpc_code: "OK" })!,
      received: sampleValue(samples, "etcd_network_client_grpc_received_bytes_total")!,
    });
    const was = read(before);
    const result = await etcdctl(endpoint, ["put", "metrics-test-key", "v"]);
    assert.equal(result.code, 0, result.stderr);
    const now = read(await scrape(m.clientUrl));
    assert.ok(now.committed > was.committed, "proposals committed");
    assert.ok(now.applied > was.applied, "proposals applied");
    assert.ok(now.fsyncs > was.fsyncs, "WAL fsyncs");
    assert.ok(now.commits > was.commits, "backend commits");
    assert.ok(now.puts > was.puts, "mvcc puts");
    assert.equal(now.keys, was.keys + 1, "a new key");
    assert.equal(now.started, was.started + 1, "Put calls started");
    assert.equal(now.ok, was.ok + 1, "Put calls handled OK");
    assert.ok(now.received > was.received, "client bytes received");
  });

  it("a --listen-metrics-urls address answers /metrics and /health only", async () => {
    const base = metricsUrls.m1!;
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { health: "true" });
    assert.equal((await fetch(`${base}/version`)).status, 404);
  });

  it("the gateway serves its own metrics and grpc_server_* on its JSON port", async () => {
    const result = await etcdctl(stack.gatewayAddr, ["put", "through-gateway", "v"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((await etcdctl(stack.gatewayAddr, ["get", "through-gateway", "--consistency=s"])).code, 0);
    const samples = await scrape(stack.jsonUrl);
    for (const name of [
      "etcd_gateway_requests_total",
      "etcd_gateway_range_cache_hits_total",
      "etcd_gateway_range_cache_misses_total",
      "etcd_gateway_upstream_watches",
      "etcd_gateway_client_watches",
      "etcd_gateway_has_leader",
      "process_resident_memory_bytes",
    ]) {
      assert.ok(named(samples, name).length > 0, `gateway: ${name} missing`);
    }
    const put = { grpc_method: "Put", grpc_service: "etcdserverpb.KV", grpc_type: "unary" };
    assert.equal(sampleValue(samples, "grpc_server_started_total", put), 1);
    assert.equal(sampleValue(samples, "grpc_server_handled_total", { ...put, grpc_code: "OK" }), 1);
    assert.ok(
      named(samples, "etcd_gateway_requests_total").some(
        (s) => s.labels.method === "Put" && /^[0-9a-f]+$/.test(s.labels.member!) && s.labels.code === "OK",
      ),
      "per-member routing",
    );
  });
});
