import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import type { z } from "zod";
import { GatehouseError } from "../protocol/errors.js";
import { gatewayConfigSchema, nodeConfigSchema, type GatewayConfig, type NodeConfig } from "./schema.js";
import { GATEWAY_FILES, NODE_FILES } from "./paths.js";
import { knownKeysAt } from "./schema-walk.js";

export type ValueSource = "default" | "file" | "flag";

export interface Provenance {
  source: ValueSource;
  /** The file the value came from, when it came from a file. */
  file?: string;
  /** A value from a lower source that this one shadowed (a flag over the file). */
  shadowed?: { source: ValueSource; value: unknown; file?: string };
}

export interface LoadedConfig<T> {
  config: T;
  file: string;
  /** Where each effective leaf value came from, by dotted path (for `config explain`). */
  provenance: Record<string, Provenance>;
}

type Json = Record<string, unknown>;

function isPlainObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    out[key] = isPlainObject(value) && isPlainObject(out[key]) ? deepMerge(out[key] as Json, value) : value;
  }
  return out;
}

/** The value at a dotted path ("tokens.hashKey") of a JSON object, if it is there. */
export function lookup(obj: unknown, dotted: string): { found: boolean; value?: unknown } {
  let current: unknown = obj;
  for (const part of dotted.split(".")) {
    if (!isPlainObject(current) || !(part in current)) return { found: false };
    current = current[part];
  }
  return { found: true, value: current };
}

function leafPaths(obj: Json, prefix = ""): string[] {
  return Object.entries(obj).flatMap(([key, value]) =>
    isPlainObject(value) ? leafPaths(value, `${prefix}${key}.`) : [`${prefix}${key}`],
  );
}

export function readJsonFile(
  file: string,
  what: "config_missing" | "config_invalid" = "config_missing",
): Json {
  if (!existsSync(file)) {
    throw new GatehouseError(what, `config file ${file} does not exist`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new GatehouseError(
      "config_invalid",
      `config file ${file} is not valid JSON: ${(error as Error).message}`,
      `Fix the JSON syntax in ${file}.`,
    );
  }
  if (!isPlainObject(parsed)) {
    throw new GatehouseError("config_invalid", `config file ${file} must hold a JSON object`);
  }
  return parsed;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The known key an unknown one was probably meant to be: a typo or a case slip away. */
export function didYouMean(unknown: string, known: readonly string[]): string | undefined {
  const lower = unknown.toLowerCase();
  let best: { key: string; distance: number } | undefined;
  for (const key of known) {
    const distance = key.toLowerCase() === lower ? 0 : editDistance(lower, key.toLowerCase());
    if (distance <= Math.max(2, Math.floor(key.length / 4)) && (!best || distance < best.distance))
      best = { key, distance };
  }
  return best?.key;
}

function describeIssue(issue: z.core.$ZodIssue, file: string, schema: z.ZodType): string {
  const key = issue.path.join(".");
  if (issue.code === "unrecognized_keys") {
    const where = key ? ` in ${key}` : "";
    const known = knownKeysAt(schema, issue.path);
    const named = issue.keys.map((k) => {
      const guess = didYouMean(k, known);
      return `"${k}"${guess ? ` (did you mean "${guess}"?)` : ""}`;
    });
    return `unknown key${issue.keys.length > 1 ? "s" : ""} ${named.join(", ")}${where} in ${file}`;
  }
  return `${key || "(top level)"} in ${file}: ${issue.message}`;
}

function loadWith<S extends z.ZodType>(schema: S, file: string, flags: Json): LoadedConfig<z.output<S>> {
  const fromFile = readJsonFile(file);
  const merged = deepMerge(fromFile, flags);
  const result = schema.safeParse(merged);
  if (!result.success) {
    const first = result.error.issues[0];
    const description = first ? describeIssue(first, file, schema) : `config file ${file} is invalid`;
    throw new GatehouseError("config_invalid", description, `Edit ${file} and fix that key.`);
  }
  const config = result.data as z.output<S>;
  const provenance: Record<string, Provenance> = {};
  for (const leaf of leafPaths(config as Json)) {
    const inFile = lookup(fromFile, leaf);
    const inFlags = lookup(flags, leaf);
    if (inFlags.found && inFlags.value !== undefined) {
      provenance[leaf] = inFile.found
        ? { source: "flag", shadowed: { source: "file", value: inFile.value, file } }
        : { source: "flag" };
    } else if (inFile.found) {
      provenance[leaf] = { source: "file", file };
    } else {
      provenance[leaf] = { source: "default" };
    }
  }
  return { config, file, provenance };
}

export function loadGatewayConfig(home: string, flags: Json = {}): LoadedConfig<GatewayConfig> {
  return loadWith(gatewayConfigSchema, path.join(home, GATEWAY_FILES.config), flags);
}

export function loadNodeConfig(home: string, flags: Json = {}): LoadedConfig<NodeConfig> {
  const loaded = loadWith(nodeConfigSchema, path.join(home, NODE_FILES.config), flags);
  // gatewayUrls is the file's (or the flag's) gatewayUrl as a list: it comes from the same place.
  if (loaded.provenance.gatewayUrl) loaded.provenance.gatewayUrls = loaded.provenance.gatewayUrl;
  return loaded;
}
