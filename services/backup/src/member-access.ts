// How the backup service reaches members: plaintext or TLS (etcdctl's --cacert, --cert, --key),
// and, on a cluster with auth enabled, as a user (etcdctl's --user, --password). Maintenance.Snapshot
// is for root only when auth is on, and the delta watch reads the whole keyspace, so the user is
// root (or one whose role reads everything, for deltas alone).
import { readFileSync } from "node:fs";
import { etcdErrorFromMessage, etcdserverpb } from "@etcd-ts/api";
import { type ChannelCredentials, credentials, Metadata, status } from "@grpc/grpc-js";
import { SnapshotSourceError } from "./backup-catalog.js";
import { BackupError } from "./object-store.js";

export interface MemberAccessOptions {
  /** PEM files: verify members against `cacert` (then dial TLS), offer `cert`/`key` to them. */
  cacert?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** etcdctl's --user: "name" or "name:password". */
  user?: string | undefined;
  /** With a --user that carries no password. */
  password?: string | undefined;
}

interface Credentials {
  name: string;
  password: string;
}

const AUTH_DEADLINE_MS = 5000;

export class MemberAccess {
  readonly channel: ChannelCredentials;
  readonly secure: boolean;
  private readonly login: Credentials | undefined;
  /** One token per member (simple tokens are per member; a JWT would do for all). */
  private readonly tokens = new Map<string, Promise<string>>();

  static readonly plaintext = new MemberAccess({});

  constructor(options: MemberAccessOptions) {
    this.secure = options.cacert !== undefined && options.cacert !== "";
    if (!this.secure && (options.cert || options.key))
      throw new BackupError("--cert/--key need --cacert (TLS to members)");
    if ((options.cert ? 1 : 0) + (options.key ? 1 : 0) === 1)
      throw new BackupError("--cert and --key go together");
    const read = (what: string, file: string | undefined) => {
      if (file === undefined || file === "") return null;
      try {
        return readFileSync(file);
      } catch (err) {
        throw new BackupError(`cannot read ${what} ${file}: ${(err as Error).message}`);
      }
    };
    this.channel = this.secure
      ? credentials.createSsl(
          read("--cacert", options.cacert),
          read("--key", options.key),
          read("--cert", options.cert),
        )
      : credentials.createInsecure();
    this.login = loginOf(options.user, options.password);
  }

  /** HOST:PORT of an endpoint given as HOST:PORT or an http(s) URL, checked against TLS. */
  address(endpoint: string): string {
    const scheme = /^(https?):\/\//.exec(endpoint)?.[1];
    if (scheme === "https" && !this.secure)
      throw new BackupError(`https endpoint ${endpoint} needs --cacert`);
    if (scheme === "http" && this.secure)
      throw new BackupError(`http endpoint ${endpoint} with --cacert: members are dialled over TLS`);
    return scheme === undefined ? endpoint : endpoint.slice(scheme.length + 3).replace(/\/$/, "");
  }

  /** Call metadata for `endpoint`: its auth token when a user is configured. */
  async metadata(endpoint: string, base = new Metadata()): Promise<Metadata> {
    if (this.login === undefined) return base;
    let token = this.tokens.get(endpoint);
    if (token === undefined) {
      token = this.authenticate(endpoint, this.login);
      this.tokens.set(endpoint, token);
      // A failed Authenticate is not cached: the next call (a retry) asks again.
      token.catch(() => this.tokens.delete(endpoint));
    }
    base.set("token", await token);
    return base;
  }

  /**
   * What a failed call on `endpoint` means. UNAUTHENTICATED (an expired or revoked token): the next
   * call logs in again, so a retry may succeed. PERMISSION_DENIED, INVALID_ARGUMENT or
   * FAILED_PRECONDITION (no user, an unknown one such as a client certificate's CN, a user who is
   * not root): every member would answer the same, so a final BackupError. Snapshot and HashKV
   * refuse in etcd 3.4's auth package words instead (code 2, `auth: permission denied`): the same.
   */
  refused(endpoint: string, err: unknown): unknown {
    const code = (err as { code?: number }).code;
    const kind = etcdErrorFromMessage((err as { details?: string }).details ?? "")?.kind;
    if (code === status.UNAUTHENTICATED || kind === "AuthPackageInvalidAuthToken")
      this.tokens.delete(endpoint);
    if (
      code === status.PERMISSION_DENIED ||
      code === status.INVALID_ARGUMENT ||
      code === status.FAILED_PRECONDITION ||
      kind === "AuthPackageUserEmpty" ||
      kind === "AuthPackageUserNotFound" ||
      kind === "AuthPackagePermissionDenied"
    ) {
      const who = this.login === undefined ? "a caller with no --user" : `user ${this.login.name}`;
      return new BackupError(`${endpoint} refused ${who}: ${(err as { details?: string }).details ?? err}`);
    }
    return err;
  }

  private authenticate(endpoint: string, login: Credentials): Promise<string> {
    const auth = new etcdserverpb.AuthClient(this.address(endpoint), this.channel);
    return new Promise<string>((resolve, reject) =>
      auth.authenticate(login, new Metadata(), { deadline: Date.now() + AUTH_DEADLINE_MS }, (err, res) => {
        auth.close();
        if (err === null) return resolve(res.token);
        const message = `authenticate as ${login.name} on ${endpoint}: ${err.details || err.message}`;
        // A member that is down may be retried, or another one used; refused credentials are final.
        const transient = err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED;
        reject(transient ? new SnapshotSourceError(message) : new BackupError(message));
      }),
    );
  }
}

function loginOf(user: string | undefined, password: string | undefined): Credentials | undefined {
  if (user === undefined || user === "") {
    if (password !== undefined && password !== "") throw new BackupError("--password needs --user");
    return undefined;
  }
  const colon = user.indexOf(":");
  if (colon === -1) {
    if (password === undefined)
      throw new BackupError(`--user ${user} needs a password (user:password or --password)`);
    return { name: user, password };
  }
  if (password !== undefined) throw new BackupError("give the password in --user or --password, not both");
  return { name: user.slice(0, colon), password: user.slice(colon + 1) };
}
