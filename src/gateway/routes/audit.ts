import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { GatewayContext } from "../context.js";
import { requireScopeHook } from "../authenticate.js";
import { GatehouseError } from "../../protocol/errors.js";
import { GENESIS_HASH, verifyAuditChain, type ChainVerdict } from "../../audit/chain.js";
import type { AuditEventRecord } from "../../store/types.js";

/**
 * `order=asc` (default) pages oldest first with `afterId`; `order=desc` pages newest first with
 * `beforeId` (absent: from the newest entry). A cursor of the other order is refused rather than
 * ignored, so a client never silently gets a page it did not ask for.
 */
const listQuery = z
  .object({
    order: z.enum(["asc", "desc"], { message: "order must be asc or desc" }).default("asc"),
    afterId: z.coerce.number({ message: "afterId must be a whole number" }).int().min(0).optional(),
    beforeId: z.coerce.number({ message: "beforeId must be a whole number" }).int().min(1).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    /** A device id: entries whose subject is `<id>` or `device:<id>`. */
    subject: z.string().max(128).optional(),
    actor: z.string().max(128).optional(),
    /** `device.` is every type under it; `device` (no dot) is that type and every type under `device.`. */
    type: z.string().min(1).max(64).optional(),
  })
  .refine((q) => q.order === "desc" || q.beforeId === undefined, {
    message: "beforeId pages newest first: use it with order=desc (order=asc pages with afterId)",
    path: ["beforeId"],
  })
  .refine((q) => q.order === "asc" || q.afterId === undefined, {
    message: "afterId pages oldest first: with order=desc, page with beforeId",
    path: ["afterId"],
  });

/** The first problem of a query, naming its parameter (`limit: …`). */
function queryProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "bad query";
  const name = issue.path.join(".");
  return name && !issue.message.startsWith(name) ? `${name}: ${issue.message}` : issue.message;
}

/** An entry as the API shows it (the stored details text stays internal). */
function entryView({ detailsJson: _text, ...entry }: AuditEventRecord) {
  return entry;
}

export function registerAuditRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const read = { onRequest: requireScopeHook(ctx, "audit:read") };

  app.get("/api/v1/audit", read, async (request) => {
    const parsed = listQuery.safeParse(request.query);
    if (!parsed.success) throw new GatehouseError("invalid_request", queryProblem(parsed.error));
    const { order, afterId, beforeId, limit, subject, actor, type } = parsed.data;
    const entries = await ctx.store.listAudit({
      order,
      ...(order === "desc" ? (beforeId !== undefined ? { beforeId } : {}) : { afterId: afterId ?? 0 }),
      limit,
      ...(subject ? { subject } : {}),
      ...(actor ? { actor } : {}),
      ...(type ? { type } : {}),
    });
    return { entries: entries.map(entryView) };
  });

  /** Recomputes the whole chain, a page at a time, and names the first broken entry. */
  app.get("/api/v1/audit/verify", read, async () => {
    let afterId = 0;
    let verdict: ChainVerdict = { ok: true, checked: 0, lastHash: GENESIS_HASH };
    for (;;) {
      const page = await ctx.store.listAudit({ afterId, limit: 1000 });
      if (page.length === 0) break;
      const next = verifyAuditChain(
        page.map((e) => ({ ...e, detailsJson: e.detailsJson })),
        verdict.lastHash,
        verdict.checked + 1,
      );
      verdict = { ...next, checked: verdict.checked + next.checked };
      if (!next.ok) break;
      afterId = page[page.length - 1]!.id;
    }
    return verdict;
  });
}
