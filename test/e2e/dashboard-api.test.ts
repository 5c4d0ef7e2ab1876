import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import type { IncomingHttpHeaders } from "node:http";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { cleanupAll, listDevices, startRegistration, startTestGateway, type TestGateway } from "./harness.js";
import { apiKeyToken } from "./api-keys.js";
import { readReply } from "../hostile/harness.js";

/** The dashboard's API as a browser and the `gatehouse dashboard` command use it, on a real gateway. */

const COOKIE = "__Host-gatehouse-session";
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

let gateway: TestGateway;
let ca: string;
let admin: { cert: string; key: string };

beforeAll(async () => {
  gateway = await startTestGateway();
  ca = readFileSync(path.join(gateway.home, "admin/ca.pem"), "utf8");
  admin = {
    cert: readFileSync(path.join(gateway.home, "admin/admin.pem"), "utf8"),
    key: readFileSync(path.join(gateway.home, "admin/admin.key"), "utf8"),
  };
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  cleanupAll();
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

/**
 * One request on a fresh connection. `as: "admin"` presents the home's admin certificate (as the
 * CLI does); otherwise it is a browser: the cookie and headers given, no client certificate.
 */
function request(
  method: string,
  url: string,
  options: { as?: "admin"; cookie?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<Answer> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  if (payload !== undefined) headers["content-type"] = "application/json";
  return new Promise((resolve, reject) => {
    const req = https.request(
      gateway.url + url,
      { method, agent: false, ca, headers, ...(options.as === "admin" ? admin : {}) },
      (response) => {
        readReply(response).then(
          ({ status, text }) =>
            resolve({ status, headers: response.headers, text, json: <T>() => JSON.parse(text) as T }),
          reject,
        );
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** A login link as `gatehouse dashboard` asks for it with the admin credential. */
async function loginLink(role?: string): Promise<string> {
  const answer = await request("POST", "/api/v1/dashboard/login-links", {
    as: "admin",
    body: role === undefined ? {} : { role },
  });
  expect(answer.status, answer.text).toBe(201);
  return answer.json<{ path: string }>().path;
}

/** Opens a login link as a browser would; returns the session cookie (`name=value`) it sets. */
async function login(role?: string): Promise<{ cookie: string; csrfToken: string; subject: string }> {
  const answer = await request("GET", await loginLink(role));
  expect(answer.status, answer.text).toBe(303);
  const cookie = String(answer.headers["set-cookie"]?.[0]).split(";")[0]!;
  const session = (await request("GET", "/api/v1/dashboard/session", { cookie })).json<{
    csrfToken: string;
    subject: string;
  }>();
  return { cookie, csrfToken: session.csrfToken, subject: session.subject };
}

/** An open `GET /api/v1/events` stream and what it has sent so far. */
interface EventStream {
  status: number;
  headers: IncomingHttpHeaders;
  received: () => string;
  ended: Promise<void>;
  close(): void;
}

function openEvents(cookie: string): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      gateway.url + "/api/v1/events",
      { agent: false, ca, headers: { cookie, accept: "text/event-stream" } },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (text += chunk));
        const ended = new Promise<void>((done) => {
          response.on("end", done);
          response.on("close", done);
        });
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          received: () => text,
          ended,
          close: () => req.destroy(),
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function eventually(predicate: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function expectDashboardHeaders(answer: Answer): void {
  expect(answer.headers["content-security-policy"]).toBe(CSP);
  expect(answer.headers["x-frame-options"]).toBe("DENY");
  expect(answer.headers["x-content-type-options"]).toBe("nosniff");
  expect(answer.headers["referrer-policy"]).toBe("no-referrer");
  expect(answer.headers["cross-origin-opener-policy"]).toBe("same-origin");
}

describe("dashboard login links and sessions", () => {
  it("a link redeemed sets the session cookie (HttpOnly, Secure, SameSite=Strict, Path=/) and answers 303 to /dashboard/", async () => {
    const created = await request("POST", "/api/v1/dashboard/login-links", { as: "admin", body: {} });
    expect(created.status).toBe(201);
    const link = created.json<{ path: string; role: string; expiresAt: string }>();
    expect(link.role).toBe("admin");
    expect(link.path).toMatch(/^\/dashboard\/login\?token=[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(link.expiresAt)).toBeGreaterThan(Date.now());

    const redeemed = await request("GET", link.path);
    expect(redeemed.status).toBe(303);
    expect(redeemed.headers.location).toBe("/dashboard/");
    expect(redeemed.headers["cache-control"]).toBe("no-store");
    expectDashboardHeaders(redeemed);
    const setCookie = redeemed.headers["set-cookie"] ?? [];
    expect(setCookie).toHaveLength(1);
    const [pair, ...attributes] = setCookie[0]!.split(/;\s*/);
    expect(pair).toMatch(new RegExp(`^${COOKIE}=[A-Za-z0-9_-]{43}$`));
    expect(attributes.map((a) => a.toLowerCase()).sort()).toEqual([
      "httponly",
      "path=/",
      "samesite=strict",
      "secure",
    ]);

    const session = await request("GET", "/api/v1/dashboard/session", { cookie: pair! });
    expect(session.status).toBe(200);
    expect(session.headers["cache-control"]).toBe("no-store");
    const view = session.json<Record<string, unknown>>();
    expect(view).toMatchObject({ role: "admin", scopes: expect.arrayContaining(["devices:write"]) });
    expect(view.subject).toMatch(/^dashboard:[0-9a-f]{12}$/);
    expect(view.createdBy).toMatch(/^device:/);
    expect(String(view.csrfToken)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(String(view.idleExpiresAt))).toBeLessThanOrEqual(Date.parse(String(view.expiresAt)));

    // The second visit is refused with a readable page, under the same headers, and audited.
    const again = await request("GET", link.path);
    expect(again.status).toBe(401);
    expect(again.headers["content-type"]).toMatch(/^text\/html/);
    expectDashboardHeaders(again);
    expect(again.text).toContain("<title>Login link refused</title>");
    expect(again.text).toContain("This login link was already used.");
    expect(again.text).toContain("Run <code>gatehouse dashboard</code> again for a new link.");
    expect(again.headers["set-cookie"]).toBeUndefined();

    // Neither the link's token nor the cookie's value reaches the gateway's log.
    const token = link.path.split("token=")[1]!;
    expect(gateway.process.stdout).not.toContain(token);
    expect(gateway.process.stdout).not.toContain(pair!.split("=")[1]!);
  });

  it("an unknown link token gets the page saying the link is not known; a missing one, that it has none", async () => {
    const unknown = await request("GET", "/dashboard/login?token=bm90LWEtdG9rZW4");
    expect(unknown.status).toBe(401);
    expect(unknown.text).toContain("This login link is not known to this gateway.");
    for (const url of ["/dashboard/login", "/dashboard/login?token="]) {
      const answer = await request("GET", url);
      expect(answer.status, url).toBe(401);
      expect(answer.text, url).toContain("This login link has no token.");
    }
  });

  it("the refused link is listed by /api/v1/refusals, newest first, with its hint", async () => {
    await request("GET", "/dashboard/login?token=c2Vjb25kLWJhZC10b2tlbg");
    const answer = await request("GET", "/api/v1/refusals?limit=5", { as: "admin" });
    expect(answer.status).toBe(200);
    const { refusals } = answer.json<{ refusals: Record<string, string>[] }>();
    expect(refusals.length).toBeGreaterThan(1);
    expect(refusals.length).toBeLessThanOrEqual(5);
    expect(refusals[0]).toMatchObject({
      code: "invalid_token",
      route: "/dashboard/login",
      credential: "login_link",
      description: "This login link is not known to this gateway.",
      hint: "Run `gatehouse dashboard` again for a new link.",
    });
    expect(refusals[0]!.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(Date.parse(refusals[0]!.at!)).toBeGreaterThanOrEqual(Date.parse(refusals[1]!.at!));
    for (const bad of ["0", "201", "x", "1&limit=2"]) {
      const refused = await request("GET", `/api/v1/refusals?limit=${bad}`, { as: "admin" });
      expect(refused.status, bad).toBe(400);
    }
    expect((await request("GET", "/api/v1/refusals")).status).toBe(401);
  });

  it("a POST with the cookie but no X-CSRF-Token is refused 403 csrf_failed and the device stays pending; with it the device is approved", async () => {
    const { cookie, csrfToken } = await login();
    const { device, register } = await startRegistration(gateway, "csrf-node");
    const approve = `/api/v1/devices/${device.deviceId}/approve`;

    const tries: Record<string, string>[] = [
      {},
      { "x-csrf-token": "wrong" },
      { "x-csrf-token": csrfToken.slice(1) + "A" },
    ];
    for (const headers of tries) {
      const refused = await request("POST", approve, { cookie, headers, body: { role: "node" } });
      expect(refused.status).toBe(403);
      expect(refused.json()).toMatchObject({
        error: "csrf_failed",
        error_description: "The request did not carry this dashboard session's CSRF token.",
      });
    }
    expect((await listDevices(gateway, true)).map((d) => d.deviceId)).toContain(device.deviceId);

    // The refusal names the session by its fingerprint prefix, never by its value.
    const refusals = (await request("GET", "/api/v1/refusals?limit=1", { as: "admin" })).json<{
      refusals: Record<string, string>[];
    }>().refusals;
    expect(refusals[0]).toMatchObject({ code: "csrf_failed", credential: "dashboard_session" });
    expect(refusals[0]!.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(JSON.stringify(refusals)).not.toContain(cookie.split("=")[1]!);

    const approved = await request("POST", approve, {
      cookie,
      headers: { "x-csrf-token": csrfToken },
      body: { role: "node" },
    });
    expect(approved.status, approved.text).toBe(200);
    expect(approved.json<{ device: { status: string } }>().device.status).toBe("approved");
    expect(await register.exited).toBe(0);
  });

  it("a viewer session reads but cannot approve, and cannot create login links", async () => {
    const { cookie, csrfToken } = await login("viewer");
    const session = (await request("GET", "/api/v1/dashboard/session", { cookie })).json();
    expect(session).toMatchObject({ role: "viewer", scopes: ["node:status", "devices:read"] });
    expect((await request("GET", "/api/v1/devices", { cookie })).status).toBe(200);
    expect((await request("GET", "/api/v1/audit", { cookie })).json()).toMatchObject({
      error: "insufficient_scope",
    });

    const { device, register } = await startRegistration(gateway, "viewer-node");
    const refused = await request("POST", `/api/v1/devices/${device.deviceId}/approve`, {
      cookie,
      headers: { "x-csrf-token": csrfToken },
      body: { role: "node" },
    });
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ error: "insufficient_scope" });
    expect((await listDevices(gateway, true)).map((d) => d.deviceId)).toContain(device.deviceId);
    register.child.kill("SIGKILL");

    const withAndWithout: Record<string, string>[] = [{ "x-csrf-token": csrfToken }, {}];
    for (const csrf of withAndWithout) {
      const link = await request("POST", "/api/v1/dashboard/login-links", {
        cookie,
        headers: csrf,
        body: { role: "viewer" },
      });
      expect(link.status).toBe(403);
    }
    // Even an admin session may not create links: links come from `gatehouse dashboard`.
    const adminSession = await login();
    const fromAdmin = await request("POST", "/api/v1/dashboard/login-links", {
      cookie: adminSession.cookie,
      headers: { "x-csrf-token": adminSession.csrfToken },
      body: {},
    });
    expect(fromAdmin.json()).toMatchObject({ error: "insufficient_scope" });
  });

  it("a credential may ask only for a role whose every scope it holds; an unknown role is invalid_request", async () => {
    const viewerKey = await apiKeyToken(gateway, "viewer", "dash-viewer");
    const bearer = { authorization: `Bearer ${viewerKey.token}` };
    const asAdmin = await request("POST", "/api/v1/dashboard/login-links", { headers: bearer, body: {} });
    expect(asAdmin.status).toBe(403);
    expect(asAdmin.json()).toMatchObject({ error: "insufficient_scope" });
    expect(asAdmin.json<{ error_description: string }>().error_description).toContain("devices:write");
    const asViewer = await request("POST", "/api/v1/dashboard/login-links", {
      headers: bearer,
      body: { role: "viewer" },
    });
    expect(asViewer.status).toBe(201);
    for (const body of [{ role: "nobody" }, { role: 7 }, { role: "admin", extra: true }]) {
      const answer = await request("POST", "/api/v1/dashboard/login-links", { as: "admin", body });
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.json()).toMatchObject({ error: "invalid_request" });
    }
    expect((await request("POST", "/api/v1/dashboard/login-links", { body: {} })).status).toBe(401);
  });

  it("logout needs the CSRF token, ends the session and clears the cookie; the next request is 401 invalid_token", async () => {
    const { cookie, csrfToken } = await login();
    const stream = await openEvents(cookie);
    await eventually(() => stream.received().includes("event: ready"), "the ready event");

    const withoutToken = await request("POST", "/api/v1/dashboard/logout", { cookie, body: {} });
    expect(withoutToken.json()).toMatchObject({ error: "csrf_failed" });
    expect((await request("GET", "/api/v1/dashboard/session", { cookie })).status).toBe(200);

    const out = await request("POST", "/api/v1/dashboard/logout", {
      cookie,
      headers: { "x-csrf-token": csrfToken },
    });
    expect(out.status).toBe(200);
    expect(out.json()).toEqual({ ended: true });
    expect(out.headers["set-cookie"]?.[0]).toMatch(new RegExp(`^${COOKIE}=; Max-Age=0;`));

    for (const url of ["/api/v1/dashboard/session", "/api/v1/devices"]) {
      const after = await request("GET", url, { cookie });
      expect(after.status, url).toBe(401);
      expect(after.json(), url).toMatchObject({ error: "invalid_token" });
      expect(after.json<{ hint: string }>().hint).toContain("gatehouse dashboard");
    }
    // Its event stream ends at the next event (the refusals above are events).
    await stream.ended;

    const audit = await request("GET", "/api/v1/audit?type=dashboard.&limit=1000", { as: "admin" });
    const types = audit.json<{ entries: { type: string }[] }>().entries.map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(["dashboard.link_created", "dashboard.login", "dashboard.logout"]),
    );
  });
});

describe("the dashboard's pages and live events", () => {
  it("/dashboard/ and its assets carry the CSP and the other security headers; /dashboard redirects", async () => {
    const page = await request("GET", "/dashboard/");
    expect([200, 503]).toContain(page.status);
    expectDashboardHeaders(page);
    if (page.status === 200) {
      expect(page.headers["content-type"]).toMatch(/^text\/html/);
      expect(page.headers["cache-control"]).toBe("no-cache");
    } else {
      expect(page.json()).toMatchObject({ error: "unavailable" });
      expect(page.text).toContain("npm run build");
    }
    const redirect = await request("GET", "/dashboard");
    expect(redirect.status).toBe(308);
    expect(redirect.headers.location).toBe("/dashboard/");
    expectDashboardHeaders(redirect);
    const missing = await request("GET", "/dashboard/assets/nope.js");
    expect(missing.status).toBe(404);
    expect(missing.json()).toMatchObject({ error: "not_found" });
    expectDashboardHeaders(missing);
    const traversal = await request("GET", "/dashboard/assets/..%2F..%2Fgateway.json");
    expect(traversal.status).toBe(404);
    expectDashboardHeaders(await request("GET", "/dashboard/elsewhere"));
    // The API's own answers carry no dashboard headers.
    expect((await request("GET", "/health")).headers["content-security-policy"]).toBeUndefined();
  });

  it("the event stream sends ready, then a change with topic devices when a node enrolls", async () => {
    const { cookie } = await login("viewer");
    const stream = await openEvents(cookie);
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toMatch(/^text\/event-stream/);
    expect(stream.headers["cache-control"]).toBe("no-store");
    await eventually(() => stream.received().length > 0, "the first event");
    expect(stream.received().startsWith("event: ready\ndata: {}\n\n")).toBe(true);

    const { register } = await startRegistration(gateway, "live-node");
    await eventually(
      () => stream.received().includes('event: change\ndata: {"topic":"devices"}\n\n'),
      "a devices change",
    );
    register.child.kill("SIGKILL");
    stream.close();
    // Without devices:read (no credential at all) the stream is refused as JSON.
    const refused = await request("GET", "/api/v1/events");
    expect(refused.status).toBe(401);
  });

  it("audit entries filter by actor and by type (exact, a family without its dot, or a prefix ending in a dot), AND-combined", async () => {
    const { cookie, csrfToken, subject } = await login();
    const { device, register } = await startRegistration(gateway, "audit-node");
    await request("POST", `/api/v1/devices/${device.deviceId}/deny`, {
      cookie,
      headers: { "x-csrf-token": csrfToken },
      body: { reason: "not ours" },
    });
    await register.exited;
    const entries = async (query: string) => {
      const answer = await request("GET", `/api/v1/audit?limit=1000&${query}`, { as: "admin" });
      expect(answer.status, query).toBe(200);
      return answer.json<{ entries: { type: string; actor: string | null; subject: string | null }[] }>()
        .entries;
    };
    const byActor = await entries(`actor=${encodeURIComponent(subject)}`);
    expect(byActor.map((e) => e.type)).toEqual(["dashboard.login", "device.deny"]);
    expect((await entries("type=device.deny")).map((e) => e.subject)).toContain(device.deviceId);
    const devicePrefix = await entries("type=device.");
    expect(devicePrefix.length).toBeGreaterThan(1);
    expect(devicePrefix.every((e) => e.type.startsWith("device."))).toBe(true);
    // A kind without a dot is that type and its whole family: as a person types it.
    expect(await entries("type=device")).toEqual(devicePrefix);
    expect(await entries("type=d_vice.")).toEqual([]);
    const both = await entries(`actor=${encodeURIComponent(subject)}&type=dashboard.`);
    expect(both.map((e) => e.type)).toEqual(["dashboard.login"]);
    for (const bad of ["type=", "type=a&type=b", `actor=${"x".repeat(200)}`]) {
      const answer = await request("GET", `/api/v1/audit?${bad}`, { as: "admin" });
      expect(answer.status, bad).toBe(400);
    }
  });

  it("malformed, huge or repeated cookies and tokens never get a 500", async () => {
    const cookies = [
      "===;;;",
      `${COOKIE}`,
      `${COOKIE}=`,
      `${COOKIE}=%E0%A4%A`,
      `${COOKIE}="quoted"`,
      `${COOKIE}=a; ${COOKIE}=b`,
      `other=1; ${COOKIE}=${"A".repeat(12_000)}`,
      `${"x".repeat(20_000)}=1`,
      "__proto__=1; constructor=2",
    ];
    for (const cookie of cookies) {
      for (const [method, url] of [
        ["GET", "/api/v1/devices"],
        ["GET", "/api/v1/dashboard/session"],
        ["POST", "/api/v1/dashboard/logout"],
        ["GET", "/api/v1/events"],
      ] as const) {
        const answer = await request(method, url, { cookie });
        expect(answer.status, `${method} ${url} ${cookie.slice(0, 40)}`).toBeLessThan(500);
        expect(answer.status, `${method} ${url} ${cookie.slice(0, 40)}`).not.toBe(200);
      }
    }
    // Unknown cookies of other names are ignored: the request falls through to the certificate.
    expect((await request("GET", "/api/v1/devices", { as: "admin", cookie: "theme=dark" })).status).toBe(200);
    for (const query of [
      "token=a&token=b",
      "token[]=x",
      "token=%ZZ",
      `token=${"A".repeat(8000)}`,
      "token=%00",
    ]) {
      const answer = await request("GET", `/dashboard/login?${query}`);
      expect(answer.status, query).toBeLessThan(500);
      expect(answer.headers["set-cookie"], query).toBeUndefined();
    }
  });
});

describe("stopping the gateway", () => {
  it("ends open event streams, so `gateway stop` is not held up by a dashboard tab", async () => {
    const { cookie } = await login();
    const stream = await openEvents(cookie);
    await eventually(() => stream.received().includes("event: ready"), "the ready event");
    await gateway.stop();
    await stream.ended;
    expect(await gateway.process.exited).toBe(0);
  });
});
