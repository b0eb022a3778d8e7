// etcdserverpb.Cluster: membership changes go through Raft as ConfChange entries (add, remove,
// promote) or normal entries (peer URL updates); the answer lists the membership as applied
// here. Promotion is decided by the leader, which alone knows how far the learner's log is.

import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import { Metadata } from "@grpc/grpc-js";
import { apiHeader } from "../mvcc/mod.js";
import type { EtcdServer, MemberInfo } from "../server/mod.js";
import { callerOf, tokenOf } from "./caller.js";
import { refuseLearner } from "./kv-service.js";
import type { LeaderClients } from "./leader-clients.js";
import { unary } from "./rpc-errors.js";

export function toPbMember(m: MemberInfo): etcdserverpb.Member {
  return { ID: m.id, name: m.name, peerURLs: m.peerUrls, clientURLs: m.clientUrls, isLearner: m.isLearner };
}

/** etcd's check on MemberAdd/MemberUpdate URLs: absolute http(s) URLs with a host and port. */
export function validPeerUrls(urls: readonly string[]): boolean {
  if (urls.length === 0) return false;
  for (const raw of urls) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return false;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:" && url.protocol !== "unix:") return false;
    if (url.protocol !== "unix:" && (url.hostname === "" || url.port === "")) return false;
    if (url.pathname !== "/" && url.pathname !== "") return false;
  }
  return true;
}

/** etcd's ClusterServer header: cluster, member and term, no revision (membership is not in mvcc). */
function clusterHeader(member: EtcdServer): etcdserverpb.ResponseHeader {
  return { ...apiHeader(member.header()), revision: 0n };
}

export function clusterService(member: EtcdServer, leader: LeaderClients): etcdserverpb.ClusterServer {
  const list = () => member.members().map(toPbMember);
  return {
    memberAdd: unary(async (req: etcdserverpb.MemberAddRequest, call) => {
      // etcd's checkMembershipOperationPermission: root only once auth is on.
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      if (!validPeerUrls(req.peerURLs)) throw new EtcdError("MemberBadURLs");
      const added = await member.addMember(req.peerURLs, req.isLearner);
      return {
        header: clusterHeader(member),
        member: toPbMember(added.member),
        members: added.members.map(toPbMember),
      };
    }),
    memberRemove: unary(async (req: etcdserverpb.MemberRemoveRequest, call) => {
      // etcd's checkMembershipOperationPermission: root only once auth is on.
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      const members = await member.removeMember(req.ID);
      return { header: clusterHeader(member), members: members.map(toPbMember) };
    }),
    memberUpdate: unary(async (req: etcdserverpb.MemberUpdateRequest, call) => {
      // etcd's checkMembershipOperationPermission: root only once auth is on.
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      if (!validPeerUrls(req.peerURLs)) throw new EtcdError("MemberBadURLs");
      await member.updateMember(req.ID, req.peerURLs);
      return { header: clusterHeader(member), members: list() };
    }),
    memberList: unary(async () => {
      refuseLearner(member);
      return { header: clusterHeader(member), members: list() };
    }),
    memberPromote: unary(async (req: etcdserverpb.MemberPromoteRequest, call) => {
      // etcd's checkMembershipOperationPermission: root only once auth is on.
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      if (!member.isLeader) {
        const client = leader.clusterClient();
        return new Promise<etcdserverpb.MemberPromoteResponse>((resolve, reject) =>
          // The leader checks the same caller: its token goes along.
          client.memberPromote(
            req,
            forwardedToken(call.metadata),
            { deadline: Date.now() + 10_000 },
            (err, res) => (err ? reject(err) : resolve(res)),
          ),
        );
      }
      const members = await member.promoteMember(req.ID);
      return { header: clusterHeader(member), members: members.map(toPbMember) };
    }),
  };
}

function forwardedToken(incoming: Metadata | undefined): Metadata {
  const md = new Metadata();
  const token = tokenOf(incoming);
  if (token !== undefined) md.set("token", token);
  return md;
}
