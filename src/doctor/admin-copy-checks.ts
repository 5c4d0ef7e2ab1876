import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES } from "../config/index.js";
import { requestJson } from "../client/https-json.js";
import { GatehouseError } from "../protocol/errors.js";
import type { Finding } from "./findings.js";
import {
  checkConflictingSources,
  checkExpiry,
  checkHomeMode,
  checkPrivateFiles,
  readAdminGatewayFile,
} from "./home-checks.js";

/** How long doctor waits for the gateway's /health (a refused port answers at once). */
const PROBE_TIMEOUT_MS = 5000;

/**
 * Whether a home holds a copy of a gateway's admin credential (admin/) away from its gateway: no
 * gateway.json beside it, so admin commands dial the URL stored in admin/gateway.json.
 */
export function isAdminCopy(home: string): boolean {
  return (
    existsSync(path.join(home, GATEWAY_FILES.adminGateway)) &&
    !existsSync(path.join(home, GATEWAY_FILES.config))
  );
}

/**
 * A copy of admin/: its key's mode, its certificate's life, and whether the URL stored in
 * admin/gateway.json still leads to the gateway the credential belongs to. That URL is the one
 * thing here that goes stale by itself (the gateway's listen is edited), so doctor asks the
 * gateway's `/health` there, verified against admin/ca.pem, and compares the gateway id.
 */
export async function checkAdminCopy(home: string, now: Date, env: NodeJS.ProcessEnv): Promise<Finding[]> {
  const findings: Finding[] = [checkHomeMode(home), ...checkPrivateFiles(home, [GATEWAY_FILES.adminKey])];
  findings.push(
    checkExpiry(path.join(home, GATEWAY_FILES.adminCert), "the admin certificate", now, undefined),
  );
  findings.push(await checkStoredUrl(home));
  findings.push(...checkConflictingSources(env));
  return findings;
}

async function checkStoredUrl(home: string): Promise<Finding> {
  const file = path.join(home, GATEWAY_FILES.adminGateway);
  const read = readAdminGatewayFile(file, "Copy admin/ again from the gateway's home.");
  if ("finding" in read) return read.finding;
  const meta = read.meta;
  const url = typeof meta.gatewayUrl === "string" ? meta.gatewayUrl.replace(/\/+$/, "") : "";
  const moved = `If the gateway's listen address changed, write its URL into "gatewayUrl" in ${file} (\`gatehouse gateway info\` on the gateway prints it), or pass --gateway URL to admin commands`;
  try {
    const ca = readFileSync(path.join(home, GATEWAY_FILES.adminCa), "utf8");
    const { body } = await requestJson<{ gatewayId?: string }>(`${url}/health`, {
      tls: { ca },
      timeoutMs: PROBE_TIMEOUT_MS,
    });
    if (body.gatewayId !== meta.gatewayId)
      return {
        severity: "error",
        check: "admin-url",
        file,
        message: `${url} (gatewayUrl in ${file}) is gateway ${String(body.gatewayId)}, not ${String(meta.gatewayId)} that this credential belongs to`,
        fix: `${moved}.`,
      };
    return {
      severity: "ok",
      check: "admin-url",
      file,
      message: `gateway ${String(meta.gatewayId)} answers at ${url}`,
    };
  } catch (error) {
    const named =
      error instanceof GatehouseError ? error : new GatehouseError("connection_failed", String(error));
    const unreachable = ["connection_refused", "connection_timeout", "dns_failed"].includes(named.code);
    return {
      severity: unreachable ? "warning" : "error",
      check: "admin-url",
      file,
      message: `${named.code}: ${named.message} (the URL is gatewayUrl in ${file})`,
      fix: unreachable ? `${moved}; otherwise start the gateway.` : named.hint,
    };
  }
}
