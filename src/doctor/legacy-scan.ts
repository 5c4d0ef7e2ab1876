import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { weakCredentialReason } from "../auth/weak-credentials.js";
import { lookup } from "../config/load.js";
import { tokenFingerprint } from "../auth/token-service.js";
import { fingerprintPrefix } from "../pki/fingerprint.js";

/**
 * Finds the old static gateway token wherever the old setups kept copies: the product's JSON
 * config, .env files, the process environment, shell exports, LaunchAgent plists, docker-compose
 * files and `--token` flags in them, and the pairing file — under ~/.clawdbot, ~/.openclaw and
 * ~/.moltbot. It reports where each token is and a fingerprint prefix, never the token.
 */

const PRODUCTS = ["clawdbot", "openclaw", "moltbot"] as const;
/** The variables the old setups kept the gateway token in. */
export const TOKEN_VARIABLE = /^(CLAWDBOT|OPENCLAW|MOLTBOT)_GATEWAY_TOKEN$/;
const SHELL_FILES = [".zshrc", ".zprofile", ".bashrc", ".bash_profile", ".profile"];
const COMPOSE_FILE = /^(docker-)?compose(\.[\w-]+)?\.ya?ml$/;
/** How deep the working tree is searched for compose files, and what is never entered. */
const COMPOSE_DEPTH = 3;
const SKIP_DIRS = new Set(["node_modules", ".git", "dist", "build", ".cache"]);

export type LegacyKind =
  "json-config" | "dotenv" | "environment" | "shell-export" | "launch-agent" | "compose" | "flag" | "pairing";

export interface LegacyToken {
  kind: LegacyKind;
  /** The file (or "process environment") and where in it: a JSON path, a variable, a line. */
  file: string;
  where: string;
  fingerprint: string;
  /** Why the value is a placeholder or too weak, if it is. */
  placeholder?: string;
}

export interface LegacyGroup {
  fingerprint: string;
  placeholder?: string;
  locations: { kind: LegacyKind; file: string; where: string }[];
}

export interface LegacyReport {
  tokens: LegacyToken[];
  /** One group per distinct token, the most widespread first. */
  groups: LegacyGroup[];
  /** More than one distinct real (non-placeholder) token: the copies have drifted. */
  disagree: boolean;
  migration: string[];
}

interface Found {
  kind: LegacyKind;
  file: string;
  where: string;
  value: string;
}

/** What may be shown of an old token: the first 12 hex digits of its SHA-256. */
function legacyFingerprint(value: string): string {
  return fingerprintPrefix(tokenFingerprint(value));
}

function readText(file: string): string | undefined {
  try {
    return statSync(file).isFile() ? readFileSync(file, "utf8") : undefined;
  } catch {
    return undefined;
  }
}

function unquote(value: string): string {
  const trimmed = value.trim();
  const quoted = /^(['"])(.*)\1$/.exec(trimmed);
  return quoted ? quoted[2]! : trimmed.replace(/\s+#.*$/, "");
}

/** A value that only refers to another (`${VAR}`, `$VAR`) is not a copy of the token. */
function isLiteral(value: string): boolean {
  return value.length > 0 && !/^\$\{?[A-Za-z_]/.test(value);
}

function parseJson(file: string): unknown {
  const text = readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function scanProductJson(file: string): Found[] {
  const json = parseJson(file);
  return ["gateway.auth.token", "gateway.remote.token"].flatMap((key) => {
    const value = lookup(json, key).value;
    return typeof value === "string" && isLiteral(value)
      ? [{ kind: "json-config" as const, file, where: key, value }]
      : [];
  });
}

/** Every string under a key that names a token, anywhere in the pairing file. */
function scanPairing(file: string): Found[] {
  const found: Found[] = [];
  const walk = (node: unknown, at: string) => {
    if (Array.isArray(node)) node.forEach((child, i) => walk(child, `${at}[${i}]`));
    else if (node && typeof node === "object")
      for (const [key, child] of Object.entries(node)) {
        const here = at ? `${at}.${key}` : key;
        if (typeof child === "string" && /token/i.test(key) && isLiteral(child))
          found.push({ kind: "pairing", file, where: here, value: child });
        else walk(child, here);
      }
  };
  walk(parseJson(file), "");
  return found;
}

/** `NAME=value` and `export NAME=value` lines. */
function scanAssignments(file: string, kind: "dotenv" | "shell-export"): Found[] {
  const text = readText(file);
  if (!text) return [];
  return text.split("\n").flatMap((line, i) => {
    const match = /^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match || !TOKEN_VARIABLE.test(match[1]!)) return [];
    const value = unquote(match[2]!);
    return isLiteral(value) ? [{ kind, file, where: `line ${i + 1}: ${match[1]}`, value }] : [];
  });
}

/** EnvironmentVariables entries and `--token` program arguments of a LaunchAgent plist. */
function scanPlist(file: string): Found[] {
  const text = readText(file);
  if (!text) return [];
  const found: Found[] = [];
  const pairs = /<key>\s*([^<]+?)\s*<\/key>\s*<string>([^<]*)<\/string>/g;
  for (const match of text.matchAll(pairs))
    if (TOKEN_VARIABLE.test(match[1]!) && isLiteral(match[2]!))
      found.push({ kind: "launch-agent", file, where: `EnvironmentVariables.${match[1]}`, value: match[2]! });
  const args = [...text.matchAll(/<string>([^<]*)<\/string>/g)].map((m) => m[1]!);
  args.forEach((arg, i) => {
    const inline = /^--token=(.+)$/.exec(arg);
    const value = inline ? inline[1] : arg === "--token" ? args[i + 1] : undefined;
    if (value && isLiteral(value))
      found.push({ kind: "flag", file, where: "ProgramArguments --token", value });
  });
  return found;
}

/** `NAME: value`, `- NAME=value` and `--token value` in a compose file. */
function scanCompose(file: string): Found[] {
  const text = readText(file);
  if (!text) return [];
  return text.split("\n").flatMap((line, i): Found[] => {
    const out: Found[] = [];
    const env = /^\s*-?\s*["']?([A-Z][A-Z0-9_]*)["']?\s*[:=]\s*(.+?)\s*$/.exec(line);
    if (env && TOKEN_VARIABLE.test(env[1]!)) {
      const value = unquote(env[2]!);
      if (isLiteral(value)) out.push({ kind: "compose", file, where: `line ${i + 1}: ${env[1]}`, value });
    }
    // --token=T, --token T, and the exec form ["--token", "T"].
    for (const flag of line.matchAll(/--token(?:=|["']?(?:\s*,\s*|\s+)["']?)([^\s"',\]]+)/g))
      if (isLiteral(flag[1]!))
        out.push({ kind: "flag", file, where: `line ${i + 1}: --token`, value: flag[1]! });
    return out;
  });
}

function composeFiles(dir: string, depth = 0): string[] {
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isFile() && COMPOSE_FILE.test(entry.name)) return [full];
    if (entry.isDirectory() && depth < COMPOSE_DEPTH && !SKIP_DIRS.has(entry.name))
      return composeFiles(full, depth + 1);
    return [];
  });
}

export interface LegacyScanOptions {
  /** The user's home (where ~/.clawdbot and ~/Library live). */
  userHome: string;
  /** The working tree searched for .env and compose files. */
  cwd: string;
  env: NodeJS.ProcessEnv;
}

function collect(options: LegacyScanOptions): Found[] {
  const { userHome, cwd, env } = options;
  const found: Found[] = [];
  for (const product of PRODUCTS) {
    const dir = path.join(userHome, `.${product}`);
    if (!existsSync(dir)) continue;
    found.push(...scanProductJson(path.join(dir, `${product}.json`)));
    found.push(...scanAssignments(path.join(dir, ".env"), "dotenv"));
    found.push(...scanPairing(path.join(dir, "devices", "paired.json")));
  }
  for (const name of [".env", ".env.local"]) found.push(...scanAssignments(path.join(cwd, name), "dotenv"));
  for (const [name, value] of Object.entries(env))
    if (TOKEN_VARIABLE.test(name) && value && isLiteral(value))
      found.push({ kind: "environment", file: "process environment", where: name, value });
  for (const name of SHELL_FILES) found.push(...scanAssignments(path.join(userHome, name), "shell-export"));
  const agents = path.join(userHome, "Library", "LaunchAgents");
  if (existsSync(agents))
    for (const name of readdirSync(agents)
      .filter((n) => n.endsWith(".plist"))
      .sort())
      found.push(...scanPlist(path.join(agents, name)));
  for (const file of composeFiles(cwd).sort()) found.push(...scanCompose(file));
  return found;
}

/**
 * The old token that `migrate --from-legacy` imports: the real (non-placeholder) one found in the
 * most places, or the one with the given fingerprint prefix. Its value stays in memory only.
 */
export function legacyTokenToImport(
  options: LegacyScanOptions,
  fingerprint?: string,
): { value: string; fingerprint: string; places: number } | undefined {
  const counts = new Map<string, { value: string; fingerprint: string; places: number }>();
  for (const { value } of collect(options)) {
    if (weakCredentialReason(value)) continue;
    const fp = legacyFingerprint(value);
    const entry = counts.get(fp) ?? { value, fingerprint: fp, places: 0 };
    entry.places += 1;
    counts.set(fp, entry);
  }
  const candidates = [...counts.values()].sort((a, b) => b.places - a.places);
  return fingerprint ? candidates.find((c) => c.fingerprint.startsWith(fingerprint)) : candidates[0];
}

export function scanLegacyTokens(options: LegacyScanOptions): LegacyReport {
  const found = collect(options);
  const tokens: LegacyToken[] = found.map(({ value, ...where }) => {
    const placeholder = weakCredentialReason(value);
    return { ...where, fingerprint: legacyFingerprint(value), ...(placeholder ? { placeholder } : {}) };
  });
  const byFingerprint = new Map<string, LegacyGroup>();
  for (const token of tokens) {
    const group = byFingerprint.get(token.fingerprint) ?? {
      fingerprint: token.fingerprint,
      ...(token.placeholder ? { placeholder: token.placeholder } : {}),
      locations: [],
    };
    group.locations.push({ kind: token.kind, file: token.file, where: token.where });
    byFingerprint.set(token.fingerprint, group);
  }
  const groups = [...byFingerprint.values()].sort((a, b) => b.locations.length - a.locations.length);
  const real = groups.filter((g) => !g.placeholder);
  return { tokens, groups, disagree: real.length > 1, migration: migrationSteps(groups) };
}

function migrationSteps(groups: LegacyGroup[]): string[] {
  if (groups.length === 0) return [];
  const files = [...new Set(groups.flatMap((g) => g.locations.map((l) => l.file)))];
  return [
    "Start a Gatehouse gateway: `gatehouse gateway start` (it prints the CA fingerprint).",
    "Let existing nodes in once with the old token: `gatehouse migrate --from-legacy` on the gateway turns it into a one-time enroll token; or register each node and approve it by its code.",
    "On each node: `gatehouse node register --gateway https://HOST:18789 --ca-fingerprint sha256:… `, then `gatehouse service install node` (the service file holds no secret).",
    "Scripts: `gatehouse keys create --name NAME --role viewer` and `gatehouse token --api-key-file F` instead of the shared token.",
    `Then delete the old token from each place it was found (${files.length} file${files.length > 1 ? "s" : ""}), and unset the variables: ${files.join(", ")}.`,
  ];
}
