import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { requireKnownRole, scopesForRole } from "../../auth/roles.js";
import { fingerprintPrefix } from "../../pki/fingerprint.js";
import { GatehouseError } from "../../protocol/errors.js";
import {
  authenticateDashboardSession,
  authenticateRequest,
  refuseDashboardSession,
} from "../authenticate.js";
import type { GatewayContext } from "../context.js";
import { parseBody } from "../parse-body.js";
import { recordRefusal } from "../refusal-record.js";
import { clearedSessionCookie, sessionCookieValue, sessionSetCookie } from "./cookie.js";
import { loginRefusedPage } from "./login-page.js";
import { secretHash, type DashboardSession } from "./sessions.js";
import { callerAddress } from "../caller-address.js";

const linkBody = z.strictObject({ role: z.string().min(1).max(64).default("admin") });

/** What the dashboard page learns about its own session (never the cookie value). */
function sessionView(ctx: GatewayContext, session: DashboardSession) {
  return {
    subject: session.subject,
    role: session.role,
    scopes: session.scopes,
    csrfToken: session.csrfToken,
    expiresAt: ctx.dashboard.expiresAt(session).toISOString(),
    idleExpiresAt: ctx.dashboard.idleExpiresAt(session).toISOString(),
    createdBy: session.createdBy,
  };
}

/** The token of `/dashboard/login?token=…`; a repeated or empty parameter counts as none. */
function linkToken(request: FastifyRequest): string | undefined {
  const token = (request.query as Record<string, unknown> | undefined)?.token;
  return typeof token === "string" && token.length > 0 ? token : undefined;
}

/**
 * The dashboard's login and session routes: login links (asked for with any credential that holds
 * every scope of the role), the link's redemption into a cookie session, the session's description
 * (with its CSRF token) and logout. Every step is audited; no secret is logged.
 */
export function registerDashboardSessionRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post(
    "/api/v1/dashboard/login-links",
    {
      onRequest: async (request) => {
        request.principal = await authenticateRequest(ctx, request);
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      refuseDashboardSession(principal, "login links");
      const { role } = parseBody(linkBody, request.body);
      requireKnownRole(role);
      // Every page of the dashboard reads devices (and its live stream needs devices:read).
      if (!scopesForRole(role).includes("devices:read")) {
        throw new GatehouseError(
          "invalid_request",
          `a dashboard session of role ${role} could not show anything: the dashboard needs devices:read, which ${role} lacks`,
          "Ask for viewer, operator, admin, or a role from gateway.json that holds devices:read.",
        );
      }
      const missing = scopesForRole(role).filter((scope) => !principal.scopes.includes(scope));
      if (missing.length > 0) {
        throw new GatehouseError(
          "insufficient_scope",
          `a session of role ${role} needs the scopes ${missing.join(", ")}, which the credential's role ${principal.role} does not grant`,
          "Ask for a role whose scopes your credential holds (e.g. --role viewer), or use the admin credential.",
        );
      }
      const link = await ctx.dashboard.createLink(role, principal.subject);
      await ctx.audit.record({
        type: "dashboard.link_created",
        outcome: "success",
        actor: principal.subject,
        address: callerAddress(request),
        details: {
          role,
          linkFingerprint: fingerprintPrefix(secretHash(link.token)),
          expiresAt: link.expiresAt.toISOString(),
        },
      });
      return reply.code(201).send({
        path: `/dashboard/login?token=${link.token}`,
        role,
        expiresAt: link.expiresAt.toISOString(),
      });
    },
  );

  // No HEAD: a link scanner's HEAD (mail filters, chat previews) must not spend the link.
  app.get("/dashboard/login", { exposeHeadRoute: false }, async (request, reply) => {
    const token = linkToken(request);
    let redeemed;
    try {
      redeemed = await ctx.dashboard.redeemLink(token);
    } catch (error) {
      if (!(error instanceof GatehouseError)) throw error;
      request.credentialTried = token
        ? { credential: "login_link", fingerprint: fingerprintPrefix(secretHash(token)) }
        : { credential: "none" };
      recordRefusal(ctx, request, error);
      // Answered here as a page, not by the error handler, so counted here.
      ctx.metrics.refused(error.code);
      return reply
        .code(error.status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .send(loginRefusedPage(error.message, error.hint));
    }
    const { cookieValue, session } = redeemed;
    // A browser that logs in again leaves no older session of its own behind.
    const previous = sessionCookieValue(request);
    if (previous !== undefined) await ctx.dashboard.end(secretHash(previous));
    await ctx.audit.record({
      type: "dashboard.login",
      outcome: "success",
      actor: session.subject,
      address: callerAddress(request),
      details: {
        role: session.role,
        createdBy: session.createdBy,
        sessionFingerprint: fingerprintPrefix(session.fingerprint),
      },
    });
    // 303 to a clean URL: the token leaves the address bar and the history (RFC 9110 §15.4.4).
    return reply
      .code(303)
      .header("set-cookie", sessionSetCookie(cookieValue))
      .header("cache-control", "no-store")
      .header("location", "/dashboard/")
      .send();
  });

  // Cookie only, checked before any body is read, like every other credential.
  const sessions = new WeakMap<FastifyRequest, DashboardSession>();
  const cookieOnly = {
    onRequest: async (request: FastifyRequest) => {
      sessions.set(request, await authenticateDashboardSession(ctx, request));
    },
  };

  app.get("/api/v1/dashboard/session", cookieOnly, async (request, reply) => {
    const session = sessions.get(request)!;
    return reply.header("cache-control", "no-store").send(sessionView(ctx, session));
  });

  app.post("/api/v1/dashboard/logout", cookieOnly, async (request, reply) => {
    const session = sessions.get(request)!;
    await ctx.dashboard.end(session.fingerprint);
    await ctx.audit.record({
      type: "dashboard.logout",
      outcome: "success",
      actor: session.subject,
      address: callerAddress(request),
      details: { role: session.role, sessionFingerprint: fingerprintPrefix(session.fingerprint) },
    });
    return reply
      .header("set-cookie", clearedSessionCookie())
      .header("cache-control", "no-store")
      .send({ ended: true });
  });
}
