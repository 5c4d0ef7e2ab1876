/**
 * The gateway's one metrics registry (Prometheus text exposition format 0.0.4, `gatehouse_` prefix),
 * served by GET /metrics. Other modules record through the small named methods here, never through
 * prom-client directly, so the hot path calls one function and grows no `if (metrics)` branches.
 * Values that another part already holds (live sessions, the audit queue) are read at scrape time
 * instead of being recorded.
 *
 * Names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/): counters
 * end in `_total`, durations are `_seconds`. Every label takes values from a fixed set (catalogue
 * codes, fixed outcomes), never a device id, name or address, so a scrape's size stays bounded
 * whatever the fleet does.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { ERROR_CATALOGUE, type ErrorCode } from "../protocol/errors.js";

/** What the registry reads when it is scraped. */
export interface MetricSources {
  /** Node sessions open right now. */
  liveSessions(): number;
  /** Audit entries accepted but not yet committed to the store. */
  auditQueueDepth(): number;
}

/** How a registration attempt ended: a pending request created, then approved, denied or expired; or refused outright. */
export type RegistrationOutcome = "pending" | "approved" | "denied" | "expired" | "refused";
/** Why a client certificate was issued: on approval, a renewal before expiry, or a re-issue of a lapsed one. */
export type CertificateIssueKind = "initial" | "renewal" | "reissue";
/** What was revoked. */
export type RevocationKind = "device" | "api_key" | "enroll_token";
/** How a bearer token's verification ended: a verdict from the cache, a full verify, or a refusal. */
export type TokenVerificationResult = "cache_hit" | "cache_miss" | "refused";

const REGISTRATION_OUTCOMES: readonly RegistrationOutcome[] = [
  "pending",
  "approved",
  "denied",
  "expired",
  "refused",
];
const CERTIFICATE_KINDS: readonly CertificateIssueKind[] = ["initial", "renewal", "reissue"];
const REVOCATION_KINDS: readonly RevocationKind[] = ["device", "api_key", "enroll_token"];
const TOKEN_RESULTS: readonly TokenVerificationResult[] = ["cache_hit", "cache_miss", "refused"];
/** An exec's outcomes (ExecResult["outcome"] in protocol/messages.ts), pre-bound; another fixed word is bound on first use. */
const EXEC_OUTCOMES = ["completed", "refused", "timeout", "truncated", "failed"] as const;

/** Seconds: a command on a node takes from a few milliseconds to its timeout (30 s by default, at most 300 s). */
const EXEC_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds: one group commit (with fsync) takes from half a millisecond to about a second on a slow disk. */
const AUDIT_COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Something with an `observe()`: a pre-bound label child of a histogram. */
interface Observable {
  observe(value: number): void;
}

/**
 * A counter whose label takes values from a fixed list. Recording adds to a plain array (no label
 * hashing, no allocation on the hot path); each scrape copies the totals into the prom-client
 * counter. Every value shows in a scrape from the start, at 0, so a rate() over it starts from a
 * sample. A value outside the list is ignored: the types keep callers to the list.
 */
class FixedCounter<L extends string> {
  private readonly totals: number[];
  private readonly index: Map<L, number>;

  constructor(
    registers: Registry[],
    config: { name: string; help: string; labelName: string; values: readonly L[] },
  ) {
    const { name, help, labelName, values } = config;
    const totals = values.map(() => 0);
    this.totals = totals;
    this.index = new Map(values.map((value, i) => [value, i] as const));
    new Counter({
      name,
      help,
      labelNames: [labelName],
      registers,
      collect() {
        this.reset();
        values.forEach((value, i) => this.inc({ [labelName]: value }, totals[i]));
      },
    });
  }

  inc(value: L, by = 1): void {
    const i = this.index.get(value);
    if (i !== undefined) this.totals[i]! += by;
  }
}

/** A counter without labels, kept as a plain number and copied in at each scrape. */
class PlainCounter {
  private total = 0;

  constructor(registers: Registry[], config: { name: string; help: string }) {
    const read = () => this.total;
    new Counter({
      ...config,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }

  inc(by = 1): void {
    this.total += by;
  }
}

export class GatewayMetrics {
  private readonly registry = new Registry();
  private readonly handshakes: FixedCounter<"true" | "false">;
  private readonly handshakeFailures: PlainCounter;
  private readonly refusals: FixedCounter<ErrorCode>;
  private readonly registrations: FixedCounter<RegistrationOutcome>;
  private readonly certificates: FixedCounter<CertificateIssueKind>;
  private readonly revocations: FixedCounter<RevocationKind>;
  private readonly tokenVerifications: FixedCounter<TokenVerificationResult>;
  private readonly execDuration: Histogram<"outcome">;
  private readonly execByOutcome = new Map<string, Observable>();
  private readonly auditCommitDuration: Histogram;
  private readonly auditEntries: PlainCounter;

  /** @param sources read at each scrape (cheap getters; they must not throw). */
  constructor(sources: MetricSources) {
    const registers = [this.registry];
    // process_* and nodejs_*: CPU, memory, open file descriptors, event-loop lag.
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "gatehouse_node_sessions_open",
      help: "Node sessions open now.",
      registers,
      collect() {
        this.set(sources.liveSessions());
      },
    });
    new Gauge({
      name: "gatehouse_audit_queue_depth",
      help: "Audit entries accepted and waiting for their commit.",
      registers,
      collect() {
        this.set(sources.auditQueueDepth());
      },
    });

    this.handshakes = new FixedCounter(registers, {
      name: "gatehouse_tls_handshakes_total",
      help: "TLS handshakes completed on the gateway's port, by whether the session was resumed.",
      labelName: "resumed",
      values: ["false", "true"],
    });
    this.handshakeFailures = new PlainCounter(registers, {
      name: "gatehouse_tls_handshake_failures_total",
      help: "TLS handshakes that failed before a request could be read (client errors, timeouts).",
    });
    this.refusals = new FixedCounter(registers, {
      name: "gatehouse_refusals_total",
      help: "Requests, sessions and frames answered with a catalogue error, by its code.",
      labelName: "code",
      values: Object.keys(ERROR_CATALOGUE) as ErrorCode[],
    });
    this.registrations = new FixedCounter(registers, {
      name: "gatehouse_registrations_total",
      help: "Device registrations by outcome: pending created, approved, denied, expired, refused.",
      labelName: "outcome",
      values: REGISTRATION_OUTCOMES,
    });
    this.certificates = new FixedCounter(registers, {
      name: "gatehouse_certificates_issued_total",
      help: "Client certificates issued, by kind: initial (on approval), renewal, reissue.",
      labelName: "kind",
      values: CERTIFICATE_KINDS,
    });
    this.revocations = new FixedCounter(registers, {
      name: "gatehouse_revocations_total",
      help: "Revocations, by what was revoked.",
      labelName: "kind",
      values: REVOCATION_KINDS,
    });
    this.tokenVerifications = new FixedCounter(registers, {
      name: "gatehouse_token_verifications_total",
      help: "Bearer token verifications, by result: verdict from the cache, full verify, refused.",
      labelName: "result",
      values: TOKEN_RESULTS,
    });

    this.execDuration = new Histogram({
      name: "gatehouse_exec_duration_seconds",
      help: "Exec round trips through the gateway, from request to answer, by outcome.",
      labelNames: ["outcome"],
      buckets: EXEC_BUCKETS,
      registers,
    });
    for (const outcome of EXEC_OUTCOMES) this.execChild(outcome);

    this.auditCommitDuration = new Histogram({
      name: "gatehouse_audit_commit_duration_seconds",
      help: "Time to commit one batch of audit entries durably.",
      buckets: AUDIT_COMMIT_BUCKETS,
      registers,
    });
    this.auditEntries = new PlainCounter(registers, {
      name: "gatehouse_audit_entries_total",
      help: "Audit entries committed.",
    });
  }

  /** The exec histogram's child for an outcome, bound (and shown at 0) on first use. */
  private execChild(outcome: string): Observable {
    let child = this.execByOutcome.get(outcome);
    if (!child) {
      this.execDuration.zero({ outcome });
      child = this.execDuration.labels(outcome);
      this.execByOutcome.set(outcome, child);
    }
    return child;
  }

  /** A TLS handshake completed; `resumed` from `socket.isSessionReused()` (RFC 8446 §2.2). */
  tlsHandshake(resumed: boolean): void {
    this.handshakes.inc(resumed ? "true" : "false");
  }

  /** A TLS handshake failed (the server's `tlsClientError`). */
  tlsHandshakeFailed(): void {
    this.handshakeFailures.inc();
  }

  /** One request, session or frame refused with a catalogue code. */
  refused(code: ErrorCode): void {
    this.refusals.inc(code);
  }

  /** One registration reached an outcome. */
  registration(outcome: RegistrationOutcome): void {
    this.registrations.inc(outcome);
  }

  /** One client certificate issued. */
  certificateIssued(kind: CertificateIssueKind): void {
    this.certificates.inc(kind);
  }

  /** One device (with its certificates), API key or enroll token revoked. */
  revoked(kind: RevocationKind): void {
    this.revocations.inc(kind);
  }

  /**
   * One exec answered.
   * @param outcome a fixed outcome word ("completed", "failed", "timeout", …); never user input.
   * @param seconds wall time from the request's arrival to its answer.
   */
  execFinished(outcome: string, seconds: number): void {
    this.execChild(outcome).observe(seconds);
  }

  /**
   * One batch of audit entries committed.
   * @param entries how many entries the commit made durable.
   * @param seconds the commit's wall time.
   */
  auditCommitted(entries: number, seconds: number): void {
    this.auditCommitDuration.observe(seconds);
    this.auditEntries.inc(entries);
  }

  /** One bearer token verification ended. */
  tokenVerified(result: TokenVerificationResult): void {
    this.tokenVerifications.inc(result);
  }

  /** The Content-Type of {@link render}'s text (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
