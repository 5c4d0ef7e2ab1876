import type { FastifyInstance, FastifyRequest } from "fastify";
import { GatehouseError } from "../protocol/errors.js";

/**
 * Request bodies are UTF-8 (RFC 8259 §8.1 for JSON). Node's decoders put U+FFFD where bytes are
 * not UTF-8, silently, so a name could be stored as something its sender never wrote: bodies are
 * decoded strictly here and refused with `invalid_request` instead.
 */
function decodeUtf8(body: Buffer): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body);
  } catch {
    throw new GatehouseError(
      "invalid_request",
      "the body is not valid UTF-8",
      "Send the body encoded as UTF-8.",
    );
  }
}

/**
 * The body parsers every route shares: JSON (fastify's own parser, with its prototype-poisoning
 * checks, fed strictly decoded text) and form-encoded bodies (OAuth2 token requests are form-
 * encoded, RFC 6749 §4.4.2). Both refuse bytes that are not UTF-8 with `invalid_request`.
 */
export function registerBodyParsers(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser(
    "application/json",
    { parseAs: "buffer" },
    (request: FastifyRequest, body: Buffer, done: (error: Error | null, value?: unknown) => void) => {
      let text: string;
      try {
        text = decodeUtf8(body);
      } catch (error) {
        done(error as Error);
        return;
      }
      parseJson(request, text, done);
    },
  );
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "buffer" },
    (_request: FastifyRequest, body: Buffer, done: (error: Error | null, value?: unknown) => void) => {
      try {
        done(null, Object.fromEntries(new URLSearchParams(decodeUtf8(body))));
      } catch (error) {
        done(error as Error);
      }
    },
  );
}
