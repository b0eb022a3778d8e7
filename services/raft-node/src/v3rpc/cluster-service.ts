// etcdserverpb.Cluster: membership changes go through Raft as ConfChange entries (add, remove,
// promote) or normal entries (peer URL updates); the answer lists the membership as applied
// here. Promotion is decided by the leader, which alone knows how far the learner's log is.

import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import { ConfChangeType } from "@etcd-ts/raft";
import { Metadata } from "@grpc/grpc-js";
import { memberIdFor } from "../membership/member-id.js";
import { learnerInSync, type MemberInfo } from "../membership/members-table.js";
import { apiHeader } from "../mvcc/mod.js";
import { EntryKind } from "../server/entry-envelope.js";
import { type Member, memberCodec } from "../server/member.js";
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

export function clusterService(member: Member, leader: LeaderClients): etcdserverpb.ClusterServer {
  const list = () => member.members.list().map(toPbMember);
  return {
    memberAdd: unary(async (req: etcdserverpb.MemberAddRequest) => {
      refuseLearner(member);
      if (!validPeerUrls(req.peerURLs)) throw new EtcdError("MemberBadURLs");
      const info: MemberInfo = {
        // etcd's MemberAdd: NewMember("", urls, "", &now), no token, the unix seconds.
        id: memberIdFor(req.peerURLs, "", Math.floor(Date.now() / 1000)),
        name: "",
        peerUrls: req.peerURLs,
        clientUrls: [],
        isLearner: req.isLearner,
      };
      member.members.checkAdd(info, member.config.maxLearners);
      if (!req.isLearner && member.config.strictReconfigCheck) member.members.checkEnoughStartedToAdd();
      const members = await member.proposeConfChange(
        req.isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode,
        info,
      );
      return {
        header: apiHeader(member.header()),
        member: toPbMember(info),
        members: members.map(toPbMember),
      };
    }),
    memberRemove: unary(async (req: etcdserverpb.MemberRemoveRequest) => {
      refuseLearner(member);
      member.members.checkRemove(req.ID);
      if (member.config.strictReconfigCheck && !member.members.get(req.ID)!.isLearner) {
        member.members.checkEnoughStartedToRemove(req.ID);
      }
      const target = member.members.get(req.ID)!;
      const members = await member.proposeConfChange(ConfChangeType.RemoveNode, target);
      return { header: apiHeader(member.header()), members: members.map(toPbMember) };
    }),
    memberUpdate: unary(async (req: etcdserverpb.MemberUpdateRequest) => {
      refuseLearner(member);
      if (!validPeerUrls(req.peerURLs)) throw new EtcdError("MemberBadURLs");
      member.members.checkUpdate(req.ID, req.peerURLs);
      const current = member.members.get(req.ID)!;
      const payload = memberCodec.encode({ ...current, peerUrls: req.peerURLs });
      await member.propose(EntryKind.MemberUpdate, payload, undefined);
      return { header: apiHeader(member.header()), members: list() };
    }),
    memberList: unary(async () => {
      refuseLearner(member);
      return { header: apiHeader(member.header()), members: list() };
    }),
    memberPromote: unary(async (req: etcdserverpb.MemberPromoteRequest) => {
      refuseLearner(member);
      if (!member.isLeader) {
        const client = leader.clusterClient();
        return new Promise<etcdserverpb.MemberPromoteResponse>((resolve, reject) =>
          client.memberPromote(req, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
            err ? reject(err) : resolve(res),
          ),
        );
      }
      member.members.checkPromote(req.ID);
      const status = member.raftStatus();
      const learner = status.progress.get(req.ID);
      const own = status.progress.get(member.id);
      if (learner === undefined || own === undefined || !learnerInSync(learner.match, own.match)) {
        throw new EtcdError("LearnerNotReady");
      }
      const target = member.members.get(req.ID)!;
      const members = await member.proposeConfChange(ConfChangeType.AddNode, { ...target, isLearner: false });
      return { header: apiHeader(member.header()), members: members.map(toPbMember) };
    }),
  };
}
