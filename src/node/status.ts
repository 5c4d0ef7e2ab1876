import { existsSync, readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import path from "node:path";
import { NODE_FILES, loadNodeConfig } from "../config/index.js";
import { sha256Fingerprint } from "../pki/fingerprint.js";
import { isProcessAlive } from "../config/processes.js";
import type { AgentStatus } from "./agent.js";

export interface NodeStatusReport {
  state: AgentStatus["state"] | "not running";
  running: boolean;
  pid: number | null;
  configPath: string;
  /** node.json's first gateway URL. */
  gatewayUrl: string;
  /** Every gateway URL node.json lists, in the order the agent tries them. */
  gatewayUrls: string[];
  /** The URL the running agent's last attempt (or open session) used; null when not running. */
  currentGatewayUrl: string | null;
  caFingerprint: string;
  deviceId: string | null;
  certificate: { expiresAt: string; validFrom: string; expired: boolean; fingerprint: string } | null;
  lastAttemptAt: string | null;
  lastConnectedAt: string | null;
  lastError: AgentStatus["lastError"];
  backoffMs: number | null;
  sessionId: string | null;
  since: string | null;
}

/**
 * What `node status` shows: the config, the certificate, and the state the running agent last
 * wrote to state.json (whether that agent is still alive is checked by its pid).
 */
export function readNodeStatus(home: string): NodeStatusReport {
  const loaded = loadNodeConfig(home);
  const certFile = path.join(home, NODE_FILES.deviceCert);
  let certificate: NodeStatusReport["certificate"] = null;
  if (existsSync(certFile)) {
    const cert = new X509Certificate(readFileSync(certFile));
    const expiresAt = new Date(cert.validTo);
    certificate = {
      expiresAt: expiresAt.toISOString(),
      validFrom: new Date(cert.validFrom).toISOString(),
      expired: expiresAt.getTime() <= Date.now(),
      fingerprint: sha256Fingerprint(cert.raw),
    };
  }
  const stateFile = path.join(home, NODE_FILES.state);
  const saved = existsSync(stateFile)
    ? (JSON.parse(readFileSync(stateFile, "utf8")) as AgentStatus & { pid?: number })
    : undefined;
  const running = saved?.pid !== undefined && saved.state !== "stopped" && isProcessAlive(saved.pid);
  return {
    state: running && saved ? saved.state : "not running",
    running,
    pid: running ? (saved?.pid ?? null) : null,
    configPath: loaded.file,
    gatewayUrl: loaded.config.gatewayUrl,
    gatewayUrls: loaded.config.gatewayUrls,
    currentGatewayUrl: running ? (saved?.gatewayUrl ?? null) : null,
    caFingerprint: loaded.config.caFingerprint,
    deviceId: loaded.config.deviceId ?? null,
    certificate,
    lastAttemptAt: saved?.lastAttemptAt ?? null,
    lastConnectedAt: saved?.lastConnectedAt ?? null,
    lastError: saved?.lastError ?? null,
    backoffMs: running ? (saved?.backoffMs ?? null) : null,
    sessionId: running ? (saved?.sessionId ?? null) : null,
    since: saved?.since ?? null,
  };
}
