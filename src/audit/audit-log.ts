import type { Logger } from "pino";
import type { AuditEventInput, Store } from "../store/types.js";

export type AuditEvent = Omit<AuditEventInput, "ts" | "details" | "actor" | "subject" | "address" | "code"> &
  Partial<Pick<AuditEventInput, "actor" | "subject" | "address" | "code" | "details">>;

/**
 * The audit log: every registration, approval, denial, revocation, issue, exec and refusal, each
 * chained to the one before by the store (see chain.ts). `record` resolves once the row is durable
 * (synchronous=FULL), so an action acknowledged to a user is audited; `recordInBackground` is for
 * the refusal path, where a flood of bad requests must not wait on the disk: a crash can lose only
 * refusals whose answer had already been sent.
 */
export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => Date,
    /** Keeps background writes visible to shutdown, which waits for them. */
    private readonly track: (work: Promise<unknown>) => void = () => undefined,
  ) {}

  async record(event: AuditEvent): Promise<void> {
    await this.store.appendAudit({
      ts: this.now().toISOString(),
      actor: event.actor ?? null,
      subject: event.subject ?? null,
      address: event.address ?? null,
      code: event.code ?? null,
      details: event.details ?? {},
      type: event.type,
      outcome: event.outcome,
    });
  }

  recordInBackground(event: AuditEvent): void {
    this.track(
      this.record(event).catch((error: unknown) => {
        this.logger.error({ err: error, auditType: event.type }, "audit write failed");
      }),
    );
  }
}
