import type { z } from "zod";
import { GatehouseError } from "../protocol/errors.js";

/** Validates a request body at the edge; the first problem becomes an `invalid_request` description. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new GatehouseError("invalid_request", "the body is invalid");
  const where = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
  const message =
    issue.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue.message;
  throw new GatehouseError("invalid_request", `${where}${message}`);
}
