import type { FastifyError } from "fastify";
import { GatehouseError } from "../protocol/errors.js";

/** Translates any error to the catalogue's code; unknown failures are internal and logged whole. */
export function toGatehouseError(error: FastifyError | Error): GatehouseError {
  if (error instanceof GatehouseError) return error;
  const code = (error as FastifyError).code;
  if (code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return new GatehouseError("payload_too_large", `the request body is larger than this route accepts`);
  }
  if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    return new GatehouseError("invalid_request", "the body must be JSON (Content-Type: application/json)");
  }
  if (code === "FST_ERR_MAX_PARAM_LENGTH") {
    return new GatehouseError("invalid_request", "a path parameter is longer than 100 characters");
  }
  if (code === "FST_ERR_BAD_URL") {
    return new GatehouseError("invalid_request", "the path is not valid percent-encoding");
  }
  const status = (error as FastifyError).statusCode;
  if (status === 400 || code?.startsWith("FST_ERR_CTP")) {
    return new GatehouseError("invalid_request", `the body is not valid JSON: ${error.message}`);
  }
  return new GatehouseError("internal_error");
}
