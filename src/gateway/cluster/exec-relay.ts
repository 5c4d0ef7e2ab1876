import https from "node:https";
import tls from "node:tls";
import type { Logger } from "pino";
import { GatehouseError, isErrorCode } from "../../protocol/errors.js";
import type { ExecResponse } from "../../protocol/messages.js";
import type { InstanceRecord, SessionRecord, Store } from "../../store/types.js";
import type { SigningAlgorithm } from "../../auth/jwt.js";
import { CLOCK_LEEWAY_SECONDS } from "../../auth/jwt.js";
import { mintRelayToken, relayBodyHash, type InstanceRun, type RelayedPrincipal } from "./relay-token.js";

/** Where a relayed command is posted on the holding instance. */
export const RELAY_EXEC_PATH = "/internal/v1/cluster/exec";
/**
 * Time the relay waits beyond the command's own timeout: the holder answers `exec_timeout` itself
 * after timeoutMs plus its 5 s report grace, so this only bounds a holder that hangs.
 */
const RELAY_GRACE_MS = 15_000;

/**
 * How long one read of the shared sessions table serves `locate` (ms). A read lists every open
 * session (measured on PostgreSQL 15 here, loaded 2-core machine: p50 1.6 ms at 100 open
 * sessions, 4.9 ms at 1,000, 34 ms at 10,000), so a burst of relayed commands shares one read; a
 * node not found in it is looked up afresh, so a node that just connected is never missed.
 */
export const SESSIONS_SNAPSHOT_MS = 1000;

/** What the relay needs of the cluster (Cluster in cluster.ts): who this is, who is alive. */
export interface RelayCluster {
  readonly instanceId: string | null;
  /** Instances with a fresh heartbeat (this one included). */
  liveInstances(): InstanceRecord[];
}

/** A session another live instance holds, as the shared sessions table records it. */
export interface RemoteSession {
  session: SessionRecord;
  instance: InstanceRecord;
}

/** Where a relay is posted on one instance (https.request options). */
interface RelayTarget {
  protocol: string;
  hostname: string;
  port: number;
  path: string;
}

/** The body of a relayed exec: the public exec body plus the device the sender resolved. */
export interface RelayExecBody {
  deviceId: string;
  command: string;
  args: string[];
  timeoutMs: number;
}

export interface ExecRelayOptions {
  /** listInstances: a holder's current run, when it refused a token for its previous one. */
  store: Pick<Store, "listOpenSessions" | "listInstances">;
  cluster: RelayCluster;
  /** The shared token signing key in use (SigningKeys.signer). */
  signer: () => { kid: string; alg: SigningAlgorithm; privateKey: CryptoKey };
  /** PEM certificates of the shared CA(s) an instance's server certificate must chain to. */
  caPems: () => string[];
  now: () => Date;
  logger: Logger;
}

/**
 * Commands for nodes that another instance of this gateway holds. A node's session lives in one
 * instance's memory; the shared sessions table says which one. The sender posts the command to
 * that instance over HTTPS (its server certificate verified against the shared CA only),
 * authenticated by a relay token (relay-token.ts) bound to the exact body; the holder runs it
 * through its own ExecBroker and answers as a direct exec would.
 */
export class ExecRelay {
  readonly instanceId: string;
  private agent: https.Agent | undefined;
  private agentCas = "";
  /** The last read of the open sessions, and when it was made (ms, the injected clock). */
  private snapshot: { at: number; byDevice: Map<string, SessionRecord[]> } | undefined;
  /** The read in flight, if any. */
  private reading: Promise<SessionRecord[]> | undefined;
  /** Request targets by instance URL (targetOf). */
  private readonly targets = new Map<string, RelayTarget>();
  /** Relay tokens taken, by jti, until they expire (ms): each one runs one command. */
  private readonly taken = new Map<string, number>();

  constructor(private readonly options: ExecRelayOptions) {
    if (!options.cluster.instanceId) throw new Error("an exec relay needs this instance's id");
    this.instanceId = options.cluster.instanceId;
  }

  /**
   * Open sessions held by the OTHER live instances, oldest first, read afresh (one query, shared
   * with reads in flight). Rows of instances whose heartbeat went stale are left out: a dead
   * instance's sessions are no one's. Read even when no other instance looks live: while the
   * database is away nobody's heartbeat is read, so everyone else looks gone, and the caller must
   * learn that the others could not be read rather than that there are none.
   * @throws GatehouseError `unavailable` when the database cannot be read.
   */
  async remoteSessions(): Promise<RemoteSession[]> {
    const rows = await this.readOpenSessions();
    return held(rows, this.otherLiveInstances());
  }

  /**
   * The newest session of `deviceId` that another live instance holds, or undefined. Looks in a
   * read at most SESSIONS_SNAPSHOT_MS old first, then afresh when the node is not in it.
   */
  async locate(deviceId: string): Promise<RemoteSession | undefined> {
    const live = this.otherLiveInstances();
    if (live.size === 0) return undefined;
    const recent = this.snapshot;
    if (recent && this.options.now().getTime() - recent.at <= SESSIONS_SNAPSHOT_MS) {
      const found = newestOf(held(recent.byDevice.get(deviceId) ?? [], live), deviceId);
      if (found) return found;
    }
    return newestOf(held(await this.readOpenSessions(), live), deviceId);
  }

  private otherLiveInstances(): Map<string, InstanceRecord> {
    return new Map(
      this.options.cluster
        .liveInstances()
        .filter((instance) => instance.instanceId !== this.instanceId)
        .map((instance) => [instance.instanceId, instance]),
    );
  }

  /** One read of the open sessions at a time: callers at the same moment share it. */
  private readOpenSessions(): Promise<SessionRecord[]> {
    if (this.reading) return this.reading;
    const at = this.options.now().getTime();
    const reading = this.options.store.listOpenSessions().then((rows) => {
      // By device: a relay looks at its node's rows only, however many nodes are online.
      const byDevice = new Map<string, SessionRecord[]>();
      for (const row of rows) {
        const list = byDevice.get(row.deviceId);
        if (list) list.push(row);
        else byDevice.set(row.deviceId, [row]);
      }
      this.snapshot = { at, byDevice };
      return rows;
    });
    this.reading = reading;
    const done = () => {
      if (this.reading === reading) this.reading = undefined;
    };
    reading.then(done, done);
    return reading;
  }

  /**
   * Runs a command on a node `holder` holds and returns its answer: the holder's ExecResponse, or
   * the holder's own error (same code, description and hint as a direct exec would give).
   * @throws GatehouseError `node_offline` when the holder cannot be reached, answers with
   *   something that is not a gateway's answer, or goes away before it answers (its result is
   *   then lost); any catalogue error the holder answers with.
   */
  async send(
    holder: RemoteSession,
    principal: RelayedPrincipal,
    request: RelayExecBody,
  ): Promise<ExecResponse> {
    try {
      return await this.sendTo(holder, principal, request);
    } catch (error) {
      // This instance learns of the others' restarts with its heartbeat's read of the instances
      // table (every 2 s): a holder that restarted since refuses a token for its previous run, before
      // anything runs. Once, with its run as the table says now.
      if (!(error instanceof GatehouseError) || error.code !== "wrong_audience") throw error;
      const now = await this.options.store.listInstances().then(
        (rows) => rows.find((row) => row.instanceId === holder.instance.instanceId),
        () => undefined,
      );
      if (!now || now.stoppedAt !== null || now.startedAt === holder.instance.startedAt) throw error;
      return this.sendTo({ ...holder, instance: now }, principal, request);
    }
  }

  private async sendTo(
    holder: RemoteSession,
    principal: RelayedPrincipal,
    request: RelayExecBody,
  ): Promise<ExecResponse> {
    const body = JSON.stringify(request);
    const token = await mintRelayToken({
      signer: this.options.signer(),
      from: this.instanceId,
      to: holder.instance,
      principal,
      bodySha256: relayBodyHash(body),
      now: this.options.now(),
    });
    const target = this.targetOf(holder.instance.url);
    const where = `instance ${holder.instance.instanceId} (${holder.instance.url})`;
    // Whether the request reached the holder: before that, the command certainly did not run.
    let sent = false;
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const outgoing = https.request(
        {
          ...target,
          method: "POST",
          agent: this.agentFor(),
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            accept: "application/json",
          },
          timeout: request.timeoutMs + RELAY_GRACE_MS,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
          );
          response.on("error", reject);
        },
      );
      outgoing.on("timeout", () =>
        outgoing.destroy(Object.assign(new Error("no answer in time"), { code: "ETIMEDOUT" })),
      );
      outgoing.on("error", reject);
      outgoing.end(body, () => (sent = true));
    }).catch((error: NodeJS.ErrnoException) => {
      this.options.logger.warn(
        { holder: holder.instance.instanceId, url: holder.instance.url, err: error.code ?? error.message },
        "exec relay: the instance holding the node did not answer",
      );
      throw holderGone(request.deviceId, where, `${error.code ?? "error"}: ${error.message}`, !sent);
    });
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.text);
    } catch {
      throw holderGone(request.deviceId, where, `HTTP ${answer.status} with a body that is not JSON`);
    }
    if (answer.status === 200) return parsed as ExecResponse;
    if (!isErrorCode((parsed as { error?: unknown } | null)?.error))
      throw holderGone(request.deviceId, where, `HTTP ${answer.status} without an error code`);
    throw GatehouseError.fromBody(parsed);
  }

  /**
   * This instance's current run (its id and `startedAt` in the instances table), which the relay
   * tokens it takes must name; undefined until its row is written at start.
   */
  currentRun(): InstanceRun | undefined {
    return this.options.cluster.liveInstances().find((instance) => instance.instanceId === this.instanceId);
  }

  /**
   * Takes a relay token's id once: false when it was taken before (a replayed request). Ids are
   * forgotten once their token has expired (plus the clock leeway; one that came in later than a
   * younger one may be kept a little longer), so the map stays small. They live in this process
   * only: a restart forgets them, which is why a token names the run it is for (relayAudience).
   */
  takeOnce(jti: string, expiresAtMs: number): boolean {
    const now = this.options.now().getTime();
    // Oldest first (a Map keeps insertion order, and tokens live alike): stop at the first one
    // still valid, so a relay costs O(1) however many tokens the last minute saw.
    for (const [id, until] of this.taken) {
      if (until >= now) break;
      this.taken.delete(id);
    }
    if (this.taken.has(jti)) return false;
    this.taken.set(jti, expiresAtMs + CLOCK_LEEWAY_SECONDS * 1000);
    return true;
  }

  /**
   * Where to post for an instance's advertised URL: its host, port and the relay path, parsed once
   * per URL (a WHATWG URL costs tens of µs per relay otherwise). A handful of instances at most.
   */
  private targetOf(instanceUrl: string): RelayTarget {
    let target = this.targets.get(instanceUrl);
    if (!target) {
      const url = new URL(RELAY_EXEC_PATH, instanceUrl);
      target = {
        protocol: url.protocol,
        // Brackets off an IPv6 literal: the request's host option takes the bare address.
        hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
        port: url.port === "" ? 443 : Number(url.port),
        path: url.pathname,
      };
      if (this.targets.size >= 64) this.targets.clear();
      this.targets.set(instanceUrl, target);
    }
    return target;
  }

  /** Closes the kept-alive connections to other instances (the gateway stops). */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  /**
   * One keep-alive agent for every instance (a relay reuses a TLS connection instead of paying a
   * handshake), made again when the shared CA changes. Only the shared CA is trusted, never the
   * system store: the peer must be an instance of this gateway.
   */
  private agentFor(): https.Agent {
    const cas = this.options.caPems();
    const key = cas.join("\n");
    if (!this.agent || key !== this.agentCas) {
      this.agent?.destroy();
      // The CAs as one secure context made here, not as `ca` PEMs: an agent keys its sockets by
      // a name that spells out every `ca` PEM, rebuilt on each request, and a new connection
      // would parse them again (FIELD-NOTES: make the secure context once).
      this.agent = new https.Agent({
        keepAlive: true,
        secureContext: tls.createSecureContext({ ca: cas }),
        maxSockets: 64,
      });
      this.agentCas = key;
    }
    return this.agent;
  }
}

/** The sessions among `rows` that a live instance of `live` holds, with that instance. */
function held(rows: SessionRecord[], live: Map<string, InstanceRecord>): RemoteSession[] {
  const found: RemoteSession[] = [];
  for (const session of rows) {
    const instance = session.instanceId ? live.get(session.instanceId) : undefined;
    if (instance) found.push({ session, instance });
  }
  return found;
}

function newestOf(sessions: RemoteSession[], deviceId: string): RemoteSession | undefined {
  let newest: RemoteSession | undefined;
  for (const candidate of sessions)
    if (
      candidate.session.deviceId === deviceId &&
      (!newest || candidate.session.connectedAt > newest.session.connectedAt)
    )
      newest = candidate;
  return newest;
}

function holderGone(deviceId: string, where: string, why: string, notSent = false): GatehouseError {
  return new GatehouseError(
    "node_offline",
    notSent
      ? `node ${deviceId} is connected to ${where}, which could not be reached (${why}); the command was not sent`
      : `node ${deviceId} is connected to ${where}, which did not answer the relayed command (${why}); if it was running, its result is lost`,
    "The node reconnects to a live instance by itself within a few seconds: try again then. `gatehouse nodes list` shows which instance holds it; `gatehouse nodes history NODE` shows what ran.",
  );
}
