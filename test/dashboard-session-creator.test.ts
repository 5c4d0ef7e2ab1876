/**
 * A gateway alone (SQLite, sessions in memory) ends a dashboard session when the credential that
 * asked for its login link is revoked by another admin — an API key, or an admin device — as it
 * does with several instances: one set of rules, whichever storage keeps the sessions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway, type RunningGateway } from "../src/gateway/start.js";
import { createCsr, generateKeyPair } from "../src/pki/index.js";

const silent = pino({ level: "silent" });

describe("a dashboard session alone, when the credential that asked for its link is revoked", () => {
  let dir: string;
  let gateway: RunningGateway;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "gh-dash-creator-"));
    const home = path.join(dir, "home");
    await initGatewayHome(home, { listen: "127.0.0.1:0" });
    gateway = await startGateway(home, { logger: silent });
  }, 60_000);

  afterAll(async () => {
    await gateway?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Logs in through a link asked for with `bearer` (the route every credential uses); the cookie. */
  async function loginWith(authorization: string): Promise<string> {
    const made = await gateway.app.inject({
      method: "POST",
      url: "/api/v1/dashboard/login-links",
      headers: { authorization, "content-type": "application/json" },
      payload: { role: "admin" },
    });
    expect(made.statusCode, made.body).toBe(201);
    const login = await gateway.app.inject({ method: "GET", url: made.json<{ path: string }>().path });
    expect(login.statusCode, login.body).toBe(303);
    const header = login.headers["set-cookie"];
    return String(Array.isArray(header) ? header[0] : header).split(";")[0]!;
  }

  async function sessionStatus(cookie: string) {
    const reply = await gateway.app.inject({
      method: "GET",
      url: "/api/v1/dashboard/session",
      headers: { cookie },
    });
    return { status: reply.statusCode, code: reply.json<{ error?: string }>().error };
  }

  async function devicesStatus(cookie: string) {
    return (await gateway.app.inject({ method: "GET", url: "/api/v1/devices", headers: { cookie } }))
      .statusCode;
  }

  it("an API key revoked by another admin ends the session it opened", async () => {
    const { secret, record } = await gateway.ctx.tokens.createApiKey({ name: "second-admin", role: "admin" });
    const token = await gateway.ctx.tokens.exchangeApiKey(secret, undefined);
    const cookie = await loginWith(`Bearer ${token.access_token}`);
    const other = await loginWith(`Bearer ${token.access_token}`);
    expect(await sessionStatus(cookie)).toEqual({ status: 200, code: undefined });

    await gateway.ctx.tokens.revokeApiKey(record.keyId, "left the team");
    expect(await sessionStatus(cookie)).toEqual({ status: 401, code: "invalid_token" });
    expect(await devicesStatus(other)).toBe(401);
  });

  it("an admin device revoked by another admin ends the session it opened", async () => {
    const keys = await generateKeyPair();
    const enrolled = await gateway.ctx.registrations.enroll(
      { csr: await createCsr(keys, "ops-laptop"), name: "ops-laptop" },
      "127.0.0.1",
    );
    await gateway.ctx.registrations.approve(enrolled.userCode, "admin", "device:first-admin");
    // The link as the device's credential asks for it (its subject is `device:<id>`).
    const link = await gateway.ctx.dashboard.createLink("admin", `device:${enrolled.deviceId}`);
    const login = await gateway.app.inject({ method: "GET", url: `/dashboard/login?token=${link.token}` });
    const header = login.headers["set-cookie"];
    const cookie = String(Array.isArray(header) ? header[0] : header).split(";")[0]!;
    expect(await sessionStatus(cookie)).toEqual({ status: 200, code: undefined });

    await gateway.ctx.registrations.revoke(enrolled.deviceId, "lost", "device:first-admin");
    expect(await sessionStatus(cookie)).toEqual({ status: 401, code: "invalid_token" });
    expect(await devicesStatus(cookie)).toBe(401);
  });
});
