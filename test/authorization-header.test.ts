/**
 * The Authorization header parser (src/gateway/authorization-header.ts): good credentials parse,
 * and every malformed header is an `invalid_request`, never another error.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseAuthorization } from "../src/gateway/authorization-header.js";
import { GatehouseError } from "../src/protocol/errors.js";

const basic = (text: string) => `Basic ${Buffer.from(text, "utf8").toString("base64")}`;
const basicBytes = (bytes: number[]) => `Basic ${Buffer.from(bytes).toString("base64")}`;

function refusal(values: string[]): GatehouseError {
  try {
    parseAuthorization(values);
  } catch (error) {
    expect(error).toBeInstanceOf(GatehouseError);
    return error as GatehouseError;
  }
  throw new Error(`accepted ${JSON.stringify(values)}`);
}

describe("good credentials", () => {
  it("reads nothing from a request without the header", () => {
    expect(parseAuthorization([])).toBeUndefined();
  });

  it("reads a bearer token, whatever the scheme's case", () => {
    expect(parseAuthorization(["Bearer a.b-c_d"])).toEqual({ scheme: "bearer", token: "a.b-c_d" });
    expect(parseAuthorization(["bEARER  abc=="])).toEqual({ scheme: "bearer", token: "abc==" });
  });

  it("reads Basic client_id:client_secret, form-decoded (RFC 6749 §2.3.1)", () => {
    expect(parseAuthorization([basic("my%20client:ghk_secret%2Bpart")])).toEqual({
      scheme: "basic",
      clientId: "my client",
      clientSecret: "ghk_secret+part",
    });
    expect(parseAuthorization([basic(":ghk_x")])).toMatchObject({ clientId: "", clientSecret: "ghk_x" });
  });
});

describe("malformed headers are refused with invalid_request", () => {
  const cases: [string, string[]][] = [
    ["Basic of id:% (bad percent-encoding)", [basic("id:%")]],
    ["Basic with a bad escape in the id", [basic("%zz:secret")]],
    ["Basic whose percent-escapes are not UTF-8", [basic("id:%C0%80")]],
    ["Basic that is not base64", ["Basic !!!notbase64"]],
    ["Basic with base64 that does not re-encode (bad padding)", ["Basic aWQ6c2VjcmV0="]],
    ["Basic with stray characters", ["Basic aWQ6c2VjcmV0 extra"]],
    ["Basic without a colon", [basic("idsecret")]],
    ["Basic with an empty secret", [basic("id:")]],
    ["Basic that decodes to invalid UTF-8", [basicBytes([0x69, 0x64, 0x3a, 0xff, 0xfe])]],
    ["Basic with a control character", [basic("id:sec%00ret")]],
    ["Basic with nothing after it", ["Basic"]],
    ["Basic that is too long", [`Basic ${"QUFB".repeat(1000)}`]],
    ["Bearer with no token", ["Bearer"]],
    ["Bearer with two tokens", ["Bearer abc def"]],
    ["Bearer with non-ASCII characters", ["Bearer t\u00f6ken"]],
    ["Bearer with UTF-8 bytes read as latin1", ["Bearer \u00c3\u00a9"]],
    ["an unknown scheme", ["Digest username=x"]],
    ["an unknown scheme without credentials", ["Negotiate"]],
    ["a bare token", ["eyJhbGciOiJFUzI1NiJ9.e30.sig"]],
    ["an empty header", [""]],
    ["only spaces", ["   "]],
    ["a scheme with separators", ["Be@rer abc"]],
    ["two Authorization headers", ["Bearer abc", "Bearer def"]],
    ["two headers of different schemes", [basic("id:ghk_x"), "Bearer abc"]],
  ];
  for (const [name, values] of cases) {
    it(name, () => {
      const error = refusal(values);
      expect(error.code).toBe("invalid_request");
      expect(error.status).toBe(400);
    });
  }

  it("never echoes a long scheme name", () => {
    expect(refusal([`${"X".repeat(500)} abc`]).message.length).toBeLessThan(120);
  });
});

describe("any header value", () => {
  it("parses or is refused with invalid_request, nothing else", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string({ unit: "binary" }),
            fc.string().map((s) => `Bearer ${s}`),
            fc.string({ unit: "binary" }).map((s) => basic(s)),
            fc.uint8Array().map((b) => basicBytes([...b])),
          ),
          { maxLength: 3 },
        ),
        (values) => {
          try {
            parseAuthorization(values);
          } catch (error) {
            return error instanceof GatehouseError && error.code === "invalid_request";
          }
          return true;
        },
      ),
      { seed: 10_08, numRuns: 500 },
    );
  });
});
