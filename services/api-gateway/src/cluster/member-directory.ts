import type { ClusterSnapshot } from "../routing/member-selection.js";
import type { MemberChannel } from "./member-channel.js";

/** What the proxies need from cluster tracking; an interface so tests can stand in for it. */
export interface MemberDirectory {
  snapshot(): ClusterSnapshot;
  channelFor(memberId: string): MemberChannel | undefined;
  markDown(memberId: string): void;
  refresh(): Promise<void>;
  onChange(listener: (snapshot: ClusterSnapshot) => void): () => void;
}
