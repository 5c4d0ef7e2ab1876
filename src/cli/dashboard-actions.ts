/**
 * What the `dashboard` command does, loaded only when it runs (its definition is in
 * dashboard-commands.ts).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES, NODE_FILES } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { AdminClient } from "./admin-client.js";
import type { TargetOptions } from "./target-options.js";
import type { CommandContext } from "./run.js";
import { openBrowser } from "./open-browser.js";
import { printJson, printText } from "./output.js";

/** The gateway's answer to POST /api/v1/dashboard/login-links. */
interface LoginLink {
  /** `/dashboard/login?token=…`: joined to the URL this CLI reaches the gateway at. */
  path: string;
  role: string;
  /** ISO 8601; the link is refused after it (and after its first use). */
  expiresAt: string;
}

type DashboardOptions = TargetOptions & { role?: string; open: boolean };

/**
 * "in 5 minutes" when the gateway's expiry is a few minutes ahead of this machine's clock; the
 * time itself when the clocks disagree so much that a count of minutes would mislead.
 */
function expiresIn(expiresAt: string, now = Date.now()): string {
  const minutes = Math.round((new Date(expiresAt).getTime() - now) / 60_000);
  if (minutes >= 1 && minutes <= 60) return `expires in ${minutes} minute${minutes === 1 ? "" : "s"}`;
  return `expires at ${expiresAt}`;
}

/**
 * The CA bundle a browser must trust for the gateway's certificate: --ca-file when given, else the
 * home's admin/ca.pem (a gateway home or a copy of its admin/ folder), else a node home's ca.pem.
 */
function caBundleFile(home: string, options: TargetOptions): string {
  if (options.caFile) return path.resolve(options.caFile);
  const admin = path.join(home, GATEWAY_FILES.adminCa);
  return existsSync(admin) ? admin : path.join(home, NODE_FILES.caCert);
}

/**
 * An `insufficient_scope` refusal of the link (a node home's device certificate, a viewer's token),
 * retold to say what credential is needed; any other error as it is.
 */
function needsAdminCredential(error: unknown): unknown {
  if (!(error instanceof GatehouseError) || error.code !== "insufficient_scope") return error;
  return new GatehouseError(
    "insufficient_scope",
    `${error.message}. A login link needs an admin credential`,
    "Run it with the gateway's home (--home DIR: its admin/ folder holds the admin certificate) or a copy of that admin/ folder, " +
      "or pass --token with an access token whose role has every scope of the session's role (or ask for less, e.g. --role viewer).",
  );
}

/**
 * `gatehouse dashboard [--role ROLE] [--no-open]`: asks the gateway, with the home's credential,
 * for a single-use login link to the web dashboard (POST /api/v1/dashboard/login-links), prints
 * it (--json: `{url, role, expiresAt}`) and, on a desktop terminal, opens it in the browser.
 * Refusals are the gateway's: `invalid_request` for an unknown role, `insufficient_scope` when the
 * credential lacks a scope of the role; `config_missing` when the home holds no credential.
 */
export async function dashboard(ctx: CommandContext, options: DashboardOptions): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  const link = await client
    .post<LoginLink>("/api/v1/dashboard/login-links", { role: options.role ?? "admin" })
    .catch((error: unknown) => {
      throw needsAdminCredential(error);
    });
  const url = client.gatewayUrl + link.path;
  if (ctx.json) {
    printJson({ url, role: link.role, expiresAt: link.expiresAt });
    return;
  }
  printText(
    `Open this link to log in (single use, ${expiresIn(link.expiresAt)}):\n  ${url}\n` +
      `role: ${link.role}\n` +
      `The browser will warn about the certificate: it comes from this gateway's own CA. To trust it, import ${caBundleFile(ctx.home, options)} as a certificate authority in the browser or the system.\n`,
  );
  if (options.open && (await openBrowser(url))) printText("Opened it in your browser.\n");
}
