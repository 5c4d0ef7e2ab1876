import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import {
  GATEWAY_FILES,
  NODE_FILES,
  GATEWAY_SECRET_SETTINGS,
  describeSecret,
  isSecretReference,
  loadGatewayConfig,
  loadNodeConfig,
  lookup,
  resolveSecret,
  vaultAccess,
  NODE_SECRET_SETTINGS,
  SHORT_LIFETIMES_VARIABLE,
  SHORT_LIFETIMES_WARNING,
  shortLifetimesAllowed,
  type GatewayConfig,
  type NodeConfig,
} from "../config/index.js";
import {
  ADVERTISE_URL_FIX,
  advertiseUrlWarning,
  dialUrlForListen,
  splitListen,
  urlReachesListen,
} from "../config/listen-url.js";
import { GatehouseError } from "../protocol/errors.js";
import { checkProxyProtocol } from "./proxy-protocol-check.js";
import { sha256Fingerprint } from "../pki/fingerprint.js";
import { TOKEN_VARIABLE } from "./legacy-scan.js";
import type { Finding } from "./findings.js";
import { weakCredentialReason } from "../auth/weak-credentials.js";
import { checkGatewayStore } from "./store-checks.js";

const DAY_MS = 86_400_000;

function modeOf(file: string): number {
  return statSync(file).mode & 0o777;
}

const octal = (mode: number) => "0" + mode.toString(8);

/** The home folder itself: 0700, since it holds keys. */
export function checkHomeMode(home: string): Finding {
  const mode = modeOf(home);
  if (mode & 0o077)
    return {
      severity: "warning",
      check: "home-mode",
      file: home,
      message: `the home ${home} is ${octal(mode)}: other users can list it`,
      fix: `chmod 700 ${home}`,
    };
  return { severity: "ok", check: "home-mode", file: home, message: `home is ${octal(mode)}` };
}

/** Private keys and the database: 0600. */
export function checkPrivateFiles(home: string, names: readonly string[]): Finding[] {
  return names
    .map((name) => path.join(home, name))
    .filter((file) => existsSync(file))
    .map((file): Finding => {
      const mode = modeOf(file);
      if (mode & 0o077)
        return {
          severity: "error",
          check: "file-mode",
          file,
          message: `${file} is ${octal(mode)}: a private file readable by other users`,
          fix: `chmod 600 ${file}`,
        };
      return {
        severity: "ok",
        check: "file-mode",
        file,
        message: `${path.basename(file)} is ${octal(mode)}`,
      };
    });
}

function certificatesIn(file: string): X509Certificate[] {
  const text = readFileSync(file, "utf8");
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (pem) => new X509Certificate(pem),
  );
}

/**
 * A certificate's remaining life: expired is an error unless something renews it by itself,
 * less than a third left means the automatic renewal (at 2/3) has not happened.
 */
export function checkExpiry(
  file: string,
  what: string,
  now: Date,
  renewsItself: string | undefined,
): Finding {
  if (!existsSync(file))
    return { severity: "error", check: "certificate", file, message: `${what} ${file} is missing` };
  const [cert] = certificatesIn(file);
  if (!cert)
    return { severity: "error", check: "certificate", file, message: `${file} holds no certificate` };
  const from = new Date(cert.validFrom).getTime();
  const to = new Date(cert.validTo).getTime();
  const left = to - now.getTime();
  const days = (ms: number) => `${(ms / DAY_MS).toFixed(1)} days`;
  if (left <= 0)
    return {
      severity: renewsItself ? "warning" : "error",
      check: "certificate",
      file,
      message: `${what} expired ${days(-left)} ago (${cert.validTo})`,
      fix: renewsItself ?? "Replace it (see README: Lifetimes).",
    };
  if (left < (to - from) / 3)
    return {
      severity: "warning",
      check: "certificate",
      file,
      message: `${what} expires in ${days(left)}, past the point where it renews itself`,
      fix: renewsItself ?? "Rotate it before it expires.",
    };
  return { severity: "ok", check: "certificate", file, message: `${what} valid for ${days(left)}` };
}

/** Plaintext or weak secrets in the config, and references that do not resolve. */
async function checkSecrets(
  config: Pick<GatewayConfig, "vault">,
  keys: readonly string[],
  file: string,
  env: NodeJS.ProcessEnv,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const key of keys) {
    const { value } = lookup(config, key);
    if (typeof value !== "string") continue;
    if (!isSecretReference(value))
      findings.push({
        severity: "warning",
        check: "plaintext-secret",
        file,
        message: `${key} holds a plaintext secret (${describeSecret(value)}) in ${file}`,
        fix: `Move it out of the file and write a reference: "op://…", "vault://…#field", "env://NAME" or "file://PATH".`,
      });
    try {
      const secret = await resolveSecret(value, key, { env, vault: vaultAccess(config) });
      // A database URL is an address with a password in it, not a random key: not weighed.
      const weak = key === "store.url" ? undefined : weakCredentialReason(secret);
      if (weak)
        findings.push({
          severity: "error",
          check: "weak-secret",
          file,
          message: `${key} is ${weak}: ${describeSecret(value)}`,
          fix: "Use a random value: `openssl rand -hex 32`.",
        });
    } catch (error) {
      const named =
        error instanceof GatehouseError ? error : new GatehouseError("config_invalid", String(error));
      findings.push({
        severity: "error",
        check: "secret-reference",
        file,
        message: named.message,
        fix: named.hint,
      });
    }
  }
  return findings;
}

/** Old and new credentials side by side: a token in the environment overrides the home's certificate. */
export function checkConflictingSources(env: NodeJS.ProcessEnv): Finding[] {
  const findings: Finding[] = [];
  if (env.GATEHOUSE_TOKEN)
    findings.push({
      severity: "info",
      check: "conflicting-sources",
      message:
        "GATEHOUSE_TOKEN is set: admin commands use it instead of this home's certificate (precedence: --token, then GATEHOUSE_TOKEN, then the home's certificate)",
      fix: "Unset GATEHOUSE_TOKEN unless that is what you want.",
    });
  const legacy = Object.keys(env).filter((name) => TOKEN_VARIABLE.test(name));
  if (legacy.length)
    findings.push({
      severity: "warning",
      check: "legacy-token",
      message: `${legacy.join(", ")} is set in this environment: an old shared token`,
      fix: "Run `gatehouse doctor --legacy` to find every copy and how to retire them.",
    });
  return findings;
}

/** What admin/gateway.json holds about the gateway an admin credential belongs to. */
export interface AdminGatewayMeta {
  gatewayUrl?: unknown;
  gatewayId?: unknown;
}

/**
 * Reads admin/gateway.json for doctor: its fields, or the `admin-url` error finding that names the
 * file and the parse error (with `fix`, which differs between a gateway home and a copy of admin/).
 */
export function readAdminGatewayFile(
  file: string,
  fix: string,
): { meta: AdminGatewayMeta } | { finding: Finding } {
  try {
    return { meta: JSON.parse(readFileSync(file, "utf8")) as AdminGatewayMeta };
  } catch (error) {
    return {
      finding: {
        severity: "error",
        check: "admin-url",
        file,
        message: `${file} is not valid JSON: ${(error as Error).message}`,
        fix,
      },
    };
  }
}

/**
 * The URL `gateway init` stored in admin/gateway.json for the admin credential. Admin commands on
 * this home follow gateway.json's listen, but a copy of admin/ on another machine dials the stored
 * URL: once listen is edited, that copy fails with connection_refused while the gateway runs.
 */
function checkAdminUrl(home: string, config: GatewayConfig): Finding | undefined {
  const file = path.join(home, GATEWAY_FILES.adminGateway);
  if (!existsSync(file)) return undefined;
  const read = readAdminGatewayFile(file, "Restore it from a backup of the gateway home.");
  if ("finding" in read) return read.finding;
  const stored = read.meta.gatewayUrl;
  const dialled = dialUrlForListen(config.listen);
  if (typeof stored === "string" && urlReachesListen(stored, config.listen))
    return {
      severity: "ok",
      check: "admin-url",
      file,
      message: `admin/gateway.json's gatewayUrl ${stored} matches listen ${config.listen}`,
    };
  return {
    severity: "warning",
    check: "admin-url",
    file,
    message:
      `admin/gateway.json says the gateway is at ${JSON.stringify(stored)}, but gateway.json listens on ${config.listen} (${dialled}): ` +
      "admin commands on this home follow gateway.json, but a copy of admin/ on another machine dials the stale URL",
    fix: `Set "gatewayUrl" in ${file} to ${dialled} (from another machine: the gateway's name or address with port ${new URL(dialled).port}), and in every copy of admin/; or pass --gateway URL where a copy is used.`,
  };
}

function isLoopback(listen: string): boolean {
  const { host } = splitListen(listen);
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

export async function checkGatewayHome(home: string, now: Date, env: NodeJS.ProcessEnv): Promise<Finding[]> {
  const findings: Finding[] = [checkHomeMode(home)];
  findings.push(
    ...checkPrivateFiles(home, [
      GATEWAY_FILES.caKey,
      GATEWAY_FILES.serverKey,
      GATEWAY_FILES.tokenPepper,
      GATEWAY_FILES.signingKeyKek,
      GATEWAY_FILES.adminKey,
      GATEWAY_FILES.database,
      `${GATEWAY_FILES.database}-wal`,
      GATEWAY_FILES.config,
    ]),
  );
  let config: GatewayConfig | undefined;
  const file = path.join(home, GATEWAY_FILES.config);
  try {
    config = loadGatewayConfig(home).config;
    findings.push({ severity: "ok", check: "config", file, message: "gateway.json is valid" });
  } catch (error) {
    const named =
      error instanceof GatehouseError ? error : new GatehouseError("config_invalid", String(error));
    findings.push({ severity: "error", check: "config", file, message: named.message, fix: named.hint });
  }
  findings.push(checkExpiry(path.join(home, GATEWAY_FILES.caCert), "the CA certificate", now, undefined));
  findings.push(
    checkExpiry(
      path.join(home, GATEWAY_FILES.serverCert),
      "the server certificate",
      now,
      "The gateway renews it at 2/3 of its life while it runs: start it (`gatehouse gateway start`).",
    ),
  );
  findings.push(
    checkExpiry(path.join(home, GATEWAY_FILES.adminCert), "the admin certificate", now, undefined),
  );
  if (config) {
    findings.push(...(await checkSecrets(config, GATEWAY_SECRET_SETTINGS, file, env)));
    findings.push(...(await checkGatewayStore(home, config, env)));
    const unadvertised =
      config.store.kind === "postgres"
        ? advertiseUrlWarning(config.listen, config.cluster.advertiseUrl)
        : undefined;
    if (unadvertised)
      findings.push({
        severity: "warning",
        check: "advertise-url",
        message: unadvertised,
        fix: ADVERTISE_URL_FIX,
      });
    const proxyProtocol = checkProxyProtocol(config);
    if (proxyProtocol) findings.push(proxyProtocol);
    findings.push(
      isLoopback(config.listen)
        ? { severity: "ok", check: "listen", message: `listens on loopback (${config.listen})` }
        : {
            severity: "info",
            check: "listen",
            message: `listens beyond loopback (${config.listen}); TLS is always on and every route but /health, the JWKS and enrollment needs a client certificate or token`,
            fix: "Registration is open to that network (rate-limited, admin approval): keep it on a network you trust.",
          },
    );
  }
  if (config) {
    const adminUrl = checkAdminUrl(home, config);
    if (adminUrl) findings.push(adminUrl);
  }
  findings.push(...checkConflictingSources(env));
  if (shortLifetimesAllowed(env))
    findings.push({
      severity: "warning",
      check: "short-lifetimes",
      message: SHORT_LIFETIMES_WARNING,
      fix: `Unset ${SHORT_LIFETIMES_VARIABLE} and give every lifetime in gateway.json at least 1m.`,
    });
  return findings;
}

export async function checkNodeHome(home: string, now: Date, env: NodeJS.ProcessEnv): Promise<Finding[]> {
  const findings: Finding[] = [checkHomeMode(home)];
  findings.push(...checkPrivateFiles(home, [NODE_FILES.deviceKey, NODE_FILES.config, NODE_FILES.state]));
  const file = path.join(home, NODE_FILES.config);
  let pin: string | undefined;
  let config: NodeConfig | undefined;
  try {
    config = loadNodeConfig(home).config;
    pin = config.caFingerprint;
    findings.push({ severity: "ok", check: "config", file, message: "node.json is valid" });
    findings.push(...(await checkSecrets(config, NODE_SECRET_SETTINGS, file, env)));
  } catch (error) {
    const named =
      error instanceof GatehouseError ? error : new GatehouseError("config_invalid", String(error));
    findings.push({ severity: "error", check: "config", file, message: named.message, fix: named.hint });
  }
  const caFile = path.join(home, NODE_FILES.caCert);
  const cas = existsSync(caFile) ? certificatesIn(caFile) : [];
  if (pin) {
    const pinned = cas.some((ca) => sha256Fingerprint(ca.raw) === pin);
    findings.push(
      pinned
        ? {
            severity: "ok",
            check: "ca-pin",
            file: caFile,
            message: `ca.pem holds the pinned CA ${pin.slice(0, 19)}…`,
          }
        : {
            severity: "error",
            check: "ca-pin",
            file: caFile,
            message: `ca.pem does not hold the CA that node.json pins (${pin.slice(0, 19)}…)`,
            fix: "Register again with the gateway's CA fingerprint: `gatehouse node register --gateway URL --ca-fingerprint sha256:…`.",
          },
    );
  }
  const certFile = path.join(home, NODE_FILES.deviceCert);
  const keyFile = path.join(home, NODE_FILES.deviceKey);
  if (!existsSync(certFile) && config?.apiKey) {
    findings.push({
      severity: "info",
      check: "certificate",
      file: certFile,
      message: "no device certificate: this node authenticates with its API key (apiKey)",
      fix: "A client certificate is stronger (bound to a key that never leaves this machine): `gatehouse node register`.",
    });
  } else if (!existsSync(certFile)) {
    findings.push({
      severity: "warning",
      check: "certificate",
      file: certFile,
      message: "no device certificate: this node is not registered (or not approved yet)",
      fix: "`gatehouse node register --gateway URL --ca-fingerprint sha256:…`, then approve it on the gateway.",
    });
  } else {
    findings.push(
      checkExpiry(
        certFile,
        "the device certificate",
        now,
        "`gatehouse node start` renews it at 2/3 of its life, and re-issues an expired one by itself for an approved device.",
      ),
    );
    const cert = certificatesIn(certFile)[0];
    if (cert && cas.length && !cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey)))
      findings.push({
        severity: "error",
        check: "certificate",
        file: certFile,
        message: "device.pem was not issued by a CA in ca.pem",
        fix: "Register again: `gatehouse node register --new-key …`.",
      });
    if (cert && existsSync(keyFile)) {
      const key = createPublicKey(createPrivateKey(readFileSync(keyFile, "utf8")));
      const matches = key
        .export({ type: "spki", format: "der" })
        .equals(cert.publicKey.export({ type: "spki", format: "der" }));
      if (!matches)
        findings.push({
          severity: "error",
          check: "certificate",
          file: certFile,
          message: "device.pem does not belong to device.key",
          fix: "Restore the matching pair from a backup, or register again with `--new-key`.",
        });
    }
  }
  findings.push(...checkConflictingSources(env));
  return findings;
}
