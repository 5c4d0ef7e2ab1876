import { randomBytes } from "node:crypto";
import { hashSecret, randomToken } from "../auth/secrets.js";
import { requireKnownRole, scopesForRole } from "../auth/roles.js";
import { weakCredentialReason } from "../auth/weak-credentials.js";
import { GatehouseError } from "../protocol/errors.js";
import { enrollTokenRefusal } from "../protocol/enroll-token-refusal.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { EnrollTokenRecord, Store } from "../store/types.js";
import type { GatewayMetrics } from "./metrics.js";

/** The longest an enroll token lives (`enroll create --expires`), in ms: 30 days. */
export const ENROLL_TOKEN_MAX_LIFETIME_MS = 30 * 86_400_000;

/** What the API shows of an enroll token: never its hash. */
export type EnrollTokenView = Omit<EnrollTokenRecord, "hash">;

export function enrollTokenView({ hash: _hash, ...view }: EnrollTokenRecord): EnrollTokenView {
  return view;
}

export interface CreateEnrollToken {
  name: string;
  role: string;
  uses: number;
  expiresInMs: number;
  namePrefix?: string;
  /** The old shared token, imported by `migrate --from-legacy` instead of a new random one. */
  legacySecret?: string;
}

/**
 * Enroll tokens, like Kubernetes bootstrap tokens or Tailscale auth keys: a node that registers
 * with one is approved at once, as many times as it has uses, until it expires. Stored as a keyed
 * hash; the token is shown once, at creation.
 */
export class EnrollTokenService {
  constructor(
    private readonly store: Store,
    private readonly pepper: Buffer,
    private readonly audit: AuditLog,
    private readonly now: () => Date,
    /** Counts revocations. */
    private readonly metrics: Pick<GatewayMetrics, "revoked">,
    /** Told of each token created or revoked, once durable (the cluster's NOTIFY); nothing by default. */
    private readonly publish: (change: { kind: "enroll_token"; tokenId: string }) => void = () => undefined,
  ) {}

  async create(
    input: CreateEnrollToken,
    actor: string,
  ): Promise<{ token: string; record: EnrollTokenRecord }> {
    requireKnownRole(input.role);
    // A token that can be handed around must not mint administrators.
    const powerful = scopesForRole(input.role).filter((s) => s === "devices:write" || s === "keys:write");
    if (powerful.length)
      throw new GatehouseError(
        "invalid_request",
        `an enroll token cannot register devices with role ${input.role} (it grants ${powerful.join(", ")})`,
        "Register such a device by its user code and approve it with `devices approve --role`.",
      );
    const weak = input.legacySecret === undefined ? undefined : weakCredentialReason(input.legacySecret);
    if (weak)
      throw new GatehouseError(
        "invalid_request",
        `the old token is ${weak}: it cannot be imported as an enroll token`,
        "Register the old nodes by their user codes instead.",
      );
    const token = input.legacySecret ?? `ghe_${randomToken(25)}`;
    const at = this.now();
    const record: EnrollTokenRecord = {
      tokenId: "enr_" + randomBytes(6).toString("hex"),
      hash: hashSecret(this.pepper, token),
      name: input.name,
      role: input.role,
      namePrefix: input.namePrefix ?? null,
      usesTotal: input.uses,
      usesLeft: input.uses,
      createdAt: at.toISOString(),
      expiresAt: new Date(at.getTime() + input.expiresInMs).toISOString(),
      revokedAt: null,
      source: input.legacySecret ? "legacy" : "created",
      lastUsedAt: null,
    };
    if (await this.store.findEnrollTokenByHash(record.hash))
      throw new GatehouseError("invalid_request", "an enroll token with this value exists already");
    await this.store.createEnrollToken(record);
    this.publish({ kind: "enroll_token", tokenId: record.tokenId });
    await this.audit.record({
      type: "enroll-token.create",
      outcome: "success",
      actor,
      subject: record.tokenId,
      details: {
        role: record.role,
        uses: record.usesTotal,
        expiresAt: record.expiresAt,
        source: record.source,
      },
    });
    return { token, record };
  }

  /**
   * The token, if it can still be used; or why it cannot. The use itself is taken in the approval's
   * transaction (see RegistrationService), so a crash between the two cannot cost a use.
   *
   * @throws GatehouseError from enrollTokenRefusal: `invalid_token` (unknown, revoked, no
   *   uses left) or `token_expired`.
   */
  async check(token: string): Promise<EnrollTokenRecord> {
    const record = await this.store.findEnrollTokenByHash(hashSecret(this.pepper, token));
    const at = this.now().toISOString();
    if (!record) throw enrollTokenRefusal("unknown");
    if (record.revokedAt) throw enrollTokenRefusal("revoked", record);
    if (record.expiresAt <= at) throw enrollTokenRefusal("expired", record);
    if (record.usesLeft <= 0) throw enrollTokenRefusal("spent", record);
    return record;
  }

  async revoke(tokenId: string, actor: string): Promise<EnrollTokenRecord> {
    const at = this.now().toISOString();
    const record = await this.store.revokeEnrollToken(tokenId, at);
    if (!record) throw new GatehouseError("not_found", `no enroll token ${tokenId}`);
    // Revoking a revoked token again changes nothing and is not counted.
    if (record.revokedAt === at) this.metrics.revoked("enroll_token");
    this.publish({ kind: "enroll_token", tokenId });
    await this.audit.record({ type: "enroll-token.revoke", outcome: "success", actor, subject: tokenId });
    return record;
  }

  list(): Promise<EnrollTokenRecord[]> {
    return this.store.listEnrollTokens();
  }
}
