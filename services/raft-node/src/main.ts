// A raft-node member process, started with etcd's flags: parse, wire, serve. `raft-node snapshot
// status|restore ...` runs the snapshot command instead.

import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import {
  loadServerTls,
  rejectionMessage,
  type ServerTls,
  serverTlsFromKeyPair,
  type TlsFiles,
  type TlsRejection,
} from "@etcd-ts/api";
import { ControlPlane, registerControlPlaneMetrics } from "@etcd-ts/events";
import { processRegistry, startTracing } from "@etcd-ts/telemetry";
import { type DestinationStream, pino } from "pino";
import { ConfigError, type MemberConfig, memberConfig, parseFlags } from "./config/flags.js";
import { clusterEventPublisher } from "./events/cluster-event-publisher.js";
import { urlString } from "./membership/member-codec.js";
import { formatId } from "./membership/member-id.js";
import { mismatchedPeers, peerHashes } from "./server/initial-corrupt-check.js";
import { CLUSTER_VERSION, Member, SERVER_VERSION } from "./server/mod.js";
import { PeriodicCorruptCheck } from "./server/periodic-corrupt-check.js";
import { EtcdDataDirError, importEtcdDataDir, runSnapshotCommand } from "./snapshot/mod.js";
import { selfSignedKeyPair } from "./transport/auto-tls.js";
import { dialTlsFrom } from "./transport/tls-credentials.js";
import { ClientServer } from "./v3rpc/client-server.js";

/** etcd 3.4's default log line shape (capnslog), which etcd's e2e suite and operators grep for. */
function capnslog(pkg: string, message: string, level: "I" | "C" = "I"): void {
  const now = new Date();
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const stamp =
    `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ` +
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds(), 3)}000`;
  process.stderr.write(`${stamp} ${level} | ${pkg}: ${message}\n`);
}

/** etcd's --log-outputs: stderr, stdout, or files (appended to), all at once. */
function logDestination(outputs: readonly string[]): DestinationStream {
  const streams = outputs.map((o) =>
    o === "stderr"
      ? pino.destination({ dest: 2, sync: true })
      : o === "stdout"
        ? pino.destination({ dest: 1, sync: true })
        : pino.destination({ dest: o, sync: true, mkdir: true }),
  );
  return streams.length === 1 ? streams[0]! : pino.multistream(streams);
}

/**
 * V8 lets the old generation grow to about 3x what survived the last full GC before it collects
 * again (measured on one member after 300k puts: 190 MB live, 550 MB committed); a member's heap
 * is mostly long-lived index, so a 30% step keeps RSS near the live size (610 vs 882 MiB RSS
 * there, same put rate) at the cost of more frequent incremental marking. A heap flag given to
 * node explicitly wins. V8 reads this flag at every full GC, so setting it at startup applies.
 */
function boundHeapGrowth(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ");
  if (!given.includes("heap-growing-percent") && !given.includes("heap_growing_percent")) {
    setFlagsFromString("--heap-growing-percent=30");
  }
}

async function main(): Promise<void> {
  boundHeapGrowth();
  if (process.argv[2] === "snapshot") {
    const io = { out: (t: string) => process.stdout.write(t), err: (t: string) => process.stderr.write(t) };
    process.exitCode = await runSnapshotCommand(process.argv.slice(3), io);
    return;
  }
  let config: ReturnType<typeof memberConfig>;
  try {
    config = memberConfig(parseFlags(process.argv.slice(2), process.env));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`etcd: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (config.printVersion) {
    // etcd's --version lines (Go's fields name the runtime this member runs on).
    process.stdout.write(
      `etcd Version: ${SERVER_VERSION}\nGit SHA: Not provided (etcd-ts)\nGo Version: node${process.versions.node}\nGo OS/Arch: ${process.platform}/${process.arch === "x64" ? "amd64" : process.arch}\n`,
    );
    return;
  }
  const level = ["debug", "info", "warn", "error", "panic", "fatal"].includes(config.logLevel)
    ? config.logLevel.replace("panic", "fatal")
    : "info";
  // Before anything that makes spans or logs: the SDK is loaded only when OTEL_* asks for it.
  const tracingHandle = await startTracing("raft-node");
  const logger = pino({ level, base: { name: config.name } }, logDestination(config.logOutputs));
  for (const warning of config.warnings) logger.warn({}, warning);

  const metrics = processRegistry();
  // Control-plane events are hints: the member starts and serves whether NATS is up or not.
  const controlPlane =
    config.natsUrl === ""
      ? undefined
      : ControlPlane.start({
          url: config.natsUrl,
          name: `etcd-ts member ${config.name}`,
          log: (level, message, details) => logger[level](details ?? {}, message),
        });
  if (controlPlane !== undefined) registerControlPlaneMetrics(metrics, controlPlane);
  // A data dir `etcdctl snapshot restore` wrote is imported at its first start, as etcd starts on it.
  try {
    const imported = await importEtcdDataDir(config);
    if (imported?.restored !== undefined) {
      const r = imported.restored;
      logger.warn(
        {
          dataDir: config.dataDir,
          etcdFilesKeptAt: imported.keptAt,
          revision: r.revision,
          keys: r.keys,
          leases: r.leases,
        },
        "imported the data dir etcd's snapshot restore wrote",
      );
      for (const what of r.dropped) logger.warn({}, `not imported: ${what}`);
    } else if (imported !== undefined) {
      logger.warn(
        { dataDir: config.dataDir, etcdFilesKeptAt: imported.keptAt },
        "finished an interrupted import of etcd's data dir",
      );
    }
  } catch (err) {
    if (err instanceof EtcdDataDirError) {
      logger.fatal({ error: err.message }, "cannot start on this data dir");
      process.stderr.write(`etcd: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  let stopping: Promise<void> | undefined;
  let clientServer: ClientServer | undefined;
  let corruptCheck: PeriodicCorruptCheck | undefined;
  const member = await Member.open(
    config,
    logger,
    {
      onRemoved: () => {
        logger.warn({}, "the member has been permanently removed from the cluster; exiting");
        void stop().then(() => process.exit(0));
      },
      onFatal: (err) => {
        logger.fatal({ error: String(err) }, "member failed; exiting");
        process.exit(1);
      },
      ...(controlPlane === undefined ? {} : { controlPlane: clusterEventPublisher(controlPlane) }),
    },
    metrics,
  );

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await member.handOverLeadership().catch(() => {});
      await corruptCheck?.stop();
      await clientServer?.close();
      await member.stop();
      await controlPlane?.close();
      await tracingHandle?.shutdown().catch(() => {});
    })();
    return stopping;
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      logger.info({ signal }, "received signal; shutting down");
      // etcd re-raises the signal once stopped, so the parent sees the conventional exit status.
      void stop().finally(() => process.kill(process.pid, signal));
      setTimeout(() => process.kill(process.pid, signal), 10_000).unref();
    });
  }

  const { peerTls, clientTls } = await serverTlsOf(config, logger);
  const rejected = (r: TlsRejection) => logger.warn({ ...r }, rejectionMessage(r));
  // etcd's ReqTimeout (5 s plus two election timeouts): how long a corruption check waits for a peer.
  const requestTimeoutMs = 5000 + 2 * config.electionMs;
  if (config.initialCorruptCheck) {
    // Before Raft starts, as etcd (a corrupt member must not serve or replicate anything).
    const local = await member.hashKV(0);
    const peers = member.members().filter((m) => m.id !== member.id);
    logger.info({ timeoutMs: requestTimeoutMs }, "starting initial corruption check");
    const revision = local.hashRevision;
    const mismatched = mismatchedPeers(
      { hash: local.hash, revision, compactRevision: local.compactRevision },
      await peerHashes(member, peers, revision, requestTimeoutMs, dialTlsFrom(config.peerTls)),
      logger,
    );
    if (mismatched.length > 0) {
      capnslog(
        "etcdmain",
        `${member.id.toString(16).padStart(16, "0")} found data inconsistency with peers`,
        "C",
      );
      process.exit(1);
    }
    logger.info({}, "initial corruption checking passed; no corruption");
  }
  const opened = performance.now();
  await member.start(peerTls);
  await member.published;
  // Where a restart's time goes (with bootstrap's "opened the store and the Raft log" line):
  // from the process's start to the member opened, then Raft catching up until published.
  logger.info(
    { openedMs: Math.round(opened), publishedMs: Math.round(performance.now()) },
    "published this member's attributes",
  );
  clientServer = new ClientServer(member, metrics, dialTlsFrom(config.clientTls), rejected);
  await clientServer.listen(config.listenClientUrls, clientTls);
  await clientServer.listenMetrics(config.listenMetricsUrls, clientTls);
  if (config.corruptCheckIntervalMs > 0) {
    corruptCheck = new PeriodicCorruptCheck(
      member,
      config.corruptCheckIntervalMs,
      requestTimeoutMs,
      dialTlsFrom(config.peerTls),
      logger,
    );
    corruptCheck.start();
  }
  const clientUrls = config.advertiseClientUrls.map(urlString);
  capnslog(
    "etcdserver/api",
    `enabled capabilities for version ${CLUSTER_VERSION.split(".").slice(0, 2).join(".")}`,
  );
  capnslog(
    "etcdserver",
    `published {Name:${config.name} ClientURLs:[${clientUrls.join(" ")}]} to cluster ${formatId(member.clusterId)}`,
  );
  capnslog("embed", "ready to serve client requests");
  capnslog(
    "embed",
    clientTls
      ? `serving client requests on ${config.listenClientUrls.map(urlString).join(",")}`
      : `serving insecure client requests on ${config.listenClientUrls.map(urlString).join(",")}, this is strongly discouraged!`,
  );
}

/**
 * Each side's TLS: certificate files, else auto-TLS (etcd: auto-TLS is ignored, with a warning,
 * when files are given), else none.
 */
async function serverTlsOf(
  config: MemberConfig,
  logger: { warn(details: object, message: string): void },
): Promise<{ peerTls: ServerTls | undefined; clientTls: ServerTls | undefined }> {
  const hostsOf = (urls: URL[]) => urls.map((u) => u.hostname);
  const side = async (
    files: TlsFiles | undefined,
    auto: boolean,
    dir: string,
    urls: URL[],
    what: string,
  ): Promise<ServerTls | undefined> => {
    if (files !== undefined) {
      if (auto) logger.warn({}, `ignoring ${what} auto TLS since certs given`);
      return loadServerTls(files);
    }
    if (!auto) return undefined;
    return serverTlsFromKeyPair(
      await selfSignedKeyPair(join(config.dataDir, "fixtures", dir), hostsOf(urls)),
    );
  };
  return {
    peerTls: await side(config.peerTls, config.peerAutoTls, "peer", config.listenPeerUrls, "peer"),
    clientTls: await side(config.clientTls, config.autoTls, "client", config.listenClientUrls, "client"),
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`etcd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
