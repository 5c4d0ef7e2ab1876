import type { FastifyInstance } from "fastify";
import type { GatewayContext } from "../context.js";
import { registerDashboardSessionRoutes } from "./routes.js";
import { installDashboardSecurityHeaders } from "./security-headers.js";
import { DEFAULT_WEB_DIR, loadDashboardFiles, registerDashboardStaticFiles } from "./static-files.js";

/**
 * The dashboard: its security headers on every `/dashboard` response, its static files (read once,
 * here, from `webDir`, by default `dist/web`) and its login and session routes. Everything else the
 * page does goes through the public `/api/v1` routes with the session cookie as its credential.
 * Call it on the root instance before other routes, so its headers hook covers every answer.
 */
export function registerDashboard(
  app: FastifyInstance,
  ctx: GatewayContext,
  options: { webDir?: string } = {},
): void {
  installDashboardSecurityHeaders(app);
  registerDashboardStaticFiles(app, loadDashboardFiles(options.webDir ?? DEFAULT_WEB_DIR));
  registerDashboardSessionRoutes(app, ctx);
}
