import { pino, type DestinationStream, type Logger } from "pino";
import type { FastifyInstance } from "fastify";
import {
  loadGatewayConfig,
  resolveGatewaySecrets,
  shortLifetimesAllowed,
  SHORT_LIFETIMES_WARNING,
  type LoadedConfig,
  type GatewayConfig,
} from "../config/index.js";
import type { Store } from "../store/types.js";
import { AuditLog } from "../audit/audit-log.js";
import { DeviceDirectory } from "./device-directory.js";
import { SessionRegistry } from "./sessions.js";
import { SessionJournal } from "./session-journal.js";
import { RegistrationService } from "./registrations.js";
import { RateLimiter, SharedRateLimiter } from "./rate-limit.js";
import { ExecRelay } from "./cluster/exec-relay.js";
import { buildGatewayApp } from "./app.js";
import { serverSansFor } from "./home.js";
import {
  ADVERTISE_URL_FIX,
  advertiseUrlWarning,
  dialUrlForListen,
  splitListen,
} from "../config/listen-url.js";
import { TlsState } from "./tls-state.js";
import { CertificateService } from "./certificates.js";
import { sharedReissueChallenges } from "./reissue-challenges.js";
import { ExecBroker } from "./exec.js";
import { EnrollTokenService } from "./enroll-tokens.js";
import { configureCustomRoles } from "../auth/roles.js";
import type { Server as TlsServer } from "node:tls";
import type { GatewayContext } from "./context.js";
import { BackgroundWrites } from "./background.js";
import { FailureLog } from "./failures.js";
import { GatewayMetrics } from "./metrics.js";
import { SigningKeys } from "../auth/signing-keys.js";
import { TokenService } from "../auth/token-service.js";
import { gatewayKekSource, loadOrCreatePepper } from "./home.js";
import { openGatewayStore } from "./open-store.js";
import { describePostgresUrl } from "../store/postgres-errors.js";
import { loadSharedHashKey } from "./cluster/shared-material.js";
import { unreachableNamesWarning } from "./info.js";
import { checkAddressFree, listenFailure, removePidFile, writePidFile } from "./listen-address.js";
import { acquireGatewayLock } from "./gateway-lock.js";
import { EventHub } from "./events.js";
import { DashboardSessions, STORE_POLICY, creatorCheck } from "./dashboard/sessions.js";
import { RequestsInFlight } from "./requests-in-flight.js";
import { clusterFor, FleetCluster } from "./cluster/cluster.js";
import type { FeedTimer } from "./cluster/change-feed.js";
import { refuseLiveTwin } from "./cluster/instance-registry.js";
import { cacheRefresher } from "./cluster/cache-refresh.js";
import { NodesNotice } from "./cluster/nodes-notice.js";

/** Connections waiting to be accepted (Node's default is 511). */
const LISTEN_BACKLOG = 4096;

/** How long a stopping gateway waits for its nodes to answer their close frames: 100 ms. */
const STOP_CLOSE_GRACE_MS = 100;

export interface RunningGateway {
  app: FastifyInstance;
  ctx: GatewayContext;
  url: string;
  loaded: LoadedConfig<GatewayConfig>;
  /**
   * Stops the gateway: node sessions closed 1012 `gateway restarting`, session ends and audit
   * entries written durably, the store closed. `processExits`: the caller exits the process as
   * soon as this resolves (`gateway start` on a signal), so connections are left for the kernel
   * to close instead of waiting for each node's answer and the server's graceful close.
   */
  close(options?: { processExits?: boolean }): Promise<void>;
}

export interface StartGatewayOptions {
  /** Per-run overrides from flags, e.g. { listen: "0.0.0.0:18789" }. */
  flags?: Record<string, unknown>;
  logger?: Logger;
  /** Where the logger made from the config writes (default: pino's JSON on standard output). */
  logDestination?: DestinationStream;
  now?: () => Date;
  /** Where the dashboard's built files are (default: `dist/web` beside the gateway's modules). */
  webDir?: string;
  /**
   * How the change feed (several instances on one database) waits before dialling the database
   * again after its connection dropped, given the backoff in ms; tests hold it to make a window in
   * which notifications are missed. Default: a timer.
   */
  reconnectWait?: (ms: number) => Promise<void>;
  /**
   * Schedules the change feed's periodic re-read of the shared database (every RECONCILE_EVERY_MS)
   * and its retries after a failure; tests fire it themselves. Default: a timer.
   */
  rereadTimer?: FeedTimer;
}

export async function startGateway(home: string, options: StartGatewayOptions = {}): Promise<RunningGateway> {
  const loaded = loadGatewayConfig(home, options.flags ?? {});
  const config = loaded.config;
  const now = options.now ?? (() => new Date());
  const settings = { level: config.logLevel, base: { gatewayId: config.gatewayId } };
  const logger =
    options.logger ?? (options.logDestination ? pino(settings, options.logDestination) : pino(settings));
  if (shortLifetimesAllowed()) logger.warn(SHORT_LIFETIMES_WARNING);
  configureCustomRoles(config.roles);
  // A taken address stops the start before it changes anything (sessions, certificates, files).
  const listenAddress = { listen: config.listen, ...splitListen(config.listen) };
  await checkAddressFree(home, config.gatewayId, listenAddress);
  // One gateway per home, whatever address it listens on: a second one would mark the first one's
  // sessions closed in the database and re-issue its server certificate under it.
  const lock = acquireGatewayLock(home, now);
  let secrets: Awaited<ReturnType<typeof resolveGatewaySecrets>>;
  let store: Store;
  try {
    // Secret references are resolved once, here: a failure names the reference and stops the start.
    secrets = await resolveGatewaySecrets(config);
    store = await openGatewayStore(home, config, secrets, logger);
  } catch (error) {
    lock.release();
    throw error;
  }
  // Whatever the start opened is closed again when a later step fails (a wrong key-encryption key,
  // a taken port), so an in-process caller is not left holding the database, a timer or a socket.
  const undo: (() => unknown)[] = [() => store.close(), () => lock.release()];
  try {
    // A postgres store without tokens.keyEncryptionKey stops here, before the migration.
    const kekSource = gatewayKekSource(home, config, secrets);
    await store.migrate();
    // Several instances on one database hear of each other's changes through this (solo: no one).
    // Where this instance is reached is known once it listens (a port 0 is chosen then).
    const reachedAt = { url: "" };
    const cluster = clusterFor({
      store,
      databaseUrl: secrets.storeUrl,
      instanceId: config.cluster.instanceId,
      address: () => ({ url: config.cluster.advertiseUrl ?? reachedAt.url, listen: config.listen }),
      logger,
      now,
      ...(options.reconnectWait ? { sleep: options.reconnectWait } : {}),
      ...(options.rereadTimer ? { rereadTimer: options.rereadTimer } : {}),
    });
    const publish = cluster.publish.bind(cluster);
    // Before anything else is written: a missing or wrong key-encryption key stops the start as is.
    const signingKeys = new SigningKeys(store.tokens, config.tokens.algorithm, now, kekSource, publish);
    await signingKeys.load();
    // Several instances on one database: the CA and the hash key are the database's, sealed.
    const sharedKek = store.dialect === "postgres" ? kekSource.load(false) : undefined;
    const describeStore = secrets.storeUrl ? describePostgresUrl(secrets.storeUrl) : undefined;
    const tls = new TlsState({
      home,
      store,
      logger,
      now,
      serverSans: serverSansFor(config.listen, config.sans),
      serverTtlMs: config.certificates.serverTtl,
      ...(sharedKek ? { sharedKek } : {}),
      ...(describeStore ? { describeStore } : {}),
    });
    await tls.load();
    // A copy of a running instance's home stops here, before it closes that instance's sessions.
    if (cluster.instanceId !== null && store.dialect === "postgres")
      await refuseLiveTwin(store, { instanceId: cluster.instanceId, listen: config.listen }, now());
    // Alone: every session a crash left open. Among several: only this instance's (the others' are
    // theirs, or closed by a live instance once their holder's heartbeat is stale).
    await store.closeAllOpenSessions(
      now().toISOString(),
      "gateway restarted",
      cluster.instanceId ?? undefined,
    );

    const devices = new DeviceDirectory(store, publish);
    await devices.load();
    const events = new EventHub();
    // One sweep and one expiry timer for every node session (no timers per session).
    const sessions = new SessionRegistry(() => events.emit("nodes"), {
      now,
      heartbeatTimeoutMs: config.sessions.heartbeatTimeout,
      sweepEveryMs: Math.min(config.sessions.heartbeatInterval, 5000),
      refused: (code) => metrics.refused(code),
    });
    // Several instances: the others' dashboards hear that this one's nodes changed (coalesced),
    // once the sessions table says so.
    const nodesNotice = cluster.enabled ? new NodesNotice(cluster, Date.now) : undefined;
    const sessionJournal = new SessionJournal(
      store,
      logger,
      (id, lastSeen, address) => devices.noteSeen(id, lastSeen, address),
      cluster.instanceId,
      () => nodesNotice?.changed(),
    );
    const background = new BackgroundWrites();
    const audit = new AuditLog(store, logger, now, (work) => background.track(work));
    audit.onAppended(() => events.emit("audit"));
    const metrics = new GatewayMetrics({
      liveSessions: () => sessions.size,
      auditQueueDepth: () => audit.queueDepth,
    });
    audit.onCommitted((entries, seconds) => metrics.auditCommitted(entries, seconds));
    // A configured hash key (kept outside the home, by reference) wins over the home's key file.
    const pepper =
      secrets.hashKey ?? (sharedKek ? await loadSharedHashKey(store, sharedKek) : loadOrCreatePepper(home));
    const enrollTokens = new EnrollTokenService(store, pepper, audit, now, metrics, publish);
    const tokens = new TokenService({
      store: store.tokens,
      signingKeys,
      pepper,
      gatewayId: config.gatewayId,
      accessTtlMs: config.tokens.accessTtl,
      refreshTtlMs: config.tokens.refreshTtl,
      devices: (id) => devices.get(id),
      now,
      metrics,
      publish,
    });
    await tokens.load();
    const ctx: GatewayContext = {
      home,
      certificates: undefined as unknown as CertificateService,
      exec: undefined as unknown as ExecBroker,
      config,
      store,
      tls,
      devices,
      sessions,
      sessionJournal,
      audit,
      metrics,
      logger,
      now,
      // Several instances: an address is counted in the database, whichever instance it reaches.
      enrollLimiter:
        store.dialect === "postgres"
          ? new SharedRateLimiter(store, config.enroll.perAddressPerMinute, "enroll", logger, () =>
              now().getTime(),
            )
          : new RateLimiter(config.enroll.perAddressPerMinute),
      background,
      failures: new FailureLog(() => events.emit("refusals")),
      // Several instances: a browser behind the balancer finds its link and session on any of them.
      // Alone or not, a session ends with the credential that asked for its link.
      dashboard: new DashboardSessions(now, {
        ...(cluster.enabled ? { storage: store, policy: STORE_POLICY } : {}),
        creatorValid: creatorCheck(
          (id) => devices.get(id),
          (keyId) => tokens.apiKey(keyId),
        ),
      }),
      events,
      tokens,
      signingKeys,
      enrollTokens,
      cluster,
      registrations: new RegistrationService({
        store,
        devices,
        sessions,
        tls,
        config,
        audit,
        enrollTokens,
        logger,
        now,
        events,
        metrics,
      }),
    };

    // Several instances: a node behind a load balancer answers a challenge through any of them.
    ctx.certificates = new CertificateService(
      ctx,
      cluster.enabled ? sharedReissueChallenges(store, pepper) : undefined,
    );
    ctx.exec = new ExecBroker(ctx);
    if (cluster.enabled && cluster.instanceId) {
      // Commands for nodes another instance holds are relayed there (cluster/exec-relay.ts).
      const relay = new ExecRelay({
        store,
        cluster,
        signer: () => signingKeys.signer(),
        caPems: () => tls.trustedCas().map((ca) => ca.certPem),
        now,
        logger,
      });
      ctx.relay = relay;
      undo.unshift(() => relay.close());
    }
    const app = await buildGatewayApp(
      ctx,
      tls.secureContextOptions(),
      options.webDir === undefined ? {} : { webDir: options.webDir },
    );
    undo.unshift(() => app.close());
    tls.attach(app.server as unknown as TlsServer);
    const requestsInFlight = new RequestsInFlight(app.server);
    // Upkeep: CA rotation windows, server-certificate renewal, CRL re-issue. Cheap when idle.
    const upkeep = setInterval(() => {
      tls.maintain().catch((err: unknown) => logger.error({ err }, "TLS upkeep failed"));
    }, 1000);
    upkeep.unref();
    undo.unshift(() => clearInterval(upkeep));
    const { host, port } = listenAddress;
    // fastify logs "Server listening at …" once per address (twice on a wildcard); the one line
    // a start prints is "gateway listening", below.
    const level = app.log.level;
    app.log.level = "warn";
    try {
      // A restart brings the whole fleet back within a few seconds: a deep accept queue keeps
      // their SYNs from being dropped (a dropped SYN is retried after 1 s, then 3 s). The kernel
      // caps it at net.core.somaxconn.
      await app.listen({ host, port, backlog: LISTEN_BACKLOG });
    } catch (error) {
      throw await listenFailure(error, home, config.gatewayId, listenAddress);
    } finally {
      app.log.level = level;
    }
    writePidFile(home);
    undo.unshift(() => removePidFile(home));
    const address = app.server.address();
    const boundPort = typeof address === "object" && address ? address.port : port;
    const url = dialUrlForListen(`${host.includes(":") ? `[${host}]` : host}:${boundPort}`);
    reachedAt.url = url;
    if (cluster instanceof FleetCluster) {
      // The instance's row, its heartbeat, and the LISTEN whose first catch-up read covers any
      // change another instance made since this start read its caches.
      cluster.receive(cacheRefresher({ devices, sessions, tokens, signingKeys, tls, events, logger }));
      // The sessions of an instance gone stale closed here: this instance's dashboards refetch
      // their node list, and the others' hear of it through the coalesced nodes notice.
      cluster.onStaleSessionsClosed(() => {
        events.emit("nodes");
        nodesNotice?.changed();
      });
      await cluster.start();
      undo.unshift(() => cluster.stop());
    }
    logger.info({ url, listen: config.listen, home }, "gateway listening");
    const unreachable = unreachableNamesWarning(config.listen, tls.serverNames());
    if (unreachable) logger.warn({ listen: config.listen, names: tls.serverNames() }, unreachable);
    const unadvertised = cluster.enabled && advertiseUrlWarning(config.listen, config.cluster.advertiseUrl);
    if (unadvertised) logger.warn({ listen: config.listen, fix: ADVERTISE_URL_FIX }, unadvertised);
    await audit.record({ type: "gateway.start", outcome: "success", details: { listen: config.listen } });

    let closing: Promise<void> | undefined;
    return {
      app,
      ctx,
      url,
      loaded,
      close(closeOptions = {}) {
        closing ??= (async () => {
          // Sessions first (their ends are recorded), then the server, then pending writes, then
          // the store: a clean stop leaves no session open in the database. Nodes are told the
          // gateway restarts (1012, RFC 6455 §7.4.1) and come back in a jittered few seconds; a
          // node that has not answered its close frame within STOP_CLOSE_GRACE_MS is cut.
          clearInterval(upkeep);
          logger.info({ sessions: sessions.size, code: 1012 }, "closing node sessions: gateway restarting");
          if (closeOptions.processExits) {
            // Every close frame is sent and handed to the kernel, and every session's end recorded
            // (commands in flight are answered node_offline); the exit closes the connections.
            // fastify's close still runs (no new connections, event streams ended), but only the
            // requests in flight are waited for: it would wait for every upgraded connection to end.
            const closed = sessions.size;
            const flushed = sessions.closeAllForExit(1012, "gateway restarting", STOP_CLOSE_GRACE_MS);
            logger.info({ sessions: closed, code: 1012 }, "node sessions closed: gateway restarting");
            void app.close().catch(() => undefined);
            // The ends are recorded already: the journal writes them while the frames flush.
            await Promise.all([flushed, sessionJournal.drain(), requestsInFlight.idle()]);
          } else {
            await sessions.closeAll(1012, "gateway restarting", STOP_CLOSE_GRACE_MS);
            await app.close();
          }
          await sessionJournal.drain();
          nodesNotice?.flush();
          // Marked stopped only once its sessions' ends are written: the others close a stopped
          // instance's sessions themselves, under another reason.
          await cluster.stop();
          ctx.relay?.close();
          // Pending refusal summaries are written durably before the store closes.
          await audit.close();
          await background.drain();
          await store.close();
          removePidFile(home);
          lock.release();
        })();
        return closing;
      },
    };
  } catch (error) {
    for (const step of undo)
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    throw error;
  }
}
