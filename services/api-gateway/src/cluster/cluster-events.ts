// The gateway's side of the NATS control plane: a leader's announcement moves routing at once
// (ClusterTracker.leaderAnnounced), a membership change triggers a probe round, an auth change
// reaches the Range cache. Probing on
// the refresh period goes on regardless: it is what the gateway falls back to when NATS is
// down, and what corrects a wrong or stale event.
import { ANY_CLUSTER, type AuthChanged, type ControlPlane, topics } from "@etcd-ts/events";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import type { ClusterTracker } from "./cluster-tracker.js";
import { memberIdHex } from "./cluster-tracker.js";

export function followClusterEvents(
  plane: ControlPlane,
  tracker: ClusterTracker,
  metrics: GatewayMetrics,
): void {
  metrics.followControlPlane();
  metrics.natsConnected.set(plane.connected ? 1 : 0);
  plane.onConnection((connected) => metrics.natsConnected.set(connected ? 1 : 0));
  const ours = (clusterId: string) =>
    tracker.clusterId === 0n || memberIdHex(tracker.clusterId) === clusterId;
  plane.subscribe(topics.leader(ANY_CLUSTER), (event) => {
    if (!ours(event.clusterId)) return;
    metrics.leaderAnnouncements.inc();
    tracker.leaderAnnounced(event.leaderId, event.term, event.clusterId);
  });
  plane.subscribe(topics.members(ANY_CLUSTER), (event) => {
    if (ours(event.clusterId)) void tracker.refresh();
  });
}

/**
 * An auth change applied by the leader (`etcd.<cluster-id>.auth`): the Range cache's permission
 * memos older than it go at once, not at the next AuthStatus probe (which still corrects a lost
 * event).
 */
export function followAuthEvents(
  plane: ControlPlane,
  tracker: ClusterTracker,
  changed: (event: AuthChanged) => void,
): void {
  plane.subscribe(topics.auth(ANY_CLUSTER), (event) => {
    if (tracker.clusterId === 0n || memberIdHex(tracker.clusterId) === event.clusterId) changed(event);
  });
}
