// How a member is stored and carried in entries (etcd's membership.Member as etcdserverpb.Member
// bytes), and the URL form etcd keeps and prints.
import { etcdserverpb } from "@etcd-ts/api";
import type { MemberInfo } from "./members-table.js";

export const memberCodec = {
  encode(m: MemberInfo): Buffer {
    return Buffer.from(
      etcdserverpb.Member.encode({
        ID: m.id,
        name: m.name,
        peerURLs: m.peerUrls,
        clientURLs: m.clientUrls,
        isLearner: m.isLearner,
      }).finish(),
    );
  },
  decode(bytes: Uint8Array): MemberInfo {
    const m = etcdserverpb.Member.decode(bytes);
    return { id: m.ID, name: m.name, peerUrls: m.peerURLs, clientUrls: m.clientURLs, isLearner: m.isLearner };
  },
};

/** "http://127.0.0.1:2380/" -> "http://127.0.0.1:2380", the form etcd keeps and prints. */
export function urlString(url: URL): string {
  if (url.protocol === "unix:") return url.href;
  return `${url.protocol}//${url.host}`;
}
