// One-line descriptions of Raft messages and Readys for the replay trace: dense enough that a
// few hundred steps stay readable, complete enough to follow an election or a log repair.

import { type Entry, type Message, MessageType, type Ready, StateRole } from "../types.js";

const decoder = new TextDecoder();

export function roleName(role: StateRole): string {
  switch (role) {
    case StateRole.Follower:
      return "follower";
    case StateRole.Candidate:
      return "candidate";
    case StateRole.PreCandidate:
      return "pre-candidate";
    case StateRole.Leader:
      return "leader";
  }
}

function entryRange(entries: readonly Entry[]): string {
  if (entries.length === 0) return "[]";
  const first = entries[0];
  const last = entries[entries.length - 1];
  const terms = first.term === last.term ? `t${first.term}` : `t${first.term}..t${last.term}`;
  return first.index === last.index
    ? `[${first.index}@${terms}]`
    : `[${first.index}..${last.index}@${terms}]`;
}

function ctx(m: Message): string {
  return m.context && m.context.length > 0 ? ` ctx=${decoder.decode(m.context)}` : "";
}

export function describeMessage(m: Message): string {
  const head = `${MessageType[m.type]} ${m.from}->${m.to} t${m.term}`;
  switch (m.type) {
    case MessageType.MsgApp:
      return `${head} prev=${m.index}@t${m.logTerm} ents=${entryRange(m.entries)} commit=${m.commit}`;
    case MessageType.MsgAppResp:
      return `${head} ${m.reject ? `reject index=${m.index} hint=${m.rejectHint}` : `ack index=${m.index}`}`;
    case MessageType.MsgVote:
    case MessageType.MsgPreVote:
      return `${head} last=${m.index}@t${m.logTerm}`;
    case MessageType.MsgVoteResp:
    case MessageType.MsgPreVoteResp:
      return `${head} ${m.reject ? "rejected" : "granted"}`;
    case MessageType.MsgSnap:
      return `${head} snapshot=${m.snapshot?.metadata.index}@t${m.snapshot?.metadata.term}`;
    case MessageType.MsgHeartbeat:
      return `${head} commit=${m.commit}${ctx(m)}`;
    case MessageType.MsgHeartbeatResp:
      return `${head}${ctx(m)}`;
    case MessageType.MsgProp:
      return `${head} ents=${entryRange(m.entries)}`;
    case MessageType.MsgReadIndex:
      return `${head}${ctx(m)}`;
    case MessageType.MsgReadIndexResp:
      return `${head} index=${m.index}${ctx(m)}`;
    default:
      return head;
  }
}

export function describeReady(rd: Ready): string {
  const parts: string[] = [];
  if (rd.softState) parts.push(`${roleName(rd.softState.role)} lead=${rd.softState.lead}`);
  if (rd.hardState) parts.push(`hs=t${rd.hardState.term}/v${rd.hardState.vote}/c${rd.hardState.commit}`);
  if (rd.snapshot) parts.push(`snapshot=${rd.snapshot.metadata.index}@t${rd.snapshot.metadata.term}`);
  if (rd.entries.length > 0) parts.push(`persist=${entryRange(rd.entries)}`);
  if (rd.committedEntries.length > 0) parts.push(`apply=${entryRange(rd.committedEntries)}`);
  if (rd.readStates.length > 0) {
    parts.push(`reads=${rd.readStates.map((r) => `${decoder.decode(r.requestCtx)}@${r.index}`).join(",")}`);
  }
  if (rd.messages.length > 0) parts.push(`send=${rd.messages.length}`);
  return parts.join(" ");
}
