// The member's control-plane events as NATS messages (@etcd-ts/events' subjects and payloads).
// Called on the Raft loop: it only builds a small JSON payload and queues it (ControlPlane
// publishes on a later turn, bounded, and drops rather than waits).
import { type AlarmsChanged, type ControlPlane, topics } from "@etcd-ts/events";
import { formatId } from "../membership/member-id.js";
import type { ClusterEvents } from "../server/mod.js";

/** etcdserverpb.AlarmType's names. */
const ALARM_NAMES: Record<number, AlarmsChanged["alarms"][number]["alarm"]> = {
  0: "NONE",
  1: "NOSPACE",
  2: "CORRUPT",
};

export function clusterEventPublisher(plane: ControlPlane): ClusterEvents {
  return {
    leaderElected({ clusterId, leaderId, term, name, clientUrls }) {
      plane.publish(topics.leader(formatId(clusterId)), {
        clusterId: formatId(clusterId),
        leaderId: formatId(leaderId),
        term,
        name,
        clientUrls,
        at: Date.now(),
      });
    },
    membersChanged({ clusterId, reporter, members }) {
      plane.publish(topics.members(formatId(clusterId)), {
        clusterId: formatId(clusterId),
        reporter: formatId(reporter),
        members: members.map((m) => ({
          id: formatId(m.id),
          name: m.name,
          peerUrls: m.peerUrls,
          clientUrls: m.clientUrls,
          isLearner: m.isLearner,
        })),
        at: Date.now(),
      });
    },
    alarmsChanged({ clusterId, reporter, alarms }) {
      plane.publish(topics.alarm(formatId(clusterId)), {
        clusterId: formatId(clusterId),
        reporter: formatId(reporter),
        alarms: alarms.map((a) => ({
          memberId: formatId(a.memberID),
          alarm: ALARM_NAMES[a.alarm] ?? "NONE",
        })),
        at: Date.now(),
      });
    },
    compacted({ clusterId, reporter, revision }) {
      plane.publish(topics.compaction(formatId(clusterId)), {
        clusterId: formatId(clusterId),
        reporter: formatId(reporter),
        revision,
        at: Date.now(),
      });
    },
    authChanged({ clusterId, reporter, revision, enabled }) {
      plane.publish(topics.auth(formatId(clusterId)), {
        clusterId: formatId(clusterId),
        reporter: formatId(reporter),
        revision,
        enabled,
        at: Date.now(),
      });
    },
  };
}
