import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import * as jose from "jose";
import {
  cleanupAll,
  registeredNode,
  runCli,
  runJson,
  startTestGateway,
  tempHome,
  type TestGateway,
} from "./harness.js";
import { createApiKey } from "./api-keys.js";
import { ACCESS_TOKEN_SECONDS, shortLifetimes } from "./short-lifetimes.js";

interface TokenResponse {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  scope: string;
}

let gateway: TestGateway;
let ca: string;

beforeAll(async () => {
  // Access tokens of the default life: a test's CLI round trips on a loaded machine never outlast
  // one. The session-expiry test has a gateway of its own with short tokens.
  // A rotated key's grace that ends within the test (`--grace 20s`) is a lifetime under a minute.
  gateway = await startTestGateway({ configure: shortLifetimes({}) });
  ca = caOf(gateway);
});
afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

function get(
  route: string,
  options: { token?: string; key?: string; cert?: string } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      gateway.url + route,
      {
        ca,
        key: options.key,
        cert: options.cert,
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
      },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    request.on("error", reject);
  });
}

function caOf(target: TestGateway): string {
  return readFileSync(path.join(target.home, "pki/ca.pem"), "utf8");
}

function postForm(
  route: string,
  form: Record<string, string>,
  tls: { key?: string; cert?: string } = {},
  target = gateway,
) {
  return new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    const body = new URLSearchParams(form).toString();
    const request = https.request(
      target.url + route,
      {
        method: "POST",
        ca: caOf(target),
        ...tls,
        headers: { "content-type": "application/x-www-form-urlencoded" },
      },
      (response) => {
        let text = "";
        response.on("data", (chunk: Buffer) => (text += chunk.toString()));
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

async function createKey(name: string, role: string, target = gateway): Promise<string> {
  const created = await createApiKey(target, name, role);
  expect(created.apiKey).toMatch(/^ghk_[a-z2-7]{8}[a-z2-7]{40}$/);
  expect(created.apiKey.startsWith(created.key.prefix)).toBe(true);
  const file = path.join(path.dirname(tempHome("key")), `${name}.key`);
  writeFileSync(file, created.apiKey + "\n", { mode: 0o600 });
  return file;
}

function secretFile(content: string): string {
  const file = path.join(path.dirname(tempHome("secret")), "secret");
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

describe("a script with an API key", () => {
  it("gets a token, calls the API, refreshes, and survives a signing-key rotation", async () => {
    const keyFile = await createKey("script", "viewer");
    const first = await runJson<TokenResponse>(["token", "--api-key-file", keyFile, "--home", gateway.home]);
    expect(first.scope).toBe("node:status devices:read");
    const header = jose.decodeProtectedHeader(first.access_token);
    expect(header).toMatchObject({ alg: "ES256", typ: "at+jwt" });
    const claims = jose.decodeJwt(first.access_token);
    expect(claims).toMatchObject({
      sub: expect.stringMatching(/^key:key_/),
      iss: expect.stringMatching(/^gw_/),
    });
    expect(claims.aud).toBe(claims.iss);

    expect((await get("/api/v1/nodes", { token: first.access_token })).status).toBe(200);
    const listed = await runCli(["nodes", "list", "--home", gateway.home, "--token", first.access_token]);
    expect(listed.code).toBe(0);

    // A viewer cannot approve devices: the missing scope is named.
    const approve = await runCli([
      "devices",
      "approve",
      "BCDF-GHJK",
      "--home",
      gateway.home,
      "--token",
      first.access_token,
    ]);
    expect(approve.code).toBe(1);
    expect(approve.stderr).toContain("insufficient_scope");
    expect(approve.stderr).toContain("devices:write");

    // Refresh, then rotate the signing key in the middle: nothing already issued is refused.
    const second = await runJson<TokenResponse>([
      "token",
      "--refresh-token-file",
      secretFile(first.refresh_token),
      "--home",
      gateway.home,
    ]);
    expect(second.refresh_token).not.toBe(first.refresh_token);
    const rotation = await runJson<{ kid: string; previous: string[] }>([
      "rotate",
      "signing-key",
      "--home",
      gateway.home,
    ]);
    expect(rotation.previous).toContain(header.kid);
    const jwks = (await get("/.well-known/jwks.json")).body as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid).sort()).toEqual([header.kid, rotation.kid].sort());
    expect((await get("/api/v1/nodes", { token: second.access_token })).status).toBe(200);

    const third = await runJson<TokenResponse>([
      "token",
      "--refresh-token-file",
      secretFile(second.refresh_token),
      "--home",
      gateway.home,
    ]);
    expect(jose.decodeProtectedHeader(third.access_token).kid).toBe(rotation.kid);
    expect((await get("/api/v1/nodes", { token: third.access_token })).status).toBe(200);

    const validated = await runJson<{ subject: string; scopes: string[] }>([
      "auth",
      "validate",
      "--home",
      gateway.home,
      "--token",
      third.access_token,
    ]);
    expect(validated.subject).toBe(claims.sub);
    expect(validated.scopes).toEqual(["node:status", "devices:read"]);
  });

  it("revokes the whole family when a refresh token is used twice", async () => {
    const keyFile = await createKey("leaky", "viewer");
    const first = await runJson<TokenResponse>(["token", "--api-key-file", keyFile, "--home", gateway.home]);
    const second = await runJson<TokenResponse>([
      "token",
      "--refresh-token-file",
      secretFile(first.refresh_token),
      "--home",
      gateway.home,
    ]);

    const replay = await runCli([
      "token",
      "--refresh-token-file",
      secretFile(first.refresh_token),
      "--home",
      gateway.home,
    ]);
    expect(replay.code).toBe(1);
    expect(replay.stderr).toContain("refresh_token_reused");

    // The newest refresh token of the family and its access token are dead too.
    const newest = await runCli([
      "token",
      "--refresh-token-file",
      secretFile(second.refresh_token),
      "--home",
      gateway.home,
      "--json",
    ]);
    expect(newest.code).toBe(1);
    expect(JSON.parse(newest.stdout)).toMatchObject({ error: "invalid_token" });
    const call = await get("/api/v1/nodes", { token: second.access_token });
    expect(call.status).toBe(401);
    expect(call.body.error).toBe("invalid_token");

    // The API key itself still works: a new family starts.
    expect((await runCli(["token", "--api-key-file", keyFile, "--home", gateway.home])).code).toBe(0);
  });

  it("stops a revoked API key and every token minted with it", async () => {
    const keyFile = await createKey("fired", "viewer");
    const tokens = await runJson<TokenResponse>(["token", "--api-key-file", keyFile, "--home", gateway.home]);
    const prefix = readFileSync(keyFile, "utf8").slice(0, 12);
    expect((await runCli(["keys", "revoke", prefix, "--home", gateway.home])).code).toBe(0);
    expect((await get("/api/v1/nodes", { token: tokens.access_token })).body.error).toBe("invalid_token");
    const again = await runCli(["token", "--api-key-file", keyFile, "--home", gateway.home]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("invalid_token");
    expect(again.stderr).toContain(prefix);
    expect(again.stderr).not.toContain(readFileSync(keyFile, "utf8").trim());
  });

  it("keeps a rotated key working through its grace period only", async () => {
    const keyFile = await createKey("rotating", "viewer");
    const prefix = readFileSync(keyFile, "utf8").slice(0, 12);
    const rotated = await runJson<{ apiKey: string; previous: { graceUntil: string } }>([
      "keys",
      "rotate",
      prefix,
      "--grace",
      // Long enough for the two token requests below (two CLI runs) even on a loaded machine.
      "20s",
      "--home",
      gateway.home,
    ]);
    expect((await runCli(["token", "--api-key-file", keyFile, "--home", gateway.home])).code).toBe(0);
    expect(
      (await runCli(["token", "--api-key-file", secretFile(rotated.apiKey), "--home", gateway.home])).code,
    ).toBe(0);
    await sleep(Math.max(0, new Date(rotated.previous.graceUntil).getTime() - Date.now()) + 200);
    const old = await runCli(["token", "--api-key-file", keyFile, "--home", gateway.home]);
    expect(old.code).toBe(1);
    expect(old.stderr).toContain("token_expired");
    expect(old.stderr).toContain("rotated");
    expect(
      (await runCli(["token", "--api-key-file", secretFile(rotated.apiKey), "--home", gateway.home])).code,
    ).toBe(0);
  });

  it("refuses malformed and foreign tokens with their codes", async () => {
    const cases: [string, string][] = [
      ["not-a-token", "invalid_token"],
      // Over the verifier's 8 KiB limit but within HTTP's header limit: refused by the verifier.
      ["a".repeat(12 * 1024), "invalid_token"],
      // A 64 KiB header never reaches the verifier: HTTP's own limit answers.
      ["a".repeat(64 * 1024), "headers_too_large"],
      [await new jose.UnsecuredJWT({ sub: "x", scope: "devices:read" }).encode(), "invalid_token"],
    ];
    const foreign = await jose.generateKeyPair("ES256");
    cases.push([
      await new jose.SignJWT({ scope: "devices:read" })
        .setProtectedHeader({ alg: "ES256", kid: "someone-else", typ: "at+jwt" })
        .setIssuer("gw_other")
        .setAudience("gw_other")
        .setSubject("key:x")
        .setIssuedAt()
        .setExpirationTime("1h")
        .setJti("j")
        .sign(foreign.privateKey),
      "wrong_audience",
    ]);
    for (const [token, code] of cases) {
      const result = await runCli([
        "auth",
        "validate",
        "--home",
        gateway.home,
        "--token",
        token.slice(0, 60_000),
        "--json",
      ]);
      expect(result.code).toBe(1);
      expect(JSON.parse(result.stdout).error).toBe(code);
    }
  });
});

describe("tokens and mutual TLS", () => {
  it("binds a token minted over mTLS to that certificate (RFC 8705)", async () => {
    const { home } = await registeredNode(gateway, "bound-node");
    const tls = {
      key: readFileSync(path.join(home, "device.key"), "utf8"),
      cert: readFileSync(path.join(home, "device.pem"), "utf8"),
    };
    const minted = await postForm("/api/v1/auth/token", { grant_type: "client_credentials" }, tls);
    expect(minted.status).toBe(200);
    const token = minted.body.access_token as string;
    expect(jose.decodeJwt(token).cnf).toHaveProperty(["x5t#S256"]);

    expect((await get("/api/v1/auth/validate", { token, ...tls })).status).toBe(200);
    const stolen = await get("/api/v1/auth/validate", { token });
    expect(stolen.status).toBe(401);
    expect(stolen.body.error).toBe("invalid_token");
    expect(String(stolen.body.error_description)).toContain("bound");
  });

  it("closes a bearer session with 4401 token_expired unless the token is refreshed on the session", async () => {
    // Short access tokens, so a session's token expiry can be seen without waiting an hour.
    const short = await startTestGateway({
      configure: shortLifetimes({ accessToken: ACCESS_TOKEN_SECONDS }),
    });
    const keyFile = await createKey("token-node", "node", short);
    const open = async () => {
      const tokens = await runJson<TokenResponse>(["token", "--api-key-file", keyFile, "--home", short.home]);
      const socket = new WebSocket(short.url.replace("https:", "wss:") + "/api/v1/connect", {
        ca: caOf(short),
        headers: { authorization: `Bearer ${tokens.access_token}` },
      });
      const closed = new Promise<{ code: number; reason: string }>((resolve) =>
        socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
      );
      await new Promise<void>((resolve, reject) => {
        socket.on("open", () => resolve());
        socket.on("error", reject);
      });
      return { socket, closed, tokens };
    };

    const plain = await open();
    const refreshed = await open();
    // Token times have one-second resolution: wait past the next second so the fresh token
    // expires strictly later than the first, then refresh directly (well within the token's life).
    await sleep(1100);
    const minted = await postForm(
      "/api/v1/auth/token",
      { grant_type: "refresh_token", refresh_token: refreshed.tokens.refresh_token },
      {},
      short,
    );
    expect(minted.status).toBe(200);
    const fresh = minted.body as unknown as TokenResponse;
    const acknowledged = new Promise((resolve) =>
      refreshed.socket.on("message", (data) => String(data).includes("token_refreshed") && resolve(true)),
    );
    refreshed.socket.send(JSON.stringify({ type: "token_refresh", accessToken: fresh.access_token }));
    expect(await acknowledged).toBe(true);

    expect(await plain.closed).toEqual({ code: 4401, reason: "token_expired" });
    expect(refreshed.socket.readyState).toBe(WebSocket.OPEN);
    refreshed.socket.close();
    await short.stop();
  });
});
