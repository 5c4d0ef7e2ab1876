import type { z } from "zod";
import { DURATION_SCHEMAS } from "./duration.js";

/** The little of zod's schema tree that walking it needs. */
interface SchemaNode {
  _zod?: { def?: { type?: string; innerType?: unknown; in?: unknown } };
  shape?: Record<string, unknown>;
}

/** Looks through defaults, prefaults, optionals and pipes to the schema that holds the value. */
function unwrap(node: unknown): SchemaNode | undefined {
  let current = node as SchemaNode | undefined;
  for (let i = 0; i < 8 && current?._zod?.def && !DURATION_SCHEMAS.has(current); i++) {
    const def = current._zod.def;
    const inner = def.type === "pipe" ? def.in : def.innerType;
    if (!inner) break;
    current = inner as SchemaNode;
  }
  return current;
}

/** The keys an object schema knows at a path, for "did you mean". */
export function knownKeysAt(schema: z.ZodType, parts: readonly PropertyKey[]): string[] {
  let current = unwrap(schema);
  for (const part of parts) current = unwrap(current?.shape?.[String(part)]);
  return current?.shape ? Object.keys(current.shape) : [];
}

/** Dotted paths of the settings written as durations ("24h") and kept as milliseconds. */
export function durationKeys(schema: z.ZodType, prefix = ""): string[] {
  const shape = unwrap(schema)?.shape ?? {};
  return Object.entries(shape).flatMap(([key, child]) => {
    if (DURATION_SCHEMAS.has(unwrap(child))) return [prefix + key];
    return unwrap(child)?.shape ? durationKeys(child as z.ZodType, `${prefix}${key}.`) : [];
  });
}
