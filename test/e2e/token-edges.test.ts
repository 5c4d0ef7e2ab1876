/**
 * The token endpoint and the Authorization header against a real gateway process: a stolen
 * certificate-bound refresh token cannot spend (and so kill) its family, tokens from an API key
 * end with the key, and no malformed Authorization header gets anything but a catalogue refusal.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as jose from "jose";
import { ERROR_CATALOGUE } from "../../src/protocol/errors.js";
import { cleanupAll, registeredNode, runJson, startTestGateway, type TestGateway } from "./harness.js";
import { shortLifetimes } from "./short-lifetimes.js";

let gateway: TestGateway;
let ca: string;

beforeAll(async () => {
  // An API key that expires within the test (`--expires 12s`) is a lifetime under a minute.
  gateway = await startTestGateway({ configure: shortLifetimes({}) });
  ca = readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8");
});
afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

function send(
  route: string,
  options: {
    method?: string;
    form?: Record<string, string>;
    headers?: Record<string, string | string[]>;
    tls?: { key?: string; cert?: string };
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = options.form ? new URLSearchParams(options.form).toString() : undefined;
    const request = https.request(
      gateway.url + route,
      {
        method: options.method ?? (body ? "POST" : "GET"),
        ca,
        ...options.tls,
        headers: {
          ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}),
          ...options.headers,
        },
      },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () => {
          try {
            resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            resolve({ status: response.statusCode ?? 0, body: { raw: text } });
          }
        });
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

describe("a refresh token bound to a client certificate", () => {
  it("presented without its certificate is refused as bound, and its holder then refreshes", async () => {
    const { home } = await registeredNode(gateway, "bound-refresh");
    const tls = {
      key: readFileSync(path.join(home, "device.key"), "utf8"),
      cert: readFileSync(path.join(home, "device.pem"), "utf8"),
    };
    const minted = await send("/api/v1/auth/token", { form: { grant_type: "client_credentials" }, tls });
    expect(minted.status).toBe(200);
    const refreshToken = minted.body.refresh_token as string;

    const stolen = await send("/api/v1/auth/token", {
      form: { grant_type: "refresh_token", refresh_token: refreshToken },
    });
    expect(stolen.status).toBe(401);
    expect(stolen.body.error).toBe("invalid_token");
    expect(String(stolen.body.error_description)).toContain("bound");
    expect(String(stolen.body.hint)).toContain("certificate");

    const holder = await send("/api/v1/auth/token", {
      form: { grant_type: "refresh_token", refresh_token: refreshToken },
      tls,
    });
    expect(holder.status).toBe(200);
    const next = await send("/api/v1/auth/token", {
      form: { grant_type: "refresh_token", refresh_token: holder.body.refresh_token as string },
      tls,
    });
    expect(next.status).toBe(200);
  });
});

describe("an API key with an expiry", () => {
  it("mints tokens that end with the key and are refused once it has expired", async () => {
    const created = await runJson<{ apiKey: string; key: { expiresAt: string } }>([
      "keys",
      "create",
      "--name",
      "short-lived",
      "--role",
      "viewer",
      // Long enough to mint and use a token on a loaded machine; the test waits this out.
      "--expires",
      "12s",
      "--home",
      gateway.home,
    ]);
    const keyEnd = new Date(created.key.expiresAt).getTime();
    const minted = await send("/api/v1/auth/token", {
      form: { grant_type: "client_credentials", client_secret: created.apiKey },
    });
    expect(minted.status).toBe(200);
    const accessToken = minted.body.access_token as string;
    expect(jose.decodeJwt(accessToken).exp! * 1000).toBeLessThanOrEqual(keyEnd);
    expect(minted.body.expires_in).toBeLessThanOrEqual(12);
    const auth = { authorization: `Bearer ${accessToken}` };
    expect((await send("/api/v1/nodes", { headers: auth })).status).toBe(200);

    await sleep(Math.max(0, keyEnd - Date.now()) + 1000);
    const late = await send("/api/v1/nodes", { headers: auth });
    expect(late.status).toBe(401);
    expect(late.body.error).toBe("token_expired");
    const refresh = await send("/api/v1/auth/token", {
      form: { grant_type: "refresh_token", refresh_token: minted.body.refresh_token as string },
    });
    expect(refresh.status).toBe(401);
    expect(refresh.body.error).toBe("token_expired");
  });
});

describe("malformed Authorization headers", () => {
  const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
  // Header values go out as latin1: this sends the UTF-8 bytes of the text.
  const rawUtf8 = (text: string) => Buffer.from(text, "utf8").toString("latin1");
  const cases: [string, string | string[]][] = [
    ["Basic of id:% (bad percent-encoding)", `Basic ${b64("id:%")}`],
    ["Basic with a bad escape", `Basic ${b64("id:ghk_%zz")}`],
    ["Basic with invalid base64", "Basic ***"],
    [
      "Basic with base64 that decodes to invalid UTF-8",
      `Basic ${Buffer.from([0x69, 0x3a, 0xff]).toString("base64")}`,
    ],
    ["Basic without a colon", `Basic ${b64("idsecret")}`],
    ["Basic with an empty secret", `Basic ${b64("id:")}`],
    ["Bearer with an empty token", "Bearer"],
    ["Bearer with an oversized token", `Bearer ${"a".repeat(12 * 1024)}`],
    ["Bearer with non-ASCII bytes", `Bearer ${rawUtf8("tökén")}`],
    ["Bearer with two tokens", "Bearer abc def"],
    ["an unknown scheme", "Digest username=admin"],
    ["a scheme alone", "Negotiate"],
    ["duplicate Authorization headers", ["Bearer abc", "Bearer def"]],
    ["duplicate Authorization headers of two schemes", [`Basic ${b64("id:x")}`, "Bearer abc"]],
  ];

  it("get a catalogue refusal (400/401) on every route kind, never a 500 or a stack trace", async () => {
    const routes = [
      { route: "/api/v1/auth/token", form: { grant_type: "client_credentials" } },
      { route: "/api/v1/auth/validate" },
      { route: "/api/v1/nodes" },
      { route: "/api/v1/connect" },
    ];
    const seen: string[] = [];
    for (const [name, header] of cases) {
      for (const { route, form } of routes) {
        const reply = await send(route, { ...(form ? { form } : {}), headers: { authorization: header } });
        const what = `${name} on ${route}: ${reply.status} ${JSON.stringify(reply.body).slice(0, 200)}`;
        seen.push(what);
        expect([400, 401], what).toContain(reply.status);
        expect(Object.keys(ERROR_CATALOGUE), what).toContain(reply.body.error);
        expect(reply.body.error_description, what).toEqual(expect.any(String));
        expect(reply.body.hint, what).toEqual(expect.any(String));
      }
    }
    // The issue's input, on the token endpoint: the request is malformed, not a bad credential.
    const percent = await send("/api/v1/auth/token", {
      form: { grant_type: "client_credentials" },
      headers: { authorization: `Basic ${b64("id:%")}` },
    });
    expect(percent).toMatchObject({ status: 400, body: { error: "invalid_request" } });

    const output = gateway.process.stdout + gateway.process.stderr;
    expect(output).not.toMatch(/\n\s+at /);
    expect(output).not.toContain("internal_error");
    expect(gateway.process.logLines().filter((line) => Number(line.level) >= 50)).toEqual([]);
  });

  it("a well-formed Basic API key still gets a token", async () => {
    const created = await runJson<{ apiKey: string }>([
      "keys",
      "create",
      "--name",
      "basic-client",
      "--role",
      "viewer",
      "--home",
      gateway.home,
    ]);
    const reply = await send("/api/v1/auth/token", {
      form: { grant_type: "client_credentials" },
      headers: { authorization: `Basic ${b64(`my-script:${created.apiKey}`)}` },
    });
    expect(reply.status).toBe(200);
    expect(reply.body.scope).toBe("node:status devices:read");
  });
});
