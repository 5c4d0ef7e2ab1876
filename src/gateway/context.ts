import type { Logger } from "pino";
import type { GatewayConfig } from "../config/schema.js";
import type { Store } from "../store/types.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { DeviceDirectory } from "./device-directory.js";
import type { SessionRegistry } from "./sessions.js";
import type { SessionJournal } from "./session-journal.js";
import type { RegistrationService } from "./registrations.js";
import type { AddressRateLimit } from "./rate-limit.js";
import type { BackgroundWrites } from "./background.js";
import type { TlsState } from "./tls-state.js";
import type { CertificateService } from "./certificates.js";
import type { ExecBroker } from "./exec.js";
import type { EnrollTokenService } from "./enroll-tokens.js";
import type { FailureLog } from "./failures.js";
import type { TokenService } from "../auth/token-service.js";
import type { SigningKeys } from "../auth/signing-keys.js";
import type { GatewayMetrics } from "./metrics.js";
import type { DashboardSessions } from "./dashboard/sessions.js";
import type { EventHub } from "./events.js";
import type { Cluster } from "./cluster/cluster.js";
import type { ExecRelay } from "./cluster/exec-relay.js";

/** Everything a route needs, built once at start. */
export interface GatewayContext {
  home: string;
  config: GatewayConfig;
  store: Store;
  tls: TlsState;
  /** Renewal, re-issue and CA-rotation notices; built once the rest of the context exists. */
  certificates: CertificateService;
  /** Commands sent over node sessions, and their answers. */
  exec: ExecBroker;
  /** Commands and node listings across instances (several gateways on one database); absent alone. */
  relay?: ExecRelay;
  enrollTokens: EnrollTokenService;
  /** This gateway's instances as one: which are alive, changes told to the others (solo: none). */
  cluster: Cluster;
  devices: DeviceDirectory;
  sessions: SessionRegistry;
  /** The sessions table and devices' last seen, written in batches (session-journal.ts). */
  sessionJournal: SessionJournal;
  registrations: RegistrationService;
  /** Registrations (and re-issues) per remote address: in memory alone, in the database when shared. */
  enrollLimiter: AddressRateLimit;
  background: BackgroundWrites;
  failures: FailureLog;
  tokens: TokenService;
  signingKeys: SigningKeys;
  audit: AuditLog;
  /** The dashboard's login links and cookie sessions: in memory alone, in the store with several instances. */
  dashboard: DashboardSessions;
  /** Change notices (devices, nodes, refusals, audit) for the dashboard's live stream. */
  events: EventHub;
  /** The one metrics registry; record through its named methods. */
  metrics: GatewayMetrics;
  logger: Logger;
  now: () => Date;
}
